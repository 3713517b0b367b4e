"""Store readiness: what still keeps a store from being offered any slot.

A store that is not set up for booking answers availability with nothing, and the front desk cannot tell
why. Readiness names each missing piece, checked the way the availability engine uses it: the store takes
bookings, has opening hours, has active staff skilled for an offered service, has such staff on shift in
the coming days, and has the rooms, beds and devices those services require.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.clock import utcnow
from app.domain.booking.availability import requirement_candidates, working_time
from app.domain.booking.models import Resource, StaffSkill, StoreHours
from app.domain.booking.schedule import READ
from app.domain.booking.schedule_schemas import ReadinessCheck, StoreReadinessOut
from app.domain.booking.slots import day_bounds, local_date
from app.domain.catalog import service as catalog
from app.domain.iam import service as iam
from app.domain.tenancy import service as tenancy

if TYPE_CHECKING:
    from app.domain.catalog.models import Service
    from app.domain.iam.models import Staff
    from app.domain.tenancy.models import Store

READINESS_DAYS = 7  # the shifts check looks at today and the next six store-local days


def _store_active(store: Store) -> ReadinessCheck:
    if store.active:
        return ReadinessCheck(code="store_active", ok=True, message="the store takes bookings")
    return ReadinessCheck(code="store_active", ok=False, message="the store is deactivated and takes no bookings")


async def _opening_hours(session: AsyncSession, tenant_id: UUID, store: Store) -> ReadinessCheck:
    weekdays = set((await session.exec(select(StoreHours.weekday).where(
        StoreHours.tenant_id == tenant_id, StoreHours.store_id == store.id))).all())
    if not weekdays:
        return ReadinessCheck(code="opening_hours", ok=False,
                              message="no opening hours set: without them there is no slot to offer "
                                      "(set them with PUT /stores/{id}/hours)")
    return ReadinessCheck(code="opening_hours", ok=True, message=f"open on {len(weekdays)} days a week")


async def _skills(session: AsyncSession, tenant_id: UUID, staff_ids: set[UUID]) -> dict[UUID, set[UUID]]:
    """The services each staff member may perform."""
    out: dict[UUID, set[UUID]] = {s: set() for s in staff_ids}
    if staff_ids:
        for staff_id, service_id in (await session.exec(select(StaffSkill.staff_id, StaffSkill.service_id).where(
                StaffSkill.tenant_id == tenant_id, col(StaffSkill.staff_id).in_(staff_ids)))).all():
            out[staff_id].add(service_id)
    return out


def _staff_check(staff: list[Staff], skilled: list[UUID], bookable: dict[UUID, Service]) -> ReadinessCheck:
    if not staff:
        return ReadinessCheck(code="staff_with_skills", ok=False,
                              message="no active staff member is assigned to this store")
    if not skilled:
        return ReadinessCheck(code="staff_with_skills", ok=False,
                              message=f"none of the store's {len(staff)} active staff members is skilled for a "
                                      "service that is offered (set their skills with PUT /staff/{id}/skills)")
    return ReadinessCheck(code="staff_with_skills", ok=True,
                          message=f"{len(skilled)} of the store's {len(staff)} active staff members can perform "
                                  f"{len(bookable)} offered services")


async def _shifts_check(session: AsyncSession, tenant_id: UUID, store: Store, skilled: list[UUID],
                        now: datetime) -> ReadinessCheck:
    tz = ZoneInfo(store.timezone)
    first = local_date(now, tz)
    last = first + timedelta(days=READINESS_DAYS - 1)
    _, window_end = day_bounds(first, last, tz)
    working = await working_time(session, tenant_id, store=store, staff_ids=skilled, first=first, last=last)
    on_shift = [s for s, spans in working.items() if any(end > now and start < window_end for start, end in spans)]
    if not on_shift:
        return ReadinessCheck(code="shifts", ok=False,
                              message=f"no staff member skilled for an offered service is on shift at this store "
                                      f"in the next {READINESS_DAYS} days (add shifts or weekly shift patterns)")
    return ReadinessCheck(code="shifts", ok=True,
                          message=f"{len(on_shift)} skilled staff members are on shift in the next "
                                  f"{READINESS_DAYS} days")


def _describe(requirement: dict) -> str:
    kind = requirement.get("kind") or "resource"
    if requirement.get("resource_ids"):
        return f"one of the {kind}s it names"
    if requirement.get("pool"):
        return f"a {kind} of the pool {requirement['pool']}"
    return f"a {kind}"


async def _resources_check(session: AsyncSession, tenant_id: UUID, store: Store,
                           bookable: dict[UUID, Service]) -> ReadinessCheck:
    if not bookable:
        return ReadinessCheck(code="resources", ok=True,
                              message="no service can be booked here yet, so none needs a room, bed or device")
    resources = list((await session.exec(select(Resource).where(
        Resource.tenant_id == tenant_id, Resource.store_id == store.id, col(Resource.active).is_(True)))).all())
    missing = [f"{service.name} needs {_describe(requirement)}"
               for service in sorted(bookable.values(), key=lambda s: (s.name, s.id))
               for requirement in service.resource_requirements or []
               if not requirement_candidates(requirement, resources)]
    if missing:
        return ReadinessCheck(code="resources", ok=False,
                              message="the store lacks what these services need: " + "; ".join(missing))
    return ReadinessCheck(code="resources", ok=True,
                          message="every room, bed or device the bookable services need is at the store")


async def store_readiness(session: AsyncSession, actor: Actor, store_id: UUID, *,
                          now: datetime | None = None) -> StoreReadinessOut:
    """Each check with `ok` and a message; `ready` when all are ok."""
    actor.require(READ)
    store = await tenancy.scoped_store(session, actor, store_id)
    tenant_id = actor.tenant_id
    staff = await iam.active_staff_of_store(session, tenant_id, store.id)
    skills = await _skills(session, tenant_id, {s.id for s in staff})
    services = await catalog.services_by_id(session, tenant_id, set().union(*skills.values()))
    offered = {service_id for service_id, service in services.items() if service.active}
    skilled = sorted(staff_id for staff_id, ids in skills.items() if ids & offered)
    bookable = {service_id: services[service_id] for staff_id in skilled for service_id in skills[staff_id]
                if service_id in offered}
    checks = [
        _store_active(store),
        await _opening_hours(session, tenant_id, store),
        _staff_check(staff, skilled, bookable),
        await _shifts_check(session, tenant_id, store, skilled, now or utcnow()),
        await _resources_check(session, tenant_id, store, bookable),
    ]
    return StoreReadinessOut(store_id=store.id, ready=all(c.ok for c in checks), days_checked=READINESS_DAYS,
                             checks=checks)
