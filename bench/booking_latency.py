"""Booking latency under 50 concurrent clients: `POST /api/v1/appointments` through the whole app.

    python -m bench.booking_latency [--clients 50] [--requests 10]

One store open 08:00–22:00 with 20 therapists on shift every day, 10 rooms and a 60-minute 推拿 that
needs one room; each request is a real HTTP request against the ASGI app (token check, tenant-scoped
transaction as the application role, check_slot, the holds in savepoints, status history, audit and
outbox, commit), 50 in flight at once on the default pool (10 + 20 overflow connections), so the times
include waiting for a connection and for a competing booking's commit.

* alone:    one client, 100 bookings one after another (what one booking costs).
* spread:   every client books `--requests` times in a row, each time a random therapist and 15-minute
            grid start in the next 7 days (as a busy chain's front desks and mini-programs would);
            some collide and get 409.
* hot slot: all clients at once for one therapist and one start, ten rounds: one 201 each round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections import Counter
from datetime import date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from app.core.db import session_scope
from app.domain.booking.bookables import bookable_no
from app.domain.booking.models import Resource, ShiftPattern, StaffSkill, StoreHours
from app.domain.iam.models import Staff, StaffStore
from bench.common import bench_database

PASSWORD = "bench-password"
ZONE = ZoneInfo("Asia/Shanghai")
THERAPISTS, ROOMS, DAYS = 20, 10, 7


def redis_url() -> str:
    url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL")
    if url:
        return url
    from app.core.embedded import start_redis

    return start_redis(Path(os.environ.get("CARELOOP_DATA_DIR", ".data")) / "bench")


def summary(label: str, samples: list[float], outcomes: Counter) -> dict:
    samples = sorted(samples)
    result = {"label": label, "requests": len(samples), "p50_ms": round(statistics.median(samples), 1),
              "p95_ms": round(samples[max(0, int(len(samples) * 0.95) - 1)], 1), "max_ms": round(samples[-1], 1),
              "outcomes": dict(outcomes)}
    print(f"  {label:<34} {len(samples):>4} requests   p50 {result['p50_ms']:>7.1f} ms   "
          f"p95 {result['p95_ms']:>7.1f} ms   max {result['max_ms']:>7.1f} ms   "
          + "  ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
    return result


async def setup(client: httpx.AsyncClient, tenant_id, token: str, members: int) -> dict:
    auth = {"Authorization": f"Bearer {token}"}

    async def post(path: str, body: dict) -> str:
        r = await client.post(f"/api/v1{path}", json=body, headers=auth)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    store = uuid.UUID(await post("/stores", {"name": "静安店"}))
    service = uuid.UUID(await post("/services", {"name": "推拿", "duration_minutes": 60, "price": 19800,
                                                 "resource_requirements": [{"kind": "room"}]}))
    member_ids = [await post("/members", {"name": f"会员{i}", "phone": f"139{i:08d}"}) for i in range(members)]
    async with session_scope(tenant_id) as session:
        for weekday in range(1, 8):
            session.add(StoreHours(tenant_id=tenant_id, store_id=store, weekday=weekday, opens=clock(8),
                                   closes=clock(22)))
        staff = [Staff(tenant_id=tenant_id, username=f"t{i}", display_name=f"技师{i}") for i in range(THERAPISTS)]
        session.add_all(staff)
        await session.flush()
        for s in staff:
            session.add(StaffStore(tenant_id=tenant_id, staff_id=s.id, store_id=store))
            session.add(StaffSkill(tenant_id=tenant_id, staff_id=s.id, service_id=service))
            session.add(ShiftPattern(tenant_id=tenant_id, staff_id=s.id, store_id=store, weekdays=list(range(1, 8)),
                                     starts=clock(8), ends=clock(22), valid_from=date.today() - timedelta(days=1)))
            await bookable_no(session, tenant_id, "staff", s.id)
        for i in range(ROOMS):
            rid = uuid.uuid4()
            session.add(Resource(id=rid, tenant_id=tenant_id, store_id=store, kind="room", name=f"房间{i}",
                                 bookable_no=await bookable_no(session, tenant_id, "resource", rid)))
    return {"store": str(store), "service": str(service), "members": member_ids,
            "staff": [str(s.id) for s in staff]}


def grid_starts() -> list[datetime]:
    first = datetime.now(ZONE).date() + timedelta(days=1)
    return [datetime.combine(first + timedelta(days=d), clock(8)).replace(tzinfo=ZONE) + timedelta(minutes=15 * i)
            for d in range(DAYS) for i in range(4 * 13)]  # 08:00 … 20:45: a 60-minute service ends by 22:00


async def run(clients: int = 50, requests: int = 10) -> list[dict]:
    from app.core.redis import create_redis
    from app.core.settings import get_settings
    from app.main import create_app
    from app.seed import create_tenant_with_owner

    print(f"booking latency, {clients} concurrent clients")
    async with bench_database() as (url, _owner):
        app = create_app(get_settings(), database_url=url, redis_url=redis_url(), run_worker=False)
        app.state.redis = create_redis(redis_url())  # no lifespan: the engine is bench_database's
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            tenant = await create_tenant_with_owner(code="bench", name="Bench", owner_username="owner",
                                                    owner_password=PASSWORD)
            r = await client.post("/api/v1/auth/token", json={"tenant": "bench", "username": "owner",
                                                              "password": PASSWORD})
            auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
            shop = await setup(client, tenant.id, r.json()["access_token"], clients)
            starts = grid_starts()
            rng = random.Random(5)

            async def book(member: str, staff: str, start: datetime) -> tuple[float, str]:
                body = {"member_id": member, "store_id": shop["store"], "service_id": shop["service"],
                        "staff_id": staff, "starts_at": start.isoformat(), "channel": "front_desk"}
                began = time.perf_counter()
                r = await client.post("/api/v1/appointments", json=body, headers=auth)
                elapsed = (time.perf_counter() - began) * 1000
                assert r.status_code in (201, 409), r.text
                return elapsed, "booked" if r.status_code == 201 else r.json()["code"]

            # The cost of one booking with nobody else around, for scale (after one to warm caches and plans).
            quiet_day = starts[0].date() + timedelta(days=DAYS + 2)
            await book(shop["members"][0], shop["staff"][0], datetime.combine(quiet_day, clock(20), tzinfo=ZONE))
            alone = [await book(shop["members"][0], shop["staff"][i % ROOMS],
                                datetime.combine(quiet_day, clock(8 + i // ROOMS), tzinfo=ZONE)) for i in range(100)]
            results = [summary("one client, one at a time", [t for t, _ in alone], Counter(o for _, o in alone))]

            async def client_loop(i: int) -> list[tuple[float, str]]:
                out = []
                for _ in range(requests):
                    out.append(await book(shop["members"][i], rng.choice(shop["staff"]), rng.choice(starts)))
                return out

            spread = [x for xs in await asyncio.gather(*(client_loop(i) for i in range(clients))) for x in xs]
            results.append(summary(f"spread, {clients} clients", [t for t, _ in spread],
                                   Counter(o for _, o in spread)))

            hot: list[tuple[float, str]] = []
            for round_ in range(10):
                start = datetime.combine(starts[0].date() + timedelta(days=DAYS + 1), clock(9 + round_),
                                         tzinfo=ZONE)
                hot += await asyncio.gather(*(book(shop["members"][i], shop["staff"][0], start)
                                              for i in range(clients)))
            results.append(summary(f"hot slot, {clients} clients", [t for t, _ in hot],
                                   Counter(o for _, o in hot)))
        await app.state.redis.aclose()
        return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(run(args.clients, args.requests))


if __name__ == "__main__":
    main()
