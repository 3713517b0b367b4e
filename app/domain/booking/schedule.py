"""Schedule data that availability and booking read: resources, staff skills, single shifts, weekly shift
patterns with their skipped days, time off, store opening hours, closed days and the booking policy.

Reads need `appointments:read` (front desk and therapists read schedules), changes `schedule:write`.
Everything that belongs to a store is held to the stores the caller acts in: another tenant's store is
404 (row-level security hides it), a store of the tenant the caller is not assigned to is 403. Staff
data that is not per store (skills, time off) may be changed by whoever acts in one of the staff
member's stores: chains share therapists between stores, and either manager records their leave.

Replacing a set (a week of hours, a staff member's skills) and checking for an overlapping shift take
a transaction-scoped advisory lock on what they change, so two concurrent requests run one after the
other instead of both passing the check (or both deleting and both inserting).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import delete, func, text, true, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.db import fetch
from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.core.ids import new_id
from app.core.pagination import PageParams, decode_cursor, encode_cursor, paginate
from app.core.rows import get_or_404, snapshot_columns, snapshot_of
from app.domain.booking.bookables import bookable_no
from app.domain.booking.models import (
    ACTIVE_STATUSES,
    Appointment,
    AppointmentHold,
    BookingPolicy,
    Resource,
    Shift,
    ShiftException,
    ShiftPattern,
    StaffSkill,
    StoreClosure,
    StoreHours,
    TimeOff,
)
from app.domain.booking.schedule_schemas import (
    EARLIEST,
    MAX_LIST_RANGE,
    MAX_SHIFT,
    BookingPolicyOut,
    BookingPolicySet,
    ClosureCreate,
    OpeningRangeOut,
    ResourceCreate,
    ResourceUpdate,
    ShiftCreate,
    ShiftExceptionCreate,
    ShiftExceptionOut,
    ShiftPatternCreate,
    ShiftPatternOut,
    ShiftPatternUpdate,
    StaffSkillsOut,
    StaffSkillsSet,
    StoreHoursOut,
    StoreHoursSet,
    TimeOffCreate,
    check_day,
)
from app.domain.catalog import service as catalog
from app.domain.iam import service as iam
from app.domain.tenancy import service as tenancy

if TYPE_CHECKING:
    from app.domain.iam.models import Staff
    from app.domain.tenancy.models import Store

READ = "appointments:read"
WRITE = "schedule:write"
DEFAULT_LIST_SPAN = timedelta(days=7)
POLICY_FIELDS = tuple(BookingPolicySet.model_fields)


def invalid(field: str, message: str, *, type_: str = "value_error") -> Unprocessable:
    """A 422 shaped like request validation's, naming the field, for checks that need the database."""
    return Unprocessable(f"{field}: {message}", code="validation_error", title="Invalid request",
                         errors=[{"field": field, "message": message, "type": type_}])


async def _lock(session: AsyncSession, *parts: Any) -> None:
    """Serialise concurrent changes to one thing (released at commit or rollback)."""
    key = ":".join(str(p) for p in parts)
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})


# ---------------------------------------------------------------- stores and staff in reach


async def _require_store(session: AsyncSession, actor: Actor, store_id: UUID) -> None:
    await tenancy.require_stores_exist(session, actor.tenant_id, {store_id})  # 404 for another tenant's store
    actor.require_store(store_id)  # 403 for a store of the tenant the caller is not assigned to


async def _store_row(session: AsyncSession, actor: Actor, store_id: UUID) -> Store:
    await _require_store(session, actor, store_id)
    store = await tenancy.store_row(session, actor.tenant_id, store_id)
    assert store is not None  # require_stores_exist just found it
    return store


def _in_visible_stores(actor: Actor, column: Any) -> Any:
    """A list without a store filter covers the caller's stores only (all of them for stores:all)."""
    return true() if actor.store_ids is None else column.in_(actor.store_ids)


