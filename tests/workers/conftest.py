"""Worker fixtures: a private arq queue per test and a handler registry restored after each test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis
from arq.constants import job_key_prefix

from app.core import events as registry
from app.core.settings import get_settings
from app.workers.runtime import build_worker, create_queue_pool, queue_name


@pytest.fixture
async def queue(redis_url, database_url, monkeypatch) -> AsyncIterator[ArqRedis]:
    """An arq pool on a queue no other test uses (queue_name() follows the Redis prefix)."""
    monkeypatch.setattr(get_settings(), "redis_prefix", f"{get_settings().redis_prefix}:{uuid.uuid4().hex[:8]}")
    pool = await create_queue_pool(redis_url)
    yield pool
    leftovers = await pool.zrange(queue_name(), 0, -1)
    if leftovers:
        await pool.delete(*[job_key_prefix + (j.decode() if isinstance(j, bytes) else j) for j in leftovers])
    await pool.delete(queue_name())
    await pool.aclose()


@pytest.fixture
def handlers():
    """Tests register `@on(...)` handlers freely; the global registry is put back afterwards."""
    saved = {topic: list(entries) for topic, entries in registry.HANDLERS.items()}
    yield registry
    registry.HANDLERS.clear()
    registry.HANDLERS.update(saved)


@pytest.fixture
def run_worker(redis_url, queue):
    """Run a real arq worker over the test's queue until the queue is empty."""

    async def run() -> None:
        worker = build_worker(redis_url, burst=True)
        try:
            await worker.main()
        finally:
            await worker.close()

    return run
