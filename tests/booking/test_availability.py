"""Availability: the pure engine (edges, buffers, overnight, DST, closures, time off, capacity), a
property-based comparison against a minute-by-minute oracle, `check_slot` agreeing with `find_slots`
on a real database, and `GET /availability` over HTTP.

Schedules are inserted as rows in a tenant-scoped session: the schedule API is built in parallel.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from app.core.actor import Actor
from app.core.errors import Conflict, Unprocessable
from app.domain.booking import slots as rules
from app.domain.booking.availability import check_slot, find_slots, resolve_days
from app.domain.booking.bookables import bookable_no
from app.domain.booking.models import (
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
from app.domain.booking.slots import Candidate, Engine, Requirement, WeeklyShift
from app.domain.catalog.models import Service
from app.domain.tenancy.models import Store
from tests.cards.helpers import assert_problem, in_tenant, make_member
from tests.factories import TenantKit, new_tenant
from tests.members.helpers import patient_token

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
DAY = date(2030, 3, 4)  # a Monday
LONG_AGO = datetime(2030, 1, 1, tzinfo=UTC)  # "now" for engine tests: before every day they use
EVERY_DAY = range(1, 8)


# ---------------------------------------------------------------- engine builders


def at(day: date, hh: int, mm: int = 0, tz: ZoneInfo = SHANGHAI, fold: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm)).replace(tzinfo=tz, fold=fold)


def engine(*, tz: ZoneInfo = SHANGHAI, day: date = DAY, hours: tuple[time, time] = (time(9), time(18)),
           closures: frozenset[date] = frozenset(), working: dict[UUID, list] | None = None,
           busy: dict[UUID, list] | None = None, duration: int = 60, buffer: int = 0, step: int = 15,
           lead: int = 30, horizon: int = 365, now: datetime = LONG_AGO, requirements: list[Requirement] = (),
           holds: dict[UUID, list] | None = None, load: dict | None = None, enforce_window: bool = True,
           days_after: int = 1) -> Engine:
    days = rules.days_between(day - timedelta(days=1), day + timedelta(days=days_after))
    working = working or {}
    return Engine(tz=tz, now=now, duration_minutes=duration, buffer_minutes=buffer, step_minutes=step,
                  lead_minutes=lead, horizon_days=horizon,
                  opening=rules.opening_ranges(days, {w: [hours] for w in EVERY_DAY}, closures, tz),
                  staff_ids=sorted(working), working={s: rules.merge(w) for s, w in working.items()},
                  staff_busy=busy or {}, requirements=list(requirements), resource_holds=holds or {},
                  staff_load=load or {}, enforce_window=enforce_window)


def offered(e: Engine, day: date = DAY, staff_id: UUID | None = None, tz: ZoneInfo = SHANGHAI) -> list[str]:
    return [v.starts_at.astimezone(tz).strftime("%H:%M") for v in e.slots([day], staff_id) if v.bookable]


def reasons_at(e: Engine, start: datetime, staff_id: UUID | None = None) -> tuple[str, ...]:
    return e.judge(start, staff_id).reasons


A, B = UUID(int=1), UUID(int=2)
ROOM1, ROOM2 = UUID(int=101), UUID(int=102)


# ---------------------------------------------------------------- engine: edges and buffers


def test_a_60_minute_service_in_a_one_hour_shift_has_exactly_one_slot():
    e = engine(working={A: [(at(DAY, 9), at(DAY, 10))]})
    assert offered(e) == ["09:00"]
    assert reasons_at(e, at(DAY, 9, 15)) == (rules.OFF_SHIFT,)


def test_slots_start_on_the_grid_from_opening_time_and_end_by_closing():
    e = engine(hours=(time(9, 10), time(11)), working={A: [(at(DAY, 0), at(DAY, 23))]}, step=20)
    assert offered(e) == ["09:10", "09:30", "09:50"]  # 10:10 would end at 11:10
    assert reasons_at(e, at(DAY, 10, 10)) == (rules.OUTSIDE_HOURS,)


def test_the_buffer_must_be_free_and_inside_the_shift():
    # Booked 10:00–11:00 (hold to 11:00); the new service is 60 min + 30 min cleaning.
    e = engine(working={A: [(at(DAY, 9), at(DAY, 13))]}, busy={A: [(at(DAY, 10), at(DAY, 11))]}, buffer=30)
    assert offered(e) == ["11:00", "11:15", "11:30"]  # 11:30 + 90 min = 13:00, the end of the shift
    assert reasons_at(e, at(DAY, 9)) == (rules.THERAPIST_BUSY,)  # its buffer runs into 10:00
    assert reasons_at(e, at(DAY, 11, 45)) == (rules.OFF_SHIFT,)


def test_back_to_back_is_allowed_half_open_intervals():
    e = engine(working={A: [(at(DAY, 9), at(DAY, 12))]}, busy={A: [(at(DAY, 10), at(DAY, 11))]}, step=60)
    assert offered(e) == ["09:00", "11:00"]


def test_touching_shifts_form_one_working_interval():
    e = engine(working={A: [(at(DAY, 9), at(DAY, 10)), (at(DAY, 10), at(DAY, 11))]}, step=30)
    assert offered(e) == ["09:00", "09:30", "10:00"]


def test_time_off_cuts_the_working_time():
    work = rules.working_spans(shifts=[(at(DAY, 9), at(DAY, 18))], patterns=[],
                               time_off=[(at(DAY, 12), at(DAY, 13))], days=[DAY], tz=SHANGHAI)
    e = engine(working={A: work}, step=30, hours=(time(9), time(15)))
    assert offered(e) == ["09:00", "09:30", "10:00", "10:30", "11:00", "13:00", "13:30", "14:00"]


def test_weekly_pattern_with_an_exception_and_validity():
    pattern = WeeklyShift(A, frozenset({1, 3}), time(9), time(11), valid_from=DAY, valid_until=DAY + timedelta(days=9),
                          skip_days=frozenset({DAY + timedelta(days=2)}))
    days = rules.days_between(DAY - timedelta(days=7), DAY + timedelta(days=14))
    spans = rules.working_spans(shifts=[], patterns=[pattern], time_off=[], days=days, tz=SHANGHAI)
    # Monday 4th, (Wednesday 6th skipped), Monday 11th, Wednesday 13th; Monday 18th is past valid_until.
    assert [s.astimezone(SHANGHAI).date().day for s, _ in spans] == [4, 11, 13]


def test_store_closure_closes_the_whole_day():
    e = engine(working={A: [(at(DAY, 0), at(DAY, 23))]}, closures=frozenset({DAY}))
    verdicts = e.slots([DAY])
    assert verdicts and all(v.reasons == (rules.STORE_CLOSED,) for v in verdicts)


# ---------------------------------------------------------------- engine: overnight and DST


def test_overnight_hours_and_shift_belong_to_the_day_they_start():
    pattern = WeeklyShift(A, frozenset(EVERY_DAY), time(22), time(2), valid_from=DAY - timedelta(days=30))
    days = rules.days_between(DAY - timedelta(days=2), DAY + timedelta(days=2))
    work = rules.working_spans(shifts=[], patterns=[pattern], time_off=[], days=days, tz=SHANGHAI)
    e = engine(hours=(time(22), time(2)), working={A: work}, step=30)
    assert offered(e, DAY) == ["22:00", "22:30", "23:00", "23:30", "00:00", "00:30", "01:00"]
    after_midnight = [v for v in e.slots([DAY]) if v.bookable][-1]
    assert after_midnight.starts_at.astimezone(SHANGHAI).date() == DAY + timedelta(days=1)
    assert after_midnight.day == DAY
    # The next day's list starts at its own 22:00: the 00:00–02:00 tail above is not listed again.
    assert offered(e, DAY + timedelta(days=1))[0] == "22:00"


def test_spring_forward_skips_the_missing_hour_new_york():
    sunday = date(2030, 3, 10)  # 02:00 → 03:00
    e = engine(tz=NEW_YORK, day=sunday, hours=(time(1), time(5)), step=30, duration=30,
               working={A: [(at(sunday, 0, tz=NEW_YORK), at(sunday, 12, tz=NEW_YORK))]})
    assert offered(e, sunday, tz=NEW_YORK) == ["01:00", "01:30", "03:00", "03:30", "04:00", "04:30"]
    starts = [v.starts_at for v in e.slots([sunday]) if v.bookable]
    assert starts[2] - starts[1] == timedelta(minutes=30)  # 01:30 EST → 03:00 EDT is half an hour


def test_spring_forward_berlin_and_elapsed_duration():
    sunday = date(2030, 3, 31)  # 02:00 → 03:00
    e = engine(tz=BERLIN, day=sunday, hours=(time(1), time(4)), step=60, duration=60,
               working={A: [(at(sunday, 0, tz=BERLIN), at(sunday, 12, tz=BERLIN))]})
    # 01:00 + 60 min = 03:00 CEST; 02:00 does not exist; 03:00 + 60 = 04:00.
    assert offered(e, sunday, tz=BERLIN) == ["01:00", "03:00"]


def test_fall_back_uses_the_first_occurrence_of_the_repeated_hour():
    sunday = date(2030, 11, 3)  # 02:00 EDT → 01:00 EST
    e = engine(tz=NEW_YORK, day=sunday, hours=(time(0), time(4)), step=60, duration=60,
               working={A: [(at(sunday, 0, tz=NEW_YORK), at(sunday, 12, tz=NEW_YORK))]})
    starts = [v.starts_at for v in e.slots([sunday]) if v.bookable]
    assert [s.astimezone(UTC).hour for s in starts] == [4, 5, 7, 8]  # 01:00 EDT only, not 01:00 EST
    # The range is 5 elapsed hours long; the second 01:00 (06:00Z) is not a grid start.
    assert datetime(2030, 11, 3, 6, tzinfo=UTC) not in e.grid


def test_shanghai_has_no_dst_surprises():
    e = engine(hours=(time(0), time(0)), working={A: [(at(DAY, 0), at(DAY + timedelta(days=1), 0))]},
               step=60, duration=60)
    assert len(offered(e)) == 24


# ---------------------------------------------------------------- engine: resources, staff choice, window


def test_capacity_counts_overlapping_holds():
    group_room = Requirement("room", (Candidate(ROOM1, capacity=2),))
    work = {A: [(at(DAY, 9), at(DAY, 18))]}
    one = engine(working=work, requirements=[group_room], holds={ROOM1: [(at(DAY, 10), at(DAY, 11))]}, step=60)
    assert "10:00" in offered(one)
    two = engine(working=work, requirements=[group_room], step=60,
                 holds={ROOM1: [(at(DAY, 10), at(DAY, 11)), (at(DAY, 10, 30), at(DAY, 11, 30))]})
    assert "10:00" not in offered(two) and "09:00" in offered(two)
    verdict = two.judge(at(DAY, 10))
    assert verdict.reasons == (rules.ROOM_TAKEN,) and verdict.failed_requirement == 0


def test_any_one_of_a_pool_and_distinct_resources_per_requirement():
    beds = (Candidate(ROOM1), Candidate(ROOM2))
    work = {A: [(at(DAY, 9), at(DAY, 18))]}
    two_beds = [Requirement("bed", beds), Requirement("bed", beds)]
    e = engine(working=work, requirements=two_beds, holds={ROOM1: [(at(DAY, 9), at(DAY, 10))]}, step=60)
    assert e.judge(at(DAY, 9)).reasons == (rules.RESOURCE_UNAVAILABLE,)  # only one bed free at 9
    free = e.judge(at(DAY, 10))
    assert free.bookable and {free.resources[0][0], free.resources[1][0]} == {ROOM1, ROOM2}
    one_bed = engine(working=work, requirements=[Requirement("bed", beds)],
                     holds={ROOM1: [(at(DAY, 9), at(DAY, 10))]}, step=60)
    assert one_bed.judge(at(DAY, 9)).resources == ((ROOM2,),)
    assert one_bed.judge(at(DAY, 10)).resources == ((ROOM1, ROOM2),)  # preference order kept


def test_any_staff_goes_to_the_least_booked_then_lowest_id():
    work = {A: [(at(DAY, 9), at(DAY, 18))], B: [(at(DAY, 9), at(DAY, 18))]}
    assert engine(working=work).judge(at(DAY, 9)).staff_id == A
    assert engine(working=work, load={(A, DAY): 2, (B, DAY): 1}).judge(at(DAY, 9)).staff_id == B
    busy = engine(working=work, busy={A: [(at(DAY, 9), at(DAY, 10))]})
    assert busy.judge(at(DAY, 9)).staff_id == B
    both = engine(working={A: work[A], B: [(at(DAY, 12), at(DAY, 18))]}, busy={A: [(at(DAY, 9), at(DAY, 10))]})
    assert set(both.judge(at(DAY, 9)).reasons) == {rules.OFF_SHIFT, rules.THERAPIST_BUSY}


def test_booking_window_lead_time_horizon_and_past():
    now = at(DAY, 10)
    work = {A: [(at(DAY - timedelta(days=1), 9), at(DAY + timedelta(days=3), 18))]}
    e = engine(working=work, now=now, lead=60, horizon=1, days_after=3)
    assert reasons_at(e, at(DAY, 9, 45)) == (rules.IN_THE_PAST,)
    assert reasons_at(e, at(DAY, 10, 45)) == (rules.TOO_SOON,)
    assert reasons_at(e, at(DAY, 11)) == ()
    assert reasons_at(e, at(DAY + timedelta(days=2), 9)) == (rules.BEYOND_HORIZON,)
    assert reasons_at(e, at(DAY + timedelta(days=1), 17)) == ()  # the horizon counts whole local days
    console = engine(working=work, now=now, lead=60, horizon=1, enforce_window=False, days_after=3)
    assert reasons_at(console, at(DAY, 10, 15)) == ()
    assert reasons_at(console, at(DAY + timedelta(days=2), 9)) == ()
    assert reasons_at(console, at(DAY, 9, 45)) == (rules.IN_THE_PAST,)


def test_resolve_days_refuses_nonsense():
    today = date(2026, 5, 1)
    assert resolve_days(None, today, today + timedelta(days=13), today=today) == (today, today + timedelta(days=13))
    assert resolve_days(today, None, None, today=today) == (today, today)
    for args, field in [((date(1900, 1, 1), None, None), "date"),
                        ((None, today, today + timedelta(days=5 * 365)), "to"),
                        ((None, today, today + timedelta(days=14)), "to"),
                        ((None, today, today - timedelta(days=1)), "to"),
                        ((None, None, None), "date"),
                        ((today, today, None), "date")]:
        with pytest.raises(Unprocessable) as caught:
            resolve_days(*args, today=today)
        assert caught.value.extra["errors"][0]["field"] == field


# ---------------------------------------------------------------- property: engine == minute oracle

ZONES = [SHANGHAI, NEW_YORK, BERLIN]
DAYS = [date(2030, 3, 10), date(2030, 11, 3), date(2030, 3, 31), date(2030, 10, 27), date(2030, 6, 5)]
MINUTE = timedelta(minutes=1)


def _minutes(start: datetime, end: datetime) -> set[int]:
    s, e = int(start.timestamp()) // 60, int(end.timestamp()) // 60
    return set(range(s, e))


@st.composite
def schedules(draw):
    tz = draw(st.sampled_from(ZONES))
    day = draw(st.sampled_from(DAYS))
    five = st.integers(0, 24 * 12).map(lambda n: n * 5)
    opens = draw(st.integers(0, 23 * 4).map(lambda n: time(n // 4, n % 4 * 15)))
    closes = draw(st.integers(0, 23 * 4).map(lambda n: time(n // 4, n % 4 * 15)))
    base = at(day, 0, tz=tz).astimezone(UTC) - timedelta(hours=6)  # shifts from 18:00 the day before

    def spans(count):
        out = []
        for _ in range(draw(st.integers(0, count))):
            start = base + timedelta(minutes=draw(five) * 2)
            out.append((start, start + timedelta(minutes=draw(st.integers(1, 60).map(lambda n: n * 10)))))
        return out

    staff = {A: spans(4), B: spans(4)}
    time_off = {A: spans(2), B: spans(2)}
    busy = {A: spans(4), B: spans(4)}
    capacity = draw(st.integers(1, 2))
    holds = {ROOM1: spans(4), ROOM2: spans(4)}
    requirement = draw(st.sampled_from(["none", "one", "both"]))
    return dict(tz=tz, day=day, opens=opens, closes=closes, staff=staff, time_off=time_off, busy=busy,
                capacity=capacity, holds=holds, requirement=requirement,
                duration=draw(st.integers(1, 12).map(lambda n: n * 10)), buffer=draw(st.sampled_from([0, 5, 15, 30])),
                step=draw(st.sampled_from([10, 15, 30, 60])), staff_id=draw(st.sampled_from([None, A, B])))


def _oracle_grid(s) -> list[datetime]:
    """Wall-clock starts of the day's one opening range, skipping times that do not exist."""
    tz, day = s["tz"], s["day"]
    naive = datetime.combine(day, s["opens"])
    end = datetime.combine(day + timedelta(days=1) if s["closes"] <= s["opens"] else day, s["closes"])
    out = []
    while naive < end:
        aware = naive.replace(tzinfo=tz)
        if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive:
            out.append(aware.astimezone(UTC))
        naive += timedelta(minutes=s["step"])
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_engine_offers_exactly_the_slots_a_minute_by_minute_oracle_allows(s):
    tz, day = s["tz"], s["day"]
    days = [day - timedelta(days=1), day, day + timedelta(days=1)]
    candidates = tuple(Candidate(r, s["capacity"]) for r in (ROOM1, ROOM2))
    requirements = {"none": [], "one": [Requirement("room", candidates)],
                    "both": [Requirement("room", candidates), Requirement("room", candidates)]}[s["requirement"]]
    working = {st_id: rules.working_spans(shifts=s["staff"][st_id], patterns=[], time_off=s["time_off"][st_id],
                                          days=days, tz=tz) for st_id in (A, B)}
    e = Engine(tz=tz, now=LONG_AGO, duration_minutes=s["duration"], buffer_minutes=s["buffer"],
               step_minutes=s["step"], lead_minutes=0, horizon_days=3650,
               opening=rules.opening_ranges(days, {w: [(s["opens"], s["closes"])] for w in EVERY_DAY},
                                            frozenset(), tz),
               staff_ids=[A, B], working=working, staff_busy=s["busy"], requirements=requirements,
               resource_holds=s["holds"])
    got = {v.starts_at: v for v in e.slots([day], s["staff_id"]) if v.bookable}

    open_minutes: set[int] = set()
    for d in days:
        naive = datetime.combine(d, s["opens"])
        end = datetime.combine(d + timedelta(days=1) if s["closes"] <= s["opens"] else d, s["closes"])
        open_minutes |= _minutes(naive.replace(tzinfo=tz), end.replace(tzinfo=tz))
    work = {st_id: set().union(*[_minutes(a, b) for a, b in s["staff"][st_id]])
            - set().union(*[_minutes(a, b) for a, b in s["time_off"][st_id]]) for st_id in (A, B)}

    def staff_ok(st_id, start, blocked):
        need = _minutes(start, blocked)
        return need <= work[st_id] and not any(a < blocked and start < b for a, b in s["busy"][st_id])

    def free_rooms(start, blocked):
        return [r for r in (ROOM1, ROOM2)
                if sum(1 for a, b in s["holds"][r] if a < blocked and start < b) < s["capacity"]]

    expected = set()
    for start in _oracle_grid(s):
        blocked = start + timedelta(minutes=s["duration"] + s["buffer"])
        if not _minutes(start, blocked) <= open_minutes:
            continue
        staff = [s["staff_id"]] if s["staff_id"] else [A, B]
        if not any(staff_ok(x, start, blocked) for x in staff):
            continue
        if len(free_rooms(start, blocked)) < len(requirements):
            continue
        expected.add(start)
    assert set(got) == expected
    for start, v in got.items():  # and what the engine chose is really free
        blocked = start + timedelta(minutes=s["duration"] + s["buffer"])
        assert v.blocked_until == blocked and staff_ok(v.staff_id, start, blocked)
        picks = [ids[0] for ids in v.resources]
        assert len(set(picks)) == len(picks) == len(requirements)
        assert set(picks) <= set(free_rooms(start, blocked))