async def _staff_in_reach(session: AsyncSession, actor: Actor, staff_id: UUID) -> Staff:
    """The staff member (404 if none); 403 unless they work in one of the caller's stores."""
    staff = await iam.staff_row(session, actor.tenant_id, staff_id)
    if staff is None:
        raise NotFound("staff member not found", code="staff_not_found")
    if actor.store_ids is not None and not (await iam.staff_store_ids(session, actor.tenant_id, staff_id)
                                            & actor.store_ids):
        raise Forbidden("this staff member works in none of your stores", code="store_forbidden")
    return staff


async def _staff_for_store(session: AsyncSession, actor: Actor, staff_id: UUID, store_id: UUID) -> Staff:
    """A staff member named in a body who must work in `store_id`: anything else is bad input (422)."""
    staff = await iam.staff_row(session, actor.tenant_id, staff_id)
    if staff is None:
        raise invalid("staff_id", "no such staff member", type_="not_found")
    if not staff.active:
        raise invalid("staff_id", "this staff member is deactivated", type_="inactive")
    if store_id not in await iam.staff_store_ids(session, actor.tenant_id, staff_id):
        raise invalid("staff_id", "this staff member is not assigned to this store (see staff store_ids)",
                      type_="not_in_store")
    return staff


def _check_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """A list's time range: [from, to), defaulting to a week from now, at most 62 days, not before 2000."""
    if start is None:
        start = end - DEFAULT_LIST_SPAN if end is not None else utcnow()
    if end is None:
        end = start + DEFAULT_LIST_SPAN
    if start < EARLIEST:
        raise invalid("from", "is before 2000; check the year")
    if end <= start:
        raise invalid("to", "must be after from")
    if end - start > MAX_LIST_RANGE:
        raise invalid("to", f"the range is at most {MAX_LIST_RANGE.days} days")
    return start, end


def _start_key(value: Any) -> tuple[datetime, UUID]:
    starts_at, row_id = value
    return datetime.fromisoformat(starts_at), UUID(row_id)


async def _page_by_start(session: AsyncSession, stmt: Any, model: Any, params: PageParams) -> tuple[list, str | None]:
    """Keyset pages in time order (starts_at, then id): what a schedule is read in."""
    if params.cursor:
        after = decode_cursor(params.cursor, _start_key)
        stmt = stmt.where(tuple_(model.starts_at, model.id) > tuple_(*after))
    rows = list((await session.exec(stmt.order_by(model.starts_at, model.id).limit(params.limit + 1))).all())
    cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        cursor = encode_cursor([rows[-1].starts_at.isoformat(), str(rows[-1].id)])
    return rows, cursor


# ---------------------------------------------------------------- resources


async def create_resource(session: AsyncSession, actor: Actor, data: ResourceCreate) -> Resource:
    actor.require(WRITE)
    await _require_store(session, actor, data.store_id)
    await _require_free_name(session, actor.tenant_id, data.store_id, data.name, None)
    resource_id = new_id()
    # The bigint the holds' exclusion constraint keys on, made with the resource so booking never has to.
    number = await bookable_no(session, actor.tenant_id, "resource", resource_id)
    resource = Resource(tenant_id=actor.tenant_id, id=resource_id, bookable_no=number, updated_at=utcnow(),
                        **data.model_dump())
    session.add(resource)
    await session.flush()
    audit.record(session, "resource.create", "resource", resource.id, after=data.model_dump(mode="json"))
    return resource


async def _require_free_name(session: AsyncSession, tenant_id: UUID, store_id: UUID, name: str,
                             resource_id: UUID | None) -> None:
    existing = (await session.exec(select(Resource.id).where(
        Resource.tenant_id == tenant_id, Resource.store_id == store_id, Resource.name == name))).first()
    if existing is not None and existing != resource_id:
        raise Conflict(f"the store already has a resource named {name!r}", code="resource_name_exists",
                       field="name", existing_resource_id=str(existing))


async def _resource(session: AsyncSession, actor: Actor, resource_id: UUID, *, for_update: bool = False) -> Resource:
    resource = await get_or_404(session, Resource, actor.tenant_id, resource_id, code="resource_not_found",
                                lock=for_update)
    actor.require_store(resource.store_id)
    return resource


async def get_resource(session: AsyncSession, actor: Actor, resource_id: UUID) -> Resource:
    actor.require(READ)
    return await _resource(session, actor, resource_id)


