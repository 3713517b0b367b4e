"""CareLoop's hot endpoints over real HTTP, as ratios to a same-stack reference measured in the same run.

    python -m bench.http_ratios [--duration 10] [--warmup 3] [--connections 50] [--threads 2]
                                [--only stores,booking_spread] [--skip order] [--json out.json]
                                [--reference-driver asyncpg|sqlalchemy] [--owner-connection]
                                [--profile stores [--profile-format raw]]

One bench database (bench/common.py), migrated; one tenant seeded through the app's own services (a store
open 08:00–22:00 with 20 therapists on shift every day, 20 rooms, a 60-minute 推拿 that needs a room, a
front desk, 1,000 members — one with health fields — and stored-value cards with a balance). Then two
server processes, one uvicorn worker each:

* CareLoop: `careloop serve --no-migrate` (DATABASE_URL = the bench database, APP_DATABASE_URL = a non-owner
  login role as in production, its own Redis key prefix, EMBEDDED_WORKER=false, LOG_LEVEL=WARNING), with
  its default pool (10 + 20 overflow);
* the reference (bench/reference_app.py): the same stack at its floor, one indexed SELECT / one INSERT.

wrk drives each workload (bench/wrk/*.lua) with `--threads` threads and `--connections` connections: a
warm-up, then `--duration` seconds measured. Reads are compared with the read reference (the mean of its
runs at the start and at the end, which also shows how much the machine's load moved during the run),
writes with the write reference; bookings and orders by successful requests per second. Meanwhile the
database's sessions are sampled (waiting for CareLoop, or for which lock). After the hot slot, the database
is asked whether each round's slot has exactly one active appointment. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench.common import _pg_kwargs as pg_kwargs
from bench.common import bench_database

ROOT = Path(__file__).resolve().parents[1]
WRK_DIR = Path(__file__).resolve().parent / "wrk"
PASSWORD = "bench-password"
THERAPISTS, ROOMS = 20, 20  # a room per therapist: on the spread workload the rooms never run out first
PAYERS, SEARCH_MEMBERS = 50, 1000
PRICE = 19800
OPENS, CLOSES = 8, 22
STARTS_PER_DAY = 13  # 60-minute bookings an hour apart: 08:00 + offset … 20:45 at the latest, over by 21:45
# Members who book: a member holds one booking a day at most (see spread_slots), so concurrent bookings do
# not queue on one member's lock — as a busy chain's bookings come from different people.
BOOKERS = THERAPISTS * STARTS_PER_DAY
ACTIVE = ("booked", "checked_in")

# Store-local days after today: measured ranges and warm-up ranges never share a slot.
SPREAD_DAYS = range(1, 8)  # the next 7 days
SPREAD_WARMUP_DAYS = range(8, 10)
HOT_DAY, HOT_WARMUP_DAY = 10, 11
AVAILABILITY_DAY = 12  # with a few appointments booked at seeding
ROUND_SECONDS = 1


# ---------------------------------------------------------------- workloads


@dataclass
class Workload:
    name: str
    label: str
    kind: str  # "read" or "write" (which reference the ratio is to), or "reference"
    script: str
    ok: tuple[int, ...] = (200,)
    note: str = ""


WORKLOADS = [
    Workload("reference_read", "reference read  GET /read/{id}", "reference", "reference_read.lua"),
    Workload("healthz", "healthz  GET /healthz", "read", "get.lua"),
    Workload("stores", "GET /api/v1/stores (owner)", "read", "get.lua"),
    Workload("member_front_desk", "member 360, front desk (no health)", "read", "get.lua"),
    Workload("member_health", "member 360, owner (health, audited)", "read", "get.lua"),
    Workload("member_search", "member search q=张 (front desk)", "read", "get.lua",
             note=f"{SEARCH_MEMBERS:,} members, page of 50"),
    Workload("availability", "availability, one day, any therapist", "read", "get.lua",
             note=f"{THERAPISTS} therapists, {ROOMS} rooms"),
    Workload("reference_write", "reference write  POST /write", "reference", "reference_write.lua", ok=(201,)),
    Workload("booking_spread", "booking, spread  POST /appointments", "write", "booking_spread.lua", ok=(201,)),
    Workload("booking_hot", "booking, hot slot (1 winner a round)", "write", "booking_hot.lua", ok=(201,)),
    Workload("order", "order paid with stored value", "write", "order.lua", ok=(201,)),
    Workload("reference_read_end", "reference read, again at the end", "reference", "reference_read.lua"),
]
BY_NAME = {w.name: w for w in WORKLOADS}
SELECTABLE = [w.name for w in WORKLOADS if w.kind != "reference"]


@dataclass
class Shop:
    tenant_id: UUID
    store: UUID
    service: UUID
    zone: ZoneInfo
    today: date
    therapists: list[UUID]
    members: list[UUID]
    health_member: UUID
    payers: list[tuple[UUID, UUID]]  # (member, stored-value card)
    tokens: dict[str, str] = field(default_factory=dict)

    def day(self, offset: int) -> date:
        return self.today + timedelta(days=offset)

    def at(self, day: date, minutes: int) -> datetime:
        return datetime.combine(day, clock(0), self.zone) + timedelta(minutes=minutes)


@dataclass
class Result:
    workload: Workload
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]
    socket_errors: int
    non_2xx: int
    tallies: dict[str, int]
    checks: list[str] = field(default_factory=list)
    failed: bool = False
    db: str = ""  # what the database's sessions were doing meanwhile

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def ok_rps(self) -> float:
        if self.statuses:
            return sum(n for s, n in self.statuses.items() if s in self.workload.ok) / self.seconds
        return (self.requests - self.non_2xx) / self.seconds


# ---------------------------------------------------------------- seeding, through the app's services


def spread_slots(shop: Shop, days: range, rng: random.Random) -> list[list[str]]:
    """[staff, start, member]: every therapist on every day an hour apart from a quarter-hour offset that
    differs by therapist and day (so all four 15-minute grid positions are used), shuffled. Unique and
    conflict-free: a therapist's bookings never overlap, and neither do a member's (each member has one
    booking a day: a member may not hold two overlapping appointments, and takes a lock to book)."""
    slots = []
    for d in days:
        day = shop.day(d)
        for t, staff in enumerate(shop.therapists):
            offset = 15 * ((t + d) % 4)
            slots += [[str(staff), shop.at(day, OPENS * 60 + offset + 60 * k).isoformat(),
                       str(shop.members[(t * STARTS_PER_DAY + k) % len(shop.members)])]
                      for k in range(STARTS_PER_DAY)]
    rng.shuffle(slots)
    return slots


def hot_rounds(shop: Shop, day_offset: int) -> list[list[str]]:
    """Round r: one therapist, one start; 13 starts per therapist on the day, then the next therapist."""
    day = shop.day(day_offset)
    return [[str(staff), shop.at(day, (OPENS + k) * 60).isoformat()]
            for staff in shop.therapists for k in range(STARTS_PER_DAY)]


async def seed(tenant_id: UUID) -> Shop:
    from app.core.actor import Actor
    from app.core.context import RequestContext, reset_context, set_context
    from app.core.db import session_scope
    from app.domain.booking import appointments, schedule
    from app.domain.booking.schedule_schemas import (
        OpeningRange,
        ResourceCreate,
        ShiftPatternCreate,
        StaffSkillsSet,
        StoreHoursSet,
    )
    from app.domain.booking.schemas import AppointmentCreate
    from app.domain.cards import service as cards
    from app.domain.cards import templates as card_templates
    from app.domain.cards.schemas import CardTemplateCreate
    from app.domain.catalog import service as catalog
    from app.domain.catalog.schemas import ResourceRequirement, ServiceCreate
    from app.domain.iam import service as iam
    from app.domain.iam.schemas import StaffCreate
    from app.domain.members import service as members
    from app.domain.members.schemas import HealthFields, MemberCreate, NoteCreate
    from app.domain.tenancy import service as tenancy
    from app.domain.tenancy.schemas import StoreCreate
    from bench.members_search import GIVEN, SURNAMES

    actor = Actor.system(tenant_id)
    rng = random.Random(11)
    context = set_context(RequestContext(actor_type="system", actor_id="bench"))
    try:
        async with session_scope(tenant_id) as session:
            store = await tenancy.create_store(session, actor, StoreCreate(
                name="康悦堂·静安旗舰店", address="上海市静安区南京西路1266号3楼", phone="021-62881234"))
            await tenancy.create_store(session, actor, StoreCreate(name="康悦堂·徐汇店",
                                                                   address="上海市徐汇区漕溪北路88号2楼"))
            zone, today = tenancy.store_zone(store), tenancy.store_today(store)
            await schedule.set_store_hours(session, actor, store.id, StoreHoursSet(hours=[
                OpeningRange(weekday=d, opens=clock(OPENS), closes=clock(CLOSES)) for d in range(1, 8)]))
            service = await catalog.create_service(session, actor, ServiceCreate(
                name="推拿", category="推拿", duration_minutes=60, price=PRICE,
                resource_requirements=[ResourceRequirement(kind="room")]))
            for i in range(ROOMS):
                await schedule.create_resource(session, actor, ResourceCreate(store_id=store.id, kind="room",
                                                                              name=f"{i + 1}号房"))
            therapists = []
            for i in range(THERAPISTS):
                staff = await iam.create_staff(session, actor, StaffCreate(
                    username=f"therapist{i}", password=PASSWORD, display_name=f"技师{i}", roles=["therapist"],
                    store_ids=[store.id]))
                await schedule.set_staff_skills(session, actor, staff.id, StaffSkillsSet(service_ids=[service.id]))
                await schedule.create_shift_pattern(session, actor, ShiftPatternCreate(
                    staff_id=staff.id, store_id=store.id, weekdays=list(range(1, 8)), starts=clock(OPENS),
                    ends=clock(CLOSES), valid_from=today - timedelta(days=7)))
                therapists.append(staff.id)
            await iam.create_staff(session, actor, StaffCreate(
                username="frontdesk", password=PASSWORD, display_name="孙悦", roles=["front_desk"],
                store_ids=[store.id]))
            template = await card_templates.create_template(session, actor, CardTemplateCreate(
                name="储值卡 充1000送200", kind="stored_value", price=100000, face_value=100000, bonus=20000))

            health = await members.create_member(session, actor, MemberCreate(
                name="王芳", phone="13900000000", gender="female", birthday=date(1985, 3, 14),
                home_store_id=store.id, source_channel="老带新", tags=["颈椎病", "金卡会员"],
                health=HealthFields(allergy_history="青霉素过敏", past_history="高血压十年，服药控制",
                                    constitution=["气虚", "痰湿"], health_summary="肩颈僵硬，睡眠浅")))
            await members.add_note(session, actor, health.id, NoteCreate(body="对青霉素过敏；艾灸时注意温度。"))
            people = [health.id]
            for i in range(1, PAYERS):
                name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
                people.append((await members.create_member(session, actor, MemberCreate(
                    name=name, phone=f"139{i:08d}", home_store_id=store.id))).id)
            payers = []
            for member_id in people[:PAYERS]:
                card = await cards.issue_card(session, actor, member_id=member_id, template_id=template.id,
                                              store_id=store.id, price_paid=100000, reason="bench: opening balance",
                                              principal_override=100_000_000, bonus_override=0)
                payers.append((member_id, card.id))
        # The search population, in a few transactions of their own.
        for first in range(len(people), SEARCH_MEMBERS, 250):
            async with session_scope(tenant_id) as session:
                for i in range(first, min(first + 250, SEARCH_MEMBERS)):
                    name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
                    people.append((await members.create_member(session, actor, MemberCreate(
                        name=name, phone=f"138{i:08d}", home_store_id=store.id))).id)
        shop = Shop(tenant_id=tenant_id, store=store.id, service=service.id, zone=zone, today=today,
                    therapists=therapists, members=people[:BOOKERS], health_member=health.id, payers=payers)
        # The availability day already has three bookings per therapist, so the answer is not trivially empty.
        async with session_scope(tenant_id) as session:
            day = shop.day(AVAILABILITY_DAY)
            for t, staff_id in enumerate(therapists):
                for hour in (9, 13, 17):
                    await appointments.book(session, actor, AppointmentCreate(
                        member_id=people[t], store_id=store.id, service_id=service.id, staff_id=staff_id,
                        starts_at=shop.at(day, hour * 60 + 15 * (t % 4)), channel="phone"))
        return shop
    finally:
        reset_context(context)


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing Debian's package", flush=True)
        quiet = {"stdout": subprocess.DEVNULL, "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
        if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], **quiet).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], **quiet)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], **quiet)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench.http_ratios needs wrk (Debian: apt-get install wrk)")
    return found


class Server:
    """A server process we started, stopped by its own pid."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, ready_path: str) -> None:
        self.name, self.port, self.ready_path = name, port, ready_path
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        return Path(self.log.name).read_text(errors="replace")[-chars:]

    async def wait_ready(self, within: float = 90.0) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if (await client.get(self.ready_path)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.3)
        raise RuntimeError(f"{self.name} did not come up; its log:\n{self.log_tail()}")

    async def settle(self, path: str = "/healthz", quick: float = 0.5, within: float = 90.0) -> float:
        """Wait until the server answers `path` within `quick` seconds: requests that wrk left behind (it stops
        reading at the end of a run, the server does not stop working) must not weigh on the next workload."""
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=self.url, timeout=within) as client:
            while time.monotonic() - started < within:
                began = time.monotonic()
                try:
                    await client.get(path)
                except httpx.HTTPError:
                    pass
                if time.monotonic() - began < quick:
                    break
                await asyncio.sleep(0.5)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("APP_DATABASE_URL", "WEB_CONCURRENCY")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def careloop_argv(port: int) -> list[str]:
    # `careloop serve` through its own entry point (app.cli:main, what the console script calls), run from
    # this tree: the code served is the code beside this file, whichever checkout the venv was installed from.
    return [sys.executable, "-m", "app.cli", "serve", "--no-migrate", "--host", "127.0.0.1", "--port", str(port)]


