"""A staff member leaves (离职交接): their members, open tasks and future appointments go to colleagues in one
audited, all-or-nothing operation, and the account may be disabled with it.

Why here: leaving is a change of the staff member's standing, which iam owns (it alone may disable the
account and end its sign-ins, and it decides who may manage whom). The work itself belongs to other contexts,
so each part goes through that context's own use case, with its rules and its audit:

- members: `members.hand_over_relationships` (the members' staff contact, `owner_staff_id`);
- tasks: `care.hand_over_open_tasks` (each task is announced to its new assignee: a WeCom alert);
- appointments: `booking.appointments.reschedule` to the new therapist at the same time, which checks, inside
  this transaction, that they work in the store, are on shift, hold the skill and are free, and takes the
  time with the exclusion constraint on `appointment_holds`: a booking racing this one for the same therapist
  and time loses one way or the other, never both.

Appointments are all or nothing: when any of them cannot move, the whole leave is refused (409
`appointments_not_movable`, naming each appointment that cannot move and why) and nothing is changed, so the
manager can pick another therapist (per kind: `appointments_to`), fix the schedule or move those by hand, and
ask again. Members and tasks always move (any active colleague may take them).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import AppError, Conflict, Forbidden, Unprocessable
from app.core.rows import get_or_404
from app.domain.booking import appointments as booking_appointments
from app.domain.booking import service as booking
from app.domain.booking.schemas import AppointmentReschedule
from app.domain.care import service as care
from app.domain.iam import service as iam
from app.domain.iam.models import Staff
from app.domain.iam.schemas import StaffUpdate
from app.domain.iam.staff_leave_schemas import MovedAppointment, StaffLeave, StaffLeaveOut
from app.domain.members import service as members

PERMISSION = "staff:write"
KINDS = ("members_to", "tasks_to", "appointments_to")


def _invalid(field: str, message: str, code: str = "validation_error") -> Unprocessable:
    return Unprocessable(f"{field}: {message}", code=code, field=field,
                         errors=[{"field": field, "message": message, "type": code}])


async def _targets(session: AsyncSession, actor: Actor, staff_id: UUID, data: StaffLeave) -> dict[str, UUID]:
    """Each kind's target: its own or the common one; each an active colleague other than the leaver."""
    targets: dict[str, UUID] = {}
    for kind in KINDS:
        chosen = getattr(data, kind) or data.target_staff_id
        if chosen is None:
            field = "target_staff_id"
            raise _invalid(field, f"give target_staff_id, or {', '.join(KINDS)} each", code="target_required")
        targets[kind] = chosen
    for field in ("target_staff_id", *KINDS):
        chosen = getattr(data, field)
        if chosen is None:
            continue
        if chosen == staff_id:
            raise _invalid(field, "the leaving staff member cannot take over their own work", code="same_staff")
        target = await iam.staff_row(session, actor.tenant_id, chosen)
        if target is None:
            raise _invalid(field, "no staff member with this id", code="staff_not_found")
        if not target.active:
            raise _invalid(field, "this staff member is disabled", code="staff_inactive")
    return targets


async def _manageable(session: AsyncSession, actor: Actor, staff_id: UUID) -> Staff:
    """The leaver, locked (two hand-overs of one person queue), if the actor may manage them: as for changing
    the account (`iam.update_staff`), a store-scoped manager only for staff who work solely in their stores."""
    staff = await get_or_404(session, Staff, actor.tenant_id, staff_id, code="staff_not_found",
                             detail="staff member not found", lock=True)
    stores = await iam.staff_store_ids(session, actor.tenant_id, staff_id)
    if actor.store_ids is not None and (not stores or not stores <= actor.store_ids):
        raise Forbidden("this staff member works outside your stores", code="store_forbidden")
    return staff


async def _move_appointments(session: AsyncSession, actor: Actor, staff_id: UUID,
                             target: UUID) -> list[MovedAppointment]:
    """Every future booked appointment of the leaver to `target` at its time, each in a savepoint; refused as a
    whole (after trying them all, to name every one that cannot move) if any cannot."""
    now = utcnow()
    moved: list[MovedAppointment] = []
    refused: list[dict[str, Any]] = []
    for booked in await booking.booked_appointments_of_staff(session, actor.tenant_id, staff_id, after=now):
        try:
            async with session.begin_nested():
                appointment = await booking_appointments.reschedule(
                    session, actor, booked.id, AppointmentReschedule(starts_at=booked.starts_at, staff_id=target),
                    now=now)
        except AppError as exc:
            refused.append({"appointment_id": str(booked.id), "starts_at": booked.starts_at.isoformat(),
                            "code": exc.code, "detail": exc.detail})
            continue
        moved.append(MovedAppointment(appointment_id=appointment.id, starts_at=appointment.starts_at,
                                      staff_id=appointment.staff_id))
    if refused:
        raise Conflict(f"{len(refused)} of the leaver's appointments cannot move to this staff member; nothing "
                       "was changed", code="appointments_not_movable", field="appointments_to",
                       appointments=refused)
    return moved


async def leave(session: AsyncSession, actor: Actor, staff_id: UUID, data: StaffLeave) -> StaffLeaveOut:
    """Hand over a leaving staff member's work (and disable the account when asked), all or nothing."""
    actor.require(PERMISSION)
    await _manageable(session, actor, staff_id)
    targets = await _targets(session, actor, staff_id, data)
    member_ids = await members.hand_over_relationships(session, actor, staff_id, targets["members_to"])
    task_ids = await care.hand_over_open_tasks(session, actor, staff_id, targets["tasks_to"])
    moved = await _move_appointments(session, actor, staff_id, targets["appointments_to"])
    if data.deactivate:
        await iam.update_staff(session, actor, staff_id, StaffUpdate(active=False))
    audit.record(session, "staff.leave", "staff", staff_id, reason=data.reason, deactivated=data.deactivate,
                 targets={k: str(v) for k, v in targets.items()}, members=len(member_ids), tasks=len(task_ids),
                 appointments=[str(m.appointment_id) for m in moved])
    return StaffLeaveOut(staff_id=staff_id, deactivated=data.deactivate, members_to=targets["members_to"],
                         member_ids=member_ids, tasks_to=targets["tasks_to"], task_ids=task_ids,
                         appointments_to=targets["appointments_to"], appointments=moved)