async def list_resources(session: AsyncSession, actor: Actor, params: PageParams, *, store_id: UUID | None = None,
                         kind: str | None = None, pool: str | None = None, active: bool | None = None):
    actor.require(READ)
    stmt = select(Resource).where(Resource.tenant_id == actor.tenant_id)
    if store_id is not None:
        await _require_store(session, actor, store_id)
        stmt = stmt.where(Resource.store_id == store_id)
    else:
        stmt = stmt.where(_in_visible_stores(actor, Resource.store_id))
    if kind:
        stmt = stmt.where(Resource.kind == kind)
    if pool:
        stmt = stmt.where(Resource.pool == pool)
    if active is not None:
        stmt = stmt.where(Resource.active == active)
    return await paginate(session, stmt, Resource.id, params)


async def _has_bookings_to_come(session: AsyncSession, tenant_id: UUID, resource_id: UUID) -> bool:
    stmt = select(AppointmentHold.id).where(
        AppointmentHold.tenant_id == tenant_id, AppointmentHold.kind == "resource",
        AppointmentHold.ref_id == resource_id, AppointmentHold.active, AppointmentHold.ends_at > utcnow())
    return (await session.exec(stmt.limit(1))).first() is not None


async def update_resource(session: AsyncSession, actor: Actor, resource_id: UUID, data: ResourceUpdate) -> Resource:
    actor.require(WRITE)
    # Booking a shared resource (capacity > 1) takes this row lock, so no such booking lands between the
    # check below and the change. (A capacity-1 booking takes no row lock, but going up from 1 is safe
    # anyway: a shared booking counts every overlapping hold, exclusive ones included.)
    resource = await _resource(session, actor, resource_id, for_update=True)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] != resource.name:
        await _require_free_name(session, actor.tenant_id, resource.store_id, changes["name"], resource.id)
    if changes.get("capacity", resource.capacity) != resource.capacity and \
            await _has_bookings_to_come(session, actor.tenant_id, resource.id):
        # Bookings made under one capacity hold the resource exclusively or shared; changing it under
        # them could let a capacity-1 room take two, so the front desk moves them first.
        raise Conflict("the resource has bookings to come; move or cancel them before changing its capacity",
                       code="resource_in_use", field="capacity")
    before = audit.snapshot(resource, fields=list(changes))
    for column, value in changes.items():
        setattr(resource, column, value)
    resource.updated_at = utcnow()
    session.add(resource)
    await session.flush()
    audit.record(session, "resource.update", "resource", resource.id, before=before, after=changes)
    return resource


# ---------------------------------------------------------------- staff skills


async def _skills(session: AsyncSession, tenant_id: UUID, staff_id: UUID) -> list[UUID]:
    return list((await session.exec(select(StaffSkill.service_id).where(
        StaffSkill.tenant_id == tenant_id, StaffSkill.staff_id == staff_id).order_by(StaffSkill.service_id))).all())


async def get_staff_skills(session: AsyncSession, actor: Actor, staff_id: UUID) -> StaffSkillsOut:
    actor.require(READ)
    if await iam.staff_row(session, actor.tenant_id, staff_id) is None:
        raise NotFound("staff member not found", code="staff_not_found")
    return StaffSkillsOut(staff_id=staff_id, service_ids=await _skills(session, actor.tenant_id, staff_id))


async def set_staff_skills(session: AsyncSession, actor: Actor, staff_id: UUID, data: StaffSkillsSet) -> StaffSkillsOut:
    actor.require(WRITE)
    await _staff_in_reach(session, actor, staff_id)
    wanted = list(dict.fromkeys(data.service_ids))  # a repeated id means the same skill once
    if wanted:
        found = await catalog.services_by_id(session, actor.tenant_id, set(wanted))
        for index, service_id in enumerate(data.service_ids):
            if service_id not in found:
                raise invalid(f"service_ids.{index}", "no such service", type_="not_found")
    await _lock(session, "staff_skills", actor.tenant_id, staff_id)
    before = await _skills(session, actor.tenant_id, staff_id)
    await session.execute(delete(StaffSkill).where(StaffSkill.tenant_id == actor.tenant_id,
                                                   StaffSkill.staff_id == staff_id))
    session.add_all(StaffSkill(tenant_id=actor.tenant_id, staff_id=staff_id, service_id=s) for s in wanted)
    await session.flush()
    after = await _skills(session, actor.tenant_id, staff_id)
    audit.record(session, "staff_skills.set", "staff", staff_id, before={"service_ids": before},
                 after={"service_ids": after})
    return StaffSkillsOut(staff_id=staff_id, service_ids=after)


