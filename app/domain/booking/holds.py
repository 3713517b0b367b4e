"""Holds: what an appointment occupies, taken so that PostgreSQL refuses double booking.

No double booking is enforced by PostgreSQL inside the booking transaction, not by the availability check:
`check_slot` only proposes (and explains refusals); then every thing the appointment occupies gets an
`appointment_holds` row. Staff members and capacity-1 resources take *exclusive* holds, which the exclusion
constraint `ex_appointment_holds_no_overlap` refuses when they overlap another active exclusive hold of the
same bookable — also a concurrent, not yet committed one (the insert waits for it). An exclusive hold is
inserted with ON CONFLICT DO NOTHING, so a refused room just moves on to the requirement's next candidate
without a savepoint. Resources of capacity > 1
take non-exclusive holds under a row lock on the resource and a count of what overlaps.

Holds run from the start to `blocked_until` (the end plus the service's cleanup buffer). They are released
(active = false) when an appointment is cancelled, marked no-show or moved; a completed appointment keeps
its holds: the time was used (and the room still needs its cleanup), so nothing may be booked into it
afterwards — availability then agrees with what really happened.

The member cannot be in two places at once either: a booking or a move first takes a transaction-scoped
advisory lock on the member (`lock_member`), so bookings of one member queue up, then refuses with 409
`member_busy` when another of the member's active appointments overlaps [starts_at, ends_at) (the buffer is
the room's, not the member's). Under the lock the check reads what concurrent bookings committed, so two
therapists booking the member at once cannot both succeed. A multi-service visit is booked back to back
(each service starts when the previous one's buffer ends), so its own appointments never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from asyncpg.exceptions import DeadlockDetectedError
from sqlalchemy import func, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.db import execute, fetch
from app.core.errors import Conflict, Unprocessable
from app.domain.booking.availability import SlotChoice, check_slot, window_applies
from app.domain.booking.bookables import bookable_no
from app.domain.booking.models import ACTIVE_STATUSES, Appointment, AppointmentHold, Resource, WaitlistEntry

if TYPE_CHECKING:
    from app.domain.catalog.models import Service
    from app.domain.tenancy.models import Store

EXCLUSION_CONSTRAINT = "ex_appointment_holds_no_overlap"
DEADLOCK_DETECTED = "40P01"


class StaffTaken(Exception):
    def __init__(self, staff_id: UUID) -> None:
        super().__init__(str(staff_id))
        self.staff_id = staff_id


def _refused_by_overlap(exc: DBAPIError) -> bool:
    """The exclusion constraint refused the hold (or PostgreSQL broke a lock cycle between two bookings
    that each wait for the other's hold: the other one keeps it, so for us it is taken)."""
    cause = getattr(exc.orig, "__cause__", None)
    if isinstance(exc, IntegrityError):
        return getattr(cause, "constraint_name", None) == EXCLUSION_CONSTRAINT
    return getattr(exc.orig, "sqlstate", None) == DEADLOCK_DETECTED or \
        getattr(cause, "sqlstate", None) == DEADLOCK_DETECTED


# An exclusive hold, or nothing when the exclusion constraint finds an overlapping one (DO NOTHING takes
# exclusion constraints as arbiters): no savepoint and no error to recover from, one prepared statement.
_HOLD_COLUMNS = ("tenant_id, id, created_at, appointment_id, waitlist_entry_id, kind, ref_id, bookable_no, starts_at, "
                 "ends_at, exclusive, active")
_INSERT_EXCLUSIVE = (f"INSERT INTO appointment_holds ({_HOLD_COLUMNS}) "
                     "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, true, true) ON CONFLICT DO NOTHING RETURNING id")
# The staff member's hold with their bookable number looked up in the same statement; `number` is NULL
# when they have none yet (their first booking: `bookable_no` makes it, then `_INSERT_EXCLUSIVE`).
_INSERT_STAFF_HOLD = f"""
WITH staff_no AS (SELECT bookable_no FROM bookables WHERE tenant_id = $1 AND kind = 'staff' AND ref_id = $6),
     held AS (INSERT INTO appointment_holds ({_HOLD_COLUMNS})
              SELECT $1, $2, $3, $4, $5, 'staff', $6, bookable_no, $7, $8, true, true FROM staff_no
              ON CONFLICT DO NOTHING RETURNING id)
SELECT (SELECT bookable_no FROM staff_no) AS number, EXISTS (SELECT 1 FROM held) AS held
"""


async def _insert_exclusive(session: AsyncSession, hold: AppointmentHold) -> bool:
    """Insert an exclusive hold; False when an overlapping active hold has it already."""
    return bool(await fetch(session, _INSERT_EXCLUSIVE, hold.tenant_id, hold.id, hold.created_at, hold.appointment_id,
                            hold.waitlist_entry_id, hold.kind, hold.ref_id, hold.bookable_no, hold.starts_at,
                            hold.ends_at))


async def _insert_staff_hold(session: AsyncSession, hold: AppointmentHold) -> bool:
    row = (await fetch(session, _INSERT_STAFF_HOLD, hold.tenant_id, hold.id, hold.created_at, hold.appointment_id,
                       hold.waitlist_entry_id, hold.ref_id, hold.starts_at, hold.ends_at))[0]
    if row["number"] is not None:
        return bool(row["held"])
    hold.bookable_no = await bookable_no(session, hold.tenant_id, "staff", hold.ref_id)
    return await _insert_exclusive(session, hold)


@dataclass(frozen=True)
class _Candidate:
    id: UUID
    bookable_no: int
    capacity: int


async def _insert_shared(session: AsyncSession, hold: AppointmentHold, capacity: int) -> bool:
    """A hold on a resource of capacity > 1: lock the resource row (bookings of it queue here), then
    refuse when as many active holds as it has places overlap the span. The count is the one availability
    uses (conservative: two overlapping holds that do not overlap each other still count twice), so what
    booking accepts was offered."""
    await session.execute(select(Resource.id).where(Resource.tenant_id == hold.tenant_id, Resource.id == hold.ref_id)
                          .with_for_update())
    overlapping = (await session.execute(select(func.count()).select_from(AppointmentHold).where(
        AppointmentHold.tenant_id == hold.tenant_id, AppointmentHold.bookable_no == hold.bookable_no,
        AppointmentHold.active, AppointmentHold.starts_at < hold.ends_at, AppointmentHold.ends_at > hold.starts_at,
    ))).scalar_one()
    if overlapping >= capacity:
        return False
    session.add(hold)
    await session.flush()
    return True


async def take_holds(session: AsyncSession, appointment: Appointment, choice: SlotChoice) -> list[UUID]:
    """Occupy the staff member and one resource per requirement for the appointment's time; returns the
    resources taken. Raises StaffTaken, or 409 resource_unavailable when a requirement has no candidate left;
    a caller that goes on after such a refusal runs this inside a savepoint (begin_nested) and rolls it back
    (otherwise the refusal is the request's, and its rollback leaves nothing behind)."""
    return await occupy(session, appointment.tenant_id, appointment.starts_at, appointment.blocked_until, choice,
                        appointment_id=appointment.id)


async def occupy(session: AsyncSession, tenant_id: UUID, start: datetime, end: datetime, choice: SlotChoice, *,
                 appointment_id: UUID | None = None, waitlist_entry_id: UUID | None = None) -> list[UUID]:
    """`take_holds` for whoever owns the holds: an appointment, or a waitlist offer keeping its slot free
    for the member it was offered to (the same constraint then refuses everyone else)."""
    # Plain values up front: a refused savepoint must not leave us reading expired ORM attributes.
    requirements = [[_Candidate(r.id, r.bookable_no, r.capacity) for r in candidates]
                    for candidates in choice.resources]

    def hold(kind: str, ref_id: UUID, number: int, exclusive: bool) -> AppointmentHold:
        return AppointmentHold(tenant_id=tenant_id, appointment_id=appointment_id,
                               waitlist_entry_id=waitlist_entry_id, kind=kind, ref_id=ref_id,
                               bookable_no=number, starts_at=start, ends_at=end, exclusive=exclusive)

    # No savepoint of its own: every caller that goes on after a refusal runs this inside one. A lock cycle
    # with another booking (PostgreSQL breaks it by refusing one of the two) leaves this transaction
    # unusable, so it is a refusal here too, for the caller's savepoint or the request to roll back.
    try:
        if not await _insert_staff_hold(session, hold("staff", choice.staff_id, 0, True)):
            raise StaffTaken(choice.staff_id)
    except DeadlockDetectedError:
        raise StaffTaken(choice.staff_id) from None
    taken: list[UUID] = []
    for index, candidates in enumerate(requirements):
        for candidate in candidates:
            if candidate.id in taken:  # two requirements of one service from the same pool
                continue
            if candidate.capacity > 1:
                try:
                    async with session.begin_nested():
                        ok = await _insert_shared(session, hold("resource", candidate.id, candidate.bookable_no,
                                                                False), candidate.capacity)
                except DBAPIError as exc:  # a lock cycle broken while waiting for the resource row
                    if not _refused_by_overlap(exc):
                        raise
                    ok = False
            else:
                try:
                    ok = await _insert_exclusive(session, hold("resource", candidate.id, candidate.bookable_no, True))
                except DeadlockDetectedError:
                    raise _resource_unavailable(index, candidates, taken) from None
            if ok:
                taken.append(candidate.id)
                break
        else:
            raise _resource_unavailable(index, candidates, taken)
    return taken


def _resource_unavailable(index: int, candidates: list[_Candidate], taken: list[UUID]) -> Conflict:
    first = next((c.id for c in candidates if c.id not in taken), None)
    return Conflict("every resource this service needs at that time is taken", code="resource_unavailable",
                    conflict={"kind": "resource", "id": str(first) if first else None,
                              "requirement": index, "candidates": [str(c.id) for c in candidates]})


async def release_holds(session: AsyncSession, appointment: Appointment) -> None:
    await session.execute(update(AppointmentHold).where(
        AppointmentHold.tenant_id == appointment.tenant_id, AppointmentHold.appointment_id == appointment.id,
        AppointmentHold.active).values(active=False).execution_options(synchronize_session=False))


async def release_offer_holds(session: AsyncSession, tenant_id: UUID, waitlist_entry_ids: list[UUID]) -> int:
    """Free what waitlist offers kept for their members (taken, declined, expired or closed)."""
    if not waitlist_entry_ids:
        return 0
    released = await session.execute(update(AppointmentHold).where(
        AppointmentHold.tenant_id == tenant_id, AppointmentHold.waitlist_entry_id.in_(waitlist_entry_ids),
        AppointmentHold.active).values(active=False).execution_options(synchronize_session=False))
    return released.rowcount


async def release_member_offer_holds(session: AsyncSession, tenant_id: UUID, member_id: UUID, start: datetime,
                                     end: datetime) -> list[UUID]:
    """Free the holds of the member's own waitlist offers that overlap [start, end): a slot kept for a member
    is theirs to book, through any channel. Returns the offers (waitlist entries) whose holds were freed."""
    offered = select(WaitlistEntry.id).where(WaitlistEntry.tenant_id == tenant_id,
                                             WaitlistEntry.member_id == member_id, WaitlistEntry.status == "offered")
    released = await session.execute(update(AppointmentHold).where(
        AppointmentHold.tenant_id == tenant_id, AppointmentHold.active,
        AppointmentHold.waitlist_entry_id.in_(offered),
        AppointmentHold.starts_at < end, AppointmentHold.ends_at > start,
    ).values(active=False).returning(AppointmentHold.waitlist_entry_id).execution_options(synchronize_session=False))
    return sorted({row[0] for row in released.all()})


async def lock_member(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> None:
    """Queue this transaction behind any other booking or move of the member's time (released at commit or
    rollback). Taken before any hold, so it always comes first and cannot close a lock cycle with them."""
    await execute(session, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                  f"member_appointments:{tenant_id}:{member_id}")


async def require_member_free(session: AsyncSession, tenant_id: UUID, member_id: UUID, starts_at: datetime,
                              ends_at: datetime, *, ignore: frozenset[UUID] = frozenset()) -> None:
    """409 `member_busy` when another active appointment of the member overlaps [starts_at, ends_at).
    Call under `lock_member`: then what a concurrent booking of the member committed is seen here."""
    rows = await fetch(session, _MEMBER_OVERLAP, tenant_id, member_id, list(ACTIVE_STATUSES), starts_at, ends_at,
                       list(ignore))
    if rows:
        other = rows[0]
        raise Conflict("the member already has an appointment at that time", code="member_busy",
                       conflict={"kind": "member", "id": str(member_id), "appointment_id": str(other["id"]),
                                 "starts_at": other["starts_at"].isoformat(),
                                 "ends_at": other["ends_at"].isoformat()})


_MEMBER_OVERLAP = """
SELECT id, starts_at, ends_at FROM appointments
 WHERE tenant_id = $1 AND member_id = $2 AND status = ANY($3) AND starts_at < $5 AND ends_at > $4
   AND NOT (id = ANY($6))
 ORDER BY starts_at LIMIT 1
"""


def staff_busy(staff_id: UUID) -> Conflict:
    return Conflict("the staff member is already booked at that time", code="staff_busy",
                    conflict={"kind": "staff", "id": str(staff_id)})


async def checked_slot(session: AsyncSession, actor: Actor, *, store: Store, service: Service,
                       staff_id: UUID | None, starts_at: datetime, now: datetime, ignore: frozenset[UUID],
                       field: str, enforce_window: bool | None = None) -> SlotChoice:
    """check_slot, with the refusal naming the field (422) or what conflicts (409). The booking window
    binds whom `window_applies` says, unless `enforce_window` decides (a therapist booking their own
    schedule from the sidebar is held to it like a patient)."""
    if enforce_window is None:
        enforce_window = window_applies(actor)
    try:
        return await check_slot(session, actor.tenant_id, store=store, service=service, staff_id=staff_id,
                                starts_at=starts_at, now=now, enforce_window=enforce_window,
                                ignore_appointment_ids=ignore)
    except Unprocessable as exc:
        exc.extra.setdefault("field", field)
        raise
    except Conflict as exc:
        if "conflict" not in exc.extra:
            if exc.code.startswith("staff_") and staff_id is not None:
                exc.extra["conflict"] = {"kind": "staff", "id": str(staff_id)}
            elif exc.code in ("store_closed", "outside_opening_hours"):
                exc.extra["conflict"] = {"kind": "store", "id": str(store.id)}
            elif exc.code == "resource_unavailable":
                exc.extra["conflict"] = {"kind": "resource", "id": None, "requirement": exc.extra.get("requirement"),
                                         "resource_kind": exc.extra.get("kind")}
        raise
