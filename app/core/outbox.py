"""Transactional outbox: domain events are rows written in the same transaction as the change.

`emit()` adds the event to the session (inserted with the transaction's next flush, together with the
other events, and dropped with a savepoint that rolls back), and just before the transaction commits one
`pg_notify('careloop_outbox')` is issued, which PostgreSQL delivers only when (and if) the transaction
commits, so the relay wakes at once for committed events and never sees rolled-back ones. The relay
(app.workers.relay) moves rows to arq jobs; handlers run at least once and record each (event, handler)
pair they complete, so effects happen once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Column, DateTime, Index, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, retry
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.context import current_context
from app.core.db import before_commit, current_tenant, fetch
from app.core.errors import Conflict
from app.core.models import TENANT_TABLES, TenantRow, tenant_fk, timestamp_field
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404

NOTIFY_CHANNEL = "careloop_outbox"


class OutboxStatus:
    PENDING = "pending"  # written, not yet handed to the queue
    ENQUEUED = "enqueued"  # handed to arq; a job will run it
    DONE = "done"
    DEAD = "dead"  # gave up after job_max_attempts; visible and retryable through the API
    ALL = (PENDING, ENQUEUED, DONE, DEAD)


class OutboxEvent(TenantRow, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_relay", "available_at", postgresql_where=text("status = 'pending'")),
        Index("ix_outbox_tenant_status", "tenant_id", "status", "id"),
    )

    topic: str = Field(sa_type=Text)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    status: str = Field(default=OutboxStatus.PENDING, sa_type=Text)
    attempts: int = Field(default=0, sa_type=Integer)
    available_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    enqueued_at: datetime | None = timestamp_field()
    done_at: datetime | None = timestamp_field()
    last_error: str | None = Field(default=None, sa_type=Text)
    request_id: str | None = Field(default=None, sa_type=Text)


class OutboxDelivery(SQLModel, table=True):
    """One handler's completed work for one event; written in the handler's own transaction."""

    __tablename__ = "outbox_deliveries"
    __table_args__ = (tenant_fk(["outbox_id"], "outbox", ondelete="CASCADE"),)

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    outbox_id: UUID = Field(primary_key=True)
    handler: str = Field(primary_key=True, sa_type=Text)
    done_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


TENANT_TABLES.update({"outbox", "outbox_deliveries"})


async def emit(
    session: AsyncSession,
    topic: str,
    payload: dict[str, Any],
    *,
    tenant_id: UUID | None = None,
    available_at: datetime | None = None,
) -> OutboxEvent:
    """Record a domain event in the current transaction (`available_at` delays it)."""
    tenant = tenant_id or current_tenant(session)
    if tenant is None:
        raise RuntimeError("outbox.emit needs a tenant")
    event = OutboxEvent(
        tenant_id=tenant,
        topic=topic,
        payload=payload,
        available_at=available_at or utcnow(),
        request_id=current_context().request_id,
    )
    # No flush and no notify of its own: a booking emits two or three events, and a flush and a notify for
    # each were a fifth of its statements.
    session.add(event)
    before_commit(session, _notify, "outbox")
    return event


async def _notify(session: AsyncSession) -> None:
    await fetch(session, "SELECT pg_notify($1, '')", NOTIFY_CHANNEL)  # flushes the events first


async def list_events(
    session: AsyncSession, actor: Actor, params: PageParams, *, status: str | None, topic: str | None
):
    actor.require("outbox:read")
    stmt = select(OutboxEvent).where(OutboxEvent.tenant_id == actor.tenant_id)
    if status:
        stmt = stmt.where(OutboxEvent.status == status)
    if topic:
        stmt = stmt.where(OutboxEvent.topic == topic)
    # SQLModel types a column attribute as its value type (UUID); at run time it is the InstrumentedAttribute.
    return await paginate(session, stmt, OutboxEvent.id, params, descending=True)  # type: ignore[arg-type]


async def retry_event(session: AsyncSession, actor: Actor, event_id: UUID) -> OutboxEvent:
    """Send a dead-lettered event round again (after its cause was fixed)."""
    actor.require("outbox:write")
    event = await get_or_404(session, OutboxEvent, actor.tenant_id, event_id, code="event_not_found", lock=True)
    if event.status != OutboxStatus.DEAD:
        raise Conflict(f"only dead events can be retried; this one is {event.status}", code="event_not_dead")
    retry.revive(event, status=OutboxStatus.PENDING, due_at=utcnow(), due_field="available_at")
    session.add(event)
    await session.flush()
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
    audit.record(session, "outbox.retry", "outbox_event", event.id, topic=event.topic)
    return event
