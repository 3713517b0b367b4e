"""Availability: which slots a service can be booked in, and whether one given slot can be.

`find_slots` (what `GET /availability` offers) and `check_slot` (what booking re-checks inside its
transaction) load the same data the same way and ask the same engine (`slots.Engine`), so any slot
offered can be booked and any booking accepted was offered. The rules are in `slots`' docstring.

`check_slot` semantics (for the appointments service):

* `starts_at` must be aware; it is judged as an instant. Busy time is the active `appointment_holds`
  rows only (not appointment rows): holds are the single truth, and `ignore_appointment_ids` drops a
  rescheduled appointment's own holds.
* The span that must be free is [starts_at, blocked_until) = the service's duration plus its buffer,
  for the staff member and for every resource; booking writes its holds over exactly that span.
* Errors, first reason only, in this order:
  422 `in_the_past` (always, also for staff), 422 `too_soon` / `beyond_horizon` (only when
  `enforce_window`; staff consoles pass False — see `window_applies`), 409 `store_closed`,
  409 `outside_opening_hours` (the start is not in opening hours or service + buffer runs past closing),
  422 `not_on_slot_grid` (inside opening hours but not a grid start: the engine never offers it),
  409 `service_inactive`, 409 `staff_lacks_skill`, 409 `staff_off_shift` (incl. time off),
  409 `staff_busy`, 409 `resource_unavailable` (with `requirement` index and `kind`).
  With `staff_id=None` the staff reasons are those of the most available candidate: `staff_busy` when
  someone skilled is on shift but busy, else `staff_off_shift`.
* `staff_id=None` picks the skilled staff member with the fewest bookings (staff holds) that local day,
  then the lowest id — the same one `find_slots` shows.
* `SlotChoice.resources[i]` are the free candidates for requirement i; taking the first of every list is
  a valid distinct assignment (the rest are fallbacks). A capacity > 1 resource is free while the
  number of active holds overlapping the span is below its capacity: count the same way under the
  resource row lock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, NotFound, Unprocessable
from app.domain.booking import slots as engine_rules
from app.domain.booking.models import BookingPolicy, Resource
from app.domain.booking.slots import (
    Candidate,
    Engine,
    Requirement,
    Span,
    Verdict,
    WeeklyShift,
    day_bounds,
    days_between,
    local_date,
    opening_ranges,
    to_utc,
    working_spans,
)
from app.domain.catalog import service as catalog
from app.domain.iam import service as iam
from app.domain.tenancy import service as tenancy

if TYPE_CHECKING:
    from app.domain.catalog.models import Service
    from app.domain.tenancy.models import Store

# A hold lasts one service plus its buffer (catalog caps: 1440 + 240 minutes), so holds that can reach
# into a window started at most this long before it; the bound lets the (bookable_no, starts_at)
# index do the work instead of scanning every past hold.
MAX_HOLD = timedelta(minutes=1440 + 240)
MAX_SHIFT = timedelta(hours=24)  # the shifts table's check constraint

CHECK_CODES = {
    engine_rules.STORE_CLOSED: "store_closed",
    engine_rules.OUTSIDE_HOURS: "outside_opening_hours",
    engine_rules.LACKS_SKILL: "staff_lacks_skill",
    engine_rules.OFF_SHIFT: "staff_off_shift",
    engine_rules.THERAPIST_BUSY: "staff_busy",
    engine_rules.ROOM_TAKEN: "resource_unavailable",
    engine_rules.RESOURCE_UNAVAILABLE: "resource_unavailable",
}
WINDOW_MESSAGES = {
    engine_rules.IN_THE_PAST: "the slot has already started",
    engine_rules.TOO_SOON: "the slot starts sooner than the store's booking lead time",
    engine_rules.BEYOND_HORIZON: "the slot is further ahead than the store's booking horizon",
}


@dataclass(frozen=True)
class SlotChoice:
    staff_id: UUID
    starts_at: datetime
    ends_at: datetime
    blocked_until: datetime
    resources: list[list[ResourceRow]]  # per requirement: free candidates, first ones a distinct assignment


def window_applies(actor: Actor) -> bool:
    """Lead time and horizon bind patients and integrations; staff at the console may book a walk-in
    now or far ahead. Nobody books the past."""
    return actor.kind != "staff"


# ---------------------------------------------------------------- loading

# The schedule tables are booking's own, so what one question needs of them is read in one statement whose
# columns are each one table's rows as an array of records: asyncpg decodes those natively (the same Python
# values the ORM returned), and no entity, identity map or further round trip is involved. Every subquery
# keeps its tenant filter (row-level security is on as well). An anonymous record cannot carry an array
# asyncpg has no codec for yet, hence a pattern's weekdays as text.
#
# Both statements name the staff asked about `asked_staff`; the working-time columns are shared.
_PATTERNS = """
    patterns AS (
        SELECT id, staff_id, array_to_string(weekdays, ',') AS weekdays, starts, ends, valid_from, valid_until
          FROM shift_patterns
         WHERE tenant_id = :tenant AND store_id = :store AND active AND staff_id IN (SELECT staff_id FROM asked_staff)
           AND valid_from <= :last_day AND (valid_until IS NULL OR valid_until >= :first_day)
    )"""
_WORKING_COLUMNS = """
    ARRAY(SELECT ROW(staff_id, starts_at, ends_at) FROM shifts
           WHERE tenant_id = :tenant AND store_id = :store AND staff_id IN (SELECT staff_id FROM asked_staff)
             AND starts_at < :window_end AND starts_at > :shifts_from AND ends_at > :window_start) AS shifts,
    ARRAY(SELECT ROW(id, staff_id, weekdays, starts, ends, valid_from, valid_until) FROM patterns) AS patterns,
    ARRAY(SELECT ROW(pattern_id, day) FROM shift_exceptions
           WHERE tenant_id = :tenant AND pattern_id IN (SELECT id FROM patterns)
             AND day BETWEEN :first_day AND :last_day) AS pattern_skips,
    ARRAY(SELECT ROW(staff_id, starts_at, ends_at) FROM time_off
           WHERE tenant_id = :tenant AND staff_id IN (SELECT staff_id FROM asked_staff)
             AND starts_at < :window_end AND ends_at > :window_start) AS time_off"""

_WORKING_TIME = text(f"""
    WITH asked_staff AS (SELECT unnest(CAST(:staff_ids AS uuid[])) AS staff_id), {_PATTERNS}
    SELECT {_WORKING_COLUMNS}
