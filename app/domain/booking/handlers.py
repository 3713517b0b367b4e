"""Booking's reactions to events, in the dispatcher's transaction: the waitlist follows the appointments."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import or_, update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.clock import utcnow
from app.core.errors import AppError
from app.core.events import OutboxEvent, emit, on
from app.domain.booking.availability import check_slot
from app.domain.booking.events import (
    APPOINTMENT_BOOKED,
    APPOINTMENT_CANCELLED,
    APPOINTMENT_RESCHEDULED,
    WAITLIST_SLOT_OFFERED,
)
from app.domain.booking.models import WaitlistEntry
from app.domain.booking.waitlist import OPEN_STATUSES
from app.domain.catalog import service as catalog
from app.domain.tenancy import service as tenancy


@on(APPOINTMENT_CANCELLED, APPOINTMENT_RESCHEDULED)
async def offer_freed_slot(session: AsyncSession, event: OutboxEvent) -> None:
    """Offer the slot a cancellation (or the old time of a reschedule) freed to the first matching waiter."""
    payload = event.payload
    freed = payload.get("previous_starts_at") if event.topic == APPOINTMENT_RESCHEDULED else payload["starts_at"]
    if freed is None:
        return
    starts_at = datetime.fromisoformat(freed)
    if starts_at <= utcnow():
        return
    tenant_id, store_id = event.tenant_id, UUID(payload["store_id"])
    service_id = UUID(payload["service_id"])
    staff_id = UUID(payload["previous_staff_id"] if event.topic == APPOINTMENT_RESCHEDULED
                    and payload.get("previous_staff_id") else payload["staff_id"])
    store = await tenancy.store_row(session, tenant_id, store_id)
    service = await catalog.service_row(session, tenant_id, service_id)
    if store is None or service is None:
        return
    day = starts_at.astimezone(tenancy.store_zone(store)).date()
    waiting = (await session.exec(
        select(WaitlistEntry).where(
            WaitlistEntry.tenant_id == tenant_id, WaitlistEntry.store_id == store_id,
            WaitlistEntry.service_id == service_id, WaitlistEntry.day == day, WaitlistEntry.status == "waiting",
            or_(WaitlistEntry.staff_id.is_(None), WaitlistEntry.staff_id == staff_id))
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id).limit(1).with_for_update(skip_locked=True))).first()
    if waiting is None:
        return
    try:  # someone may have taken the slot between the cancellation and now
        await check_slot(session, tenant_id, store=store, service=service, staff_id=staff_id,
                         starts_at=starts_at, now=utcnow(), enforce_window=False)
    except AppError:
        return
    waiting.status, waiting.offered_at, waiting.offered_starts_at = "offered", utcnow(), starts_at
    waiting.updated_at = utcnow()
    session.add(waiting)
    await emit(session, WAITLIST_SLOT_OFFERED, {
        "entry_id": str(waiting.id), "member_id": str(waiting.member_id), "store_id": str(store_id),
        "service_id": str(service_id), "staff_id": str(staff_id), "starts_at": starts_at.isoformat()},
        tenant_id=tenant_id)


@on(APPOINTMENT_BOOKED)
async def close_entries_on_booking(session: AsyncSession, event: OutboxEvent) -> None:
    """A member who booked that service on that day no longer waits for it."""
    payload = event.payload
    store = await tenancy.store_row(session, event.tenant_id, UUID(payload["store_id"]))
    if store is None:
        return
    day = datetime.fromisoformat(payload["starts_at"]).astimezone(tenancy.store_zone(store)).date()
    await session.execute(update(WaitlistEntry).where(
        WaitlistEntry.tenant_id == event.tenant_id, WaitlistEntry.member_id == UUID(payload["member_id"]),
        WaitlistEntry.store_id == store.id, WaitlistEntry.service_id == UUID(payload["service_id"]),
        WaitlistEntry.day == day, WaitlistEntry.status.in_(OPEN_STATUSES),
    ).values(status="booked", appointment_id=UUID(payload["appointment_id"]), updated_at=utcnow()))