# ---------------------------------------------------------------- database: setup helpers


@dataclass
class Setup:
    kit: TenantKit
    tenant_id: UUID
    store: Store
    service: Service
    therapists: list[dict]
    rooms: list[UUID]
    member: str
    day: date

    @property
    def actor(self) -> Actor:
        return Actor.system(self.tenant_id)


async def make_setup(client: httpx.AsyncClient, *, tz: str = "Asia/Shanghai", therapists: int = 2, rooms: int = 1,
                     buffer: int = 15) -> Setup:
    """A store open 09:00–18:00 every day, therapists skilled for a 60-minute massage needing a room,
    each on a weekly 09:00–17:00 pattern; the test day is 7 days ahead."""
    kit = await new_tenant(client)
    store_id = await kit.store(timezone=tz)
    staff = [await kit.staff(["therapist"], [store_id]) for _ in range(therapists)]
    tenant_id = UUID(kit.tenant_id)
    room_ids = [uuid.uuid4() for _ in range(rooms)]
    r = await kit.post("/services", {"name": "推拿", "duration_minutes": 60, "price": 19800, "buffer_minutes": buffer,
                                     "resource_requirements": [{"kind": "room"}]})
    assert r.status_code == 201, r.text
    service_id = UUID(r.json()["id"])
    day = datetime.now(ZoneInfo(tz)).date() + timedelta(days=7)
    async with in_tenant(tenant_id) as session:
        for w in EVERY_DAY:
            session.add(StoreHours(tenant_id=tenant_id, store_id=UUID(store_id), weekday=w, opens=time(9),
                                   closes=time(18)))
        for i, rid in enumerate(room_ids):
            session.add(Resource(id=rid, tenant_id=tenant_id, store_id=UUID(store_id), kind="room", name=f"房间{i}",
                                 bookable_no=await bookable_no(session, tenant_id, "resource", rid)))
        for s in staff:
            session.add(StaffSkill(tenant_id=tenant_id, staff_id=UUID(s["id"]), service_id=service_id))
            session.add(ShiftPattern(tenant_id=tenant_id, staff_id=UUID(s["id"]), store_id=UUID(store_id),
                                     weekdays=list(EVERY_DAY), starts=time(9), ends=time(17),
                                     valid_from=day - timedelta(days=30)))
        await session.flush()
        store = await session.get(Store, (tenant_id, UUID(store_id)))
        service = await session.get(Service, (tenant_id, service_id))
    member = await make_member(kit)
    return Setup(kit, tenant_id, store, service, staff, room_ids, member, day)


