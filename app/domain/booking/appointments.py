"""Appointments: booking, rescheduling, cancelling, check-in, no-show and completion.

No double booking is enforced by PostgreSQL inside the booking transaction, not by the availability check:
`check_slot` only proposes (and explains refusals); then every thing the appointment occupies gets an
`appointment_holds` row. Staff members and capacity-1 resources take *exclusive* holds, which the exclusion
constraint `ex_appointment_holds_no_overlap` refuses when they overlap another active exclusive hold of the
same bookable — also a concurrent, not yet committed one (the insert waits for it). Each hold is tried in
a SAVEPOINT, so a refused room just moves on to the requirement's next candidate. Resources of capacity > 1
take non-exclusive holds under a row lock on the resource and a count of what overlaps.

Holds run from the start to `blocked_until` (the end plus the service's cleanup buffer). They are released
(active = false) when an appointment is cancelled, marked no-show or moved; a completed appointment keeps
its holds: the time was used (and the room still needs its cleanup), so nothing may be booked into it
afterwards — availability then agrees with what really happened.

Every change writes an `appointment_status_history` row, an audit entry and outbox events; reminders are
delayed events carrying `schedule_version`, which a reschedule bumps so a consumer can drop stale ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import and_, func, or_, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import AppError, Conflict, Forbidden, NotFound, Unprocessable
from app.core.outbox import emit
from app.core.pagination import PageParams, decode_cursor, encode_cursor
from app.domain.booking.availability import SlotChoice, check_slot, window_applies
from app.domain.booking.bookables import bookable_no
from app.domain.booking.models import (
    Appointment,
    AppointmentHold,
    AppointmentStatusChange,
    BookingPolicy,
    Resource,
)
from app.domain.booking.schedule import booking_policy
from app.domain.booking.schemas import (
    AppointmentCancel,
    AppointmentCreate,
    AppointmentNoShow,
    AppointmentOut,
    AppointmentReschedule,
)
from app.domain.cards import service as cards
from app.domain.catalog import service as catalog
from app.domain.catalog.models import Service
from app.domain.iam.models import Staff, StaffStore
from app.domain.members import service as members
from app.domain.members.schemas import TimelineItem
from app.domain.tenancy.models import Store
from app.domain.visits import service as visits
from app.domain.visits.schemas import AppointmentCompletion, ServiceCompletion

EXCLUSION_CONSTRAINT = "ex_appointment_holds_no_overlap"
DEADLOCK_DETECTED = "40P01"
# Nobody books the past, and staff (who skip the store's booking horizon) at most a year ahead: a date in
# 1900 or 2206 is a typo, refused naming the field before it reaches the schedule. Patients and integrations
# also get the store's lead time and horizon from check_slot.
MAX_AHEAD = timedelta(days=366)
MAX_LIST_RANGE = timedelta(days=62)
DEFAULT_LIST_SPAN = timedelta(days=31)
# "Any therapist": when the one check_slot proposed is taken by a concurrent booking, ask again.
ANY_STAFF_ATTEMPTS = 3

# Which statuses each action may start from.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "reschedule": ("booked",),
    "cancel": ("booked", "checked_in"),
    "check_in": ("booked",),
    "no_show": ("booked",),
    "complete": ("booked", "checked_in"),
}
STATUS_TITLES = {"booked": "预约", "checked_in": "已到店", "completed": "已完成", "cancelled": "已取消",
                 "no_show": "爽约"}


def invalid(field: str, message: str, *, code: str = "validation_error", type_: str = "value_error") -> Unprocessable:
    """A 422 shaped like request validation's, naming the field, for checks that need the database."""
    return Unprocessable(f"{field}: {message}", code=code, title="Invalid request", field=field,
                         errors=[{"field": field, "message": message, "type": type_}])


# ---------------------------------------------------------------- loading and authorizing


async def bookable_store(session: AsyncSession, actor: Actor, store_id: UUID) -> Store:
    """The store, if it exists and still takes bookings (read without stores:read: patients book too)."""
    store = await session.get(Store, (actor.tenant_id, store_id))
    if store is None:
        raise NotFound("store not found", code="store_not_found", field="store_id")
    if not store.active:
        raise Conflict("this store no longer takes bookings", code="store_inactive")
    return store


