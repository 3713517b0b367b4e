"""The waitlist: members waiting for a service (optionally one therapist) at a store on a day.

When an appointment is cancelled or moved, the worker offers the freed slot to the longest-waiting
matching entry and holds it for them for a while (`waitlist_offers`: the slot's therapist and resources are
held for the offer, so nobody else can book it meanwhile); `waitlist.slot_offered` becomes a mini-program
subscribe message with a deep link to the offer (with the member's consent). `accept_offer` books it; an
offer not taken in time expires (booking's job) and goes to the next waiter. Booking any appointment for
that service and day closes the member's entries. The reactions are in `handlers`.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import AppError, Conflict, NotFound, Unprocessable
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.core.schemas import Strict
from app.domain.booking import appointments, waitlist_offers
from app.domain.booking.appointment_access import bookable_store
from app.domain.booking.models import Appointment, WaitlistEntry
from app.domain.booking.schemas import AppointmentCreate
from app.domain.catalog import service as catalog
from app.domain.members import service as members
from app.domain.tenancy import service as tenancy

MAX_DAYS_AHEAD = 90
OPEN_STATUSES = ("waiting", "offered")


class WaitlistJoin(Strict):
    member_id: UUID
    store_id: UUID
    service_id: UUID
    staff_id: UUID | None = Field(None, description="Only this therapist; omitted: anyone who can perform it")
    day: date = Field(description="Store-local day (YYYY-MM-DD)")


class WaitlistOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    member_id: UUID
    store_id: UUID
    service_id: UUID
    staff_id: UUID | None
    day: date
    status: str
    offered_at: datetime | None
    offered_starts_at: datetime | None
    offered_staff_id: UUID | None = Field(None, description="The therapist of the offered slot")
    hold_expires_at: datetime | None = Field(None, description="While offered: the slot is held for the member "
                                                               "until then (take it with …/accept)")
    appointment_id: UUID | None
    created_at: datetime | None


async def join(session: AsyncSession, actor: Actor, data: WaitlistJoin) -> WaitlistEntry:
    """Put a member on the waitlist; patients for themselves or their family, staff for anyone."""
    if actor.kind != "patient":
        actor.require("appointments:write")
        actor.require_store(data.store_id)
    store = await bookable_store(session, actor, data.store_id)
    member = await members.get_member_row(session, actor, data.member_id)
    if member.status != "active":
        raise Conflict(f"member is {member.status}", code="member_inactive")
    service = await catalog.get_service_row(session, actor, data.service_id)
    if not service.active:
        raise Conflict("this service is no longer offered", code="service_inactive")
    today = tenancy.store_today(store)
    if not today <= data.day <= today + timedelta(days=MAX_DAYS_AHEAD):
        raise Unprocessable(f"day must be between today and {MAX_DAYS_AHEAD} days ahead (store time)",
                            code="validation_error", field="day")
    duplicate = (await session.exec(select(WaitlistEntry.id).where(
        WaitlistEntry.tenant_id == actor.tenant_id, WaitlistEntry.member_id == member.id,
        WaitlistEntry.store_id == store.id, WaitlistEntry.service_id == service.id, WaitlistEntry.day == data.day,
        WaitlistEntry.status.in_(OPEN_STATUSES)))).first()
    if duplicate is not None:
        raise Conflict("the member is already waiting for this service on this day", code="already_waiting",
                       existing_id=str(duplicate))
    entry = WaitlistEntry(tenant_id=actor.tenant_id, member_id=member.id, store_id=store.id,
                          service_id=service.id, staff_id=data.staff_id, day=data.day, updated_at=utcnow())
    session.add(entry)
    await session.flush()
    audit.record(session, "waitlist.join", "waitlist_entry", entry.id, member_id=str(member.id),
                 day=data.day.isoformat())
    return entry


async def _entry(session: AsyncSession, actor: Actor, entry_id: UUID) -> WaitlistEntry:
    entry = await get_or_404(session, WaitlistEntry, actor.tenant_id, entry_id, code="waitlist_entry_not_found",
                             lock=True)
    if actor.kind == "patient":
        await members.get_member_row(session, actor, entry.member_id)  # 404 unless self or family
    else:
        actor.require("appointments:write")
        actor.require_store(entry.store_id)
    return entry


async def get_entry(session: AsyncSession, actor: Actor, entry_id: UUID) -> WaitlistEntry:
    """One entry (the offer a subscribe message's deep link opens): patients their own or their family's,
    staff with `appointments:read` in its store."""
    entry = await get_or_404(session, WaitlistEntry, actor.tenant_id, entry_id, code="waitlist_entry_not_found")
    if actor.kind == "patient":
        try:
            await members.get_member_row(session, actor, entry.member_id)
        except NotFound as exc:
            raise NotFound("waitlist entry not found", code="waitlist_entry_not_found") from exc
    else:
        actor.require("appointments:read")
        actor.require_store(entry.store_id)
    return entry


async def leave(session: AsyncSession, actor: Actor, entry_id: UUID) -> WaitlistEntry:
    """Stop waiting. An offered slot (declined this way) is released and offered to the next waiter."""
    entry = await _entry(session, actor, entry_id)
    if entry.status not in OPEN_STATUSES:
        raise Conflict(f"the entry is already {entry.status}", code="invalid_status")
    offered = entry.status == "offered"
    await waitlist_offers.end_offer(session, entry, "cancelled")
    audit.record(session, "waitlist.leave", "waitlist_entry", entry.id, declined_offer=offered)
    if offered:
        await waitlist_offers.reoffer(session, entry)
    return entry


async def accept_offer(session: AsyncSession, actor: Actor, entry_id: UUID, *, channel: str | None = None,
                       now: datetime | None = None) -> list[tuple[Appointment, list[UUID]]]:
    """Take an offered slot: its hold is released and the appointment booked through the normal booking path
    in the same transaction (the patient's window, the member being free, everything checked again). 409
    `invalid_status` unless the entry is offered, 409 `offer_expired` once its hold has run out."""
    entry = await _entry(session, actor, entry_id)
    now = now or utcnow()
    if entry.status != "offered":
        raise Conflict(f"there is no offer to take: the entry is {entry.status}", code="invalid_status",
                       current_status=entry.status)
    if entry.hold_expires_at is None or entry.hold_expires_at <= now:
        raise Conflict("the offer has expired; the slot went back to the waitlist", code="offer_expired",
                       hold_expires_at=entry.hold_expires_at.isoformat() if entry.hold_expires_at else None)
    # The hold goes first, so the booking below can take the very same slot (all or nothing with it).
    await waitlist_offers.end_offer(session, entry, "booked", now=now)
    booked = await appointments.book_placed(session, actor, AppointmentCreate(
        member_id=entry.member_id, store_id=entry.store_id, service_id=entry.service_id,
        staff_id=entry.offered_staff_id, starts_at=entry.offered_starts_at,
        channel=None if actor.kind == "patient" else channel), now=now)
    entry.appointment_id = booked[0][0].id
    session.add(entry)
    await session.flush()
    audit.record(session, "waitlist.accept", "waitlist_entry", entry.id, appointment=str(booked[0][0].id))
    return booked


async def list_entries(session: AsyncSession, actor: Actor, params: PageParams, *, store_id: UUID | None,
                       day: date | None, member_id: UUID | None, status: str | None):
    stmt = select(WaitlistEntry).where(WaitlistEntry.tenant_id == actor.tenant_id)
    if actor.kind == "patient":
        if member_id is None:
            raise AppError("member_id is required", code="validation_error", status=422, field="member_id")
        await members.get_member_row(session, actor, member_id)
    else:
        actor.require("appointments:read")
        if store_id is not None:
            actor.require_store(store_id)
        elif actor.store_ids is not None:
            stmt = stmt.where(WaitlistEntry.store_id.in_(actor.store_ids))
    for column, value in ((WaitlistEntry.store_id, store_id), (WaitlistEntry.day, day),
                          (WaitlistEntry.member_id, member_id), (WaitlistEntry.status, status)):
        if value is not None:
            stmt = stmt.where(column == value)
    return await paginate(session, stmt, WaitlistEntry.id, params)


@members.merge_mover("waitlist_entries")
async def _move_waitlist(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID,
                         survivor_id: UUID) -> dict[str, int]:
    moved = await session.execute(update(WaitlistEntry).where(WaitlistEntry.tenant_id == tenant_id,
                                                              WaitlistEntry.member_id == duplicate_id)
                                  .values(member_id=survivor_id, updated_at=utcnow()))
    return {"waitlist_entries": moved.rowcount}
