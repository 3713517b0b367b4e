"""Schedule data for booking: resources, staff skills, shifts, weekly patterns, time off, store hours,
closed days and the booking policy. Reads need appointments:read, changes schedule:write."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AwareDatetime
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.booking import schedule
from app.domain.booking.schedule_schemas import (
    BookingPolicyOut,
    BookingPolicySet,
    ClosureCreate,
    ClosureOut,
    ResourceCreate,
    ResourceKind,
    ResourceOut,
    ResourceUpdate,
    ShiftCreate,
    ShiftExceptionCreate,
    ShiftExceptionOut,
    ShiftOut,
    ShiftPatternCreate,
    ShiftPatternOut,
    ShiftPatternUpdate,
    StaffSkillsOut,
    StaffSkillsSet,
    StoreHoursOut,
    StoreHoursSet,
    TimeOffCreate,
    TimeOffOut,
)

router = APIRouter(tags=["booking"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)

READ = "appointments:read"
WRITE = "schedule:write"

ACTIVE = Query(None, description="true: only active; false: only deactivated; absent: both")
STORE = Query(None, description="Only this store (default: every store you act in)")
FROM = Query(None, alias="from", description="Start of the range (RFC 3339 with offset); default: now")
TO = Query(None, alias="to", description="End of the range, exclusive; default: a week after `from`; "
                                         "at most 62 days after it")
# A path day is parsed by the service after the store or pattern is found (an unknown one is a 404
# whatever the day says); documented as a date all the same.
DAY = Path(description="Store-local date, YYYY-MM-DD", examples=["2026-12-25"],
           json_schema_extra={"format": "date"})


# ---------------------------------------------------------------- resources


@router.post("/resources", status_code=201, response_model=ResourceOut, operation_id="create_resource",
             responses={409: {"description": "The store has a resource of that name (`resource_name_exists`)"}})
async def create_resource(body: ResourceCreate, session: AsyncSession = Depends(get_db),
                          actor: Actor = require(WRITE)) -> ResourceOut:
    """A room, bed or device of a store. `capacity` above 1 lets it hold that many appointments at once
    (a group room); `pool` groups interchangeable ones so a service can take any free one."""
    return ResourceOut.model_validate(await schedule.create_resource(session, actor, body))


@router.get("/resources", response_model=Page[ResourceOut], operation_id="list_resources")
async def list_resources(store_id: UUID | None = STORE, kind: ResourceKind | None = Query(None),
                         pool: str | None = Query(None, min_length=1, max_length=50), active: bool | None = ACTIVE,
                         params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                         actor: Actor = require(READ)) -> Page[ResourceOut]:
    rows, cursor = await schedule.list_resources(session, actor, params, store_id=store_id, kind=kind, pool=pool,
                                                 active=active)
    return Page(items=[ResourceOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/resources/{resource_id}", response_model=ResourceOut, operation_id="get_resource")
async def get_resource(resource_id: UUID, session: AsyncSession = Depends(get_db),
                       actor: Actor = require(READ)) -> ResourceOut:
    return ResourceOut.model_validate(await schedule.get_resource(session, actor, resource_id))


@router.patch("/resources/{resource_id}", response_model=ResourceOut, operation_id="update_resource",
              responses={409: {"description": "Name taken in the store (`resource_name_exists`), or a capacity "
                                              "change while bookings are to come (`resource_in_use`)"}})
async def update_resource(resource_id: UUID, body: ResourceUpdate, session: AsyncSession = Depends(get_db),
                          actor: Actor = require(WRITE)) -> ResourceOut:
    """Rename, re-pool, change the capacity or deactivate (`active: false`); resources are never deleted,
    past appointments keep pointing at them."""
    return ResourceOut.model_validate(await schedule.update_resource(session, actor, resource_id, body))


# ---------------------------------------------------------------- staff skills


@router.get("/staff/{staff_id}/skills", response_model=StaffSkillsOut, operation_id="get_staff_skills")
async def get_staff_skills(staff_id: UUID, session: AsyncSession = Depends(get_db),
                           actor: Actor = require(READ)) -> StaffSkillsOut:
    """The services this staff member may perform (and so be booked for)."""
    return await schedule.get_staff_skills(session, actor, staff_id)


@router.put("/staff/{staff_id}/skills", response_model=StaffSkillsOut, operation_id="set_staff_skills")
async def set_staff_skills(staff_id: UUID, body: StaffSkillsSet, session: AsyncSession = Depends(get_db),
                           actor: Actor = require(WRITE)) -> StaffSkillsOut:
    """Replace the staff member's skills. Existing appointments are not touched."""
    return await schedule.set_staff_skills(session, actor, staff_id, body)


# ---------------------------------------------------------------- single shifts


@router.post("/shifts", status_code=201, response_model=ShiftOut, operation_id="create_shift",
             responses={409: {"description": "The staff member has an overlapping shift (`shift_overlap`)"}})
