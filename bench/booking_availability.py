"""Availability for one store: 20 therapists on weekly shifts, 10 rooms, 300 appointments in a week.

    python -m bench.booking_availability [--appointments 300] [--runs 50]

The schedule is written as rows (patterns, skills, resources, appointments with their holds) through
the ORM in a tenant-scoped session; then `find_slots` and `check_slot` run through the real code inside
a tenant-scoped transaction, as a request would (application role, row-level security).
"""

from __future__ import annotations

import argparse
import asyncio
import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.core.actor import Actor
from app.core.db import session_scope
from app.core.ids import new_id
from app.domain.booking.availability import check_slot, find_slots
from app.domain.booking.bookables import bookable_no
from app.domain.booking.models import (
    Appointment,
    AppointmentHold,
    Resource,
    ShiftPattern,
    StaffSkill,
    StoreHours,
)
from app.domain.catalog.models import Service
from app.domain.iam.models import Staff
from bench.common import bench_database, measure

THERAPISTS, ROOMS = 20, 10
TZ = ZoneInfo("Asia/Shanghai")


async def build(tenant_id, appointment_count: int, monday: date):
    """The store, the service, and `appointment_count` non-overlapping bookings in the week of `monday`."""
    from app.domain.members import service as members
    from app.domain.members.schemas import MemberCreate
    from app.domain.tenancy import service as tenancy
    from app.domain.tenancy.schemas import StoreCreate

    actor = Actor.system(tenant_id)
    rng = random.Random(5)
    async with session_scope(tenant_id) as session:
        store = await tenancy.create_store(session, actor, StoreCreate(name="静安店"))
        member = await members.create_member(session, actor, MemberCreate(name="张三", phone="13800000000"))
        service = Service(tenant_id=tenant_id, name="推拿", duration_minutes=60, buffer_minutes=15, price=19800,
                          resource_requirements=[{"kind": "room"}])
        session.add(service)
        for weekday in range(1, 8):
            session.add(StoreHours(tenant_id=tenant_id, store_id=store.id, weekday=weekday, opens=time(9),
                                   closes=time(21)))
        staff, rooms = [], []
        for i in range(THERAPISTS):
            person = Staff(tenant_id=tenant_id, username=f"therapist{i}", display_name=f"技师{i}")
            session.add(person)
            staff.append(person)
        await session.flush()
        for i, person in enumerate(staff):
            session.add(StaffSkill(tenant_id=tenant_id, staff_id=person.id, service_id=service.id))
            early = i % 2 == 0  # half work 09:00–18:00, half 12:00–21:00; five days a week each
            days = [d for d in range(1, 8) if (d + i) % 7 not in (0, 1)]
            session.add(ShiftPattern(tenant_id=tenant_id, staff_id=person.id, store_id=store.id, weekdays=days,
                                     starts=time(9) if early else time(12), ends=time(18) if early else time(21),
                                     valid_from=monday - timedelta(days=7)))
        for i in range(ROOMS):
            rid = new_id()
            session.add(Resource(id=rid, tenant_id=tenant_id, store_id=store.id, kind="room", name=f"房间{i}",
                                 bookable_no=await bookable_no(session, tenant_id, "resource", rid)))
            rooms.append(rid)
        numbers = {ref: await bookable_no(session, tenant_id, kind, ref)
                   for kind, refs in (("staff", [s.id for s in staff]), ("resource", rooms)) for ref in refs}
        taken: dict = {ref: [] for ref in numbers}
        made = 0
        while made < appointment_count:
            day = monday + timedelta(days=rng.randrange(7))
            start = datetime.combine(day, time(9)).replace(tzinfo=TZ) + timedelta(minutes=15 * rng.randrange(44))
            blocked = start + timedelta(minutes=75)
            who, room = rng.choice(staff).id, rng.choice(rooms)
            if any(a < blocked and start < b for ref in (who, room) for a, b in taken[ref]):
                continue
            appointment_id = new_id()
            session.add(Appointment(id=appointment_id, tenant_id=tenant_id, member_id=member.id, store_id=store.id,
                                    service_id=service.id, staff_id=who, visit_id=appointment_id, starts_at=start,
                                    ends_at=start + timedelta(minutes=60), blocked_until=blocked,
                                    booked_by_kind="staff"))
            await session.flush()
            for kind, ref in (("staff", who), ("resource", room)):
                session.add(AppointmentHold(tenant_id=tenant_id, appointment_id=appointment_id, kind=kind, ref_id=ref,
                                            bookable_no=numbers[ref], starts_at=start, ends_at=blocked))
                taken[ref].append((start, blocked))
            made += 1
    return store, service, staff


async def run(appointment_count: int = 300, runs: int = 50) -> list[dict]:
    from app.seed import create_tenant_with_owner

    print(f"availability, {THERAPISTS} therapists, {ROOMS} rooms, {appointment_count} appointments in a week")
    async with bench_database() as (_url, owner):
        tenant = await create_tenant_with_owner(code="bench", name="Bench", owner_username="owner",
                                                owner_password="bench-password")
        today = datetime.now(TZ).date()
        monday = today + timedelta(days=7 - today.weekday())
        store, service, staff = await build(tenant.id, appointment_count, monday)
        await owner.execute("ANALYZE")
        staff_actor = Actor(tenant_id=tenant.id, kind="staff", id=staff[0].id, store_ids=None,
                            permissions=frozenset({"appointments:read"}))
        patient_actor = Actor(tenant_id=tenant.id, kind="patient", id=new_id(), store_ids=None)
        wednesday = monday + timedelta(days=2)

        def find(actor, first, last, **kw):
            async def go():
                async with session_scope(tenant.id) as session:
                    return await find_slots(session, actor, store_id=store.id, service_id=service.id,
                                            day_from=first, day_to=last, **kw)
            return go

        async def one_check():
            async with session_scope(tenant.id) as session:
                found = await find_slots(session, staff_actor, store_id=store.id, service_id=service.id,
                                         day_from=wednesday, day_to=wednesday)
                start = found.slots[len(found.slots) // 2].starts_at
                return start

        start = await one_check()

        async def check():
            async with session_scope(tenant.id) as session:
                return await check_slot(session, tenant.id, store=store, service=service, staff_id=None,
                                        starts_at=start, now=datetime.now(UTC))

        sample = await find(staff_actor, monday, monday + timedelta(days=6), explain=True)()
        print(f"  week: {len(sample.slots)} bookable starts, {len(sample.unavailable or [])} unavailable")
        return [
            await measure("day, any therapist (patient)", find(patient_actor, wednesday, wednesday), runs),
            await measure("day, one therapist (staff)", find(staff_actor, wednesday, wednesday,
                                                             staff_id=staff[3].id), runs),
            await measure("day, any therapist, explain (staff)", find(staff_actor, wednesday, wednesday,
                                                                      explain=True), runs),
            await measure("week, any therapist (patient)", find(patient_actor, monday, monday + timedelta(days=6)),
                          runs),
            await measure("week, any therapist, explain (staff)", find(staff_actor, monday,
                                                                       monday + timedelta(days=6), explain=True), runs),
            await measure("check_slot, any therapist", check, runs),
        ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--appointments", type=int, default=300)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.appointments, args.runs))


if __name__ == "__main__":
    main()