async def book(setup: Setup, staff_id: str, start: datetime, minutes: int = 60, room: UUID | None = None,
               shared: bool = False) -> UUID:
    """An active appointment with its holds, written as the appointments service will."""
    tenant_id = setup.tenant_id
    async with in_tenant(tenant_id) as session:
        appointment_id = uuid.uuid4()
        end = start + timedelta(minutes=minutes)
        blocked = end + timedelta(minutes=setup.service.buffer_minutes)
        session.add(Appointment(id=appointment_id, tenant_id=tenant_id, member_id=UUID(setup.member),
                                store_id=setup.store.id, service_id=setup.service.id, staff_id=UUID(staff_id),
                                visit_id=appointment_id, starts_at=start, ends_at=end, blocked_until=blocked,
                                booked_by_kind="staff"))
        await session.flush()
        things = [("staff", UUID(staff_id))] + ([("resource", room)] if room else [])
        for kind, ref in things:
            exclusive = not (shared and kind == "resource")  # a capacity > 1 room takes shared holds
            session.add(AppointmentHold(tenant_id=tenant_id, appointment_id=appointment_id, kind=kind, ref_id=ref,
                                        bookable_no=await bookable_no(session, tenant_id, kind, ref),
                                        starts_at=start, ends_at=blocked, exclusive=exclusive))
    return appointment_id