# ---------------------------------------------------------------- single shifts


async def create_shift(session: AsyncSession, actor: Actor, data: ShiftCreate) -> Shift:
    actor.require(WRITE)
    await _require_store(session, actor, data.store_id)
    await _staff_for_store(session, actor, data.staff_id, data.store_id)
    # Their booking number now, so the first bookings of a new therapist do not queue on creating it.
    await bookable_no(session, actor.tenant_id, "staff", data.staff_id)
    # One staff member's shifts are checked and inserted one request at a time, in every store.
    await _lock(session, "shifts", actor.tenant_id, data.staff_id)
    overlapping = (await session.exec(select(Shift).where(
        Shift.tenant_id == actor.tenant_id, Shift.staff_id == data.staff_id,
        Shift.starts_at < data.ends_at, Shift.ends_at > data.starts_at,
        Shift.starts_at > data.starts_at - MAX_SHIFT,  # shifts are at most 24 h: lets the index bound the scan
    ).order_by(Shift.starts_at).limit(1))).first()
    if overlapping is not None:
        raise Conflict("the staff member already has a shift at this time", code="shift_overlap",
                       field="starts_at", shift_id=str(overlapping.id), store_id=str(overlapping.store_id),
                       starts_at=overlapping.starts_at.isoformat(), ends_at=overlapping.ends_at.isoformat())
    shift = Shift(tenant_id=actor.tenant_id, **data.model_dump())
    session.add(shift)
    await session.flush()
    audit.record(session, "shift.create", "shift", shift.id, after=data.model_dump(mode="json"))
    return shift


async def list_shifts(session: AsyncSession, actor: Actor, params: PageParams, *, store_id: UUID | None = None,
                      staff_id: UUID | None = None, start: datetime | None = None, end: datetime | None = None):
    """Shifts overlapping [start, end), in time order."""
    actor.require(READ)
    start, end = _check_range(start, end)
    stmt = select(Shift).where(Shift.tenant_id == actor.tenant_id, Shift.starts_at < end, Shift.ends_at > start,
                               Shift.starts_at > start - MAX_SHIFT)
    if store_id is not None:
        await _require_store(session, actor, store_id)
        stmt = stmt.where(Shift.store_id == store_id)
    else:
        stmt = stmt.where(_in_visible_stores(actor, Shift.store_id))
    if staff_id is not None:
        stmt = stmt.where(Shift.staff_id == staff_id)
    return await _page_by_start(session, stmt, Shift, params)


async def delete_shift(session: AsyncSession, actor: Actor, shift_id: UUID) -> None:
    actor.require(WRITE)
    shift = await get_or_404(session, Shift, actor.tenant_id, shift_id, code="shift_not_found", lock=True)
    actor.require_store(shift.store_id)
    booked = (await session.exec(select(Appointment.id).where(
        Appointment.tenant_id == actor.tenant_id, Appointment.staff_id == shift.staff_id,
        Appointment.store_id == shift.store_id, Appointment.status.in_(ACTIVE_STATUSES),
        Appointment.starts_at < shift.ends_at, Appointment.ends_at > shift.starts_at,
    ).order_by(Appointment.starts_at).limit(20))).all()
    if booked:
        # Deleting the shift would leave these appointments with a therapist who is not working.
        raise Conflict("appointments are booked in this shift; move or cancel them first",
                       code="shift_has_appointments", appointment_ids=[str(a) for a in booked])
    before = audit.snapshot(shift, fields=["staff_id", "store_id", "starts_at", "ends_at", "note"])
    await session.delete(shift)
    await session.flush()
    audit.record(session, "shift.delete", "shift", shift_id, before=before)


