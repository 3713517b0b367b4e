"""Builders for the appointment tests (and the generic bad-input test's booking rows).

A `Shop` is a tenant with a store open 08:00–22:00 every day, therapists on a weekly 08:00–22:00 pattern
and skilled for every service, rooms, a 60-minute 推拿 that needs a room, a 30-minute 问诊 that needs
nothing, and a member. Schedules are written as rows in a tenant-scoped session (as the schedule API
would), services and members through the API.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx

from app.core.security import decode_token
from app.domain.booking.bookables import bookable_no
from app.domain.booking.models import BookingPolicy, Resource, ShiftPattern, StaffSkill, StoreHours
from app.domain.iam.models import Staff, StaffStore
from tests.cards.helpers import in_tenant, make_member, owner_sql
from tests.factories import TenantKit, new_tenant

EVERY_DAY = list(range(1, 8))
OPENS, CLOSES = time(8), time(22)
MASSAGE_MINUTES, CONSULT_MINUTES = 60, 30


@dataclass
class Shop:
    kit: TenantKit
    tenant_id: UUID
    store: str
    tz: ZoneInfo
    therapists: list[str]  # staff ids (no sign-in: the owner or front desk books for them)
    rooms: list[str]
    massage: str  # 60 min, needs one room (any), `buffer` minutes of cleanup
    consult: str  # 30 min, needs nothing
    member: str
    day: date  # the store-local test day, a few days ahead
    extra: dict[str, Any] = field(default_factory=dict)

    def at(self, hh: int, mm: int = 0, day: date | None = None) -> datetime:
        return datetime.combine(day or self.day, time(hh, mm)).replace(tzinfo=self.tz)

    def iso(self, hh: int, mm: int = 0, day: date | None = None) -> str:
        return self.at(hh, mm, day).isoformat()

    def body(self, start: datetime | str, *, staff: str | None = "", service: str | None = None,
             member: str | None = None, **extra: Any) -> dict[str, Any]:
        """A booking body: the first therapist unless `staff` names one (None: any therapist)."""
        body = {"member_id": member or self.member, "store_id": self.store, "service_id": service or self.massage,
                "staff_id": self.therapists[0] if staff == "" else staff,
                "starts_at": start if isinstance(start, str) else start.isoformat(), **extra}
        return {k: v for k, v in body.items() if v is not None}

    async def book(self, start: datetime | str, *, token: str | None = None, **kw: Any) -> httpx.Response:
        return await self.kit.post("/appointments", self.body(start, **kw), token=token)

    async def booked(self, start: datetime | str, **kw: Any) -> dict:
        r = await self.book(start, **kw)
        assert r.status_code == 201, r.text
        return r.json()

    async def act(self, appointment_id: str, action: str, body: dict | None = None,
                  token: str | None = None) -> httpx.Response:
        return await self.kit.post(f"/appointments/{appointment_id}/{action}", body or {}, token=token)


async def add_therapists(tenant_id: UUID, store_id: str, count: int, service_ids: list[str]) -> list[str]:
    """Staff members who work in the store, are skilled for the services and on shift every day
    (rows written directly: making 50 sign-in accounts would only measure password hashing)."""
    ids = []
    async with in_tenant(tenant_id) as session:
        for _ in range(count):
            staff = Staff(tenant_id=tenant_id, username=f"t{uuid.uuid4().hex[:10]}", display_name="技师")
            session.add(staff)
            ids.append(staff.id)
        await session.flush()
        for staff_id in ids:
            session.add(StaffStore(tenant_id=tenant_id, staff_id=staff_id, store_id=UUID(store_id)))
        await session.flush()
    await schedule(tenant_id, store_id, [str(i) for i in ids], service_ids)
    return [str(i) for i in ids]


async def schedule(tenant_id: UUID, store_id: str, staff_ids: list[str], service_ids: list[str]) -> None:
    async with in_tenant(tenant_id) as session:
        for staff_id in staff_ids:
            for service_id in service_ids:
                session.add(StaffSkill(tenant_id=tenant_id, staff_id=UUID(staff_id), service_id=UUID(service_id)))
            session.add(ShiftPattern(tenant_id=tenant_id, staff_id=UUID(staff_id), store_id=UUID(store_id),
                                     weekdays=EVERY_DAY, starts=OPENS, ends=CLOSES,
                                     valid_from=date.today() - timedelta(days=30)))
            # The therapist's bookable number up front, as the schedule API does when it puts them on a
            # shift (the first booking would otherwise make it).
            await bookable_no(session, tenant_id, "staff", UUID(staff_id))


async def open_store(tenant_id: UUID, store_id: str) -> None:
    async with in_tenant(tenant_id) as session:
        for weekday in EVERY_DAY:
            session.add(StoreHours(tenant_id=tenant_id, store_id=UUID(store_id), weekday=weekday, opens=OPENS,
                                   closes=CLOSES))


async def add_rooms(tenant_id: UUID, store_id: str, count: int, *, capacity: int = 1, pool: str | None = None,
                    kind: str = "room") -> list[str]:
    ids = [uuid.uuid4() for _ in range(count)]
    async with in_tenant(tenant_id) as session:
        for rid in ids:
            session.add(Resource(id=rid, tenant_id=tenant_id, store_id=UUID(store_id), kind=kind,
                                 name=f"{kind}-{rid.hex[:6]}", pool=pool, capacity=capacity,
                                 bookable_no=await bookable_no(session, tenant_id, "resource", rid)))
    return [str(i) for i in ids]


async def set_policy(shop: Shop, **values: Any) -> None:
    async with in_tenant(shop.tenant_id) as session:
        policy = await session.get(BookingPolicy, (shop.tenant_id, UUID(shop.store)))
        policy = policy or BookingPolicy(tenant_id=shop.tenant_id, store_id=UUID(shop.store))
        for name, value in values.items():
            setattr(policy, name, value)
        session.add(policy)


async def make_service(kit: TenantKit, name: str, minutes: int, *, requirements: list[dict] | None = None,
                       buffer: int = 0, price: int = 19800) -> str:
    r = await kit.post("/services", {"name": name, "duration_minutes": minutes, "price": price,
                                     "buffer_minutes": buffer, "resource_requirements": requirements or []})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def make_shop(client: httpx.AsyncClient, *, therapists: int = 2, rooms: int = 1, capacity: int = 1,
                    buffer: int = 0, tz: str = "Asia/Shanghai", days_ahead: int = 3) -> Shop:
    kit = await new_tenant(client)
    tenant_id = UUID(kit.tenant_id)
    store = await kit.store(timezone=tz)
    massage = await make_service(kit, f"推拿{uuid.uuid4().hex[:4]}", MASSAGE_MINUTES,
                                 requirements=[{"kind": "room"}], buffer=buffer)
    consult = await make_service(kit, f"问诊{uuid.uuid4().hex[:4]}", CONSULT_MINUTES)
    await open_store(tenant_id, store)
    staff = await add_therapists(tenant_id, store, therapists, [massage, consult])
    room_ids = await add_rooms(tenant_id, store, rooms, capacity=capacity)
    member = await make_member(kit, "赵六")
    zone = ZoneInfo(tz)
    return Shop(kit, tenant_id, store, zone, staff, room_ids, massage, consult, member,
                datetime.now(zone).date() + timedelta(days=days_ahead))


async def holds_of(appointment_id: str) -> list[tuple[str, str, bool]]:
    """(kind, ref_id, active) of every hold of the appointment, oldest first."""
    rows = await owner_sql("SELECT kind, ref_id, active FROM appointment_holds WHERE appointment_id = :a "
                           "ORDER BY created_at, id", a=UUID(appointment_id))
    return [(k, str(r), a) for k, r, a in rows]


async def active_holds(tenant_id: UUID) -> int:
    rows = await owner_sql("SELECT count(*) FROM appointment_holds WHERE tenant_id = :t AND active", t=tenant_id)
    return rows[0][0]


# ---------------------------------------------------------------- for tests/platform/test_bad_input.py

_slot = itertools.count()


def tenant_of(kit: TenantKit) -> UUID:
    return UUID(kit.tenant_id or decode_token(kit.owner_token)["tid"])


async def bookable_setup(ctx: Any) -> str:
    """Make the bad-input test's store bookable: hours, a therapist on shift for a room-less service.
    Returns the service id (the test reads the rest from `ctx.made`)."""
    tenant_id = tenant_of(ctx.kit)
    service = await make_service(ctx.kit, f"问诊{uuid.uuid4().hex[:6]}", CONSULT_MINUTES)
    await open_store(tenant_id, ctx.store_id)
    staff = (await add_therapists(tenant_id, ctx.store_id, 1, [service]))[0]
    ctx.made["booking_staff_id"] = staff
    return service


def next_slot(zone: str = "Asia/Shanghai") -> str:
    """A free grid start for every request of a run: each valid booking body gets its own time."""
    n = next(_slot)
    day = datetime.now(ZoneInfo(zone)).date() + timedelta(days=2 + n // 24)
    start = datetime.combine(day, OPENS).replace(tzinfo=ZoneInfo(zone)) + timedelta(minutes=30 * (n % 24))
    return start.isoformat()


def booking_body(ctx: Any) -> dict[str, Any]:
    return {"member_id": ctx.member_id, "store_id": ctx.store_id, "service_id": ctx.made["booking_service_id"],
            "staff_id": ctx.made["booking_staff_id"], "starts_at": next_slot(), "channel": "phone",
            "notes": "颈椎不适，想约下午"}


async def appointment_target(ctx: Any) -> str:
    await ctx.target("booking_service_id")
    return await ctx.created("/appointments", booking_body(ctx))


def utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC)
