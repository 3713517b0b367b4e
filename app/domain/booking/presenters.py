"""How appointments are shown, one presenter per audience.

Staff and integrations get the whole appointment. Patients (the mini-program) get it without what the
store wrote about them: `notes` is staff-internal, as on the member timeline (`staff_only_keys`). Every
REST route and GraphQL resolver that returns appointments goes through `present`, which picks the
presenter from the actor, so no route can forget to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.domain.booking.models import Appointment, AppointmentHold
from app.domain.booking.schemas import AppointmentOut

STAFF_AUDIENCES = frozenset({"staff", "integration"})
# What patients never see of an appointment (the member timeline hides the same key).
STAFF_ONLY_FIELDS = ("notes",)

Resources = dict[UUID, list[UUID]]
Presenter = Callable[[AsyncSession, list[Appointment], Resources | None], Awaitable[list[AppointmentOut]]]


async def resources_of(session: AsyncSession, tenant_id: UUID, appointment_ids: list[UUID]) -> Resources:
    """The resources each appointment occupies: its active holds, or, once released, the last ones it had."""
    if not appointment_ids:
        return {}
    rows = (await session.execute(select(
        AppointmentHold.appointment_id, AppointmentHold.kind, AppointmentHold.ref_id, AppointmentHold.active,
        AppointmentHold.created_at).where(AppointmentHold.tenant_id == tenant_id,
                                          AppointmentHold.appointment_id.in_(appointment_ids))
        .order_by(AppointmentHold.created_at, AppointmentHold.id))).all()
    out: Resources = {a: [] for a in appointment_ids}
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


async def present_for_staff(session: AsyncSession, appointments: list[Appointment],
                            resources: Resources | None = None) -> list[AppointmentOut]:
    """The whole appointments with their resources (`resources` when the caller knows them: it just took them)."""
    if not appointments:
        return []
    if resources is None:
        resources = await resources_of(session, appointments[0].tenant_id, [a.id for a in appointments])
    return [AppointmentOut.model_validate(a).model_copy(update={"resource_ids": resources.get(a.id, [])})
            for a in appointments]


async def present_for_patient(session: AsyncSession, appointments: list[Appointment],
                              resources: Resources | None = None) -> list[AppointmentOut]:
    """The appointments without the store's internal fields (`STAFF_ONLY_FIELDS` are null)."""
    hidden = dict.fromkeys(STAFF_ONLY_FIELDS)
    return [out.model_copy(update=hidden) for out in await present_for_staff(session, appointments, resources)]


def presenter_for(actor: Actor) -> Presenter:
    """Staff and integrations see the whole appointment; anyone else (patients) the patient view."""
    return present_for_staff if actor.kind in STAFF_AUDIENCES else present_for_patient


async def present(session: AsyncSession, actor: Actor, appointments: list[Appointment],
                  resources: Resources | None = None) -> list[AppointmentOut]:
    """The appointments as `actor` may see them."""
    return await presenter_for(actor)(session, appointments, resources)
