"""Booking's read API: what other contexts may know of appointments, resources and schedules.

Other contexts read booking only through the functions here (and the use cases in `appointments`,
`availability`, `schedule`, `waitlist`), never through its models or raw SQL on its tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.booking.models import Appointment

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