# ---------------------------------------------------------------- weekly shift patterns


async def _exceptions(session: AsyncSession, tenant_id: UUID,
                      pattern_ids: Sequence[UUID]) -> dict[UUID, list[ShiftExceptionOut]]:
    out: dict[UUID, list[ShiftExceptionOut]] = {p: [] for p in pattern_ids}
    if pattern_ids:
        rows = (await session.exec(select(ShiftException).where(
            ShiftException.tenant_id == tenant_id, ShiftException.pattern_id.in_(pattern_ids))
            .order_by(ShiftException.day))).all()
        for row in rows:
            out[row.pattern_id].append(ShiftExceptionOut.model_validate(row))
    return out


def _pattern_out(pattern: ShiftPattern, exceptions: list[ShiftExceptionOut]) -> ShiftPatternOut:
    return ShiftPatternOut(
        id=pattern.id, staff_id=pattern.staff_id, store_id=pattern.store_id, weekdays=sorted(pattern.weekdays),
        starts=pattern.starts, ends=pattern.ends, overnight=pattern.ends <= pattern.starts,
        valid_from=pattern.valid_from, valid_until=pattern.valid_until, active=pattern.active,
        exceptions=exceptions, created_at=pattern.created_at)


async def present_patterns(session: AsyncSession, actor: Actor,
                           patterns: Sequence[ShiftPattern]) -> list[ShiftPatternOut]:
    exceptions = await _exceptions(session, actor.tenant_id, [p.id for p in patterns])
    return [_pattern_out(p, exceptions[p.id]) for p in patterns]


async def create_shift_pattern(session: AsyncSession, actor: Actor, data: ShiftPatternCreate) -> ShiftPatternOut:
    actor.require(WRITE)
    await _require_store(session, actor, data.store_id)
    await _staff_for_store(session, actor, data.staff_id, data.store_id)
    # Their booking number now, so the first bookings of a new therapist do not queue on creating it.
    await bookable_no(session, actor.tenant_id, "staff", data.staff_id)
    pattern = ShiftPattern(tenant_id=actor.tenant_id, **data.model_dump())
    session.add(pattern)
    await session.flush()
    audit.record(session, "shift_pattern.create", "shift_pattern", pattern.id, after=data.model_dump(mode="json"))
    return _pattern_out(pattern, [])


async def _pattern(session: AsyncSession, actor: Actor, pattern_id: UUID, *, for_update: bool = False) -> ShiftPattern:
    pattern = await get_or_404(session, ShiftPattern, actor.tenant_id, pattern_id, code="shift_pattern_not_found",
                               lock=for_update)
    actor.require_store(pattern.store_id)
    return pattern


async def get_shift_pattern(session: AsyncSession, actor: Actor, pattern_id: UUID) -> ShiftPatternOut:
    actor.require(READ)
    return (await present_patterns(session, actor, [await _pattern(session, actor, pattern_id)]))[0]


async def list_shift_patterns(session: AsyncSession, actor: Actor, params: PageParams, *,
                              store_id: UUID | None = None, staff_id: UUID | None = None,
                              active: bool | None = None) -> tuple[list[ShiftPatternOut], str | None]:
    actor.require(READ)
    stmt = select(ShiftPattern).where(ShiftPattern.tenant_id == actor.tenant_id)
    if store_id is not None:
        await _require_store(session, actor, store_id)
        stmt = stmt.where(ShiftPattern.store_id == store_id)
    else:
        stmt = stmt.where(_in_visible_stores(actor, ShiftPattern.store_id))
    if staff_id is not None:
        stmt = stmt.where(ShiftPattern.staff_id == staff_id)
    if active is not None:
        stmt = stmt.where(ShiftPattern.active == active)
    rows, cursor = await paginate(session, stmt, ShiftPattern.id, params)
    return await present_patterns(session, actor, rows), cursor