async def add_rows(setup: Setup, *rows: Any) -> None:
    async with in_tenant(setup.tenant_id) as session:
        for row in rows:
            session.add(row)


def local(setup: Setup, hh: int, mm: int = 0, day: date | None = None) -> datetime:
    return at(day or setup.day, hh, mm, tz=ZoneInfo(setup.store.timezone))


# ---------------------------------------------------------------- database: find_slots and check_slot agree


async def _check(setup: Setup, start: datetime, staff_id: str | None = None, **kw):
    async with in_tenant(setup.tenant_id) as session:
        return await check_slot(session, setup.tenant_id, store=setup.store, service=setup.service,
                                staff_id=UUID(staff_id) if staff_id else None, starts_at=start,
                                now=kw.pop("now", datetime.now(UTC)), **kw)


async def _find(setup: Setup, **kw):
    async with in_tenant(setup.tenant_id) as session:
        return await find_slots(session, setup.actor, store_id=setup.store.id, service_id=setup.service.id,
                                day_from=kw.pop("day_from", setup.day), day_to=kw.pop("day_to", setup.day), **kw)


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "America/New_York"])
async def test_every_offered_slot_checks_and_every_other_grid_start_is_refused(client, tz):
    setup = await make_setup(client, tz=tz, therapists=2, rooms=1)
    first, second = setup.therapists
    room = setup.rooms[0]
    await book(setup, first["id"], local(setup, 10), room=room)
    await book(setup, second["id"], local(setup, 13))
    await add_rows(setup, TimeOff(tenant_id=setup.tenant_id, staff_id=UUID(second["id"]), kind="break",
                                  starts_at=local(setup, 15), ends_at=local(setup, 16)))
    for staff_id in (None, first["id"], second["id"]):
        found = await _find(setup, staff_id=UUID(staff_id) if staff_id else None, explain=True)
        assert found.slots
        for slot in found.slots:
            choice = await _check(setup, slot.starts_at, staff_id, enforce_window=False)
            assert choice.staff_id == slot.staff_id and choice.starts_at == slot.starts_at
            assert [r[0].id for r in choice.resources] == slot.resource_ids
        for gone in found.unavailable:
            with pytest.raises((Conflict, Unprocessable)):
                await _check(setup, gone.starts_at, staff_id, enforce_window=False)
    # The room is held 10:00–11:15 (60 min + 15 min buffer): nobody can start 09:15 (needs to 10:30).
    assert local(setup, 9, 15) not in {s.starts_at for s in (await _find(setup)).slots}
    assert local(setup, 11, 15) in {s.starts_at for s in (await _find(setup)).slots}


