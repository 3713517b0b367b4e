"""The outbox relay: committed events → arq jobs.

Rows are claimed with `FOR UPDATE SKIP LOCKED` (several relays can run), enqueued under a job id
derived from the event and the row version being relayed, then marked `enqueued` in the same
transaction. A crash before that commit leaves the rows pending and unchanged, and the next pass
enqueues them again under the same job id, which arq refuses as a duplicate; handlers are idempotent,
so a repeat costs nothing anyway. Every later round (a retry after a failure, a dead letter sent
again, a stale row) is a new row version and so a new job id: arq also refuses ids whose result it
still keeps, which would otherwise swallow that round. Rows `enqueued` long ago whose job vanished
(a Redis restart) are enqueued again after `STALE_AFTER`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import asyncpg
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.core.clock import utcnow
from app.core.db import session_scope
from app.core.outbox import NOTIFY_CHANNEL
from app.core.settings import get_settings

log = logging.getLogger("careloop.relay")

STALE_AFTER = timedelta(minutes=10)
DISPATCH_JOB = "dispatch_event"

_CLAIM = text(
    """
    SELECT tenant_id, id, attempts, xmin::text AS version FROM outbox
    WHERE (status = 'pending' AND available_at <= :now)
       OR (status = 'enqueued' AND enqueued_at < :stale)
    ORDER BY available_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """
)


def job_id(event_id: object, attempts: int, version: str) -> str:
    """One id per relayed row version (`xmin` changes with every update, not with the claim's lock)."""
    return f"outbox:{event_id}:{attempts}:{version}"


async def relay_once(pool: ArqRedis, *, queue_name: str, limit: int | None = None) -> int:
    """Move one batch of due events to the queue; returns how many were handed over."""
    limit = limit or get_settings().outbox_batch_size
    now = utcnow()
    async with session_scope(system=True) as session:
        rows = (await session.execute(_CLAIM, {"now": now, "stale": now - STALE_AFTER, "limit": limit})).all()
        for row in rows:
            await pool.enqueue_job(DISPATCH_JOB, str(row.tenant_id), str(row.id),
                                   _job_id=job_id(row.id, row.attempts, row.version), _queue_name=queue_name)
        if rows:
            await session.execute(
                text("UPDATE outbox SET status = 'enqueued', enqueued_at = :now "
                     "WHERE (tenant_id, id) IN (SELECT unnest(CAST(:t AS uuid[])), unnest(CAST(:i AS uuid[])))"),
                {"now": now, "t": [r.tenant_id for r in rows], "i": [r.id for r in rows]},
            )
    return len(rows)


async def run_relay(pool: ArqRedis, database_url: str, *, queue_name: str, stop: asyncio.Event) -> None:
    """Relay until `stop` is set: at once on NOTIFY from a committing transaction, else every poll interval."""
    settings = get_settings()
    wake = asyncio.Event()
    listener = await _listen(database_url, wake)
    try:
        while not stop.is_set():
            # Cleared before the pass, not after: a NOTIFY for an event committed after the pass's
            # SELECT must still wake the next pass rather than wait for the poll interval.
            wake.clear()
            try:
                moved = await relay_once(pool, queue_name=queue_name)
            except Exception:  # noqa: BLE001 - keep relaying; the database or Redis may come back
                log.exception("outbox relay pass failed")
                moved = 0
            if moved >= settings.outbox_batch_size:
                continue  # more waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(wake, stop), timeout=settings.outbox_poll_seconds)
    finally:
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close()


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def _listen(database_url: str, wake: asyncio.Event) -> asyncpg.Connection | None:
    url = make_url(database_url)
    try:
        conn = await asyncpg.connect(
            user=url.username, password=url.password, database=url.database,
            host=url.query.get("host") or url.host, port=url.port,
        )
        await conn.add_listener(NOTIFY_CHANNEL, lambda *_: wake.set())
        return conn
    except (OSError, asyncpg.PostgresError):
        log.warning("cannot LISTEN for outbox notifications; polling only", exc_info=True)
        return None
