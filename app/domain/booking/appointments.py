"""Appointments: booking, rescheduling, cancelling, check-in, no-show and completion, and reading them.

What an appointment occupies is held in `appointment_holds` (see `holds`: PostgreSQL refuses double
booking); what a change works on is loaded and authorized in `appointment_access`.

Every change writes an `appointment_status_history` row, an audit entry and outbox events; reminders are
delayed events carrying `schedule_version`, which a reschedule bumps so a consumer can drop stale ones.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import and_, or_, update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import AppError, Conflict, Forbidden, invalid
from app.core.events import emit
from app.core.pagination import PageParams, decode_cursor, encode_cursor
from app.core.rows import get_or_404
from app.domain.booking import hooks as requirement_hooks
from app.domain.booking.appointment_access import (
    active_member,
    authorize_read,
    bookable_store,
    check_time,
    locked_appointment,
    offered_service,
    require_staff_in_store,
    require_status,
)
from app.domain.booking.availability import SlotChoice
from app.domain.booking.events import (
    APPOINTMENT_BOOKED,
    APPOINTMENT_CANCELLED,
    APPOINTMENT_CHECKED_IN,
    APPOINTMENT_COMPLETED,
    APPOINTMENT_NO_SHOW,
    APPOINTMENT_REMINDER_DUE,
    APPOINTMENT_RESCHEDULED,
)
from app.domain.booking.holds import (
    StaffTaken,
    checked_slot,
    lock_member,
    release_holds,
    release_member_offer_holds,
    require_member_free,
    staff_busy,
    take_holds,
)
from app.domain.booking.models import Appointment, AppointmentStatusChange, BookingPolicy
from app.domain.booking.schedule import booking_policy
from app.domain.booking.schemas import (
    AppointmentCancel,
    AppointmentCreate,
    AppointmentNoShow,
    AppointmentReschedule,
)
from app.domain.cards import service as cards
from app.domain.catalog import service as catalog
from app.domain.members import service as members
from app.domain.members.schemas import TimelineItem
from app.domain.visits import service as visits
from app.domain.visits.schemas import AppointmentCompletion, ServiceCompletion

if TYPE_CHECKING:
    from app.domain.catalog.models import Service
    from app.domain.tenancy.models import Store

MAX_LIST_RANGE = timedelta(days=62)
DEFAULT_LIST_SPAN = timedelta(days=31)
# "Any therapist": when the one check_slot proposed is taken by a concurrent booking, ask again.
ANY_STAFF_ATTEMPTS = 3
STATUS_TITLES = {"booked": "预约", "checked_in": "已到店", "completed": "已完成", "cancelled": "已取消",
                 "no_show": "爽约"}



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
        await emit(session, APPOINTMENT_REMINDER_DUE, _payload(appointment), available_at=due)


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
        return [_Line(await offered_service(session, actor, data.service_id, "service_id"), data.staff_id, "staff_id")]
    return [_Line(await offered_service(session, actor, line.service_id, f"services.{i}.service_id"),
                  line.staff_id or data.staff_id, f"services.{i}.staff_id" if line.staff_id else "staff_id")
            for i, line in enumerate(data.services)]


async def _member_slot(session: AsyncSession, actor: Actor, *, store: Store, line: _Line, member_id: UUID,
                       starts_at: datetime, now: datetime, enforce_window: bool | None) -> SlotChoice:
    """`checked_slot` for booking this member: a slot the waitlist holds for this very member is theirs, so
    when only such a hold stands in the way it is freed (inside this transaction) and the slot asked again.
    Looked at only after a refusal, so an ordinary booking costs nothing more."""
    ask = {"store": store, "service": line.service, "staff_id": line.staff_id, "starts_at": starts_at, "now": now,
           "ignore": frozenset(), "field": "starts_at", "enforce_window": enforce_window}
    try:
        return await checked_slot(session, actor, **ask)
    except Conflict as exc:
        span = timedelta(minutes=line.service.duration_minutes + line.service.buffer_minutes)
        if exc.code not in ("staff_busy", "resource_unavailable") or not await release_member_offer_holds(
                session, actor.tenant_id, member_id, starts_at, starts_at + span):
            raise
    return await checked_slot(session, actor, **ask)


async def _place(session: AsyncSession, actor: Actor, *, store: Store, line: _Line, member_id: UUID,
                 starts_at: datetime, now: datetime, visit_id: UUID | None, channel: str,
                 notes: str | None, enforce_window: bool | None = None) -> tuple[Appointment, list[UUID]]:
    """One appointment and its holds; refused, it raises (and leaves nothing behind once rolled back)."""
    attempts = ANY_STAFF_ATTEMPTS if line.staff_id is None else 1
    for attempt in range(attempts):
        choice = await _member_slot(session, actor, store=store, line=line, member_id=member_id,
                                    starts_at=starts_at, now=now, enforce_window=enforce_window)
        await require_member_free(session, actor.tenant_id, member_id, choice.starts_at, choice.ends_at)
        # A savepoint only when another therapist is tried after a refusal; the last try's refusal is the
        # request's (its rollback, or a caller's savepoint, leaves nothing behind).
        retry_follows = attempt + 1 < attempts
        try:
            async with session.begin_nested() if retry_follows else nullcontext():
                appointment = Appointment(
                    tenant_id=actor.tenant_id, member_id=member_id, store_id=store.id, service_id=line.service.id,
                    staff_id=choice.staff_id, starts_at=choice.starts_at, ends_at=choice.ends_at,
                    blocked_until=choice.blocked_until, channel=channel, notes=notes, booked_by_kind=actor.kind,
                    booked_by_id=actor.id, updated_at=now)
                appointment.visit_id = visit_id or appointment.id
                session.add(appointment)
                await session.flush()
                resource_ids = await take_holds(session, appointment, choice)
            return appointment, resource_ids
        except StaffTaken as taken:
            if attempt + 1 == attempts:
                raise staff_busy(taken.staff_id) from None
    raise AssertionError("unreachable")


async def book(session: AsyncSession, actor: Actor, data: AppointmentCreate, *,
               now: datetime | None = None) -> list[Appointment]:
    """Book one service, or several back to back (all or none). Patients book for themselves or their
    family, through the mini-program, within the store's lead time and horizon."""
    return [appointment for appointment, _ in await book_placed(session, actor, data, now=now)]