async def update_shift_pattern(session: AsyncSession, actor: Actor, pattern_id: UUID,
                               data: ShiftPatternUpdate) -> ShiftPatternOut:
    actor.require(WRITE)
    pattern = await _pattern(session, actor, pattern_id, for_update=True)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("valid_until") is not None and changes["valid_until"] < pattern.valid_from:
        raise invalid("valid_until", f"is before the pattern's valid_from ({pattern.valid_from.isoformat()})")
    before = audit.snapshot(pattern, fields=list(changes))
    for column, value in changes.items():
        setattr(pattern, column, value)
    session.add(pattern)
    await session.flush()
    audit.record(session, "shift_pattern.update", "shift_pattern", pattern.id, before=before,
                 after=data.model_dump(mode="json", exclude_unset=True))
    return (await present_patterns(session, actor, [pattern]))[0]


def _runs_on(pattern: ShiftPattern, day: date) -> bool:
    return (day.isoweekday() in pattern.weekdays and day >= pattern.valid_from
            and (pattern.valid_until is None or day <= pattern.valid_until))


async def add_shift_exception(session: AsyncSession, actor: Actor, pattern_id: UUID,
                              data: ShiftExceptionCreate) -> ShiftException:
    actor.require(WRITE)
    pattern = await _pattern(session, actor, pattern_id, for_update=True)
    if not _runs_on(pattern, data.day):
        raise invalid("day", "the pattern has no shift on this day (check its weekdays and validity)")
    existing = (await session.exec(select(ShiftException.id).where(
        ShiftException.tenant_id == actor.tenant_id, ShiftException.pattern_id == pattern.id,
        ShiftException.day == data.day))).first()
    if existing is not None:
        raise Conflict("this day is already skipped", code="shift_exception_exists", field="day")
    exception = ShiftException(tenant_id=actor.tenant_id, pattern_id=pattern.id, **data.model_dump())
    session.add(exception)
    await session.flush()
    audit.record(session, "shift_exception.create", "shift_pattern", pattern.id, after=data.model_dump(mode="json"))
    return exception


def parse_day(value: str, field: str = "day") -> date:
    """A store-local day from a path. Parsed after the parent is found, so an unknown parent is a 404
    whatever the day says; a malformed day is a 422 naming the parameter like any validation error."""
    try:
        if len(value) != 10:
            raise ValueError(value)
        return check_day(date.fromisoformat(value))
    except ValueError as exc:
        message = str(exc) if str(exc).startswith("is ") else "must be a date YYYY-MM-DD"
        raise invalid(field, message, type_="date_parsing") from exc


async def remove_shift_exception(session: AsyncSession, actor: Actor, pattern_id: UUID, day: str) -> None:
    actor.require(WRITE)
    pattern = await _pattern(session, actor, pattern_id, for_update=True)
    local_day = parse_day(day)
    exception = (await session.exec(select(ShiftException).where(
        ShiftException.tenant_id == actor.tenant_id, ShiftException.pattern_id == pattern.id,
        ShiftException.day == local_day))).first()
    if exception is None:
        raise NotFound("this day is not skipped", code="shift_exception_not_found")
    await session.delete(exception)
    await session.flush()
    audit.record(session, "shift_exception.delete", "shift_pattern", pattern.id,
                 before={"day": local_day.isoformat(), "reason": exception.reason})


# ---------------------------------------------------------------- time off


async def create_time_off(session: AsyncSession, actor: Actor, data: TimeOffCreate) -> TimeOff:
    actor.require(WRITE)
    if await iam.staff_row(session, actor.tenant_id, data.staff_id) is None:  # named in the body: bad input
        raise invalid("staff_id", "no such staff member", type_="not_found")
    await _staff_in_reach(session, actor, data.staff_id)
    time_off = TimeOff(tenant_id=actor.tenant_id, **data.model_dump())
    session.add(time_off)
    await session.flush()
    audit.record(session, "time_off.create", "time_off", time_off.id, after=data.model_dump(mode="json"))
    return time_off