async def test_check_slot_names_the_first_reason(client):
    setup = await make_setup(client, therapists=1, rooms=1)
    therapist = setup.therapists[0]["id"]
    appointment = await book(setup, therapist, local(setup, 10), room=setup.rooms[0])
    cases = [
        (local(setup, 10), Conflict, "staff_busy"),
        (local(setup, 10, 7), Unprocessable, "not_on_slot_grid"),
        (local(setup, 7), Conflict, "outside_opening_hours"),
        (local(setup, 17), Conflict, "outside_opening_hours"),  # 60 + 15 min runs past 18:00
        (local(setup, 16, 30), Conflict, "staff_off_shift"),  # the shift ends at 17:00
        (datetime.now(UTC) - timedelta(hours=1), Unprocessable, "in_the_past"),
    ]
    for start, error, code in cases:
        with pytest.raises(error) as caught:
            await _check(setup, start, therapist)
        assert caught.value.code == code, (start, caught.value.detail)
    # A reschedule ignores its own holds.
    choice = await _check(setup, local(setup, 10), therapist, ignore_appointment_ids=frozenset({appointment}))
    assert choice.resources[0][0].id == setup.rooms[0]
    assert choice.blocked_until - choice.starts_at == timedelta(minutes=75)
    # Someone else in the room: the therapist is free but the only room is not.
    other = await make_other_therapist(setup)
    with pytest.raises(Conflict) as caught:
        await _check(setup, local(setup, 10, 30), other)
    assert caught.value.code == "resource_unavailable" and caught.value.extra == {"requirement": 0, "kind": "room"}
    # Lead time and horizon bind when the window is enforced, not at the console.
    soon = datetime.now(UTC) + timedelta(minutes=5)
    with pytest.raises(Unprocessable) as caught:
        await _check(setup, soon, therapist)
    assert caught.value.code == "too_soon"
    far = local(setup, 10, day=setup.day + timedelta(days=60))
    with pytest.raises(Unprocessable) as caught:
        await _check(setup, far, therapist)
    assert caught.value.code == "beyond_horizon"
    # At the console the horizon does not bind (the weekly pattern has no end).
    assert (await _check(setup, far, therapist, enforce_window=False)).starts_at == far