async def book_placed(session: AsyncSession, actor: Actor, data: AppointmentCreate, *,
                      now: datetime | None = None,
                      own_schedule: bool = False) -> list[tuple[Appointment, list[UUID]]]:
    """`book`, with the resources each appointment took (so the answer need not read them back).
    `own_schedule`: the caller has checked `_require_own_schedule` (see `book_next_visit`)."""
    patient = actor.kind == "patient"
    if not patient:
        if not own_schedule:
            actor.require("appointments:write")
        actor.require_store(data.store_id)
    now = now or utcnow()
    store = await bookable_store(session, actor, data.store_id)
    member = await active_member(session, actor, data.member_id)
    if own_schedule and not await members.in_care(session, actor, member.id):
        raise Forbidden("you can book only members you serve: an appointment with you, or their relationship "
                        "is yours", code="not_in_care")
    lines = await _lines(session, actor, data)
    for line in lines:
        if line.staff_id is not None:
            await require_staff_in_store(session, actor.tenant_id, line.staff_id, store.id, line.field)
        # What other contexts require first (clinical: a signed consent), before anything is written.
        await requirement_hooks.check_booking(session, actor, member.id, line.service.id)
    check_time(data.starts_at, now)
    channel = "mini_program" if patient else data.channel or ("his" if actor.kind == "integration" else "front_desk")
    policy = await booking_policy(session, actor.tenant_id, store.id)
    # Bookings of this member queue here; each line then checks the member is not booked elsewhere then.
    await lock_member(session, actor.tenant_id, member.id)
    booked: list[tuple[Appointment, list[UUID]]] = []
    starts_at, visit_id = data.starts_at, None
    for index, line in enumerate(lines):
        try:
            appointment, resource_ids = await _place(session, actor, store=store, line=line, member_id=member.id,
                                                     starts_at=starts_at, now=now, visit_id=visit_id,
                                                     channel=channel, notes=data.notes,
                                                     enforce_window=True if own_schedule else None)
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
        await emit(session, APPOINTMENT_BOOKED, _payload(appointment, resource_ids=[str(r) for r in resource_ids]))
        await _schedule_reminder(session, appointment, policy, now)
    await session.flush()
    return booked