async def _member(session: AsyncSession, actor: Actor, member_id: UUID):
    try:
        member = await members.get_member_row(session, actor, member_id)
    except NotFound as exc:  # also a patient naming someone outside their family
        raise NotFound("member not found", code="member_not_found", field="member_id") from exc
    if member.status != "active":
        raise Conflict(f"member is {member.status}", code="member_inactive")
    return member


async def _service(session: AsyncSession, actor: Actor, service_id: UUID, field: str) -> Service:
    try:
        service = await catalog.get_service_row(session, actor, service_id)
    except NotFound as exc:
        raise NotFound("service not found", code="service_not_found", field=field) from exc
    if not service.active:
        raise Conflict("this service is no longer offered", code="service_inactive", field=field)
    return service


async def _require_staff_in_store(session: AsyncSession, tenant_id: UUID, staff_id: UUID, store_id: UUID,
                                  field: str) -> None:
    row = (await session.execute(select(Staff.active, StaffStore.store_id).select_from(Staff).outerjoin(
        StaffStore, (StaffStore.tenant_id == Staff.tenant_id) & (StaffStore.staff_id == Staff.id)
        & (StaffStore.store_id == store_id)).where(Staff.tenant_id == tenant_id, Staff.id == staff_id))).first()
    if row is None or not row.active:
        raise invalid(field, "no such active staff member")
    if row.store_id is None:
        raise invalid(field, "this staff member does not work in this store")


async def _authorize_read(session: AsyncSession, actor: Actor, appointment: Appointment) -> None:
    if actor.kind == "patient":
        try:
            await members.get_member_row(session, actor, appointment.member_id)
        except NotFound as exc:  # someone else's appointment does not exist for this patient
            raise NotFound("appointment not found", code="appointment_not_found") from exc
        return
    actor.require("appointments:read")
    actor.require_store(appointment.store_id)


async def _locked(session: AsyncSession, actor: Actor, appointment_id: UUID, *, permission: str | None,
                  patient_allowed: bool) -> Appointment:
    """The appointment, locked for this transaction: concurrent changes of one appointment queue up."""
    appointment = await session.get(Appointment, (actor.tenant_id, appointment_id), with_for_update=True,
                                    populate_existing=True)
    if appointment is None:
        raise NotFound("appointment not found", code="appointment_not_found")
    if actor.kind == "patient":
        await _authorize_read(session, actor, appointment)
        if not patient_allowed:
            raise Forbidden("only the store can do this", code="permission_denied")
        return appointment
    if permission:
        actor.require(permission)
    actor.require_store(appointment.store_id)
    return appointment


def _require_status(appointment: Appointment, action: str) -> None:
    allowed = TRANSITIONS[action]
    if appointment.status not in allowed:
        raise Conflict(f"cannot {action.replace('_', ' ')} an appointment that is {appointment.status}",
                       code="invalid_status", current_status=appointment.status, allowed_from=list(allowed))


def _check_time(starts_at: datetime, now: datetime, field: str = "starts_at") -> None:
    if starts_at < now:
        raise invalid(field, "is in the past", code="in_the_past")
    if starts_at > now + MAX_AHEAD:
        raise invalid(field, f"is more than {MAX_AHEAD.days} days ahead", code="beyond_horizon")


# ---------------------------------------------------------------- holds


class _StaffTaken(Exception):
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


async def _insert_exclusive(session: AsyncSession, hold: AppointmentHold) -> bool:
    """Insert an exclusive hold in a savepoint; False when an overlapping active hold has it already."""
    try:
        async with session.begin_nested():
            session.add(hold)
    except DBAPIError as exc:
        if _refused_by_overlap(exc):
            return False
        raise
    return True


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