async def create_shift(body: ShiftCreate, session: AsyncSession = Depends(get_db),
                       actor: Actor = require(WRITE)) -> ShiftOut:
    """One shift of a staff member at a store they are assigned to, as instants (at most 24 hours);
    it may also stand in for a weekly pattern's skipped day."""
    return ShiftOut.model_validate(await schedule.create_shift(session, actor, body))


@router.get("/shifts", response_model=Page[ShiftOut], operation_id="list_shifts")
async def list_shifts(store_id: UUID | None = STORE, staff_id: UUID | None = Query(None),
                      from_: AwareDatetime | None = FROM, to: AwareDatetime | None = TO,
                      params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                      actor: Actor = require(READ)) -> Page[ShiftOut]:
    """Single shifts overlapping the range, in time order (weekly patterns: `GET /shift-patterns`)."""
    rows, cursor = await schedule.list_shifts(session, actor, params, store_id=store_id, staff_id=staff_id,
                                              start=from_, end=to)
    return Page(items=[ShiftOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.delete("/shifts/{shift_id}", status_code=204, operation_id="delete_shift",
               responses={409: {"description": "Appointments are booked in the shift (`shift_has_appointments`)"}})
async def delete_shift(shift_id: UUID, session: AsyncSession = Depends(get_db),
                       actor: Actor = require(WRITE)) -> Response:
    await schedule.delete_shift(session, actor, shift_id)
    return Response(status_code=204)


# ---------------------------------------------------------------- weekly shift patterns


@router.post("/shift-patterns", status_code=201, response_model=ShiftPatternOut, operation_id="create_shift_pattern")
async def create_shift_pattern(body: ShiftPatternCreate, session: AsyncSession = Depends(get_db),
                               actor: Actor = require(WRITE)) -> ShiftPatternOut:
    """A weekly-recurring shift in store-local time: the listed ISO weekdays (1 = Monday) from `valid_from`;
    `ends` not later than `starts` runs past midnight. Turned into instants in the store's time zone on
    each day, so 09:00 stays 09:00 across a daylight-saving change."""
    return await schedule.create_shift_pattern(session, actor, body)


@router.get("/shift-patterns", response_model=Page[ShiftPatternOut], operation_id="list_shift_patterns")
async def list_shift_patterns(store_id: UUID | None = STORE, staff_id: UUID | None = Query(None),
                              active: bool | None = ACTIVE, params: PageParams = Depends(page_params),
                              session: AsyncSession = Depends(get_db),
                              actor: Actor = require(READ)) -> Page[ShiftPatternOut]:
    items, cursor = await schedule.list_shift_patterns(session, actor, params, store_id=store_id,
                                                       staff_id=staff_id, active=active)
    return Page(items=items, next_cursor=cursor)


@router.get("/shift-patterns/{pattern_id}", response_model=ShiftPatternOut, operation_id="get_shift_pattern")
async def get_shift_pattern(pattern_id: UUID, session: AsyncSession = Depends(get_db),
                            actor: Actor = require(READ)) -> ShiftPatternOut:
    return await schedule.get_shift_pattern(session, actor, pattern_id)


@router.patch("/shift-patterns/{pattern_id}", response_model=ShiftPatternOut, operation_id="update_shift_pattern")
async def update_shift_pattern(pattern_id: UUID, body: ShiftPatternUpdate, session: AsyncSession = Depends(get_db),
                               actor: Actor = require(WRITE)) -> ShiftPatternOut:
    """End the pattern (`valid_until`) or switch it off (`active: false`). To change its times, end it and
    start a new one, so past weeks keep the times they had."""
    return await schedule.update_shift_pattern(session, actor, pattern_id, body)


@router.post("/shift-patterns/{pattern_id}/exceptions", status_code=201, response_model=ShiftExceptionOut,
             operation_id="add_shift_exception",
             responses={409: {"description": "The day is already skipped (`shift_exception_exists`)"}})
async def add_shift_exception(pattern_id: UUID, body: ShiftExceptionCreate, session: AsyncSession = Depends(get_db),
                              actor: Actor = require(WRITE)) -> ShiftExceptionOut:
    """Skip the pattern on one store-local day (the day its shift starts); a single shift may replace it."""
    return ShiftExceptionOut.model_validate(await schedule.add_shift_exception(session, actor, pattern_id, body))


@router.delete("/shift-patterns/{pattern_id}/exceptions/{day}", status_code=204,
               operation_id="remove_shift_exception")
async def remove_shift_exception(pattern_id: UUID, day: str = DAY, session: AsyncSession = Depends(get_db),
                                 actor: Actor = require(WRITE)) -> Response:
    """Work the pattern's shift on this day after all."""
    await schedule.remove_shift_exception(session, actor, pattern_id, day)
    return Response(status_code=204)


# ---------------------------------------------------------------- time off


@router.post("/time-off", status_code=201, response_model=TimeOffOut, operation_id="create_time_off")
async def create_time_off(body: TimeOffCreate, session: AsyncSession = Depends(get_db),
                          actor: Actor = require(WRITE)) -> TimeOffOut:
    """Leave or a break: the staff member cannot be booked in the span, whatever their shifts say.
    Appointments already booked in it stay and are for the front desk to move."""
    return TimeOffOut.model_validate(await schedule.create_time_off(session, actor, body))


@router.get("/time-off", response_model=Page[TimeOffOut], operation_id="list_time_off")
async def list_time_off(staff_id: UUID | None = Query(None, description="Default: staff of the stores you act in"),
                        from_: AwareDatetime | None = FROM, to: AwareDatetime | None = TO,
                        params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                        actor: Actor = require(READ)) -> Page[TimeOffOut]:
    rows, cursor = await schedule.list_time_off(session, actor, params, staff_id=staff_id, start=from_, end=to)
    return Page(items=[TimeOffOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.delete("/time-off/{time_off_id}", status_code=204, operation_id="delete_time_off")
async def delete_time_off(time_off_id: UUID, session: AsyncSession = Depends(get_db),
                          actor: Actor = require(WRITE)) -> Response:
    await schedule.delete_time_off(session, actor, time_off_id)
    return Response(status_code=204)


# ---------------------------------------------------------------- store hours and closed days


@router.get("/stores/{store_id}/hours", response_model=StoreHoursOut, operation_id="get_store_hours")
async def get_store_hours(store_id: UUID, session: AsyncSession = Depends(get_db),
                          actor: Actor = require(READ)) -> StoreHoursOut:
    """The weekly opening hours in the store's local time (and the store's time zone)."""
    return await schedule.get_store_hours(session, actor, store_id)


@router.put("/stores/{store_id}/hours", response_model=StoreHoursOut, operation_id="set_store_hours")
async def set_store_hours(store_id: UUID, body: StoreHoursSet, session: AsyncSession = Depends(get_db),
                          actor: Actor = require(WRITE)) -> StoreHoursOut:
    """Replace the whole week. Several ranges a day are allowed (a lunch break); ranges may not overlap,
    also across midnight (Monday 22:00–02:00 and Tuesday 01:00–… overlap)."""
    return await schedule.set_store_hours(session, actor, store_id, body)


@router.post("/stores/{store_id}/closures", status_code=201, response_model=ClosureOut,
             operation_id="add_store_closure",
             responses={409: {"description": "The store is already closed that day (`store_closure_exists`)"}})
async def add_store_closure(store_id: UUID, body: ClosureCreate, session: AsyncSession = Depends(get_db),
                            actor: Actor = require(WRITE)) -> ClosureOut:
    """Close the store for one local day (a holiday, renovation). Appointments already booked that day stay
    and are for the front desk to move."""
    return ClosureOut.model_validate(await schedule.add_closure(session, actor, store_id, body))


@router.get("/stores/{store_id}/closures", response_model=Page[ClosureOut], operation_id="list_store_closures")
async def list_store_closures(store_id: UUID, from_: date | None = Query(None, alias="from",
                                                                         description="First day, inclusive"),
                              to: date | None = Query(None, description="Last day, inclusive"),
                              params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                              actor: Actor = require(READ)) -> Page[ClosureOut]:
    rows, cursor = await schedule.list_closures(session, actor, store_id, params, start=from_, end=to)
    return Page(items=[ClosureOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.delete("/stores/{store_id}/closures/{day}", status_code=204, operation_id="remove_store_closure")
async def remove_store_closure(store_id: UUID, day: str = DAY, session: AsyncSession = Depends(get_db),
                               actor: Actor = require(WRITE)) -> Response:
    """Open the store on this day after all."""
    await schedule.remove_closure(session, actor, store_id, day)
    return Response(status_code=204)


# ---------------------------------------------------------------- booking policy


@router.get("/stores/{store_id}/booking-policy", response_model=BookingPolicyOut, operation_id="get_booking_policy")
async def get_booking_policy(store_id: UUID, session: AsyncSession = Depends(get_db),
                             actor: Actor = require(READ)) -> BookingPolicyOut:
    """The store's booking rules; the defaults (`is_default: true`) until one is set."""
    return await schedule.get_booking_policy(session, actor, store_id)


@router.put("/stores/{store_id}/booking-policy", response_model=BookingPolicyOut, operation_id="set_booking_policy")
async def set_booking_policy(store_id: UUID, body: BookingPolicySet, session: AsyncSession = Depends(get_db),
                             actor: Actor = require(WRITE)) -> BookingPolicyOut:
    """Replace the store's booking rules (every field). Fees are integer fen."""
    return await schedule.set_booking_policy(session, actor, store_id, body)
