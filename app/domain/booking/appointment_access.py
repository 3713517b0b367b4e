"""Loading and authorizing what an appointment change works on: the store, the member, the service, the
staff member, and the appointment itself (locked), with the checks every change shares."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.errors import Conflict, Forbidden, NotFound, invalid
from app.core.rows import get_or_404
from app.domain.booking.models import Appointment
from app.domain.catalog import service as catalog
from app.domain.iam import service as iam
from app.domain.members import service as members
from app.domain.tenancy import service as tenancy

if TYPE_CHECKING:
    from app.domain.catalog.models import Service
    from app.domain.members.models import Member
    from app.domain.tenancy.models import Store

# Nobody books the past, and staff (who skip the store's booking horizon) at most a year ahead: a date in
# 1900 or 2206 is a typo, refused naming the field before it reaches the schedule. Patients and integrations
# also get the store's lead time and horizon from check_slot.
MAX_AHEAD = timedelta(days=366)

# Which statuses each action may start from.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "reschedule": ("booked",),
    "cancel": ("booked", "checked_in"),
    "check_in": ("booked",),
    "no_show": ("booked",),
    "complete": ("booked", "checked_in"),
}


async def bookable_store(session: AsyncSession, actor: Actor, store_id: UUID) -> Store:
    """The store, if it exists and still takes bookings (read without stores:read: patients book too).
    Its 404 names `store_id`; its 409 `store_inactive` names no field (so `field` is not passed down)."""
    try:
        return await tenancy.active_store(session, actor, store_id, field=None,
                                          inactive_detail="this store no longer takes bookings")
    except NotFound as exc:
        exc.extra["field"] = "store_id"
        raise


async def active_member(session: AsyncSession, actor: Actor, member_id: UUID) -> Member:
    try:
        member = await members.get_member_row(session, actor, member_id, snapshot=True)
    except NotFound as exc:  # also a patient naming someone outside their family
        raise NotFound("member not found", code="member_not_found", field="member_id") from exc
    if member.status != "active":
        raise Conflict(f"member is {member.status}", code="member_inactive")
    return member


async def offered_service(session: AsyncSession, actor: Actor, service_id: UUID, field: str) -> Service:
    try:
        service = await catalog.get_service_row(session, actor, service_id, snapshot=True)
    except NotFound as exc:
        raise NotFound("service not found", code="service_not_found", field=field) from exc
    if not service.active:
        raise Conflict("this service is no longer offered", code="service_inactive", field=field)
    return service


async def require_staff_in_store(session: AsyncSession, tenant_id: UUID, staff_id: UUID, store_id: UUID,
                                 field: str) -> None:
    found = await iam.staff_at_store(session, tenant_id, staff_id, store_id)
    if found is None or not found[0].active:
        raise invalid(field, "no such active staff member")
    if not found[1]:
        raise invalid(field, "this staff member does not work in this store")


async def authorize_read(session: AsyncSession, actor: Actor, appointment: Appointment) -> None:
    if actor.kind == "patient":
        try:
            await members.get_member_row(session, actor, appointment.member_id)
        except NotFound as exc:  # someone else's appointment does not exist for this patient
            raise NotFound("appointment not found", code="appointment_not_found") from exc
        return
    actor.require("appointments:read")
    actor.require_store(appointment.store_id)


async def locked_appointment(session: AsyncSession, actor: Actor, appointment_id: UUID, *, permission: str | None,
                             patient_allowed: bool) -> Appointment:
    """The appointment, locked for this transaction: concurrent changes of one appointment queue up.
    `permission` None: the caller has checked it already (staff are still held to the appointment's store)."""
    appointment = await get_or_404(session, Appointment, actor.tenant_id, appointment_id,
                                   code="appointment_not_found", lock=True)
    if actor.kind == "patient":
        await authorize_read(session, actor, appointment)
        if not patient_allowed:
            raise Forbidden("only the store can do this", code="permission_denied")
        return appointment
    if permission:
        actor.require(permission)
    actor.require_store(appointment.store_id)
    return appointment


def require_status(appointment: Appointment, action: str) -> None:
    allowed = TRANSITIONS[action]
    if appointment.status not in allowed:
        raise Conflict(f"cannot {action.replace('_', ' ')} an appointment that is {appointment.status}",
                       code="invalid_status", current_status=appointment.status, allowed_from=list(allowed))


def check_time(starts_at: datetime, now: datetime, field: str = "starts_at") -> None:
    if starts_at < now:
        raise invalid(field, "is in the past", code="in_the_past")
    if starts_at > now + MAX_AHEAD:
        raise invalid(field, f"is more than {MAX_AHEAD.days} days ahead", code="beyond_horizon")
