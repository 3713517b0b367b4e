"""Shared set-up for benchmarks: a private database migrated to head, and timing helpers."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from app.core import db
from app.core.migrate import upgrade


def _pg_kwargs(url: str) -> dict:
    u = make_url(url)
    return {"user": u.username, "password": u.password, "database": u.database,
            "host": u.query.get("host") or u.host, "port": u.port}


def admin_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    from app.core.embedded import start_postgres

    return start_postgres(Path(os.environ.get("CARELOOP_DATA_DIR", ".data")) / "bench", database="postgres")


@asynccontextmanager
async def bench_database():
    """A fresh database for one benchmark run, dropped afterwards; yields (url, raw asyncpg owner connection)."""
    admin = admin_url()
    name = f"careloop_bench_{uuid.uuid4().hex[:8]}"
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    conn = await asyncpg.connect(**_pg_kwargs(admin))
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        await upgrade(url)
        db.init_engine(url)
        owner = await asyncpg.connect(**_pg_kwargs(url))
        try:
            yield url, owner
        finally:
            await owner.close()
            await db.dispose_engine()
    finally:
        conn = await asyncpg.connect(**_pg_kwargs(admin))
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def measure(label: str, fn: Callable[[], Awaitable[object]], runs: int = 50) -> dict:
    await fn()  # warm caches and plans
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    result = {"label": label, "runs": runs, "p50_ms": round(statistics.median(samples), 2),
              "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 2), "max_ms": round(samples[-1], 2)}
    print(f"  {label:<52} p50 {result['p50_ms']:>7.2f} ms   p95 {result['p95_ms']:>7.2f} ms   "
          f"max {result['max_ms']:>7.2f} ms")
    return result