def _require_own_schedule(actor: Actor, data: AppointmentCreate) -> AppointmentCreate:
    """A booking into the caller's own schedule only: every line's therapist is the caller (an omitted one
    becomes the caller). Another therapist's schedule is 403 `not_own_schedule`."""
    if actor.kind != "staff":
        raise Forbidden("only staff book into their own schedule", code="permission_denied")
    actor.require("appointments:book_own")
    if data.staff_id is not None and data.staff_id != actor.id:
        raise Forbidden("you can book only into your own schedule", code="not_own_schedule", field="staff_id")
    for index, line in enumerate(data.services or []):
        if line.staff_id is not None and line.staff_id != actor.id:
            raise Forbidden("you can book only into your own schedule", code="not_own_schedule",
                            field=f"services.{index}.staff_id")
    return data.model_copy(update={"staff_id": actor.id})


async def book_next_visit(session: AsyncSession, actor: Actor, data: AppointmentCreate, *,
                          now: datetime | None = None) -> list[tuple[Appointment, list[UUID]]]:
    """The sidebar's 约下次: staff with `appointments:write` book as at the front desk; a therapist with only
    `appointments:book_own` books a member they serve (403 `not_in_care` otherwise) into their own schedule
    (403 `not_own_schedule` for anyone else's), held to the store's lead time and horizon as patients are
    (422 `too_soon` / `beyond_horizon`), since the store did not hand them its whole calendar."""
    if actor.kind == "staff" and actor.can("appointments:write"):
        return await book_placed(session, actor, data, now=now)
    return await book_placed(session, actor, _require_own_schedule(actor, data), now=now, own_schedule=True)


