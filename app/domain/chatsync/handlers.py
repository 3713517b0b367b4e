"""Chat-record sync's reactions: sync when records are waiting; map and blank stored chats as members change."""

from __future__ import annotations

import logging
from uuid import UUID

from sqlalchemy import update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.db import SessionFactory
from app.core.events import OutboxEvent, emit, on, on_outside_transaction
from app.domain.chatsync import service
from app.domain.chatsync.archive import ChatSyncNotConfigured
from app.domain.chatsync.events import CHAT_SYNC_REQUESTED
from app.domain.chatsync.models import ChatRecord
from app.domain.members.events import MEMBER_ERASED
from app.domain.wechat_links.events import (
    WECOM_EXTERNAL_CONTACT_CHANGED,
    WECOM_EXTERNAL_CONTACT_LINKED,
    WECOM_MSGAUDIT_NOTIFY,
)

log = logging.getLogger("careloop.chatsync")


@on_outside_transaction(WECOM_MSGAUDIT_NOTIFY, CHAT_SYNC_REQUESTED)
async def on_sync_wanted(sessions: SessionFactory, event: OutboxEvent) -> None:
    """The archive has new records (or someone asked): sync, one batch per transaction. Failures raise, so
    the outbox retries with backoff and finally dead-letters the event (visible at GET /outbox?status=dead);
    a deployment without the SDK configured only notes it on the cursor (retrying cannot help). A run that
    stopped with more to fetch asks for another, so one job stays well inside the job timeout."""
    try:
        result = await service.sync_chat_records(sessions, event.tenant_id)
    except ChatSyncNotConfigured as exc:
        log.warning("chat sync not configured", extra={"tenant_id": str(event.tenant_id), "error": str(exc)})
        return
    if result.more:
        async with sessions(event.tenant_id) as session:
            await emit(session, CHAT_SYNC_REQUESTED, {"reason": "continue"})


@on(WECOM_EXTERNAL_CONTACT_CHANGED, WECOM_EXTERNAL_CONTACT_LINKED)
async def _map_newly_linked_contact(session: AsyncSession, event: OutboxEvent) -> None:
    # A contact linked to a member (by unionid once WeCom named it, or by hand): map its stored chats now
    # rather than at the next sync.
    if event.payload.get("member_id") and event.payload.get("external_userid"):
        await session.execute(update(ChatRecord).where(
            ChatRecord.tenant_id == event.tenant_id, ChatRecord.member_id.is_(None),
            ChatRecord.external_userid == event.payload["external_userid"])
            .values(member_id=UUID(event.payload["member_id"])))


@on(MEMBER_ERASED)
async def _blank_erased_member_chats(session: AsyncSession, event: OutboxEvent) -> None:
    # The archive keeps that a conversation happened; what was said goes with the member's personal data.
    member_id = UUID(event.payload["member_id"])
    await session.execute(update(ChatRecord).where(ChatRecord.tenant_id == event.tenant_id,
                                                   ChatRecord.member_id == member_id)
                          .values(content_encrypted=None, media=None))
