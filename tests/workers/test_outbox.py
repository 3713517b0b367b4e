"""Invariants 6 and 7: nothing is lost between the database and the queue, and effects happen once.

Events go through the real path: emit() in a business transaction → relay_once() → the arq queue in
Redis → a real arq worker → dispatch_event() → registered handlers. A handler's effect is an audit row
(`test.effect`) written in the handler's transaction, so it is counted, not assumed.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from uuid import UUID

import pytest
from sqlalchemy import text

from app.core import audit, outbox
from app.core.clock import utcnow
from app.core.db import session_scope
from app.core.settings import get_settings
from app.workers import relay
from app.workers.dispatch import backoff_seconds, dispatch_event
from app.workers.relay import relay_once, run_relay
from app.workers.runtime import queue_name
from tests.factories import new_tenant, seal_audit

TOPIC = "test.topic"


class Boom(Exception):
    pass


async def emit_committed(tenant_id: UUID, topic: str = TOPIC, payload: dict | None = None, **kw) -> UUID:
    async with session_scope(tenant_id) as session:
        event = await outbox.emit(session, topic, payload or {"n": 1}, **kw)
    return event.id


async def queued(pool) -> list[str]:
    return [j.decode() if isinstance(j, bytes) else j for j in await pool.zrange(queue_name(), 0, -1)]


async def jobs_for(pool, event_id: UUID) -> list[str]:
    return [j for j in await queued(pool) if j.startswith(f"outbox:{event_id}:")]


async def relay_all(pool) -> None:
    """Relay until nothing is due (other tests' leftover events may fill the first batches)."""
    while await relay_once(pool, queue_name=queue_name()):
        pass


async def event_row(tenant_id: UUID, event_id: UUID):
    async with session_scope(system=True) as session:
        return (await session.execute(text("SELECT * FROM outbox WHERE tenant_id = :t AND id = :i"),
                                      {"t": tenant_id, "i": event_id})).one_or_none()


async def effects(tenant_id: UUID, event_id: UUID, action: str = "test.effect") -> int:
    await seal_audit()  # what the worker does every two seconds
    async with session_scope(tenant_id) as session:
        return (await session.execute(
            text("SELECT count(*) FROM audit_log WHERE action = :a AND target_id = :e"),
            {"a": action, "e": str(event_id)})).scalar_one()


@pytest.fixture
async def kit(client):
    return await new_tenant(client)


@pytest.fixture
def tenant(kit) -> UUID:
    return UUID(kit.tenant_id)


def register_effect(handlers, topic: str = TOPIC, action: str = "test.effect", *, delay: float = 0.0):
    calls: list[UUID] = []

    @handlers.on(topic)
    async def record_effect(session, event):
        calls.append(event.id)
        if delay:
            await asyncio.sleep(delay)
        audit.record(session, action, "outbox_event", event.id, payload=event.payload)

    record_effect.__qualname__ += f".{action}"  # a distinct handler name per action
    handlers.HANDLERS[topic][-1] = (handlers.handler_name(record_effect), record_effect)
    return calls


# ---------------------------------------------------------------- database → queue


async def test_only_committed_events_are_relayed_and_only_once(queue, tenant):
    async with session_scope(tenant) as session:
        event = await outbox.emit(session, TOPIC, {"n": 1})
        await relay_all(queue)  # another connection: the row is invisible until commit
        assert await jobs_for(queue, event.id) == []
    await relay_all(queue)
    jobs = await jobs_for(queue, event.id)
    assert len(jobs) == 1 and jobs[0].startswith(f"outbox:{event.id}:0:")
    row = await event_row(tenant, event.id)
    assert row.status == "enqueued" and row.enqueued_at is not None

    await relay_all(queue)
    await relay_all(queue)
    assert len(await jobs_for(queue, event.id)) == 1
    assert await queue.zcard(queue_name()) == len(await queued(queue))


async def test_rolled_back_event_enqueues_nothing(queue, tenant):
    with pytest.raises(Boom):
        async with session_scope(tenant) as session:
            event = await outbox.emit(session, TOPIC, {"n": 1})
            raise Boom
    await relay_all(queue)
    assert await event_row(tenant, event.id) is None
    assert await jobs_for(queue, event.id) == []


async def test_delayed_event_waits_until_available(queue, tenant):
    later = await emit_committed(tenant, available_at=utcnow() + timedelta(hours=1))
    await relay_all(queue)
    assert await jobs_for(queue, later) == []
    assert (await event_row(tenant, later)).status == "pending"


async def test_relay_crash_before_commit_loses_nothing(queue, tenant, monkeypatch):
    async with session_scope(tenant) as session:
        first = (await outbox.emit(session, TOPIC, {"n": 1})).id
        second = (await outbox.emit(session, TOPIC, {"n": 2})).id
    real_enqueue = queue.enqueue_job

    async def enqueue_then_crash(function, *args, **kwargs):
        if args[1] == str(second):  # the first event reached Redis, then the relay died
            raise ConnectionError("redis went away")
        return await real_enqueue(function, *args, **kwargs)

    monkeypatch.setattr(queue, "enqueue_job", enqueue_then_crash)
    with pytest.raises(ConnectionError):
        await relay_all(queue)
    assert [(await event_row(tenant, e)).status for e in (first, second)] == ["pending", "pending"]
    assert len(await jobs_for(queue, first)) == 1 and await jobs_for(queue, second) == []

    monkeypatch.setattr(queue, "enqueue_job", real_enqueue)
    await relay_all(queue)
    # Both are handed over, and the first one is not queued twice.
    assert len(await jobs_for(queue, first)) == 1 and len(await jobs_for(queue, second)) == 1
    assert [(await event_row(tenant, e)).status for e in (first, second)] == ["enqueued", "enqueued"]


# ---------------------------------------------------------------- queue → handlers, effects once


async def test_worker_runs_the_handler_and_effects_happen_once(queue, tenant, handlers, run_worker):
    calls = register_effect(handlers)
    event_id = await emit_committed(tenant, payload={"member": "张三"})
    await relay_all(queue)
    await run_worker()
    row = await event_row(tenant, event_id)
    assert row.status == "done" and row.done_at is not None and row.attempts == 0
    assert await effects(tenant, event_id) == 1 and calls == [event_id]
    assert await jobs_for(queue, event_id) == []

    # The job runs again (at-least-once delivery): nothing happens twice.
    assert await dispatch_event({}, str(tenant), str(event_id)) == "skipped"
    await queue.enqueue_job("dispatch_event", str(tenant), str(event_id), _job_id=f"dup:{event_id}")
    await run_worker()
    assert await effects(tenant, event_id) == 1 and calls == [event_id]


async def test_handler_work_that_committed_is_not_redone(queue, tenant, handlers):
    # The handler committed but the worker died before marking the event done: the event runs again.
    calls = register_effect(handlers)
    event_id = await emit_committed(tenant)
    assert await dispatch_event({}, str(tenant), str(event_id)) == "done"
    async with session_scope(system=True) as session:
        await session.execute(text("UPDATE outbox SET status = 'enqueued', done_at = NULL WHERE id = :i"),
                              {"i": event_id})
    assert await dispatch_event({}, str(tenant), str(event_id)) == "done"
    assert await effects(tenant, event_id) == 1 and len(calls) == 1


async def test_concurrent_duplicate_jobs_run_the_effect_once(queue, tenant, handlers, run_worker):
    calls = register_effect(handlers, delay=0.3)
    event_id = await emit_committed(tenant)
    # Two deliveries of one event at the same time (say two relays before the fix of a stale row).
    results = await asyncio.gather(*[dispatch_event({}, str(tenant), str(event_id)) for _ in range(3)])
    assert set(results) == {"done"}
    assert await effects(tenant, event_id) == 1
    assert len(calls) >= 1  # each may start the handler; only one commits its work

    # And through the worker: the same event enqueued twice under two job ids.
    second = await emit_committed(tenant)
    await relay_all(queue)
    await queue.enqueue_job("dispatch_event", str(tenant), str(second), _job_id=f"dup:{second}")
    assert len([j for j in await queued(queue) if str(second) in j]) == 2
    await run_worker()
    assert await effects(tenant, second) == 1
    assert (await event_row(tenant, second)).status == "done"


async def test_only_the_failed_handler_runs_again(queue, tenant, handlers, run_worker):
    ok_calls = register_effect(handlers, action="test.effect")
    flaky = {"fail": True}

    @handlers.on(TOPIC)
    async def flaky_handler(session, event):
        if flaky["fail"]:
            raise Boom("downstream unavailable")
        audit.record(session, "test.flaky", "outbox_event", event.id)

    event_id = await emit_committed(tenant)
    await relay_all(queue)
    await run_worker()
    row = await event_row(tenant, event_id)
    assert row.status == "pending" and row.attempts == 1 and "downstream unavailable" in row.last_error
    flaky["fail"] = False
    await relay_all(queue)
    await run_worker()
    assert (await event_row(tenant, event_id)).status == "done"
    assert await effects(tenant, event_id, "test.effect") == 1 and len(ok_calls) == 1
    assert await effects(tenant, event_id, "test.flaky") == 1


async def test_failing_handler_is_retried_then_dead_lettered_then_retried_by_api(
    queue, kit, tenant, handlers, run_worker
):
    broken = {"fail": True}
    calls: list[UUID] = []

    @handlers.on(TOPIC)
    async def sometimes_broken(session, event):
        calls.append(event.id)
        if broken["fail"]:
            raise Boom("template missing")
        audit.record(session, "test.effect", "outbox_event", event.id)

    event_id = await emit_committed(tenant)
    max_attempts = get_settings().job_max_attempts
    for attempt in range(1, max_attempts + 1):
        await relay_all(queue)
        assert await jobs_for(queue, event_id), f"attempt {attempt} was not enqueued"
        await run_worker()
        row = await event_row(tenant, event_id)
        assert row.attempts == attempt and row.last_error == "Boom: template missing"
        assert row.status == ("dead" if attempt == max_attempts else "pending")
    assert len(calls) == max_attempts and await effects(tenant, event_id) == 0

    # Dead letters stay put and are visible through the API.
    await relay_all(queue)
    assert await jobs_for(queue, event_id) == []
    dead = (await kit.get("/outbox", params={"status": "dead"})).json()["items"]
    assert [(e["id"], e["attempts"], e["last_error"]) for e in dead] == [
        (str(event_id), max_attempts, "Boom: template missing")]
    assert (await kit.get("/outbox", params={"status": "pending"})).json()["items"] == []

    # Once the cause is fixed, a retry through the API delivers it.
    broken["fail"] = False
    r = await kit.post(f"/outbox/{event_id}/retry", {})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending" and r.json()["attempts"] == 0 and r.json()["last_error"] is None
    await seal_audit()
    assert (await kit.get("/audit", params={"action": "outbox.retry"})).json()["items"][0]["target_id"] == str(event_id)
    again = await kit.post(f"/outbox/{event_id}/retry", {})
    assert again.status_code == 409 and again.json()["code"] == "event_not_dead"

    await relay_all(queue)
    assert await jobs_for(queue, event_id), "the retried event was not handed to the queue"
    await run_worker()
    row = await event_row(tenant, event_id)
    assert row.status == "done" and await effects(tenant, event_id) == 1
    assert (await kit.get("/outbox", params={"status": "done"})).json()["items"][0]["id"] == str(event_id)


async def test_stale_enqueued_event_is_enqueued_again(queue, tenant, handlers, run_worker):
    calls = register_effect(handlers)
    lost = await emit_committed(tenant)  # its job vanishes (a Redis restart)
    stuck = await emit_committed(tenant)  # its job ran, but the worker died before marking it done
    await relay_all(queue)
    await queue.zrem(queue_name(), *await jobs_for(queue, lost))
    await run_worker()
    async with session_scope(system=True) as session:
        await session.execute(text("UPDATE outbox SET status = 'enqueued', done_at = NULL WHERE id = :i"),
                              {"i": stuck})
        await session.execute(
            text("UPDATE outbox SET enqueued_at = now() - interval '11 minutes' WHERE id IN (:a, :b)"),
            {"a": lost, "b": stuck})
    await relay_all(queue)
    assert await jobs_for(queue, lost) and await jobs_for(queue, stuck)
    await run_worker()
    for event_id in (lost, stuck):
        assert (await event_row(tenant, event_id)).status == "done"
        assert await effects(tenant, event_id) == 1
    assert sorted(calls, key=str) == sorted([lost, stuck], key=str)


def test_backoff_doubles_and_is_capped(monkeypatch):
    settings = get_settings()
    monkeypatch.setattr(settings, "job_backoff_base_seconds", 5.0)
    monkeypatch.setattr(settings, "job_backoff_max_seconds", 30.0)
    assert [backoff_seconds(n) for n in range(1, 6)] == [5.0, 10.0, 20.0, 30.0, 30.0]


async def test_outbox_api_needs_permissions_and_stays_in_its_tenant(queue, kit, tenant, client):
    therapist = await kit.staff(["therapist"])
    r = await kit.get("/outbox", token=therapist["token"])
    assert r.status_code == 403 and r.json()["code"] == "permission_denied"

    event_id = await emit_committed(tenant)
    async with session_scope(system=True) as session:
        await session.execute(text("UPDATE outbox SET status = 'dead' WHERE id = :i"), {"i": event_id})
    r = await kit.post(f"/outbox/{event_id}/retry", {}, token=therapist["token"])
    assert r.status_code == 403
    other = await new_tenant(client)
    assert (await other.get("/outbox")).json()["items"] == []
    r = await other.post(f"/outbox/{event_id}/retry", {})
    assert r.status_code == 404 and r.json()["code"] == "event_not_found"
    assert (await event_row(tenant, event_id)).status == "dead"


# ---------------------------------------------------------------- LISTEN/NOTIFY wake-up


async def _wait_enqueued(pool, event_id: UUID, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await jobs_for(pool, event_id):
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"event {event_id} was not enqueued within {within}s")


async def _stop(task: asyncio.Task, stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(task, timeout=5)


async def test_notify_wakes_the_relay_long_before_the_poll_interval(queue, tenant, database_url, monkeypatch):
    monkeypatch.setattr(get_settings(), "outbox_poll_seconds", 60.0)
    first_pass_done = asyncio.Event()
    real_relay_once = relay.relay_once

    async def signalling_relay_once(*args, **kwargs):
        try:
            return await real_relay_once(*args, **kwargs)
        finally:
            first_pass_done.set()

    monkeypatch.setattr(relay, "relay_once", signalling_relay_once)
    stop = asyncio.Event()
    task = asyncio.create_task(run_relay(queue, database_url, queue_name=queue_name(), stop=stop))
    try:
        await asyncio.wait_for(first_pass_done.wait(), timeout=5)
        await asyncio.sleep(0.2)  # the relay is now asleep for the poll interval
        event_id = await emit_committed(tenant)
        assert await _wait_enqueued(queue, event_id, within=5) < 5
    finally:
        await _stop(task, stop)


async def test_notify_during_a_relay_pass_is_not_lost(queue, tenant, database_url, monkeypatch):
    # An event committed while a pass runs (after its SELECT) must wake the next pass at once.
    monkeypatch.setattr(get_settings(), "outbox_poll_seconds", 60.0)
    real_relay_once = relay.relay_once
    committed: list[UUID] = []
    injected = asyncio.Event()

    async def pass_with_a_commit_in_flight(*args, **kwargs):
        moved = await real_relay_once(*args, **kwargs)
        if not committed:
            committed.append(await emit_committed(tenant))
            await asyncio.sleep(0.3)  # let the NOTIFY reach the listener before the pass returns
            injected.set()
        return moved

    monkeypatch.setattr(relay, "relay_once", pass_with_a_commit_in_flight)
    stop = asyncio.Event()
    task = asyncio.create_task(run_relay(queue, database_url, queue_name=queue_name(), stop=stop))
    try:
        await asyncio.wait_for(injected.wait(), timeout=5)
        await _wait_enqueued(queue, committed[0], within=5)
    finally:
        await _stop(task, stop)


async def test_relay_stops_promptly(queue, database_url, monkeypatch):
    monkeypatch.setattr(get_settings(), "outbox_poll_seconds", 60.0)
    stop = asyncio.Event()
    task = asyncio.create_task(run_relay(queue, database_url, queue_name=queue_name(), stop=stop))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await _stop(task, stop)
    assert time.monotonic() - started < 2