async def reschedule(session: AsyncSession, actor: Actor, appointment_id: UUID, data: AppointmentReschedule, *,
                     now: datetime | None = None) -> Appointment:
    """Move to another time (and optionally therapist) in one step: the old holds are released and the new
    ones taken in one savepoint, so a refusal leaves the booking exactly as it was."""
    appointment = await locked_appointment(session, actor, appointment_id, permission="appointments:write",
                                           patient_allowed=True)
    require_status(appointment, "reschedule")
    now = now or utcnow()
    if actor.kind == "patient":
        require_before_cutoff(appointment, await booking_policy(session, actor.tenant_id, appointment.store_id),
                              now, "reschedule")
    check_time(data.starts_at, now)
    store = await bookable_store(session, actor, appointment.store_id)
    service = await offered_service(session, actor, appointment.service_id, "service_id")
    staff_id = data.staff_id or appointment.staff_id
    if data.staff_id is not None and data.staff_id != appointment.staff_id:
        await require_staff_in_store(session, actor.tenant_id, data.staff_id, store.id, "staff_id")
    await lock_member(session, actor.tenant_id, appointment.member_id)
    choice = await checked_slot(session, actor, store=store, service=service, staff_id=staff_id,
                                starts_at=data.starts_at, now=now, ignore=frozenset({appointment.id}),
                                field="starts_at")
    await require_member_free(session, actor.tenant_id, appointment.member_id, choice.starts_at, choice.ends_at,
                              ignore=frozenset({appointment.id}))
    previous = {"previous_starts_at": appointment.starts_at.isoformat(),
                "previous_ends_at": appointment.ends_at.isoformat(),
                "previous_staff_id": str(appointment.staff_id)}
    try:
        async with session.begin_nested():
            await release_holds(session, appointment)
            appointment.staff_id, appointment.starts_at = choice.staff_id, choice.starts_at
            appointment.ends_at, appointment.blocked_until = choice.ends_at, choice.blocked_until
            appointment.schedule_version += 1
            appointment.updated_at = now
            session.add(appointment)
            await session.flush()
            resource_ids = await take_holds(session, appointment, choice)
    except (StaffTaken, AppError) as exc:
        # The refused savepoint rolled the row back in the database; reload it rather than trust memory
        # (a caller that goes on after the refusal sees the booking as it was).
        await session.refresh(appointment)
        if isinstance(exc, StaffTaken):
            raise staff_busy(exc.staff_id) from None
        raise
    _log(session, actor, appointment, appointment.status, resource_ids=[str(r) for r in resource_ids], **previous)
    audit.record(session, "appointment.reschedule", "appointment", appointment.id, starts_at=appointment.starts_at,
                 staff=str(appointment.staff_id), **previous)
    await emit(session, APPOINTMENT_RESCHEDULED,
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


def require_before_cutoff(appointment: Appointment, policy: BookingPolicy, now: datetime, action: str) -> None:
    """Patients cancel or move a booking themselves only before the store's cut-off (`cancel_window_hours`
    before the start). Later it is a late change, and the store decides on it (its late-cancellation policy
    may charge a fee or a session): 409 `cancel_window_passed`, with the cut-off, and nothing changed."""
    cutoff = appointment.starts_at - timedelta(hours=policy.cancel_window_hours)
    if now > cutoff:
        raise Conflict(f"the appointment starts within {policy.cancel_window_hours} hours: to {action} it now, "
                       "please contact the store", code="cancel_window_passed", cutoff_at=cutoff.isoformat(),
                       cancel_window_hours=policy.cancel_window_hours)


def _staff_only_options(actor: Actor, card_id: UUID | None, waive: bool) -> None:
    if actor.kind == "patient" and (card_id is not None or waive):
        raise Forbidden("card_id and waive_penalty are for the store's staff", code="permission_denied")


async def cancel(session: AsyncSession, actor: Actor, appointment_id: UUID, data: AppointmentCancel, *,
                 now: datetime | None = None) -> Appointment:
    """Cancel and free the time. Within the store's cancel window it is a late cancellation, and the
    store's late_cancel_action applies (unless staff waive it)."""
    _staff_only_options(actor, data.card_id, data.waive_penalty)
    appointment = await locked_appointment(session, actor, appointment_id, permission="appointments:write",
                                           patient_allowed=True)
    require_status(appointment, "cancel")
    now = now or utcnow()
    policy = await booking_policy(session, actor.tenant_id, appointment.store_id)
    if actor.kind == "patient":
        require_before_cutoff(appointment, policy, now, "cancel")
    late = now > appointment.starts_at - timedelta(hours=policy.cancel_window_hours)
    if late and not data.waive_penalty:
        penalty = await _penalty(session, actor, appointment, policy.late_cancel_action, policy.late_cancel_fee,
                                 data.card_id, "late_cancel")
    else:
        penalty = {"action": "waived" if late else "none"}
    previous = appointment.status
    await release_holds(session, appointment)
    appointment.status, appointment.cancel_reason, appointment.updated_at = "cancelled", data.reason, now
    session.add(appointment)
    _log(session, actor, appointment, previous, data.reason, late=late, penalty=penalty)
    audit.record(session, "appointment.cancel", "appointment", appointment.id, reason=data.reason, late=late,
                 penalty=penalty)
    # Carries the slot (store, service, staff, time) so the waitlist can offer it.
    await emit(session, APPOINTMENT_CANCELLED, _payload(appointment, late=late, penalty=penalty, reason=data.reason))
    await session.flush()
    return appointment


async def no_show(session: AsyncSession, actor: Actor, appointment_id: UUID, data: AppointmentNoShow, *,
                  now: datetime | None = None) -> Appointment:
    """Mark a member who did not come, explicitly and only once the start time has passed; the rest of the
    time is freed for walk-ins and the store's no_show_action applies."""
    appointment = await locked_appointment(session, actor, appointment_id, permission="appointments:write",
                                           patient_allowed=False)
    require_status(appointment, "no_show")
    now = now or utcnow()
    if now < appointment.starts_at:
        raise Conflict("a no-show can be recorded only after the start time", code="not_started",
                       starts_at=appointment.starts_at.isoformat())
    policy = await booking_policy(session, actor.tenant_id, appointment.store_id)
    penalty = {"action": "waived"} if data.waive_penalty else await _penalty(
        session, actor, appointment, policy.no_show_action, policy.no_show_fee, data.card_id, "no_show")
    await release_holds(session, appointment)
    appointment.status, appointment.updated_at = "no_show", now
    session.add(appointment)
    _log(session, actor, appointment, "booked", data.reason, penalty=penalty)
    audit.record(session, "appointment.no_show", "appointment", appointment.id, reason=data.reason, penalty=penalty)
    await emit(session, APPOINTMENT_NO_SHOW, _payload(appointment, penalty=penalty, reason=data.reason))
    await session.flush()
    return appointment


async def check_in(session: AsyncSession, actor: Actor, appointment_id: UUID, *,
                   now: datetime | None = None) -> Appointment:
    appointment = await locked_appointment(session, actor, appointment_id, permission="appointments:write",
                                           patient_allowed=False)
    require_status(appointment, "check_in")
    appointment.status, appointment.updated_at = "checked_in", now or utcnow()
    session.add(appointment)
    _log(session, actor, appointment, "booked")
    audit.record(session, "appointment.check_in", "appointment", appointment.id)
    await emit(session, APPOINTMENT_CHECKED_IN, _payload(appointment))
    await session.flush()
    return appointment


async def complete(session: AsyncSession, actor: Actor, appointment_id: UUID, data: AppointmentCompletion, *,
                   now: datetime | None = None):
    """完成服务 from the appointment: the completion service (card session, consumables, commission,
    service record) runs in this same transaction; if it refuses, nothing of either remains. The holds
    stay: the time was used."""
    actor.require("visits:complete")
    # Checked once, here: the lock holds staff to the appointment's store, which is the completion's store.
    appointment = await locked_appointment(session, actor, appointment_id, permission=None, patient_allowed=False)
    require_status(appointment, "complete")
    now = now or utcnow()
    record, remaining, commission = await visits.complete_authorized(session, actor, ServiceCompletion(
        member_id=appointment.member_id, store_id=appointment.store_id, service_id=appointment.service_id,
        staff_id=appointment.staff_id, card_id=data.card_id, notes=data.notes), appointment_id=appointment.id)
    previous = appointment.status
    appointment.status, appointment.service_record_id, appointment.updated_at = "completed", record.id, now
    session.add(appointment)
    _log(session, actor, appointment, previous, service_record_id=str(record.id),
         card_id=str(data.card_id) if data.card_id else None)
    audit.record(session, "appointment.complete", "appointment", appointment.id, service_record=str(record.id))
    # The follow-up is not scheduled here: care rules on visits' service.completed set their own delay.
    await emit(session, APPOINTMENT_COMPLETED, _payload(appointment, service_record_id=str(record.id)))
    await session.flush()
    return appointment, record, remaining, commission


# ---------------------------------------------------------------- reading


async def get(session: AsyncSession, actor: Actor, appointment_id: UUID) -> Appointment:
    appointment = await get_or_404(session, Appointment, actor.tenant_id, appointment_id,
                                   code="appointment_not_found")
    await authorize_read(session, actor, appointment)
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
        await active_member(session, actor, member_id)
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
    stmt = select(Appointment).where(Appointment.tenant_id == tenant_id, Appointment.member_id == member_id)
    if before is not None:
        stmt = stmt.where(members.before_clause(Appointment.starts_at, Appointment.id, before, "appointment:"))
    appointments = (await session.exec(stmt.order_by(Appointment.starts_at.desc(), Appointment.id.desc())
                                       .limit(limit))).all()
    services = await catalog.services_by_id(session, tenant_id, {a.service_id for a in appointments})
    rows = [(a, services[a.service_id].name) for a in appointments]
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
