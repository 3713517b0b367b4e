"""arq wiring: queue name, job functions, cron, and running the worker with the relay beside it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from arq import cron
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import Worker
from sqlalchemy import text

from app.core.db import session_scope
from app.core.settings import get_settings
from app.domain.cards.jobs import run_card_housekeeping
from app.domain.care.engine import run_care_schedules
from app.domain.chatsync.service import run_chat_sync
from app.domain.checkout.jobs import run_wechat_order_timeouts
from app.domain.webhooks.service import run_webhook_deliveries
from app.workers import dispatch, subscribers  # noqa: F401  (subscribers registers handlers)
from app.workers.relay import run_relay

log = logging.getLogger("careloop.worker")


def queue_name() -> str:
    return f"{get_settings().redis_prefix}:queue"


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


async def purge_expired(ctx: dict[str, Any] | None = None) -> dict[str, int]:
    """Daily housekeeping: old idempotency keys and delivered outbox events."""
    settings = get_settings()
    async with session_scope(system=True) as session:
        keys = await session.execute(
            text("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => :h)"),
            {"h": settings.idempotency_ttl_hours},
        )
        events = await session.execute(
            text("DELETE FROM outbox WHERE status = 'done' AND done_at < now() - interval '30 days'")
        )
        tokens = await session.execute(text("DELETE FROM refresh_tokens WHERE expires_at < now() - interval '7 days'"))
    return {"idempotency_keys": keys.rowcount, "outbox": events.rowcount, "refresh_tokens": tokens.rowcount}


FUNCTIONS = [dispatch.dispatch_event, purge_expired, run_card_housekeeping, run_care_schedules,
             run_wechat_order_timeouts,
             run_chat_sync, run_webhook_deliveries]
CRON_JOBS = [
    cron(purge_expired, hour={3}, minute={17}, run_at_startup=False),
    cron(run_card_housekeeping, minute={5}, run_at_startup=True),  # hourly, and once at start
    # Schedule-triggered care rules (birthdays, inactivity, visits ahead) and overdue task notices: hourly, so
    # every store's local day is covered soon after it starts; cause keys make reruns find nothing new.
    cron(run_care_schedules, minute={11}, run_at_startup=True),
    # Every minute: an unpaid WeChat order is closed within a minute of its expiry (default 15 min).
    cron(run_wechat_order_timeouts, second={30}, run_at_startup=False),
    # Chat archive every 5 minutes (WeCom's msgaudit notice triggers it sooner; notices can be lost).
    cron(run_chat_sync, minute=set(range(2, 60, 5)), run_at_startup=False),
    # Webhook retries whose backoff has run out (first attempts go out at once through the outbox).
    cron(run_webhook_deliveries, second={45}, run_at_startup=False),
]


def build_worker(redis_url: str, *, burst: bool = False, handle_signals: bool = False) -> Worker:
    return Worker(
        functions=FUNCTIONS,
        cron_jobs=CRON_JOBS,
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
        from app.domain.messaging.channels import configure as configure_message_channels

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
