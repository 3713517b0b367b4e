"""Booking's read API: what other contexts may know of appointments, resources and schedules.

Other contexts read booking only through the functions here (and the use cases in `appointments`,
`availability`, `schedule`, `waitlist`), never through its models or raw SQL on its tables.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.booking.models import ACTIVE_STATUSES, Appointment, StaffSkill, StoreHours
from app.domain.booking.schedule_schemas import OpeningRangeOut

# ---------------------------------------------------------------- read API (for other contexts)
# Other contexts read this one only through the functions below (never its models, never raw SQL on its tables).


class BookedVisit(NamedTuple):
    visit_id: UUID
    starts_at: datetime  # the visit's first appointment
    member_id: UUID
    store_id: UUID


async def appointment_booked(session: AsyncSession, tenant_id: UUID, appointment_id: UUID, *,
                             schedule_version: int | None = None) -> bool:
    """Is the appointment still booked (and, when `schedule_version` is given, not moved since)?"""
    appointment = await session.get(Appointment, (tenant_id, appointment_id))
    if appointment is None or appointment.status != "booked":
        return False
    return schedule_version is None or appointment.schedule_version == schedule_version


async def visit_booked_at(session: AsyncSession, tenant_id: UUID, visit_id: UUID, starts_at: datetime) -> bool:
    """Is an appointment of the visit still booked to start at `starts_at`?"""
    return (await session.exec(select(Appointment.id).where(
        Appointment.tenant_id == tenant_id, Appointment.visit_id == visit_id, Appointment.status == "booked",
        Appointment.starts_at == starts_at).limit(1))).first() is not None


async def booked_visits_between(session: AsyncSession, tenant_id: UUID, after: datetime, before: datetime, *,
                                limit: int) -> list[BookedVisit]:
    """Booked visits with an appointment starting in (after, before), soonest first, at most `limit`
    (one query for a tenant)."""
    first_start = func.min(Appointment.starts_at)
    rows = (await session.exec(
        select(Appointment.visit_id, first_start, Appointment.member_id, Appointment.store_id)
        .where(Appointment.tenant_id == tenant_id, Appointment.status == "booked",
               Appointment.starts_at > after, Appointment.starts_at < before)
        .group_by(Appointment.visit_id, Appointment.member_id, Appointment.store_id)
        .order_by(first_start).limit(limit))).all()
    return [BookedVisit(*row) for row in rows]


class UpcomingAppointment(NamedTuple):
    id: UUID
    starts_at: datetime
    store_id: UUID
    service_id: UUID
    staff_id: UUID


async def next_appointment(session: AsyncSession, tenant_id: UUID, member_id: UUID, *,
                           after: datetime) -> UpcomingAppointment | None:
    """The member's soonest booked appointment starting after `after`, or None; no permission check (the
    caller has made its own: e.g. the sidebar's message drafts name the next visit)."""
    row = (await session.exec(
        select(Appointment.id, Appointment.starts_at, Appointment.store_id, Appointment.service_id,
               Appointment.staff_id)
        .where(Appointment.tenant_id == tenant_id, Appointment.member_id == member_id,
               Appointment.status == "booked", Appointment.starts_at > after)
        .order_by(Appointment.starts_at, Appointment.id).limit(1))).first()
    return UpcomingAppointment(*row) if row is not None else None


async def active_appointments_of(session: AsyncSession, tenant_id: UUID, member_ids: set[UUID], *,
                                 ending_after: datetime, limit: int) -> list[Appointment]:
    """The members' booked or checked-in appointments that have not ended by `ending_after`, soonest first,
    at most `limit`; no permission check (the caller has made its own: a patient's upcoming visits)."""
    if not member_ids:
        return []
    return list((await session.exec(
        select(Appointment).where(Appointment.tenant_id == tenant_id, Appointment.member_id.in_(member_ids),
                                  Appointment.status.in_(ACTIVE_STATUSES), Appointment.ends_at > ending_after)
        .order_by(Appointment.starts_at, Appointment.id).limit(limit))).all())


async def skills_of(session: AsyncSession, tenant_id: UUID, staff_ids: set[UUID]) -> dict[UUID, set[UUID]]:
    """The services each of these staff members may perform (an empty set for one without skills)."""
    out: dict[UUID, set[UUID]] = {s: set() for s in staff_ids}
    if staff_ids:
        for staff_id, service_id in (await session.exec(select(StaffSkill.staff_id, StaffSkill.service_id).where(
                StaffSkill.tenant_id == tenant_id, StaffSkill.staff_id.in_(staff_ids)))).all():
            out[staff_id].add(service_id)
    return out


