"""Waitlist offers that hold their slot: offering a freed slot to the next waiter, releasing it, expiring it.

When an appointment is cancelled (or moved away from a time), the freed slot is offered to the longest-waiting
matching entry and *held* for that member: the therapist and the resources the service needs get
`appointment_holds` rows owned by the waitlist entry, so the exclusion constraint that keeps appointments
apart refuses anyone else's booking of that time until the hold ends. The member is told through a
mini-program subscribe message with a deep link to the offer (booking's handler on `waitlist.slot_offered`,
through messaging, only with their consent).

The hold ends when

* the member takes it (`waitlist.accept_offer`): the hold is released and the appointment booked in the
  same transaction, through the normal booking path (which checks everything again);
* the member books that time some other way (the front desk on the phone): booking frees the member's own
  offer hold when it stands in the way (`appointments`), and the `appointment.booked` handler closes the entry;
* the member leaves the waitlist (`waitlist.leave`), or books that service another time that day;
* it expires (`expire_due_offers`, run by booking's job): the entry is `expired` and the slot offered to the
  next waiter, who gets a hold of their own.

An offer is made only for a slot the member could still book in the mini-program (the store's lead time and
horizon, as for any patient booking), and its hold never runs past the lead time before the start, so a
member who takes it in time is never refused as too late.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from sqlalchemy import or_
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.clock import utcnow
from app.core.errors import AppError
from app.core.events import emit
from app.domain.booking.availability import check_slot
from app.domain.booking.events import WAITLIST_SLOT_OFFERED
from app.domain.booking.holds import StaffTaken, occupy, release_offer_holds
from app.domain.booking.models import WaitlistEntry
from app.domain.booking.schedule import booking_policy
from app.domain.catalog import service as catalog
from app.domain.tenancy import service as tenancy

if TYPE_CHECKING:
    from app.domain.catalog.models import Service
    from app.domain.tenancy.models import Store

# How long an offered slot stays held for the member (and never past the store's lead time before it).
OFFER_HOLD = timedelta(minutes=30)
# A hold shorter than this is no offer: the member could hardly open the message in time.
MIN_OFFER_HOLD = timedelta(minutes=5)
EXPIRE_BATCH = 200


async def offer_slot(session: AsyncSession, tenant_id: UUID, *, store: Store, service: Service, staff_id: UUID,
                     starts_at: datetime, now: datetime | None = None,
                     skip_entry_ids: frozenset[UUID] = frozenset()) -> WaitlistEntry | None:
    """Offer a free slot to the first matching waiting entry and hold it for them; None when nobody waits,
    the slot is taken again, or it can no longer be booked in time. Emits `waitlist.slot_offered`."""
    now = now or utcnow()
    if starts_at <= now:
        return None
    day = starts_at.astimezone(tenancy.store_zone(store)).date()
    stmt = select(WaitlistEntry).where(
        WaitlistEntry.tenant_id == tenant_id, WaitlistEntry.store_id == store.id,
        WaitlistEntry.service_id == service.id, WaitlistEntry.day == day, WaitlistEntry.status == "waiting",
        or_(WaitlistEntry.staff_id.is_(None), WaitlistEntry.staff_id == staff_id))
    if skip_entry_ids:
        stmt = stmt.where(WaitlistEntry.id.not_in(skip_entry_ids))
    waiting = (await session.exec(stmt.order_by(WaitlistEntry.created_at, WaitlistEntry.id).limit(1)
                                  .with_for_update(skip_locked=True))).first()
    if waiting is None:
        return None
    policy = await booking_policy(session, tenant_id, store.id)
    hold_until = min(now + OFFER_HOLD, starts_at - timedelta(minutes=policy.lead_time_minutes))
    if hold_until - now < MIN_OFFER_HOLD:
        return None
    try:  # someone may have taken the slot meanwhile; the patient's window applies to what they are offered
        choice = await check_slot(session, tenant_id, store=store, service=service, staff_id=staff_id,
                                  starts_at=starts_at, now=now, enforce_window=True)
        async with session.begin_nested():
            await occupy(session, tenant_id, choice.starts_at, choice.blocked_until, choice,
                         waitlist_entry_id=waiting.id)
    except (AppError, StaffTaken):
        return None
    waiting.status, waiting.offered_at, waiting.offered_starts_at = "offered", now, choice.starts_at
    waiting.offered_staff_id, waiting.hold_expires_at, waiting.updated_at = choice.staff_id, hold_until, now
    session.add(waiting)
    await session.flush()
    audit.record(session, "waitlist.offer", "waitlist_entry", waiting.id, member_id=str(waiting.member_id),
                 starts_at=choice.starts_at, staff=str(choice.staff_id), hold_expires_at=hold_until)
    await emit(session, WAITLIST_SLOT_OFFERED, {
        "entry_id": str(waiting.id), "member_id": str(waiting.member_id), "store_id": str(store.id),
        "service_id": str(service.id), "staff_id": str(choice.staff_id), "starts_at": choice.starts_at.isoformat(),
        "hold_expires_at": hold_until.isoformat()}, tenant_id=tenant_id)
    return waiting


async def reoffer(session: AsyncSession, entry: WaitlistEntry, *, now: datetime | None = None) -> WaitlistEntry | None:
    """Offer the slot an offer no longer holds (left, expired) to the next waiter, if it is still free."""
    if entry.offered_starts_at is None or entry.offered_staff_id is None:
        return None
    store = await tenancy.store_row(session, entry.tenant_id, entry.store_id)
    service = await catalog.service_row(session, entry.tenant_id, entry.service_id)
    if store is None or service is None or not store.active or not service.active:
        return None
    return await offer_slot(session, entry.tenant_id, store=store, service=service, staff_id=entry.offered_staff_id,
                            starts_at=entry.offered_starts_at, now=now, skip_entry_ids=frozenset({entry.id}))


async def end_offer(session: AsyncSession, entry: WaitlistEntry, status: str, *, now: datetime | None = None) -> None:
    """The entry stops holding its slot (its holds are released) and becomes `status`."""
    now = now or utcnow()
    await release_offer_holds(session, entry.tenant_id, [entry.id])
    entry.status, entry.hold_expires_at, entry.updated_at = status, None, now
    session.add(entry)
    await session.flush()


async def release_closed_offers(session: AsyncSession, tenant_id: UUID, entry_ids: list[UUID]) -> int:
    """For the booking handler: entries closed because their member booked release what they held."""
    return await release_offer_holds(session, tenant_id, entry_ids)


async def expire_due_offers(session: AsyncSession, tenant_id: UUID, *, now: datetime | None = None) -> int:
    """Expire this tenant's offers whose hold has run out, each then offered to the next waiter (rows locked
    and skipped when another run has them: two runs never expire one offer twice)."""
    now = now or utcnow()
    due = list((await session.exec(select(WaitlistEntry).where(
        WaitlistEntry.tenant_id == tenant_id, WaitlistEntry.status == "offered",
        WaitlistEntry.hold_expires_at <= now).order_by(WaitlistEntry.hold_expires_at).limit(EXPIRE_BATCH)
        .with_for_update(skip_locked=True))).all())
    for entry in due:
        await end_offer(session, entry, "expired", now=now)
        audit.record(session, "waitlist.offer_expired", "waitlist_entry", entry.id,
                     starts_at=entry.offered_starts_at)
        await reoffer(session, entry, now=now)
    return len(due)

