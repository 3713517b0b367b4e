"""Webhooks' reactions: every event fans out to the subscriptions that want it; the deliveries are sent."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import any_
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.clock import utcnow
from app.core.db import SessionFactory
from app.core.events import WILDCARD, OutboxEvent, emit, on, on_outside_transaction
from app.core.ids import new_id
from app.domain.webhooks import service
from app.domain.webhooks.events import WEBHOOKS_DISPATCH
from app.domain.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from app.domain.webhooks.topics import WEBHOOK_TOPICS


@on(WILDCARD)
async def fan_out(session: AsyncSession, event: OutboxEvent) -> None:
    """One delivery per active subscription that wants the topic (a redelivered event makes no second one),
    and `webhooks.dispatch` in the same transaction, so the sending starts as soon as that commits."""
    if event.topic not in WEBHOOK_TOPICS:
        return  # internal topics (and our own dispatch events) cost nothing more than this check
    subs = (await session.exec(select(WebhookSubscription.id).where(
        WebhookSubscription.tenant_id == event.tenant_id, WebhookSubscription.active,
        event.topic == any_(WebhookSubscription.event_types)))).all()
    if not subs:
        return
    now = utcnow()
    rows = [{"tenant_id": event.tenant_id, "id": new_id(), "subscription_id": sub_id, "event_id": event.id,
             "topic": event.topic, "payload": event.payload, "event_created_at": event.created_at,
             "status": DeliveryStatus.PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now,
             "updated_at": now} for sub_id in subs]
    created = (await session.execute(
        insert(WebhookDelivery).values(rows)
        .on_conflict_do_nothing(index_elements=["tenant_id", "subscription_id", "event_id"])
        .returning(WebhookDelivery.id))).scalars().all()
    if created:
        await emit(session, WEBHOOKS_DISPATCH, {"delivery_ids": [str(i) for i in created]})


@on_outside_transaction(WEBHOOKS_DISPATCH)
async def dispatch(sessions: SessionFactory, event: OutboxEvent) -> None:
    """Send the deliveries now, each between short transactions of its own. A receiver's failure is the
    delivery's to retry, never the event's; a delivery already sent is not due, so a rerun skips it."""
    ids = [UUID(i) for i in event.payload.get("delivery_ids", [])]
    await service.deliver_many(sessions, [(event.tenant_id, i) for i in ids])