async def make_other_therapist(setup: Setup) -> str:
    other = await setup.kit.staff(["therapist"], [str(setup.store.id)])
    await add_rows(setup,
                   StaffSkill(tenant_id=setup.tenant_id, staff_id=UUID(other["id"]), service_id=setup.service.id),
                   Shift(tenant_id=setup.tenant_id, staff_id=UUID(other["id"]), store_id=setup.store.id,
                         starts_at=local(setup, 9), ends_at=local(setup, 18)))
    return other["id"]


async def test_closures_exceptions_skills_and_policy(client):
    setup = await make_setup(client, therapists=1, rooms=1)
    therapist = setup.therapists[0]["id"]
    await add_rows(setup, StoreClosure(tenant_id=setup.tenant_id, store_id=setup.store.id, day=setup.day))
    with pytest.raises(Conflict) as caught:
        await _check(setup, local(setup, 10), therapist)
    assert caught.value.code == "store_closed"
    assert (await _find(setup)).slots == []

    next_day = setup.day + timedelta(days=1)
    async with in_tenant(setup.tenant_id) as session:
        pattern = (await session.exec(select(ShiftPattern).where(ShiftPattern.tenant_id == setup.tenant_id))).one()
        session.add(ShiftException(tenant_id=setup.tenant_id, pattern_id=pattern.id, day=next_day))
    with pytest.raises(Conflict) as caught:
        await _check(setup, local(setup, 10, day=next_day), therapist)
    assert caught.value.code == "staff_off_shift"

    unskilled = await setup.kit.staff(["therapist"], [str(setup.store.id)])
    with pytest.raises(Conflict) as caught:
        await _check(setup, local(setup, 10, day=setup.day + timedelta(days=2)), unskilled["id"])
    assert caught.value.code == "staff_lacks_skill"

    # A policy row changes the grid step.
    await add_rows(setup, BookingPolicy(tenant_id=setup.tenant_id, store_id=setup.store.id, slot_step_minutes=60))
    day3 = setup.day + timedelta(days=2)
    found = await _find(setup, day_from=day3, day_to=day3)
    assert [s.starts_at.strftime("%H:%M") for s in found.slots] == [f"{h:02d}:00" for h in range(9, 16)]