""")

# Staff: everyone skilled (or the one asked for, if skilled). Whether they are active is iam's to say, which
# takes its own query after this one; the working time and holds of skilled but deactivated staff read here
# (rarely any) are dropped then, so this stays one round trip. Holds likewise cover every active resource of
# the store, of which the service's candidates are picked in Python.
_SCHEDULE = text(f"""
    WITH asked_staff AS (
        SELECT staff_id FROM staff_skills
         WHERE tenant_id = :tenant AND service_id = :service
           AND (CAST(:staff_id AS uuid) IS NULL OR staff_id = CAST(:staff_id AS uuid))
    ), store_resources AS (
        SELECT id, created_at, kind, name, pool, capacity, bookable_no, updated_at
          FROM resources WHERE tenant_id = :tenant AND store_id = :store AND active
    ), {_PATTERNS}
    SELECT (SELECT ROW(slot_step_minutes, lead_time_minutes, horizon_days) FROM booking_policies
             WHERE tenant_id = :tenant AND store_id = :store) AS policy,
           ARRAY(SELECT ROW(weekday, opens, closes) FROM store_hours
                  WHERE tenant_id = :tenant AND store_id = :store) AS hours,
           ARRAY(SELECT ROW(day, reason) FROM store_closures
                  WHERE tenant_id = :tenant AND store_id = :store AND day BETWEEN :first_day AND :last_day) AS closures,
           ARRAY(SELECT staff_id FROM asked_staff) AS skilled,
           ARRAY(SELECT ROW(id, created_at, kind, name, pool, capacity, bookable_no, updated_at)
                   FROM store_resources ORDER BY name, id) AS resources,
           {_WORKING_COLUMNS},
           -- Through the bookable numbers, so the (bookable_no, starts_at) index finds the holds.
           ARRAY(SELECT ROW(kind, ref_id, starts_at, ends_at) FROM appointment_holds
                  WHERE bookable_no IN (SELECT bookable_no FROM bookables WHERE tenant_id = :tenant AND ref_id IN (
                            SELECT staff_id FROM asked_staff UNION ALL SELECT id FROM store_resources))
                    AND tenant_id = :tenant AND active
                    AND starts_at < :window_end AND starts_at > :holds_from AND ends_at > :window_start
                    -- A waitlist offer's holds have no appointment and are never a rescheduled one's own.
                    AND (appointment_id IS NULL OR appointment_id <> ALL(CAST(:ignore AS uuid[])))) AS holds