async def _take_holds(session: AsyncSession, appointment: Appointment, choice: SlotChoice) -> list[UUID]:
    """Occupy the staff member and one resource per requirement for the appointment's time; returns the
    resources taken. Raises _StaffTaken, or 409 resource_unavailable when a requirement has no candidate left.
    Must run inside a savepoint (begin_nested) that the caller rolls back when it raises."""
    tenant_id, start, end = appointment.tenant_id, appointment.starts_at, appointment.blocked_until
    # Plain values up front: a refused savepoint must not leave us reading expired ORM attributes.
    requirements = [[_Candidate(r.id, r.bookable_no, r.capacity) for r in candidates]
                    for candidates in choice.resources]

    def hold(kind: str, ref_id: UUID, number: int, exclusive: bool) -> AppointmentHold:
        return AppointmentHold(tenant_id=tenant_id, appointment_id=appointment.id, kind=kind, ref_id=ref_id,
                               bookable_no=number, starts_at=start, ends_at=end, exclusive=exclusive)

    staff_no = await bookable_no(session, tenant_id, "staff", choice.staff_id)
    # No savepoint of its own: every caller runs this inside one, which a refusal rolls back whole.
    session.add(hold("staff", choice.staff_id, staff_no, True))
    try:
        await session.flush()
    except DBAPIError as exc:
        if _refused_by_overlap(exc):
            raise _StaffTaken(choice.staff_id) from exc
        raise
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
                ok = await _insert_exclusive(session, hold("resource", candidate.id, candidate.bookable_no, True))
            if ok:
                taken.append(candidate.id)
                break
        else:
            first = next((c.id for c in candidates if c.id not in taken), None)
            raise Conflict("every resource this service needs at that time is taken", code="resource_unavailable",
                           conflict={"kind": "resource", "id": str(first) if first else None,
                                     "requirement": index, "candidates": [str(c.id) for c in candidates]})
    return taken


async def _release_holds(session: AsyncSession, appointment: Appointment) -> None:
    await session.execute(update(AppointmentHold).where(
        AppointmentHold.tenant_id == appointment.tenant_id, AppointmentHold.appointment_id == appointment.id,
        AppointmentHold.active).values(active=False).execution_options(synchronize_session=False))


def _staff_busy(staff_id: UUID) -> Conflict:
    return Conflict("the staff member is already booked at that time", code="staff_busy",
                    conflict={"kind": "staff", "id": str(staff_id)})