async def list_time_off(session: AsyncSession, actor: Actor, params: PageParams, *, staff_id: UUID | None = None,
                        start: datetime | None = None, end: datetime | None = None):
    """Leave and breaks overlapping [start, end), in time order."""
    actor.require(READ)
    start, end = _check_range(start, end)
    stmt = select(TimeOff).where(TimeOff.tenant_id == actor.tenant_id, TimeOff.starts_at < end,
                                 TimeOff.ends_at > start)
    if staff_id is not None:
        await _staff_in_reach(session, actor, staff_id)
        stmt = stmt.where(TimeOff.staff_id == staff_id)
    elif actor.store_ids is not None:
        stmt = stmt.where(TimeOff.staff_id.in_(await iam.staff_ids_in_stores(session, actor.tenant_id,
                                                                             set(actor.store_ids))))
    return await _page_by_start(session, stmt, TimeOff, params)


async def delete_time_off(session: AsyncSession, actor: Actor, time_off_id: UUID) -> None:
    actor.require(WRITE)
    time_off = await get_or_404(session, TimeOff, actor.tenant_id, time_off_id, code="time_off_not_found",
                                lock=True)
    await _staff_in_reach(session, actor, time_off.staff_id)
    before = audit.snapshot(time_off, fields=["staff_id", "kind", "starts_at", "ends_at", "reason"])
    await session.delete(time_off)
    await session.flush()
    audit.record(session, "time_off.delete", "time_off", time_off_id, before=before)


# ---------------------------------------------------------------- store hours


async def _hours(session: AsyncSession, tenant_id: UUID, store_id: UUID) -> list[OpeningRangeOut]:
    rows = (await session.exec(select(StoreHours).where(StoreHours.tenant_id == tenant_id,
                                                        StoreHours.store_id == store_id)
                               .order_by(StoreHours.weekday, StoreHours.opens))).all()
    return [OpeningRangeOut(weekday=r.weekday, opens=r.opens, closes=r.closes) for r in rows]


async def get_store_hours(session: AsyncSession, actor: Actor, store_id: UUID) -> StoreHoursOut:
    actor.require(READ)
    store = await _store_row(session, actor, store_id)
    return StoreHoursOut(store_id=store.id, timezone=store.timezone,
                         hours=await _hours(session, actor.tenant_id, store.id))


async def set_store_hours(session: AsyncSession, actor: Actor, store_id: UUID, data: StoreHoursSet) -> StoreHoursOut:
    actor.require(WRITE)
    store = await _store_row(session, actor, store_id)
    await _lock(session, "store_hours", actor.tenant_id, store.id)
    before = [r.model_dump(mode="json") for r in await _hours(session, actor.tenant_id, store.id)]
    await session.execute(delete(StoreHours).where(StoreHours.tenant_id == actor.tenant_id,
                                                   StoreHours.store_id == store.id))
    session.add_all(StoreHours(tenant_id=actor.tenant_id, store_id=store.id, weekday=r.weekday, opens=r.opens,
                               closes=r.closes) for r in data.hours)
    await session.flush()
    out = StoreHoursOut(store_id=store.id, timezone=store.timezone, hours=await _hours(session, actor.tenant_id,
                                                                                       store.id))
    audit.record(session, "store_hours.set", "store", store.id, before={"hours": before},
                 after={"hours": [r.model_dump(mode="json") for r in out.hours]})
    return out


# ---------------------------------------------------------------- closed days


async def add_closure(session: AsyncSession, actor: Actor, store_id: UUID, data: ClosureCreate) -> StoreClosure:
    actor.require(WRITE)
    await _require_store(session, actor, store_id)
    existing = (await session.exec(select(StoreClosure.id).where(
        StoreClosure.tenant_id == actor.tenant_id, StoreClosure.store_id == store_id,
        StoreClosure.day == data.day))).first()
    if existing is not None:
        raise Conflict("the store is already closed on this day", code="store_closure_exists", field="day",
                       closure_id=str(existing))
    closure = StoreClosure(tenant_id=actor.tenant_id, store_id=store_id, **data.model_dump())
    session.add(closure)
    await session.flush()
    audit.record(session, "store_closure.create", "store", store_id, after=data.model_dump(mode="json"))
    return closure


def _closure_key(value: Any) -> tuple[date, UUID]:
    day, row_id = value
    return date.fromisoformat(day), UUID(row_id)


