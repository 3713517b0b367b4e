"""Clinical's reactions: visits count against treatment plans.

Both run inside the dispatcher's transaction and only flush. Delivery is at least once; the plans module
makes each effect happen once (the progress ledger's unique key per service record and kind).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.events import OutboxEvent, on
from app.domain.clinical import (
    consents,  # noqa: F401 - registers booking's consent checks in every process
    plans,
)
from app.domain.visits.events import SERVICE_COMPLETED, SERVICE_REVERSED


@on(SERVICE_COMPLETED)
async def count_visit_against_plan(session: AsyncSession, event: OutboxEvent) -> None:
    """A completed service (from an appointment or walked in) of a planned service moves the member's plan on."""
    payload = event.payload
    await plans.count_visit(session, event.tenant_id, plans.CompletedVisit(
        service_record_id=UUID(payload["service_record_id"]), member_id=UUID(payload["member_id"]),
        service_id=UUID(payload["service_id"]),
        staff_id=UUID(payload["staff_id"]) if payload.get("staff_id") else None,
        completed_at=datetime.fromisoformat(payload["completed_at"])))


@on(SERVICE_REVERSED)
async def take_back_reversed_visit(session: AsyncSession, event: OutboxEvent) -> None:
    """A reversed service record no longer counts: its progress is taken back by a reversal entry."""
    await plans.uncount_visit(session, event.tenant_id, UUID(event.payload["service_record_id"]))
