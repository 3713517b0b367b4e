"""Chat-record sync run by the worker: the archive's own tenant, every few minutes."""

from __future__ import annotations

import logging

from app.core.context import RequestContext, reset_context, set_context
from app.core.db import SessionFactory
from app.core.events import scheduled
from app.domain.chatsync import service

log = logging.getLogger("careloop.chatsync")


@scheduled(minute=set(range(2, 60, 5)))
async def run_chat_sync(sessions: SessionFactory) -> dict[str, int]:
    """Sync the tenant the corp's archive belongs to (WECOM_MSGAUDIT_TENANT): WeCom's callbacks can be lost.
    No other tenant is synced: the archive holds the whole corp's chats."""
    if not service.is_configured():
        return {"tenants": 0}
    token = set_context(RequestContext(actor_type="system", actor_id="chat-sync"))
    try:
        tenant_id = await service.archive_tenant(sessions)
        if tenant_id is None:
            return {"tenants": 0}
        try:
            result = await service.sync_chat_records(sessions, tenant_id)
        except Exception:  # noqa: BLE001 - noted on the tenant's cursor (GET /chat-sync/status)
            log.exception("chat sync failed", extra={"tenant_id": str(tenant_id)})
            return {"tenants": 0, "stored": 0, "failed": 1}
        return {"tenants": 1, "stored": result.stored, "failed": 0}
    finally:
        reset_context(token)