async def test_capacity_room_in_the_database(client):
    setup = await make_setup(client, therapists=3, rooms=0, buffer=0)
    group = uuid.uuid4()
    async with in_tenant(setup.tenant_id) as session:
        session.add(Resource(id=group, tenant_id=setup.tenant_id, store_id=setup.store.id, kind="room", name="团体室",
                             capacity=2, bookable_no=await bookable_no(session, setup.tenant_id, "resource", group)))
    first, second, third = (t["id"] for t in setup.therapists)
    await book(setup, first, local(setup, 10), room=group, shared=True)
    assert (await _check(setup, local(setup, 10), second)).resources[0][0].id == group
    await book(setup, second, local(setup, 10), room=group, shared=True)
    with pytest.raises(Conflict) as caught:
        await _check(setup, local(setup, 10), third)
    assert caught.value.code == "resource_unavailable"


# ---------------------------------------------------------------- HTTP


async def test_get_availability_for_staff_and_patients(client):
    setup = await make_setup(client, therapists=2, rooms=1)
    first = setup.therapists[0]
    await book(setup, first["id"], local(setup, 10), room=setup.rooms[0])
    params = {"store_id": str(setup.store.id), "service_id": str(setup.service.id), "date": setup.day.isoformat()}
    r = await setup.kit.get("/availability", token=first["token"], params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    starts = [s["starts_at"] for s in body["slots"]]
    # The only room is held 10:00–11:15 (60 min + 15 min buffer); a 09:00 slot's buffer would run into it.
    assert starts[0] == local(setup, 11, 15).isoformat() and "+08:00" in starts[0]
    assert set(body["slots"][0]) >= {"starts_at", "ends_at", "staff_id", "resource_ids"}
    assert body["slots"][0]["resource_ids"] == [str(setup.rooms[0])]
    assert body["unavailable"] is None

    r = await setup.kit.get("/availability", token=first["token"], params={**params, "explain": "true",
                                                                           "staff_id": first["id"]})
    reasons = {u["starts_at"]: u["reasons"] for u in r.json()["unavailable"]}
    assert reasons[local(setup, 10).isoformat()] == ["therapist_busy", "room_taken"]
    assert reasons[local(setup, 16, 15).isoformat()] == ["off_shift"]
    assert reasons[local(setup, 17).isoformat()] == ["outside_hours"]

    patient = patient_token(setup.kit, setup.member)
    r = await setup.kit.get("/availability", token=patient, params=params)
    assert r.status_code == 200 and r.json()["slots"], r.text
    assert_problem(await setup.kit.get("/availability", token=patient, params={**params, "explain": "true"}),
                   403, "explain_staff_only")

    week = {**params, "from": setup.day.isoformat(), "to": (setup.day + timedelta(days=6)).isoformat()}
    del week["date"]
    r = await setup.kit.get("/availability", token=first["token"], params=week)
    days = {s["starts_at"][:10] for s in r.json()["slots"]}
    assert len(days) == 7


async def test_patients_get_the_lead_time_staff_do_not(client):
    setup = await make_setup(client, therapists=1, rooms=1)
    await add_rows(setup, BookingPolicy(tenant_id=setup.tenant_id, store_id=setup.store.id, horizon_days=3))
    params = {"store_id": str(setup.store.id), "service_id": str(setup.service.id), "date": setup.day.isoformat()}
    patient = patient_token(setup.kit, setup.member)
    assert (await setup.kit.get("/availability", token=patient, params=params)).json()["slots"] == []
    staff = await setup.kit.get("/availability", token=setup.therapists[0]["token"], params=params)
    assert staff.json()["slots"]


@pytest.mark.parametrize(("query", "status", "field"), [
    ({"date": "1900-01-01"}, 422, "date"),
    ({"from": "2026-01-01", "to": "2031-01-01"}, 422, "to"),
    ({"date": "2026-02-30"}, 422, "date"),
    ({"from": "NOW"}, 422, "from"),
    ({}, 422, "date"),
    ({"to": "2026-01-01"}, 422, "from"),
    ({"date": "TODAY", "staff_id": "x"}, 422, None),
])
async def test_bad_input_is_a_4xx_naming_the_field(client, query, status, field):
    kit = await new_tenant(client)
    store = await kit.store()
    service = (await kit.post("/services", {"name": "推拿", "duration_minutes": 60, "price": 100})).json()["id"]
    r = await kit.get("/availability", params={"store_id": store, "service_id": service, **query})
    body = assert_problem(r, status, "validation_error")
    if field:
        assert body["errors"][0]["field"] == field, body


async def test_unknown_or_foreign_ids_and_permissions(client):
    setup = await make_setup(client, therapists=1, rooms=0)
    params = {"store_id": str(setup.store.id), "service_id": str(setup.service.id), "date": setup.day.isoformat()}
    assert_problem(await setup.kit.get("/availability", params={**params, "service_id": str(uuid.uuid4())}),
                   404, "service_not_found")
    other = await new_tenant(client)
    foreign_store = await other.store()
    assert_problem(await setup.kit.get("/availability", params={**params, "store_id": foreign_store}),
                   404, "store_not_found")
    assert_problem(await setup.kit.get("/availability", params={**params, "staff_id": str(uuid.uuid4())}),
                   404, "staff_not_found")
    elsewhere = await setup.kit.store("徐汇店")
    assert_problem(await setup.kit.get("/availability", token=setup.therapists[0]["token"],
                                       params={**params, "store_id": elsewhere}), 403, "store_forbidden")
    assert_problem(await client.get("/api/v1/availability", params=params), 401)