async def staff_skilled_for(session: AsyncSession, tenant_id: UUID, service_id: UUID) -> set[UUID]:
    """Who may perform the service (active or not: the caller filters)."""
    return set((await session.exec(select(StaffSkill.staff_id).where(
        StaffSkill.tenant_id == tenant_id, StaffSkill.service_id == service_id))).all())


async def opening_hours_of(session: AsyncSession, tenant_id: UUID,
                           store_ids: set[UUID]) -> dict[UUID, list[OpeningRangeOut]]:
    """Each store's opening hours (local times per ISO weekday, by weekday and opening time)."""
    out: dict[UUID, list[OpeningRangeOut]] = {s: [] for s in store_ids}
    if store_ids:
        rows = (await session.exec(select(StoreHours).where(StoreHours.tenant_id == tenant_id,
                                                            StoreHours.store_id.in_(store_ids))
                                   .order_by(StoreHours.weekday, StoreHours.opens))).all()
        for row in rows:
            out[row.store_id].append(OpeningRangeOut(weekday=row.weekday, opens=row.opens, closes=row.closes))
    return out


class BookedAppointment(NamedTuple):
    id: UUID
    member_id: UUID
    store_id: UUID
    service_id: UUID
    status: str
    starts_at: datetime


async def appointment_of(session: AsyncSession, tenant_id: UUID, appointment_id: UUID) -> BookedAppointment | None:
    """One appointment as other contexts may know it (checkout: a patient prepays it), or None; no
    permission check (the caller checks the member is theirs to act for)."""
    appointment = await session.get(Appointment, (tenant_id, appointment_id))
    if appointment is None:
        return None
    return BookedAppointment(appointment.id, appointment.member_id, appointment.store_id, appointment.service_id,
                             appointment.status, appointment.starts_at)


class StaffBooking(NamedTuple):
    id: UUID
    starts_at: datetime
    store_id: UUID
    member_id: UUID
    service_id: UUID


async def booked_appointments_of_staff(session: AsyncSession, tenant_id: UUID, staff_id: UUID, *,
                                       after: datetime) -> list[StaffBooking]:
    """The staff member's booked appointments starting after `after`, soonest first; no permission check (the
    caller has made its own: a departing staff member's bookings are handed over)."""
    rows = (await session.exec(
        select(Appointment.id, Appointment.starts_at, Appointment.store_id, Appointment.member_id,
               Appointment.service_id)
        .where(Appointment.tenant_id == tenant_id, Appointment.staff_id == staff_id,
               Appointment.status == "booked", Appointment.starts_at > after)
        .order_by(Appointment.starts_at, Appointment.id))).all()
    return [StaffBooking(*row) for row in rows]


_COMPARE = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le, "eq": operator.eq}


async def appointments_matching(session: AsyncSession, tenant_id: UUID, *, ids: set[UUID] | None = None,
                                member_id: UUID | None = None, store_ids: frozenset[UUID] | None = None,
                                starts: Sequence[tuple[str, datetime]] = (),
                                updated: Sequence[tuple[str, datetime]] = (), after: UUID | None = None,
                                limit: int = 50) -> tuple[list[Appointment], int]:
    """Appointments for an export (clinical's FHIR API): by id after `after`, at most `limit`, and how many
    match in all. `starts` / `updated` are (`gt`|`ge`|`lt`|`le`|`eq`, instant) bounds on the start and on the
    last change; `store_ids` (None: every store) limits them to a staff member's stores. No permission check
    (the caller has made its own)."""
    last_change = func.coalesce(Appointment.updated_at, Appointment.created_at)
    conditions = [Appointment.tenant_id == tenant_id]
    if ids is not None:
        conditions.append(Appointment.id.in_(ids))
    if member_id is not None:
        conditions.append(Appointment.member_id == member_id)
    if store_ids is not None:
        conditions.append(Appointment.store_id.in_(store_ids))
    conditions += [_COMPARE[op](Appointment.starts_at, instant) for op, instant in starts]
    conditions += [_COMPARE[op](last_change, instant) for op, instant in updated]
    total = (await session.execute(select(func.count()).select_from(Appointment).where(*conditions))).scalar_one()
    stmt = select(Appointment).where(*conditions)
    if after is not None:
        stmt = stmt.where(Appointment.id > after)
    rows = (await session.exec(stmt.order_by(Appointment.id).limit(limit))).all()
    return list(rows), int(total)