""")

# A store without a policy row books by the model's defaults (as `schedule.booking_policy` answers).
_DEFAULT_WINDOW = tuple(BookingPolicy.model_fields[name].default
                        for name in ("slot_step_minutes", "lead_time_minutes", "horizon_days"))


class ResourceRow(NamedTuple):
    """An active resource of the store as read (what a booking's holds need of it: no ORM entity)."""

    id: UUID
    created_at: datetime
    kind: str
    name: str
    pool: str | None
    capacity: int
    bookable_no: int
    updated_at: datetime | None


@dataclass
class Loaded:
    engine: Engine
    resource_rows: dict[UUID, ResourceRow]  # the store's active resources, by name then id
    tenant_id: UUID
    store_id: UUID
    lacks_skill: bool  # a requested staff member who may not perform the service
    open_weekdays: frozenset[int]  # ISO weekdays with opening hours (empty: none set)
    closures: dict[date, str | None]  # closure days near the asked ones, with their reasons


def requirement_candidates(requirement: dict, resources: Sequence[Resource | ResourceRow]) -> tuple[Candidate, ...]:
    """Any one of `resource_ids` (in that order), else of `pool`, else of `kind`, at the store."""
    if requirement.get("resource_ids"):
        by_id = {r.id: r for r in resources}
        picked = [by_id[UUID(str(i))] for i in requirement["resource_ids"] if UUID(str(i)) in by_id]
    else:
        pool = requirement.get("pool")
        picked = [r for r in resources if r.kind == requirement.get("kind") and (pool is None or r.pool == pool)]
    return tuple(Candidate(r.id, r.capacity) for r in picked)


def _window_params(store: Store, first: date, last: date) -> dict[str, Any]:
    """The bounds both statements read schedules within, for local days `first`..`last`: two days wider
    each side for overnight shifts and ranges, and further back by the longest shift or hold."""
    window_start, window_end = day_bounds(first - timedelta(days=2), last + timedelta(days=2), ZoneInfo(store.timezone))
    return {"store": store.id, "first_day": first - timedelta(days=2), "last_day": last + timedelta(days=2),
            "window_start": window_start, "window_end": window_end, "shifts_from": window_start - MAX_SHIFT,
            "holds_from": window_start - MAX_HOLD}


def _working_spans(row: Any, staff_ids: Sequence[UUID], *, tz: ZoneInfo, first: date,
                   last: date) -> dict[UUID, list[Span]]:
    """Each of `staff_ids`' working time from a statement's working-time columns (others in them are dropped)."""
    shifts: dict[UUID, list] = defaultdict(list)
    patterns: dict[UUID, list[WeeklyShift]] = defaultdict(list)
    time_off: dict[UUID, list] = defaultdict(list)
    skips: dict[UUID, set[date]] = defaultdict(set)
    for staff_id, starts_at, ends_at in row.shifts:
        shifts[staff_id].append((starts_at, ends_at))
    for pattern_id, day in row.pattern_skips:
        skips[pattern_id].add(day)
    for pattern_id, staff_id, weekdays, starts, ends, valid_from, valid_until in row.patterns:
        patterns[staff_id].append(WeeklyShift(staff_id, frozenset(int(d) for d in weekdays.split(",") if d), starts,
                                              ends, valid_from, valid_until, frozenset(skips[pattern_id])))
    for staff_id, starts_at, ends_at in row.time_off:
        time_off[staff_id].append((starts_at, ends_at))
    pattern_days = days_between(first - timedelta(days=2), last + timedelta(days=1))
    return {s: working_spans(shifts=shifts[s], patterns=patterns[s], time_off=time_off[s], days=pattern_days, tz=tz)
            for s in staff_ids}


async def working_time(session: AsyncSession, tenant_id: UUID, *, store: Store, staff_ids: list[UUID],
                       first: date, last: date) -> dict[UUID, list[Span]]:
    """Each staff member's working time at the store that can reach into local days `first`..`last`:
    single shifts and weekly pattern occurrences (overnight ones included), minus time off."""
    if not staff_ids:
        return {}
    row = (await session.execute(_WORKING_TIME, {"tenant": tenant_id, "staff_ids": list(staff_ids),
                                                 **_window_params(store, first, last)})).one()
    return _working_spans(row, staff_ids, tz=ZoneInfo(store.timezone), first=first, last=last)


async def load(session: AsyncSession, tenant_id: UUID, *, store: Store, service: Service, first: date,
               last: date, staff_id: UUID | None, now: datetime, enforce_window: bool,
               ignore_appointment_ids: frozenset[UUID] = frozenset()) -> Loaded:
    """Everything the engine needs to judge the grid starts of local days `first`..`last`, in two queries
    whatever the number of days, staff or slots: booking's own tables in one statement, then iam's answer
    which of the skilled staff are active."""
    tz = ZoneInfo(store.timezone)
    # Grid days start one early: a range opening the evening before may run past midnight into `first`.
    # Opening hours one later still, so a late slot can fit into a range that continues across midnight;
    # shifts and holds wider again for overnight shifts and long holds (see `_window_params`).
    row = (await session.execute(_SCHEDULE, {
        "tenant": tenant_id, "service": service.id, "staff_id": staff_id, "ignore": list(ignore_appointment_ids),
        **_window_params(store, first, last)})).one()
    step_minutes, lead_minutes, horizon_days = row.policy or _DEFAULT_WINDOW

    hours: dict[int, list] = defaultdict(list)
    for weekday, opens, closes in row.hours:
        hours[weekday].append((opens, closes))
    closures: dict[date, str | None] = dict(row.closures)
    closed = frozenset(closures) if store.active else frozenset(days_between(first - timedelta(days=2),
                                                                             last + timedelta(days=2)))

    # Deactivated staff keep their skills but take no bookings: one more query for the set, not one per person.
    staff_ids = sorted(await iam.active_staff_ids(session, tenant_id, set(row.skilled)))
    lacks_skill = staff_id is not None and not staff_ids
    working = _working_spans(row, staff_ids, tz=tz, first=first, last=last)

    resource_rows = {r[0]: ResourceRow(*r) for r in row.resources}
    store_resources = list(resource_rows.values())
    requirements = [Requirement(str(req.get("kind")), requirement_candidates(req, store_resources))
                    for req in service.resource_requirements or []]
    resource_ids = {c.id for r in requirements for c in r.candidates}

    staff_busy: dict[UUID, list] = defaultdict(list)
    resource_holds: dict[UUID, list] = defaultdict(list)
    staff_load: dict[tuple[UUID, date], int] = defaultdict(int)
    active_staff = set(staff_ids)
    for kind, ref_id, starts_at, ends_at in row.holds:
        if kind == "staff":
            if ref_id in active_staff:
                staff_busy[ref_id].append((starts_at, ends_at))
                staff_load[(ref_id, local_date(starts_at, tz))] += 1
        elif ref_id in resource_ids:
            resource_holds[ref_id].append((starts_at, ends_at))

    engine = Engine(
        tz=tz, now=now, duration_minutes=service.duration_minutes, buffer_minutes=service.buffer_minutes,
        step_minutes=step_minutes, lead_minutes=lead_minutes, horizon_days=horizon_days,
        opening=opening_ranges(days_between(first - timedelta(days=1), last + timedelta(days=1)), hours,
                               closed, tz),
        staff_ids=staff_ids, working=working, staff_busy=staff_busy, requirements=requirements,
        resource_holds=resource_holds, staff_load=staff_load, enforce_window=enforce_window)
    return Loaded(engine, resource_rows, tenant_id, store.id, lacks_skill, frozenset(hours), closures)


# ---------------------------------------------------------------- check one slot


def _conflict(verdict: Verdict, requirements) -> Conflict:
    reasons = set(verdict.reasons)
    if engine_rules.LACKS_SKILL in reasons:
        return Conflict("no bookable staff member may perform this service" if verdict.staff_id is None
                        else "this staff member may not perform this service", code="staff_lacks_skill")
    if engine_rules.THERAPIST_BUSY in reasons:
        return Conflict("the staff member is already booked at this time" if verdict.staff_id
                        else "every skilled staff member on shift is booked at this time", code="staff_busy")
    if engine_rules.OFF_SHIFT in reasons:
        return Conflict("the staff member is not on shift for the whole slot" if verdict.staff_id
                        else "no skilled staff member is on shift for the whole slot", code="staff_off_shift")
    index = verdict.failed_requirement if verdict.failed_requirement is not None else 0
    kind = requirements[index].kind if requirements else None
    return Conflict(f"no free {kind or 'resource'} for requirement {index} of the service",
                    code="resource_unavailable", requirement=index, kind=kind)


async def check_slot(session: AsyncSession, tenant_id: UUID, *, store: Store, service: Service,
                     staff_id: UUID | None, starts_at: datetime, now: datetime, enforce_window: bool = True,
                     ignore_appointment_ids: frozenset[UUID] = frozenset()) -> SlotChoice:
    """Whether the service can be booked at `starts_at` (with `staff_id`, or with anyone skilled), and
    with whom and which resources. Raises the first reason it cannot (see the module docstring)."""
    if starts_at.tzinfo is None or starts_at.utcoffset() is None:
        raise Unprocessable("starts_at: must carry a UTC offset", code="validation_error", title="Invalid request",
                            errors=[{"field": "starts_at", "message": "must carry a UTC offset",
                                     "type": "timezone_aware"}])
    tz = ZoneInfo(store.timezone)
    start = to_utc(starts_at)
    day = local_date(start, tz)
    loaded = await load(session, tenant_id, store=store, service=service, first=day, last=day,
                        staff_id=staff_id, now=now, enforce_window=enforce_window,
                        ignore_appointment_ids=ignore_appointment_ids)
    engine = loaded.engine
    if (why := engine.window_reason(start)) is not None:
        raise Unprocessable(WINDOW_MESSAGES[why], code=why)
    rng = engine.grid.get(start)
    if rng is None:
        containing = [r for r in engine.opening if r.start <= start < r.end]
        if any(not r.closed for r in containing):
            step = engine.step_minutes
            raise Unprocessable(f"slots start every {step} minutes from opening time", code="not_on_slot_grid",
                                step_minutes=step)
        if containing or day in {r.day for r in engine.opening if r.closed}:
            raise Conflict("the store is closed that day", code="store_closed")
        raise Conflict("the store is not open at this time", code="outside_opening_hours")
    if not service.active:
        raise Conflict("this service is no longer offered", code="service_inactive")
    verdict = engine.judge(start, staff_id, lacks_skill=loaded.lacks_skill)
    if verdict.reasons:
        first = verdict.reasons[0]
        if first in (engine_rules.STORE_CLOSED, engine_rules.OUTSIDE_HOURS):
            raise Conflict("the store is closed that day" if first == engine_rules.STORE_CLOSED
                           else "the service and its buffer do not fit in the opening hours",
                           code=CHECK_CODES[first])
        raise _conflict(verdict, engine.requirements)
    assert verdict.staff_id is not None
    return SlotChoice(staff_id=verdict.staff_id, starts_at=verdict.starts_at, ends_at=verdict.ends_at,
                      blocked_until=verdict.blocked_until,
                      resources=[[loaded.resource_rows[rid] for rid in ids] for ids in verdict.resources])


# ---------------------------------------------------------------- find slots

MAX_RANGE_DAYS = 14
# Days far from today are typing mistakes (1900, 2206), not questions: refused rather than answered empty.
OLDEST_DAY = timedelta(days=366)
FURTHEST_DAY = timedelta(days=2 * 366)


def _invalid(field: str, message: str, type_: str) -> Unprocessable:
    return Unprocessable(f"{field}: {message}", code="validation_error", title="Invalid request",
                         errors=[{"field": field, "message": message, "type": type_}])


def resolve_days(day: date | None, day_from: date | None, day_to: date | None, *, today: date) -> tuple[date, date]:
    """The local days a request asks about: `date`, or `from`..`to` (`to` defaults to `from`)."""
    if day is not None and (day_from is not None or day_to is not None):
        raise _invalid("date", "give either date or from/to, not both", "conflicting_parameters")
    if day is None and day_from is None:
        field = "from" if day_to is not None else "date"
        raise _invalid(field, "a day is required: date=YYYY-MM-DD or from=…&to=…", "missing")
    first = day if day is not None else day_from
    last = day if day is not None else (day_to or day_from)
    assert first is not None and last is not None
    for name, value in (("date" if day is not None else "from", first), ("to", last)):
        if not today - OLDEST_DAY <= value <= today + FURTHEST_DAY:
            raise _invalid(name, f"{value.isoformat()} is too far from today "
                                 f"({(today - OLDEST_DAY).isoformat()} to {(today + FURTHEST_DAY).isoformat()})",
                           "date_out_of_range")
    if last < first:
        raise _invalid("to", "must not be before from", "range_reversed")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise _invalid("to", f"a range covers at most {MAX_RANGE_DAYS} days", "range_too_long")
    return first, last


@dataclass(frozen=True)
class Slot:
    starts_at: datetime
    ends_at: datetime
    staff_id: UUID
    resource_ids: list[UUID]


@dataclass(frozen=True)
class UnavailableSlot:
    starts_at: datetime
    ends_at: datetime
    reasons: list[str]


@dataclass(frozen=True)
class UnavailableDay:
    """A day on which nothing at all can be offered, whoever works: the store or the service says no."""

    day: date
    reason: str
    message: str


@dataclass(frozen=True)
class Availability:
    slots: list[Slot]
    unavailable: list[UnavailableSlot] | None
    unavailable_days: list[UnavailableDay] | None = None


# Why a whole day has nothing to offer (explain=true), most basic first.
NO_OPENING_HOURS = "no_opening_hours"
CLOSED_WEEKDAY = "closed_weekday"
STORE_INACTIVE = "store_inactive"
SERVICE_INACTIVE = "service_inactive"
WEEKDAY_NAMES = ("", "Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays")


def _day_reason(day: date, store: Store, loaded: Loaded) -> UnavailableDay | None:
    """Why the store takes no bookings at all on `day`, or None when it is open then. Without this a store
    with no opening hours answered `slots: []` and `unavailable: []` (no grid, so no slot to explain)."""
    if not store.active:
        return UnavailableDay(day, STORE_INACTIVE, "the store is deactivated and takes no bookings")
    if day in loaded.closures:
        reason = loaded.closures[day]
        return UnavailableDay(day, engine_rules.STORE_CLOSED,
                              "the store is closed on this day" + (f" ({reason})" if reason else ""))
    if not loaded.open_weekdays:
        return UnavailableDay(day, NO_OPENING_HOURS, "the store has no opening hours set")
    if day.isoweekday() not in loaded.open_weekdays:
        return UnavailableDay(day, CLOSED_WEEKDAY,
                              f"the store has no opening hours on {WEEKDAY_NAMES[day.isoweekday()]}")
    return None


async def find_slots(session: AsyncSession, actor: Actor, *, store_id: UUID, service_id: UUID, day_from: date,
                     day_to: date, staff_id: UUID | None = None, explain: bool = False,
                     now: datetime | None = None) -> Availability:
    """Bookable slots of the service at the store on local days `day_from`..`day_to` (one per start: with
    `staff_id` for that staff member, else the one `check_slot` would pick). `explain` adds every other
    grid start with its reasons. Range limits are the caller's (the router's) to check."""
    if actor.kind in ("staff", "integration"):
        actor.require("appointments:read")
        actor.require_store(store_id)
    store = await tenancy.store_row(session, actor.tenant_id, store_id)
    if store is None:
        raise NotFound("store not found", code="store_not_found")
    service = await catalog.service_row(session, actor.tenant_id, service_id)
    if service is None:
        raise NotFound("service not found", code="service_not_found")
    if staff_id is not None and await iam.staff_row(session, actor.tenant_id, staff_id) is None:
        raise NotFound("staff member not found", code="staff_not_found")
    days = days_between(day_from, day_to)
    if not service.active:
        return Availability([], [] if explain else None, [
            UnavailableDay(day, SERVICE_INACTIVE, "this service is no longer offered") for day in days]
            if explain else None)
    loaded = await load(session, actor.tenant_id, store=store, service=service, first=day_from, last=day_to,
                        staff_id=staff_id, now=now or utcnow(), enforce_window=window_applies(actor))
    tz = ZoneInfo(store.timezone)
    slots, unavailable = [], []
    for verdict in loaded.engine.slots(days, staff_id, lacks_skill=loaded.lacks_skill):
        if verdict.bookable:
            assert verdict.staff_id is not None
            slots.append(Slot(verdict.starts_at.astimezone(tz), verdict.ends_at.astimezone(tz), verdict.staff_id,
                              [ids[0] for ids in verdict.resources]))
        elif explain:
            unavailable.append(UnavailableSlot(verdict.starts_at.astimezone(tz), verdict.ends_at.astimezone(tz),
                                               list(verdict.reasons)))
    if not explain:
        return Availability(slots, None)
    closed_days = [why for day in days if (why := _day_reason(day, store, loaded)) is not None]
    return Availability(slots, unavailable, closed_days)
