"""Transactions begin in one round trip without a pool ping, so the pool must cope by itself with connections
that died while idle, transactions cut off mid-way, and tasks cancelled inside a transaction."""

from __future__ import annotations

import asyncio
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from app.api.errors import install_error_handlers
from app.core import audit
from app.core.db import fetch, get_engine, session_scope
from app.core.outbox import emit
from tests.factories import new_tenant


async def _terminate_other_backends() -> int:
    """What a PostgreSQL restart or an idle-connection killer does to the pooled connections."""
    async with session_scope(system=True) as session:
        return (await session.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ))).scalar_one()


async def test_connections_that_died_in_the_pool_are_replaced_without_an_error(client):
    kit = await new_tenant(client)
    await kit.store("静安店")
    # Fill the pool with connections, then kill every one of them behind its back.
    answers = await asyncio.gather(*[kit.get("/stores") for _ in range(8)])
    assert {r.status_code for r in answers} == {200}
    assert await _terminate_other_backends() >= 1
    answers = await asyncio.gather(*[kit.get("/stores") for _ in range(8)])
    assert [r.status_code for r in answers] == [200] * 8, [r.text for r in answers if r.status_code != 200]
    assert (await kit.post("/stores", {"name": "徐汇店"})).status_code == 201


async def test_a_connection_lost_mid_transaction_is_reported_and_the_pool_recovers(app):
    marker = "lost-mid-transaction"
    with pytest.raises(DBAPIError) as lost:
        async with session_scope(system=True) as session:
            await session.execute(text("CREATE TEMP TABLE IF NOT EXISTS lost_probe (v text)"))
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            async with session_scope(system=True) as killer:
                await killer.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            await session.execute(text("SELECT set_config('app.marker', :m, false)"), {"m": marker})
    assert lost.value.connection_invalidated
    # The pool goes on with fresh connections.
    async with session_scope(system=True) as session:
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1


async def test_a_lost_connection_is_a_503_with_retry_after():
    application = FastAPI()
    install_error_handlers(application)

    @application.get("/lost")
    async def lost() -> dict:
        raise DBAPIError("SELECT 1", None, ConnectionResetError("connection reset"), connection_invalidated=True)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://t") as c:
        r = await c.get("/lost")
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "database_unavailable"


async def test_a_transaction_cancelled_mid_way_never_reaches_the_next_borrower(app):
    tenant = UUID(int=42)

    async def stuck() -> None:
        async with session_scope(tenant) as session:
            await session.execute(text("SELECT pg_sleep(10)"))

    for _ in range(12):  # more than the pool keeps, so every pooled connection had its turn
        task = asyncio.create_task(stuck())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def borrow() -> tuple[str, str]:
        async with session_scope(None) as session:
            row = (await session.execute(text(
                "SELECT current_setting('app.tenant_id', true), current_user"))).one()
            await asyncio.sleep(0.02)  # hold it, so the borrowers spread over the pool
            return row[0], row[1]

    seen = await asyncio.gather(*[borrow() for _ in range(10)])
    assert all(value in ("", None) for value, _ in seen), seen
    assert all(user != "postgres" or value == "" for value, user in seen)


async def test_events_and_audit_entries_of_a_rolled_back_savepoint_are_not_written(client):
    kit = await new_tenant(client)
    tenant = UUID(kit.tenant_id)
    async with session_scope(tenant) as session:
        await emit(session, "store.created", {"kept": True})
        audit.record(session, "probe.kept", "probe", "kept")
        with pytest.raises(RuntimeError):
            async with session.begin_nested():
                await emit(session, "store.created", {"kept": False})
                audit.record(session, "probe.undone", "probe", "undone")
                raise RuntimeError("refused: the savepoint rolls back")
    async with session_scope(system=True) as session:
        payloads = (await session.execute(text(
            "SELECT payload FROM outbox WHERE tenant_id = :t AND payload ? 'kept'"), {"t": tenant})).scalars().all()
        actions = (await session.execute(text(
            "SELECT action FROM audit_pending WHERE tenant_id = :t AND action LIKE 'probe.%'"),
            {"t": tenant})).scalars().all()
    assert payloads == [{"kept": True}]
    assert actions == ["probe.kept"]


async def test_each_transaction_keeps_its_own_connection_when_scopes_interleave(app):
    """The ORM of a transaction runs on the connection that transaction began on, even when the session is
    first used while another transaction is open in the same task."""
    async with session_scope(system=True) as outer:
        outer_pid = (await fetch(outer, "SELECT pg_backend_pid() AS pid"))[0]["pid"]
        async with session_scope(system=True) as inner:
            inner_pid = (await inner.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            first_orm_use = (await outer.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert inner_pid != outer_pid and first_orm_use == outer_pid
        await outer.execute(text("CREATE TEMP TABLE seen_by_orm (v int) ON COMMIT DROP"))
        await outer.execute(text("INSERT INTO seen_by_orm VALUES (7)"))
        assert (await fetch(outer, "SELECT v FROM seen_by_orm"))[0]["v"] == 7


async def test_a_read_through_prepared_statements_never_checks_out_an_orm_connection(client):
    kit = await new_tenant(client)
    await kit.store("静安店")
    checkouts: list[object] = []

    def count(*_: object) -> None:
        checkouts.append(1)

    pool = get_engine().sync_engine.pool
    event.listen(pool, "checkout", count)
    try:
        for _ in range(3):
            assert (await kit.get("/stores")).status_code == 200
    finally:
        event.remove(pool, "checkout", count)
    assert checkouts == []
    # The ORM still works over the same connections, across transactions (its prepared statements survive
    # the connection going back to the pool between them).
    for name in ("徐汇店", "浦东店", "长宁店"):
        assert (await kit.post("/stores", {"name": name})).status_code == 201


async def test_statements_of_one_transaction_run_one_at_a_time_when_awaited_together(app):
    async with session_scope(system=True) as session:
        answers = await asyncio.gather(
            *[fetch(session, "SELECT $1::int AS v FROM pg_sleep(0.01)", i) for i in range(4)],
            *[session.execute(text("SELECT CAST(:v AS int)"), {"v": 10 + i}) for i in range(4)])
    assert [a[0]["v"] for a in answers[:4]] == [0, 1, 2, 3]
    assert [a.scalar_one() for a in answers[4:]] == [10, 11, 12, 13]


async def test_a_first_transaction_with_postgresql_unreachable_is_database_unavailable():
    from app.core.db import DatabaseUnavailable, _create_engine, _Transactions

    unreachable = _Transactions(_create_engine("postgresql://postgres@127.0.0.1:1/nowhere"), 2)
    try:
        with pytest.raises(DatabaseUnavailable):
            await unreachable.pool()
        with pytest.raises(DatabaseUnavailable):  # not remembered as opened: tried again, refused again
            await unreachable.pool()
    finally:
        await unreachable.close()