async def list_closures(session: AsyncSession, actor: Actor, store_id: UUID, params: PageParams, *,
                        start: date | None = None, end: date | None = None) -> tuple[list[StoreClosure], str | None]:
    """Closed days from `start` to `end` (both inclusive), in date order."""
    actor.require(READ)
    await _require_store(session, actor, store_id)
    if start is not None and end is not None and end < start:
        raise invalid("to", "is before from")
    stmt = select(StoreClosure).where(StoreClosure.tenant_id == actor.tenant_id, StoreClosure.store_id == store_id)
    if start is not None:
        stmt = stmt.where(StoreClosure.day >= start)
    if end is not None:
        stmt = stmt.where(StoreClosure.day <= end)
    if params.cursor:
        after = decode_cursor(params.cursor, _closure_key)
        stmt = stmt.where(tuple_(StoreClosure.day, StoreClosure.id) > tuple_(*after))
    rows = list((await session.exec(stmt.order_by(StoreClosure.day, StoreClosure.id).limit(params.limit + 1))).all())
    cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        cursor = encode_cursor([rows[-1].day.isoformat(), str(rows[-1].id)])
    return rows, cursor


async def remove_closure(session: AsyncSession, actor: Actor, store_id: UUID, day: str) -> None:
    actor.require(WRITE)
    await _require_store(session, actor, store_id)
    local_day = parse_day(day)
    closure = (await session.exec(select(StoreClosure).where(
        StoreClosure.tenant_id == actor.tenant_id, StoreClosure.store_id == store_id,
        StoreClosure.day == local_day))).first()
    if closure is None:
        raise NotFound("the store is not closed on this day", code="store_closure_not_found")
    await session.delete(closure)
    await session.flush()
    audit.record(session, "store_closure.delete", "store", store_id,
                 before={"day": local_day.isoformat(), "reason": closure.reason})


# ---------------------------------------------------------------- booking policy


def _policy_out(policy: BookingPolicy, *, is_default: bool) -> BookingPolicyOut:
    return BookingPolicyOut.model_validate(policy).model_copy(update={"is_default": is_default})


async def booking_policy(session: AsyncSession, tenant_id: UUID, store_id: UUID) -> BookingPolicy:
    """For availability and appointments: the store's policy (a snapshot, for reading: one prepared
    statement), or the defaults (an unsaved row) without one."""
    listed, keys = snapshot_columns(BookingPolicy, "p")
    rows = await fetch(session, f"SELECT {listed} FROM booking_policies p WHERE p.tenant_id = $1 AND p.store_id = $2",
                       tenant_id, store_id)
    return snapshot_of(BookingPolicy, keys, rows[0]) if rows else BookingPolicy(tenant_id=tenant_id, store_id=store_id)


async def get_booking_policy(session: AsyncSession, actor: Actor, store_id: UUID) -> BookingPolicyOut:
    actor.require(READ)
    await _require_store(session, actor, store_id)
    policy = await session.get(BookingPolicy, (actor.tenant_id, store_id))
    if policy is None:
        return _policy_out(BookingPolicy(tenant_id=actor.tenant_id, store_id=store_id), is_default=True)
    return _policy_out(policy, is_default=False)


async def set_booking_policy(session: AsyncSession, actor: Actor, store_id: UUID,
                             data: BookingPolicySet) -> BookingPolicyOut:
    actor.require(WRITE)
    await _require_store(session, actor, store_id)
    current = await booking_policy(session, actor.tenant_id, store_id)
    before = audit.snapshot(current, fields=list(POLICY_FIELDS))
    values = data.model_dump()
    # An upsert: two first PUTs for one store at once both succeed, the later one winning.
    await session.execute(
        pg_insert(BookingPolicy)
        .values(tenant_id=actor.tenant_id, store_id=store_id, updated_at=func.now(), **values)
        .on_conflict_do_update(index_elements=["tenant_id", "store_id"], set_={**values, "updated_at": func.now()}))
    policy = (await session.exec(select(BookingPolicy).where(
        BookingPolicy.tenant_id == actor.tenant_id, BookingPolicy.store_id == store_id)
        .execution_options(populate_existing=True))).one()
    audit.record(session, "booking_policy.set", "store", store_id, before=before, after=values)
    return _policy_out(policy, is_default=False)
