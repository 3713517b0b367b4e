"""The topics chat-record sync emits (WeCom's `wecom.msgaudit_notify`, which also starts a sync, is the
WeCom callback's: `app.domain.wechat_links.events`)."""

from __future__ import annotations

from app.core.events import topic

CHAT_SYNC_REQUESTED = topic(
    "chat_sync.requested", "A chat-record sync was asked for (POST /chat-sync/run, or a run that stopped with "
    "more to fetch)", "requested_by", "reason")
