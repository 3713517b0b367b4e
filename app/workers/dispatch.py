"""Run one outbox event's handlers: at least once, effects once, then done or dead."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import text

from app.core.clock import utcnow
from app.core.context import RequestContext, reset_context, set_context
from app.core.db import session_scope
from app.core.outbox import OutboxEvent, OutboxStatus
from app.core.settings import get_settings
from app.workers.registry import handlers_for

log = logging.getLogger("careloop.jobs")

_CLAIM_DELIVERY = text(
    "INSERT INTO outbox_deliveries (tenant_id, outbox_id, handler, done_at) VALUES (:t, :o, :h, now()) "
    "ON CONFLICT DO NOTHING RETURNING handler"
)


def backoff_seconds(attempts: int) -> float:
    settings = get_settings()
    return min(settings.job_backoff_base_seconds * (2 ** max(attempts - 1, 0)), settings.job_backoff_max_seconds)


async def dispatch_event(ctx: dict[str, Any] | None, tenant_id: str, event_id: str) -> str:
    """arq job: deliver the event to each registered handler that has not yet completed it."""
    tenant, eid = UUID(tenant_id), UUID(event_id)
    token = set_context(RequestContext(actor_type="system", actor_id="worker"))
    try:
        async with session_scope(tenant) as session:
            event = await session.get(OutboxEvent, (tenant, eid))
            if event is None or event.status in (OutboxStatus.DONE, OutboxStatus.DEAD):
                return "skipped"
            session.expunge(event)
        set_context(RequestContext(request_id=event.request_id, actor_type="system", actor_id="worker"))
        try:
            for name, handler in handlers_for(event.topic):
                async with session_scope(tenant) as session:
                    claimed = (await session.execute(_CLAIM_DELIVERY, {"t": tenant, "o": eid, "h": name})).first()
                    if claimed is None:
                        continue  # this handler's work is already committed
                    await handler(session, event)
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried or dead-lettered
            return await _record_failure(tenant, eid, exc)
        async with session_scope(tenant) as session:
            await session.execute(
                text("UPDATE outbox SET status = 'done', done_at = now(), last_error = NULL "
                     "WHERE tenant_id = :t AND id = :o"),
                {"t": tenant, "o": eid},
            )
        return "done"
    finally:
        reset_context(token)


async def _record_failure(tenant: UUID, eid: UUID, exc: Exception) -> str:
    settings = get_settings()
    async with session_scope(tenant) as session:
        event = await session.get(OutboxEvent, (tenant, eid), with_for_update=True)
        event.attempts += 1
        event.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        if event.attempts >= settings.job_max_attempts:
            event.status = OutboxStatus.DEAD
            log.error("event dead-lettered", extra={"event_id": str(eid), "topic": event.topic,
                                                    "attempts": event.attempts, "error": event.last_error})
        else:
            event.status = OutboxStatus.PENDING
            event.available_at = utcnow() + timedelta(seconds=backoff_seconds(event.attempts))
            log.warning("event failed; will retry", extra={"event_id": str(eid), "topic": event.topic,
                                                          "attempts": event.attempts, "error": event.last_error})
        session.add(event)
        return event.status
