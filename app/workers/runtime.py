"""arq wiring: queue name, job functions, cron, and running the worker with the relay beside it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from arq import cron, func
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import Worker
from sqlalchemy import text

from app.core import audit
from app.core.db import SessionFactory
from app.core.events import scheduled
from app.core.settings import get_settings
from app.domain.messaging.channels import configure as configure_message_channels
from app.workers import dispatch
from app.workers.relay import run_relay
from app.workers.scheduled import all_jobs, bind

log = logging.getLogger("careloop.worker")


def queue_name() -> str:
    return f"{get_settings().redis_prefix}:queue"


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


@scheduled(hour={3}, minute={17})
async def purge_expired(sessions: SessionFactory) -> dict[str, int]:
    """Daily housekeeping: old idempotency keys, delivered outbox events and expired refresh tokens."""
    settings = get_settings()
    async with sessions(system=True) as session:
        keys = await session.execute(
            text("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => :h)"),
            {"h": settings.idempotency_ttl_hours},
        )
        events = await session.execute(
            text("DELETE FROM outbox WHERE status = 'done' AND done_at < now() - interval '30 days'")
        )
        tokens = await session.execute(text("DELETE FROM refresh_tokens WHERE expires_at < now() - interval '7 days'"))
    return {"idempotency_keys": keys.rowcount, "outbox": events.rowcount, "refresh_tokens": tokens.rowcount}


@scheduled(second=set(range(0, 60, 2)))
async def seal_audit(sessions: SessionFactory) -> int:
    """Audit entries written since the last pass go into the chain (within ~2 s)."""
    return await audit.seal_pending(sessions)


def job_functions() -> tuple[list[Any], list[Any]]:
    """The arq functions and cron jobs: the dispatcher and every context's `@scheduled` job (discovered)."""
    jobs = all_jobs()
    bound = {job.name: bind(job) for job in jobs}
    functions = [func(dispatch.dispatch_event, name="dispatch_event")] + [func(f, name=n) for n, f in bound.items()]
    crons = [cron(bound[job.name], name=f"cron:{job.name}", run_at_startup=job.run_at_startup, **job.cron)
             for job in jobs if job.cron]
    return functions, crons


def build_worker(redis_url: str, *, burst: bool = False, handle_signals: bool = False) -> Worker:
    functions, crons = job_functions()
    return Worker(
        functions=functions,
        cron_jobs=crons,
        redis_settings=redis_settings(redis_url),
        queue_name=queue_name(),
        burst=burst,
        handle_signals=handle_signals,
        max_tries=1,  # retries are the outbox's business (backoff, dead letter), not arq's
        keep_result=timedelta(hours=1),
        job_timeout=timedelta(minutes=5),
    )


async def create_queue_pool(redis_url: str) -> ArqRedis:
    return await create_pool(redis_settings(redis_url), default_queue_name=queue_name())


class BackgroundWorker:
    """The worker and the relay as asyncio tasks: inside `careloop serve` or as `careloop worker`."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.worker: Worker | None = None
        self.pool: ArqRedis | None = None

    async def start(self) -> None:
        # WeChat/WeCom channels share access tokens through this Redis (embedded mode has no REDIS_URL).
        configure_message_channels(redis_url=self.redis_url)
        self.pool = await create_queue_pool(self.redis_url)
        self.worker = build_worker(self.redis_url)
        self.tasks = [
            asyncio.create_task(self.worker.async_run(), name="arq-worker"),
            asyncio.create_task(run_relay(self.pool, self.database_url, queue_name=queue_name(), stop=self.stop),
                                name="outbox-relay"),
        ]
        log.info("background worker started", extra={"queue": queue_name()})

    async def close(self) -> None:
        self.stop.set()
        if self.worker is not None:
            # arq's close talks to Redis while its job tasks are being cancelled; a cancellation or a lost
            # connection there must not skip the rest of the shutdown (the pool, the embedded servers).
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.worker.close()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.pool is not None:
            await self.pool.aclose()

    async def run_forever(self) -> None:
        await self.start()
        try:
            await asyncio.gather(*self.tasks)
        finally:
            await self.close()