async def drop_redis_keys(url: str, prefix: str) -> None:
    """What this run's CareLoop left in Redis (login attempt counters) under its private prefix."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        async for key in client.scan_iter(match=f"{prefix}:*"):
            await client.delete(key)
    finally:
        await client.aclose()


def error_summary(log_path: str, limit: int = 8) -> list[str]:
    """The server's error and warning log lines, counted by message (its logs are JSON lines)."""
    counts: dict[str, int] = {}
    for line in Path(log_path).read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("warning", "error", "critical"):
            exc = str(entry.get("exc") or "").strip().splitlines()
            key = f"{entry.get('level')}: {entry.get('msg')}" + (f" — {exc[-1][:160]}" if exc else "")
            counts[key] = counts.get(key, 0) + 1
    return [f"{n:>6} × {key}" for key, n in sorted(counts.items(), key=lambda kv: -kv[1])[:limit]]


# ---------------------------------------------------------------- wrk


def lua(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua(str(k))}] = {lua(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "{" + ", ".join(lua(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid Lua string literal here


async def run_wrk(wrk: str, script: str, url: str, data: dict, args: argparse.Namespace,
                  seconds: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-data-", delete=False) as f:
        f.write("return " + lua(data) + "\n")
    try:
        proc = await asyncio.create_subprocess_exec(
            wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--timeout", "30s",
            "-s", str(WRK_DIR / script), url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "BENCH_WRK_DATA": f.name, "BENCH_WRK_DIR": str(WRK_DIR)})
        out, err = await proc.communicate()
    finally:
        os.unlink(f.name)
    for line in out.decode().splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line.removeprefix("BENCH_RESULT "))
    raise RuntimeError(f"wrk gave no result (exit {proc.returncode}):\n{out.decode()}\n{err.decode()}")


def workload_data(w: Workload, shop: Shop, phase: str, rng: random.Random, args: argparse.Namespace) -> dict:
    data: dict[str, Any] = {"threads": args.threads, "phase": phase}
    owner, desk = shop.tokens["owner"], shop.tokens["frontdesk"]
    if w.name.startswith("reference_read"):
        return data | {"rows": 1000}
    if w.name == "reference_write":
        return data
    if w.name == "healthz":
        return data | {"path": "/healthz"}
    if w.name == "stores":
        return data | {"path": "/api/v1/stores", "token": owner}
    if w.name == "member_front_desk":
        return data | {"path": f"/api/v1/members/{shop.health_member}", "token": desk}
    if w.name == "member_health":
        return data | {"path": f"/api/v1/members/{shop.health_member}", "token": owner}
    if w.name == "member_search":
        return data | {"path": "/api/v1/members?q=%E5%BC%A0", "token": desk}  # q=张
    if w.name == "availability":
        return data | {"token": owner, "path": f"/api/v1/availability?store_id={shop.store}&service_id={shop.service}"
                                               f"&date={shop.day(AVAILABILITY_DAY).isoformat()}"}
    booking = data | {"token": owner, "store": str(shop.store), "service": str(shop.service),
                      "members": [str(m) for m in shop.members]}
    if w.name == "booking_spread":
        return booking | {"slots": spread_slots(shop, SPREAD_WARMUP_DAYS if phase == "warmup" else SPREAD_DAYS, rng)}
    if w.name == "booking_hot":
        return booking | {"rounds": hot_rounds(shop, HOT_WARMUP_DAY if phase == "warmup" else HOT_DAY),
                          "round_seconds": ROUND_SECONDS, "t0": int(time.time())}
    if w.name == "order":
        return data | {"token": desk, "store": str(shop.store), "service": str(shop.service), "price": PRICE,
                       "payers": [[str(m), str(c)] for m, c in shop.payers]}
    raise ValueError(w.name)


def to_result(w: Workload, raw: dict) -> Result:
    errors = raw["errors"]
    return Result(
        workload=w, requests=int(raw["requests"]), seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["latency_us"]["p50"] / 1000, p99_ms=raw["latency_us"]["p99"] / 1000,
        statuses={int(k): int(v) for k, v in (raw.get("statuses") or {}).items()},
        socket_errors=int(errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]),
        non_2xx=int(errors["status"]), tallies={k: int(v) for k, v in (raw.get("tallies") or {}).items()})


# ---------------------------------------------------------------- checks in the database


async def check_hot_slot(owner, shop: Shop, result: Result) -> None:
    """Each round's slot must hold exactly one active appointment, and no therapist two overlapping ones."""
    rounds = hot_rounds(shop, HOT_DAY)
    day = shop.day(HOT_DAY)
    rows = await owner.fetch(
        "SELECT staff_id, starts_at, count(*) AS n FROM appointments WHERE tenant_id = $1 AND status = ANY($2) "
        "AND starts_at >= $3 AND starts_at < $4 GROUP BY staff_id, starts_at",
        shop.tenant_id, list(ACTIVE), shop.at(day, 0), shop.at(day + timedelta(days=1), 0))
    held = {(str(r["staff_id"]), r["starts_at"]): r["n"] for r in rows}
    played = sorted(int(k.removeprefix("round_")) for k in result.tallies if k.startswith("round_"))
    winners = [held.get((rounds[r][0], datetime.fromisoformat(rounds[r][1])), 0) for r in played]
    one, none, many = winners.count(1), winners.count(0), sum(1 for n in winners if n > 1)
    stray = sum(held.values()) - sum(winners)
    result.checks.append(f"{len(played)} rounds: {one} with exactly one winner, {none} with none, "
                         f"{many} with more than one; {result.statuses.get(201, 0)} × 201 answered"
                         + (f"; {stray} bookings outside the rounds' slots" if stray else ""))
    # The last round may be cut off by the end of the run before anyone won it; any other miss is a failure.
    if many or stray or none > 1 or (none == 1 and winners[-1] != 0):
        result.failed = True


async def check_no_double_booking(owner, shop: Shop) -> str:
    overlapping = await owner.fetchval(
        "SELECT count(*) FROM appointments a JOIN appointments b ON a.tenant_id = b.tenant_id "
        "AND a.staff_id = b.staff_id AND a.id < b.id WHERE a.tenant_id = $1 AND a.status = ANY($2) "
        "AND b.status = ANY($2) AND a.starts_at < b.blocked_until AND b.starts_at < a.blocked_until",
        shop.tenant_id, list(ACTIVE))
    total = await owner.fetchval("SELECT count(*) FROM appointments WHERE tenant_id = $1 AND status = ANY($2)",
                                 shop.tenant_id, list(ACTIVE))
    return f"{total} active appointments, {overlapping} overlapping pairs for one therapist"


async def sample_sessions(conn, database: str, stop: asyncio.Event) -> str:
    """Every 0.2 s: the bench database's sessions by what they do. Many `idle in transaction` means
    PostgreSQL waits for the application (CPU-bound process); many `Lock` waits mean requests queue on row
    locks (for writes: the tenant's audit head is locked from a write's audit seal to its commit)."""
    totals = {"lock": 0, "app": 0, "running": 0, "io": 0}
    waits: dict[str, int] = {}  # the statements waiting for a lock
    samples = 0
    while not stop.is_set():
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') AS lock, "
            "count(*) FILTER (WHERE state LIKE 'idle in transaction%') AS app, "
            "count(*) FILTER (WHERE state = 'active' AND wait_event_type IS NULL) AS running, "
            "count(*) FILTER (WHERE state = 'active' AND wait_event_type IN ('IO', 'LWLock', 'IPC')) AS io "
            "FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database)
        for key in totals:
            totals[key] += row[key]
        for waiting in await conn.fetch(
                "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 70) AS query FROM pg_stat_activity "
                "WHERE datname = $1 AND wait_event_type = 'Lock'", database):
            waits[waiting["query"]] = waits.get(waiting["query"], 0) + 1
        samples += 1
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
        except TimeoutError:
            pass
    if not samples:
        return ""
    mean = {k: v / samples for k, v in totals.items()}
    return (f"database sessions, mean: {mean['running']:.1f} running, {mean['io']:.1f} on IO/LWLock, "
            f"{mean['lock']:.1f} waiting for a lock, {mean['app']:.1f} idle in transaction (waiting for CareLoop)"
            + "".join(f"\n{'':<8}{100 * n / sum(waits.values()):.0f} % of lock waits in: {query}"
                      for query, n in sorted(waits.items(), key=lambda kv: -kv[1])[:2]))


# ---------------------------------------------------------------- the table


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def print_table(results: list[Result], args: argparse.Namespace, loads: tuple[str, str]) -> None:
    reads = [r.ok_rps for r in results if r.workload.name.startswith("reference_read")]
    write_ref = next((r.ok_rps for r in results if r.workload.name == "reference_write"), None)
    read_ref = sum(reads) / len(reads) if reads else None
    print()
    print(f"HTTP ratios: wrk {args.threads} threads × {args.connections} connections, {args.duration} s per "
          f"workload after a {args.warmup} s warm-up; one CareLoop process, one reference process "
          f"({args.reference_driver}); load average {loads[0]} at the start, {loads[1]} at the end")
    print(f"{'workload':<40} {'req/s':>8} {'ok/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'ratio':>7}")
    for r in results:
        w = r.workload
        if w.kind == "reference":
            ratio = ""
        else:
            basis = read_ref if w.kind == "read" else write_ref
            # Bookings and orders count what succeeded; the hot slot, where one a round can, what was answered.
            value = r.rps if w.name == "booking_hot" else r.ok_rps
            ratio = f"{100 * value / basis:.1f} %" if basis else "n/a"
        coded = {k: n for k, n in r.tallies.items() if k[:3].isdigit()}  # "409 staff_busy": n
        other = coded or {str(s): n for s, n in r.statuses.items() if s not in w.ok}
        extra = ", ".join(f"{n}×{k}" for k, n in sorted(other.items(), key=lambda kv: -kv[1]))
        if r.socket_errors:
            extra = (extra + ", " if extra else "") + f"{r.socket_errors} socket errors"
        print(f"{w.label:<40} {r.rps:>8.1f} {r.ok_rps:>8.1f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.non_2xx:>8} "
              f"{ratio:>7}" + (f"   {extra}" if extra else "") + (f"   ({w.note})" if w.note else ""))
        if r.db:
            print(f"{'':<6}{r.db}")
        for check in r.checks:
            print(f"{'':<6}check: {check}" + ("   FAILED" if r.failed else ""))
    if read_ref:
        print(f"ratios: reads to the read reference ({read_ref:.1f} req/s, mean of its runs)"
              + (f", writes to the write reference ({write_ref:.1f} req/s); bookings and orders by successful "
                 "requests, the hot slot by answered ones" if write_ref else ""))


# ---------------------------------------------------------------- the run


def selected(args: argparse.Namespace) -> list[Workload]:
    names = set(SELECTABLE)
    if args.only:
        names = {n.strip() for n in args.only.split(",") if n.strip()}
    if args.skip:
        names -= {n.strip() for n in args.skip.split(",")}
    unknown = names - set(SELECTABLE)
    if unknown:
        raise SystemExit(f"unknown workload(s) {', '.join(sorted(unknown))}; choose from {', '.join(SELECTABLE)}")
    wanted = {"reference_read", "reference_read_end"} | names
    if any(BY_NAME[n].kind == "write" for n in names):
        wanted.add("reference_write")
    return [w for w in WORKLOADS if w.name in wanted]


async def login(base_url: str, username: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        r = await client.post("/api/v1/auth/token", json={"tenant": "bench", "username": username,
                                                          "password": PASSWORD})
        r.raise_for_status()
        return r.json()["access_token"]


async def profile(pid: int, seconds: int, out: Path, fmt: str) -> subprocess.CompletedProcess:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100",
            "--format", fmt, "--output", str(out)]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    output, _ = await proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode or 0, output.decode(), "")


async def run(args: argparse.Namespace) -> list[Result]:
    from app.core.migrate import ensure_app_login
    from app.seed import create_tenant_with_owner
    from bench.booking_latency import redis_url

    wrk = ensure_wrk()
    workloads = selected(args)
    loads = [load_average(), ""]
    print(f"http ratios: {', '.join(w.name for w in workloads)}  (load average {loads[0]})", flush=True)
    results: list[Result] = []
    profiled: Path | None = None
    async with bench_database() as (url, owner):
        started = time.perf_counter()
        tenant = await create_tenant_with_owner(code="bench", name="Bench", owner_username="owner",
                                                owner_password=PASSWORD)
        shop = await seed(tenant.id)
        await owner.execute("ANALYZE")
        print(f"  seeded in {time.perf_counter() - started:.1f} s", flush=True)
        redis = redis_url()
        careloop_port, reference_port = free_port(), free_port()
        # As in production, requests connect as a non-owner LOGIN role (APP_DATABASE_URL) in a pool of their
        # own; --owner-connection serves them from the owner's pool switched to the app role (development).
        app_login = {} if args.owner_connection else {"APP_DATABASE_URL": await ensure_app_login(url)}
        prefix = f"careloop_bench_{uuid.uuid4().hex[:8]}"
        careloop = Server("careloop", careloop_argv(careloop_port), server_env(
            DATABASE_URL=url, REDIS_URL=redis, REDIS_PREFIX=prefix,
            EMBEDDED_WORKER="false", LOG_LEVEL="WARNING", ACCESS_TOKEN_TTL_SECONDS="14400", **app_login),
            careloop_port, "/healthz")
        reference = Server("reference", [
            sys.executable, "-m", "uvicorn", "--factory", "bench.reference_app:create_app", "--host", "127.0.0.1",
            "--port", str(reference_port), "--log-level", "warning", "--no-access-log"],
            server_env(REFERENCE_DATABASE_URL=url, REFERENCE_DRIVER=args.reference_driver),
            reference_port, "/read/1")
        watcher = await asyncpg.connect(**pg_kwargs(url))
        try:
            await careloop.wait_ready()
            await reference.wait_ready()
            shop.tokens = {"owner": await login(careloop.url, "owner"),
                           "frontdesk": await login(careloop.url, "frontdesk")}
            rng = random.Random(3)
            for w in workloads:
                target = reference.url if w.kind == "reference" else careloop.url
                server = reference if w.kind == "reference" else careloop
                ready_path = "/read/1" if w.kind == "reference" else "/healthz"
                if args.warmup:
                    await run_wrk(wrk, w.script, target, workload_data(w, shop, "warmup", rng, args), args,
                                  args.warmup)
                    await server.settle(ready_path)  # the warm-up's requests in flight must not spill over
                data = workload_data(w, shop, "measure", rng, args)
                profiling = None
                if args.profile == w.name:
                    profiled = out = Path(args.profile_output or
                                          ROOT / f".data/bench/profile-{w.name}.{args.profile_format}")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    profiling = asyncio.create_task(profile(careloop.proc.pid, max(1, args.duration - 1), out,
                                                            args.profile_format))
                stop_sampling = asyncio.Event()
                sampling = asyncio.create_task(sample_sessions(watcher, make_url(url).database, stop_sampling))
                raw = await run_wrk(wrk, w.script, target, data, args, args.duration)
                stop_sampling.set()
                result = to_result(w, raw)
                result.db = await sampling if w.kind != "reference" else ""
                if profiling is not None:
                    done = await profiling
                    said = [line for line in done.stdout.splitlines() if "Samples" in line or "rror" in line]
                    result.checks.append(f"py-spy (exit {done.returncode}) → {out}"
                                         + (f": {said[-1].removeprefix('py-spy> ')[:200]}" if said else ""))
                waited = await server.settle(ready_path)
                if waited > 5:
                    result.checks.append(f"the server took {waited:.0f} s to drain the requests left in flight")
                if w.name == "booking_hot":  # after the settling: requests in flight at the end have finished
                    await check_hot_slot(owner, shop, result)
                results.append(result)
                print(f"  {w.name:<20} {result.rps:8.1f} req/s  {result.ok_rps:8.1f} ok/s  p50 {result.p50_ms:7.1f} ms"
                      f"  p99 {result.p99_ms:7.1f} ms  non-2xx {result.non_2xx}  (load {load_average()})", flush=True)
            if any(w.name.startswith("booking") for w in workloads):
                results[-1].checks.append(await check_no_double_booking(owner, shop))
        finally:
            careloop.stop()
            reference.stop()
            await watcher.close()
            await drop_redis_keys(redis, prefix)
        loads[1] = load_average()
        errors = error_summary(careloop.log.name)
        if errors:
            print(f"CareLoop logged warnings or errors ({careloop.log.name}):\n" + "\n".join(errors))
        else:
            os.unlink(careloop.log.name)
        if "Traceback" in reference.log_tail(10**7):
            print(f"the reference logged errors ({reference.log.name}):\n" + reference.log_tail(1500))
        else:
            os.unlink(reference.log.name)
    print_table(results, args, (loads[0], loads[1]))
    if profiled is not None and args.profile_format == "raw" and profiled.exists():
        from bench.profile_summary import summarise

        print(f"\nprofile of CareLoop during {args.profile}:\n" + summarise(profiled))
    if args.json:
        write_json(args.json, results)
    if any(r.failed for r in results):
        raise SystemExit("a correctness check failed (see the table)")
    return results


def write_json(path: str, results: list[Result]) -> None:
    Path(path).write_text(json.dumps([{
            "workload": r.workload.name, "label": r.workload.label, "requests": r.requests, "seconds": r.seconds,
            "rps": r.rps, "ok_rps": r.ok_rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "statuses": r.statuses,
            "non_2xx": r.non_2xx, "socket_errors": r.socket_errors, "checks": r.checks, "failed": r.failed, "db": r.db,
        } for r in results], indent=2))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.http_ratios", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10, help="seconds measured per workload (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per workload, not counted (default 3)")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--only", help=f"comma-separated workloads: {', '.join(SELECTABLE)}")
    p.add_argument("--skip", help="comma-separated workloads to leave out")
    p.add_argument("--reference-driver", choices=("asyncpg", "sqlalchemy"), default="asyncpg",
                   help="asyncpg: a bare pool, the stack's floor (default); sqlalchemy: an async engine built as "
                        "CareLoop builds its own (pre-ping, BEGIN/COMMIT)")
    p.add_argument("--owner-connection", action="store_true",
                   help="serve requests from the owner's pool switched to the app role (development mode) "
                        "instead of a non-owner login role (APP_DATABASE_URL, production)")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--profile", choices=SELECTABLE, help="py-spy record the CareLoop process during this workload")
    p.add_argument("--profile-format", choices=("speedscope", "raw", "flamegraph"), default="raw")
    p.add_argument("--profile-output", help="default: .data/bench/profile-<workload>.<format>")
    return p


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run(parser().parse_args(argv)))


if __name__ == "__main__":
    main()