async def _check(session: AsyncSession, actor: Actor, *, store: Store, service: Service, staff_id: UUID | None,
                 starts_at: datetime, now: datetime, ignore: frozenset[UUID], field: str) -> SlotChoice:
    """check_slot, with the refusal naming the field (422) or what conflicts (409)."""
    try:
        return await check_slot(session, actor.tenant_id, store=store, service=service, staff_id=staff_id,
                                starts_at=starts_at, now=now, enforce_window=window_applies(actor),
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


# ---------------------------------------------------------------- history, audit, events


def _log(session: AsyncSession, actor: Actor, appointment: Appointment, from_status: str | None,
         reason: str | None = None, **details: Any) -> None:
    session.add(AppointmentStatusChange(
        tenant_id=appointment.tenant_id, appointment_id=appointment.id, from_status=from_status,
        to_status=appointment.status, starts_at=appointment.starts_at, staff_id=appointment.staff_id,
        actor_kind=actor.kind, actor_id=actor.id, reason=reason, details=details))


def _payload(appointment: Appointment, **extra: Any) -> dict[str, Any]:
    return {"appointment_id": str(appointment.id), "visit_id": str(appointment.visit_id),
            "member_id": str(appointment.member_id), "store_id": str(appointment.store_id),
            "service_id": str(appointment.service_id), "staff_id": str(appointment.staff_id),
            "starts_at": appointment.starts_at.isoformat(), "ends_at": appointment.ends_at.isoformat(),
            "status": appointment.status, "channel": appointment.channel,
            "schedule_version": appointment.schedule_version, **extra}


async def _schedule_reminder(session: AsyncSession, appointment: Appointment, policy: BookingPolicy,
                             now: datetime) -> None:
    """The day-before reminder, as an event that becomes available then (none when that is already past)."""
    due = appointment.starts_at - timedelta(hours=policy.reminder_hours_before)
    if due > now:
        await emit(session, "appointment.reminder_due", _payload(appointment), available_at=due)


# ---------------------------------------------------------------- booking


@dataclass(frozen=True)
class _Line:
    service: Service
    staff_id: UUID | None
    field: str


async def _lines(session: AsyncSession, actor: Actor, data: AppointmentCreate) -> list[_Line]:
    if data.services is not None and data.service_id is not None:
        raise invalid("services", "give either service_id or services, not both")
    if data.services is None:
        if data.service_id is None:
            raise invalid("service_id", "required (or give services)", type_="missing")
        return [_Line(await _service(session, actor, data.service_id, "service_id"), data.staff_id, "staff_id")]
    return [_Line(await _service(session, actor, line.service_id, f"services.{i}.service_id"),
                  line.staff_id or data.staff_id, f"services.{i}.staff_id" if line.staff_id else "staff_id")
            for i, line in enumerate(data.services)]


async def _place(session: AsyncSession, actor: Actor, *, store: Store, line: _Line, member_id: UUID,
                 starts_at: datetime, now: datetime, visit_id: UUID | None, channel: str,
                 notes: str | None) -> tuple[Appointment, list[UUID]]:
    """One appointment and its holds, in a savepoint: refused, it leaves nothing behind."""
    attempts = ANY_STAFF_ATTEMPTS if line.staff_id is None else 1
    for attempt in range(attempts):
        choice = await _check(session, actor, store=store, service=line.service, staff_id=line.staff_id,
                              starts_at=starts_at, now=now, ignore=frozenset(), field="starts_at")
        try:
            async with session.begin_nested():
                appointment = Appointment(
                    tenant_id=actor.tenant_id, member_id=member_id, store_id=store.id, service_id=line.service.id,
                    staff_id=choice.staff_id, starts_at=choice.starts_at, ends_at=choice.ends_at,
                    blocked_until=choice.blocked_until, channel=channel, notes=notes, booked_by_kind=actor.kind,
                    booked_by_id=actor.id, updated_at=now)
                appointment.visit_id = visit_id or appointment.id
                session.add(appointment)
                await session.flush()
                resource_ids = await _take_holds(session, appointment, choice)
            return appointment, resource_ids
        except _StaffTaken as taken:
            if attempt + 1 == attempts:
                raise _staff_busy(taken.staff_id) from None
    raise AssertionError("unreachable")


async def book(session: AsyncSession, actor: Actor, data: AppointmentCreate, *,
               now: datetime | None = None) -> list[Appointment]:
    """Book one service, or several back to back (all or none). Patients book for themselves or their
    family, through the mini-program, within the store's lead time and horizon."""
    return [appointment for appointment, _ in await book_placed(session, actor, data, now=now)]


async def book_placed(session: AsyncSession, actor: Actor, data: AppointmentCreate, *,
                      now: datetime | None = None) -> list[tuple[Appointment, list[UUID]]]:
    """`book`, with the resources each appointment took (so the answer need not read them back)."""
    patient = actor.kind == "patient"
    if not patient:
        actor.require("appointments:write")
        actor.require_store(data.store_id)
    now = now or utcnow()
    store = await bookable_store(session, actor, data.store_id)
    member = await _member(session, actor, data.member_id)
    lines = await _lines(session, actor, data)
    for line in lines:
        if line.staff_id is not None:
            await _require_staff_in_store(session, actor.tenant_id, line.staff_id, store.id, line.field)
    _check_time(data.starts_at, now)
    channel = "mini_program" if patient else data.channel or ("his" if actor.kind == "integration" else "front_desk")
    policy = await booking_policy(session, actor.tenant_id, store.id)
    booked: list[tuple[Appointment, list[UUID]]] = []
    starts_at, visit_id = data.starts_at, None
    for index, line in enumerate(lines):
        try:
            appointment, resource_ids = await _place(session, actor, store=store, line=line, member_id=member.id,
                                                     starts_at=starts_at, now=now, visit_id=visit_id,
                                                     channel=channel, notes=data.notes)
        except AppError as exc:
            if len(lines) > 1:
                exc.extra.setdefault("service_index", index)
            raise
        booked.append((appointment, resource_ids))
        visit_id = visit_id or appointment.id
        # The next service begins when this one's time, cleanup included, is over: the same therapist
        # (or room) can then take it without overlapping itself.
        starts_at = appointment.blocked_until
    for appointment, resource_ids in booked:
        _log(session, actor, appointment, None, channel=channel, resource_ids=[str(r) for r in resource_ids])
        audit.record(session, "appointment.book", "appointment", appointment.id, member=str(member.id),
                     service=str(appointment.service_id), staff=str(appointment.staff_id),
                     starts_at=appointment.starts_at, channel=channel,
                     resources=[str(r) for r in resource_ids])
        await emit(session, "appointment.booked", _payload(appointment, resource_ids=[str(r) for r in resource_ids]))
        await _schedule_reminder(session, appointment, policy, now)
    await session.flush()
    return booked


async def reschedule(session: AsyncSession, actor: Actor, appointment_id: UUID, data: AppointmentReschedule, *,
                     now: datetime | None = None) -> Appointment:
    """Move to another time (and optionally therapist) in one step: the old holds are released and the new
    ones taken in one savepoint, so a refusal leaves the booking exactly as it was."""
    appointment = await _locked(session, actor, appointment_id, permission="appointments:write",
                                patient_allowed=True)
    _require_status(appointment, "reschedule")
    now = now or utcnow()
    _check_time(data.starts_at, now)
    store = await bookable_store(session, actor, appointment.store_id)
    service = await _service(session, actor, appointment.service_id, "service_id")
    staff_id = data.staff_id or appointment.staff_id
    if data.staff_id is not None and data.staff_id != appointment.staff_id:
        await _require_staff_in_store(session, actor.tenant_id, data.staff_id, store.id, "staff_id")
    choice = await _check(session, actor, store=store, service=service, staff_id=staff_id, starts_at=data.starts_at,
                          now=now, ignore=frozenset({appointment.id}), field="starts_at")
    previous = {"previous_starts_at": appointment.starts_at.isoformat(),
                "previous_ends_at": appointment.ends_at.isoformat(),
                "previous_staff_id": str(appointment.staff_id)}
    try:
        async with session.begin_nested():
            await _release_holds(session, appointment)
            appointment.staff_id, appointment.starts_at = choice.staff_id, choice.starts_at
            appointment.ends_at, appointment.blocked_until = choice.ends_at, choice.blocked_until
            appointment.schedule_version += 1
            appointment.updated_at = now
            session.add(appointment)
            await session.flush()
            resource_ids = await _take_holds(session, appointment, choice)
    except (_StaffTaken, AppError) as exc:
        # The refused savepoint rolled the row back in the database; reload it rather than trust memory
        # (a caller that goes on after the refusal sees the booking as it was).
        await session.refresh(appointment)
        if isinstance(exc, _StaffTaken):
            raise _staff_busy(exc.staff_id) from None
        raise
    _log(session, actor, appointment, appointment.status, resource_ids=[str(r) for r in resource_ids], **previous)
    audit.record(session, "appointment.reschedule", "appointment", appointment.id, starts_at=appointment.starts_at,
                 staff=str(appointment.staff_id), **previous)
    await emit(session, "appointment.rescheduled",
               _payload(appointment, resource_ids=[str(r) for r in resource_ids], **previous))
    await _schedule_reminder(session, appointment, await booking_policy(session, actor.tenant_id, store.id), now)
    return appointment


# ---------------------------------------------------------------- cancellation, no-show: policies as data


async def _penalty(session: AsyncSession, actor: Actor, appointment: Appointment, action: str, fee: int,
                   card_id: UUID | None, reason: str) -> dict[str, Any]:
    """Apply a late-cancel or no-show policy. `fee` is recorded (checkout collects it; no money moves
    here). `deduct_session` is recorded as requested; a session is deducted only when staff name the
    card, and then it either happens or the whole change is refused (409, e.g. no session left)."""
    if action == "fee":
        return {"action": "fee", "amount": fee}
    if action != "deduct_session":
        return {"action": "none"}
    penalty: dict[str, Any] = {"action": "deduct_session", "requested": True, "deducted": False,
                               "service_id": str(appointment.service_id)}
    if card_id is not None:
        actor.require("cards:deduct")
        deduction = await cards.deduct_session(session, actor, card_id, service_id=appointment.service_id,
                                               member_id=appointment.member_id, store_id=appointment.store_id,
                                               ref_type="appointment_penalty", ref_id=appointment.id, reason=reason)
        penalty.update(deducted=True, card_id=str(card_id), card_entry_id=str(deduction.entry.id),
                       card_remaining=deduction.remaining)
    return penalty


def _staff_only_options(actor: Actor, card_id: UUID | None, waive: bool) -> None:
    if actor.kind == "patient" and (card_id is not None or waive):
        raise Forbidden("card_id and waive_penalty are for the store's staff", code="permission_denied")


async def cancel(session: AsyncSession, actor: Actor, appointment_id: UUID, data: AppointmentCancel, *,
                 now: datetime | None = None) -> Appointment:
    """Cancel and free the time. Within the store's cancel window it is a late cancellation, and the
    store's late_cancel_action applies (unless staff waive it)."""
    _staff_only_options(actor, data.card_id, data.waive_penalty)
    appointment = await _locked(session, actor, appointment_id, permission="appointments:write",
                                patient_allowed=True)
    _require_status(appointment, "cancel")
    now = now or utcnow()
    policy = await booking_policy(session, actor.tenant_id, appointment.store_id)
    late = now > appointment.starts_at - timedelta(hours=policy.cancel_window_hours)
    if late and not data.waive_penalty:
        penalty = await _penalty(session, actor, appointment, policy.late_cancel_action, policy.late_cancel_fee,
                                 data.card_id, "late_cancel")
    else:
        penalty = {"action": "waived" if late else "none"}
    previous = appointment.status
    await _release_holds(session, appointment)
    appointment.status, appointment.cancel_reason, appointment.updated_at = "cancelled", data.reason, now
    session.add(appointment)
    _log(session, actor, appointment, previous, data.reason, late=late, penalty=penalty)
    audit.record(session, "appointment.cancel", "appointment", appointment.id, reason=data.reason, late=late,
                 penalty=penalty)
    # Carries the slot (store, service, staff, time) so the waitlist can offer it.
    await emit(session, "appointment.cancelled", _payload(appointment, late=late, penalty=penalty, reason=data.reason))
    await session.flush()
    return appointment


async def no_show(session: AsyncSession, actor: Actor, appointment_id: UUID, data: AppointmentNoShow, *,
                  now: datetime | None = None) -> Appointment:
    """Mark a member who did not come, explicitly and only once the start time has passed; the rest of the
    time is freed for walk-ins and the store's no_show_action applies."""
    appointment = await _locked(session, actor, appointment_id, permission="appointments:write",
                                patient_allowed=False)
    _require_status(appointment, "no_show")
    now = now or utcnow()
    if now < appointment.starts_at:
        raise Conflict("a no-show can be recorded only after the start time", code="not_started",
                       starts_at=appointment.starts_at.isoformat())
    policy = await booking_policy(session, actor.tenant_id, appointment.store_id)
    penalty = {"action": "waived"} if data.waive_penalty else await _penalty(
        session, actor, appointment, policy.no_show_action, policy.no_show_fee, data.card_id, "no_show")
    await _release_holds(session, appointment)
    appointment.status, appointment.updated_at = "no_show", now
    session.add(appointment)
    _log(session, actor, appointment, "booked", data.reason, penalty=penalty)
    audit.record(session, "appointment.no_show", "appointment", appointment.id, reason=data.reason, penalty=penalty)
    await emit(session, "appointment.no_show", _payload(appointment, penalty=penalty, reason=data.reason))
    await session.flush()
    return appointment


async def check_in(session: AsyncSession, actor: Actor, appointment_id: UUID, *,
                   now: datetime | None = None) -> Appointment:
    appointment = await _locked(session, actor, appointment_id, permission="appointments:write",
                                patient_allowed=False)
    _require_status(appointment, "check_in")
    appointment.status, appointment.updated_at = "checked_in", now or utcnow()
    session.add(appointment)
    _log(session, actor, appointment, "booked")
    audit.record(session, "appointment.check_in", "appointment", appointment.id)
    await emit(session, "appointment.checked_in", _payload(appointment))
    await session.flush()
    return appointment


async def complete(session: AsyncSession, actor: Actor, appointment_id: UUID, data: AppointmentCompletion, *,
                   now: datetime | None = None):
    """完成服务 from the appointment: the completion service (card session, consumables, commission,
    service record) runs in this same transaction; if it refuses, nothing of either remains. The holds
    stay: the time was used."""
    actor.require("visits:complete")
    appointment = await _locked(session, actor, appointment_id, permission="visits:complete",
                                patient_allowed=False)
    _require_status(appointment, "complete")
    now = now or utcnow()
    record, remaining, commission = await visits.complete_service(session, actor, ServiceCompletion(
        member_id=appointment.member_id, store_id=appointment.store_id, service_id=appointment.service_id,
        staff_id=appointment.staff_id, card_id=data.card_id, notes=data.notes), appointment_id=appointment.id)
    previous = appointment.status
    appointment.status, appointment.service_record_id, appointment.updated_at = "completed", record.id, now
    session.add(appointment)
    _log(session, actor, appointment, previous, service_record_id=str(record.id),
         card_id=str(data.card_id) if data.card_id else None)
    audit.record(session, "appointment.complete", "appointment", appointment.id, service_record=str(record.id))
    await emit(session, "appointment.completed", _payload(appointment, service_record_id=str(record.id)))
    policy = await booking_policy(session, actor.tenant_id, appointment.store_id)
    follow_up = max(now, appointment.ends_at + timedelta(hours=policy.follow_up_hours_after))
    await emit(session, "appointment.follow_up_due", _payload(appointment, service_record_id=str(record.id)),
               available_at=follow_up)
    await session.flush()
    return appointment, record, remaining, commission


# ---------------------------------------------------------------- reading


async def get(session: AsyncSession, actor: Actor, appointment_id: UUID) -> Appointment:
    appointment = await session.get(Appointment, (actor.tenant_id, appointment_id))
    if appointment is None:
        raise NotFound("appointment not found", code="appointment_not_found")
    await _authorize_read(session, actor, appointment)
    return appointment


async def history(session: AsyncSession, actor: Actor, appointment_id: UUID) -> list[AppointmentStatusChange]:
    appointment = await get(session, actor, appointment_id)
    stmt = select(AppointmentStatusChange).where(AppointmentStatusChange.tenant_id == actor.tenant_id,
                                                 AppointmentStatusChange.appointment_id == appointment.id)
    return list((await session.exec(stmt.order_by(AppointmentStatusChange.created_at,
                                                  AppointmentStatusChange.id))).all())


def _list_cursor(value: Any) -> tuple[datetime, UUID]:
    starts_at, appointment_id = value
    return datetime.fromisoformat(starts_at), UUID(appointment_id)


def list_range(since: datetime | None, until: datetime | None, *, member_id: UUID | None,
               now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
    """The time range a list covers: at most 62 days; a member's list may be unbounded."""
    if since is not None and until is not None:
        if until <= since:
            raise invalid("to", "must be after from")
        if until - since > MAX_LIST_RANGE:
            raise invalid("to", f"a range spans at most {MAX_LIST_RANGE.days} days")
        return since, until
    if since is not None:
        return since, since + MAX_LIST_RANGE
    if until is not None:
        return until - MAX_LIST_RANGE, until
    if member_id is not None:
        return None, None
    now = now or utcnow()
    return now - DEFAULT_LIST_SPAN, now + DEFAULT_LIST_SPAN


async def list_appointments(session: AsyncSession, actor: Actor, params: PageParams, *, store_id: UUID | None,
                            staff_id: UUID | None, member_id: UUID | None, since: datetime | None,
                            until: datetime | None, status: str | None) -> tuple[list[Appointment], str | None]:
    """Ordered by start time (then id), keyset-paginated."""
    since, until = list_range(since, until, member_id=member_id)
    stmt = select(Appointment).where(Appointment.tenant_id == actor.tenant_id)
    if actor.kind == "patient":
        if member_id is None:
            raise invalid("member_id", "required", type_="missing")
        await _member(session, actor, member_id)
    else:
        actor.require("appointments:read")
        if store_id is not None:
            actor.require_store(store_id)
        elif actor.store_ids is not None:
            stmt = stmt.where(Appointment.store_id.in_(actor.store_ids))
    for column, value in ((Appointment.store_id, store_id), (Appointment.staff_id, staff_id),
                          (Appointment.member_id, member_id), (Appointment.status, status)):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(Appointment.starts_at >= since, Appointment.starts_at < until)
    if params.cursor:
        after_ts, after_id = decode_cursor(params.cursor, _list_cursor)
        stmt = stmt.where(or_(Appointment.starts_at > after_ts,
                              and_(Appointment.starts_at == after_ts, Appointment.id > after_id)))
    stmt = stmt.order_by(Appointment.starts_at, Appointment.id).limit(params.limit + 1)
    rows = list((await session.exec(stmt)).all())
    cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        cursor = encode_cursor([rows[-1].starts_at.isoformat(), str(rows[-1].id)])
    return rows, cursor


async def resources_of(session: AsyncSession, tenant_id: UUID, appointment_ids: list[UUID]) -> dict[UUID, list[UUID]]:
    """The resources each appointment occupies: its active holds, or, once released, the last ones it had."""
    if not appointment_ids:
        return {}
    rows = (await session.execute(select(
        AppointmentHold.appointment_id, AppointmentHold.kind, AppointmentHold.ref_id, AppointmentHold.active,
        AppointmentHold.created_at).where(AppointmentHold.tenant_id == tenant_id,
                                          AppointmentHold.appointment_id.in_(appointment_ids))
        .order_by(AppointmentHold.created_at, AppointmentHold.id))).all()
    out: dict[UUID, list[UUID]] = {a: [] for a in appointment_ids}
    by_appointment: dict[UUID, list[Any]] = {}
    for row in rows:
        by_appointment.setdefault(row.appointment_id, []).append(row)
    for appointment_id, holds in by_appointment.items():
        active = [h.ref_id for h in holds if h.kind == "resource" and h.active]
        if not active:
            # Each booking or move writes the staff hold first: the last batch starts at the last staff hold.
            last = max((h.created_at for h in holds if h.kind == "staff"), default=None)
            active = [h.ref_id for h in holds if h.kind == "resource" and last is not None and h.created_at >= last]
        out[appointment_id] = active
    return out


async def present(session: AsyncSession, appointments: list[Appointment],
                  resources: dict[UUID, list[UUID]] | None = None) -> list[AppointmentOut]:
    """The appointments with their resources (`resources` when the caller knows them: it just took them)."""
    if not appointments:
        return []
    if resources is None:
        resources = await resources_of(session, appointments[0].tenant_id, [a.id for a in appointments])
    return [AppointmentOut.model_validate(a).model_copy(update={"resource_ids": resources.get(a.id, [])})
            for a in appointments]


# ---------------------------------------------------------------- plugged into members


@members.care_relationship
async def _has_appointment_with(session: AsyncSession, actor: Actor, member_id: UUID) -> bool:
    """A therapist cares for members they have (or had) an appointment with; a cancelled booking does not
    count, since they never served (nor will serve) the member in it."""
    if actor.kind != "staff":
        return False
    found = (await session.exec(select(Appointment.id).where(
        Appointment.tenant_id == actor.tenant_id, Appointment.staff_id == actor.id,
        Appointment.member_id == member_id, Appointment.status != "cancelled").limit(1))).first()
    return found is not None


@members.timeline_source("appointment", staff_only_keys=("notes",))
async def _appointments_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                                 before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    """An appointment sits on the timeline at its start time (an upcoming one is the newest item)."""
    stmt = (select(Appointment, Service.name).join(Service, (Service.tenant_id == Appointment.tenant_id)
                                                   & (Service.id == Appointment.service_id))
            .where(Appointment.tenant_id == tenant_id, Appointment.member_id == member_id))
    if before is not None:
        stmt = stmt.where(members.before_clause(Appointment.starts_at, Appointment.id, before, "appointment:"))
    rows = (await session.execute(stmt.order_by(Appointment.starts_at.desc(), Appointment.id.desc())
                                  .limit(limit))).all()
    return [TimelineItem(type="appointment", occurred_at=a.starts_at, id=f"appointment:{a.id}",
                         title=f"{STATUS_TITLES.get(a.status, a.status)} · {name}",
                         data={"appointment_id": str(a.id), "store_id": str(a.store_id),
                               "service_id": str(a.service_id), "staff_id": str(a.staff_id), "status": a.status,
                               "ends_at": a.ends_at.isoformat(), "channel": a.channel, "notes": a.notes})
            for a, name in rows]


@members.merge_mover("appointments")
async def _move_appointments(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID,
                             survivor_id: UUID) -> dict[str, int]:
    moved = await session.execute(update(Appointment).where(Appointment.tenant_id == tenant_id,
                                                            Appointment.member_id == duplicate_id)
                                  .values(member_id=survivor_id).execution_options(synchronize_session=False))
    return {"appointments": moved.rowcount}

