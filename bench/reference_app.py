"""The same-stack reference that `bench.http_ratios` compares CareLoop's hot endpoints with.

    REFERENCE_DATABASE_URL=postgresql://… uvicorn --factory bench.reference_app:create_app --port 8100

FastAPI on uvicorn (uvloop and httptools, as `careloop serve` picks them) and asyncpg, with a pool of
CareLoop's default size (10 + 20 overflow: the sizes are read from app.core.settings). No auth, no
middleware, no ORM:

* `GET /read/{id}`: one indexed single-row SELECT (primary key) on a 1,000-row table, as JSON.
* `POST /write`: one INSERT and commit.

Which driver, and why. By default (`REFERENCE_DRIVER=asyncpg`) a bare asyncpg pool: the floor of the stack,
one round trip per read (plus the pool's reset on release) — the kind of reference the issue measured
(2,124 req/s against healthz's 600). Whatever CareLoop spends above that, including how it uses SQLAlchemy
(its engine pre-pings each checkout with a BEGIN and a ROLLBACK, then opens the request's transaction with
a BEGIN), is CareLoop's cost and belongs in the ratio. `REFERENCE_DRIVER=sqlalchemy` serves the same
endpoints through a SQLAlchemy async engine built exactly as CareLoop builds its own (same pool, pre-ping,
Core statements in a transaction): what the engine alone costs, for comparison.

The tables are created at start-up (idempotently), so the process only needs a database it may write to.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import text

ROWS = 1000
DDL = [
    "CREATE TABLE IF NOT EXISTS bench_reference (id integer PRIMARY KEY, name text NOT NULL, "
    "value integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE IF NOT EXISTS bench_reference_writes (id bigserial PRIMARY KEY, "
    "name text NOT NULL, value integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    f"INSERT INTO bench_reference (id, name, value) SELECT i, 'row ' || i, i * 7 FROM generate_series(1, {ROWS}) i "
    "ON CONFLICT DO NOTHING",
    "ANALYZE bench_reference",
]
READ = "SELECT id, name, value, updated_at FROM bench_reference WHERE id = $1"
WRITE = "INSERT INTO bench_reference_writes (name, value) VALUES ($1, $2) RETURNING id"


class WriteIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    value: int


def _database_url() -> str:
    url = os.environ.get("REFERENCE_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("set REFERENCE_DATABASE_URL (or DATABASE_URL) to the bench database")
    return url


def _pool_sizes() -> tuple[int, int]:
    from app.core.settings import get_settings

    settings = get_settings()
    return settings.db_pool_size, settings.db_max_overflow


def _sqlalchemy_app(url: str) -> FastAPI:
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.core.db import async_url

    pool_size, max_overflow = _pool_sizes()
    # As SQLAlchemy is used by default (and by CareLoop before 2026-12-01): pre-ping, Core statements.
    engine = create_async_engine(async_url(url), pool_size=pool_size, max_overflow=max_overflow,
                                 pool_pre_ping=True)
    read, write = text(READ.replace("$1", ":id")), text(WRITE.replace("$1", ":name").replace("$2", ":value"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            for statement in DDL:
                await conn.execute(text(statement))
        yield
        await engine.dispose()

    app = FastAPI(title="CareLoop bench reference", lifespan=lifespan)

    @app.get("/read/{row_id}")
    async def read_row(row_id: int) -> dict:
        async with engine.connect() as conn:
            row = (await conn.execute(read, {"id": row_id})).first()
        if row is None:
            raise HTTPException(404, "no such row")
        return {"id": row.id, "name": row.name, "value": row.value, "updated_at": row.updated_at}

    @app.post("/write", status_code=201)
    async def write_row(body: WriteIn) -> dict:
        async with engine.begin() as conn:  # one INSERT, committed before the answer
            new_id = (await conn.execute(write, {"name": body.name, "value": body.value})).scalar_one()
        return {"id": new_id}

    return app


def _asyncpg_app(url: str) -> FastAPI:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    kwargs = {"user": u.username, "password": u.password, "database": u.database,
              "host": u.query.get("host") or u.host, "port": u.port}
    pool_size, max_overflow = _pool_sizes()
    state: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["pool"] = await asyncpg.create_pool(min_size=pool_size, max_size=pool_size + max_overflow, **kwargs)
        async with state["pool"].acquire() as conn:
            for statement in DDL:
                await conn.execute(statement)
        yield
        await state["pool"].close()

    app = FastAPI(title="CareLoop bench reference (asyncpg)", lifespan=lifespan)

    @app.get("/read/{row_id}")
    async def read_row(row_id: int) -> dict:
        row = await state["pool"].fetchrow(READ, row_id)
        if row is None:
            raise HTTPException(404, "no such row")
        return {"id": row["id"], "name": row["name"], "value": row["value"], "updated_at": row["updated_at"]}

    @app.post("/write", status_code=201)
    async def write_row(body: WriteIn) -> dict:
        return {"id": await state["pool"].fetchval(WRITE, body.name, body.value)}  # autocommit: one round trip

    return app


def create_app() -> FastAPI:
    url = _database_url()
    driver = os.environ.get("REFERENCE_DRIVER", "asyncpg")
    if driver == "sqlalchemy":
        return _sqlalchemy_app(url)
    if driver == "asyncpg":
        return _asyncpg_app(url)
    raise RuntimeError(f"REFERENCE_DRIVER must be sqlalchemy or asyncpg, not {driver!r}")

