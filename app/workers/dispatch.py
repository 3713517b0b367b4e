"""Run one outbox event's handlers: at least once, effects once, then done or dead."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from sqlalchemy import text

from app.core import retry
from app.core.clock import utcnow
from app.core.context import RequestContext, reset_context, set_context
from app.core.db import session_scope
from app.core.events import discover, handlers_for, outside_transaction
from app.core.outbox import OutboxEvent, OutboxStatus

log = logging.getLogger("careloop.jobs")

# Whatever process can dispatch an event knows every context's handlers.
discover()

_CLAIM_DELIVERY = text(
    "INSERT INTO outbox_deliveries (tenant_id, outbox_id, handler, done_at) VALUES (:t, :o, :h, now()) "
    "ON CONFLICT DO NOTHING RETURNING handler"
)
_DELIVERED = text("SELECT 1 FROM outbox_deliveries WHERE tenant_id = :t AND outbox_id = :o AND handler = :h")


def backoff_seconds(attempts: int) -> float:
    return retry.policy("job").backoff_seconds(attempts)


async def dispatch_event(ctx: dict[str, Any] | None, tenant_id: str, event_id: str) -> str:
    """arq job: deliver the event to each registered handler that has not yet completed it.

    A handler runs in a transaction of its own, opened here, in which its (event, handler) pair is recorded:
    a handler whose work committed is never run again. A handler that calls out (`on_outside_transaction`)
    gets the session factory instead and is recorded after it returns.
    """
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
                params = {"t": tenant, "o": eid, "h": name}
                if outside_transaction(handler):
                    async with session_scope(tenant) as session:
                        if (await session.execute(_DELIVERED, params)).first() is not None:
                            continue
                    await handler(session_scope, event)
                    async with session_scope(tenant) as session:
                        await session.execute(_CLAIM_DELIVERY, params)
                    continue
                async with session_scope(tenant) as session:
                    if (await session.execute(_CLAIM_DELIVERY, params)).first() is None:
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
    policy = retry.policy("job")
    async with session_scope(tenant) as session:
        event = await session.get(OutboxEvent, (tenant, eid), with_for_update=True)
        if event is None:
            return "skipped"
        event.attempts += 1
        event.last_error = retry.error_text(exc)
        retry_at = policy.next_attempt_at(event.attempts, utcnow())
        if retry_at is None:
            event.status = OutboxStatus.DEAD
            log.error("event dead-lettered", extra={"event_id": str(eid), "topic": event.topic,
                                                    "attempts": event.attempts, "error": event.last_error})
        else:
            event.status, event.available_at = OutboxStatus.PENDING, retry_at
            log.warning("event failed; will retry", extra={"event_id": str(eid), "topic": event.topic,
                                                          "attempts": event.attempts, "error": event.last_error})
        session.add(event)
        return event.status
