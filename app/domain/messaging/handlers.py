"""Messaging's reactions: delivering queued messages."""

from __future__ import annotations

from uuid import UUID

from app.core.db import SessionFactory
from app.core.events import OutboxEvent, on_outside_transaction
from app.domain.messaging import delivery
from app.domain.messaging.events import MESSAGE_SEND


@on_outside_transaction(MESSAGE_SEND)
async def deliver_message(sessions: SessionFactory, event: OutboxEvent) -> None:
    """One delivery attempt of one message (see `delivery` for the retry design): the claim commits before
    the provider is called, and the outcome is recorded after it answers, each in a transaction of its own."""
    tenant_id, message_id = event.tenant_id, UUID(event.payload["message_id"])
    async with sessions(tenant_id) as session:
        claimed = await delivery.claim_attempt(session, tenant_id, message_id, int(event.payload.get("attempt", 0)))
    if claimed is None:
        return
    outcome = await delivery.send(sessions, claimed)
    async with sessions(tenant_id) as session:
        await delivery.record_outcome(session, tenant_id, message_id, outcome)
