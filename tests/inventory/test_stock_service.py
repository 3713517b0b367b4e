"""The functions the completion and checkout flows call: consume by recipe, sell, reverse; in the caller's
transaction, all or nothing, never overdrawing, with a low-stock event when a threshold is crossed."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlmodel import select

from app.core.db import session_scope
from app.core.errors import AppError
from app.core.outbox import OutboxEvent
from app.domain.inventory import service as inventory
from app.domain.inventory.service import SaleLine
from tests.inventory.helpers import (
    allow_negative_stock,
    assert_ledger_consistent,
    balance,
    ledger,
    make_world,
    receive,
)


async def test_consume_deducts_the_recipe_and_reverse_restores_it():
    world = await make_world()
    await receive(world, world.store_a, 100, consumable_id=world.oil)
    await receive(world, world.store_a, 5, consumable_id=world.sheet)
    record_id = uuid.uuid4()
    async with session_scope(world.tenant_id) as session:
        consumed = await inventory.consume_for_service(session, world.actor, world.store_a, world.massage,
                                                       "service_record", record_id)
    assert sorted((m.item_id == world.oil, m.quantity, m.kind) for m in consumed) == [
        (False, -1, "consume"), (True, -10, "consume")]
    assert all(m.ref_type == "service_record" and m.ref_id == str(record_id) for m in consumed)
    assert await balance(world, world.store_a, world.oil) == 90
    assert await balance(world, world.store_a, world.sheet) == 4

    async with session_scope(world.tenant_id) as session:
        reversals = await inventory.reverse(session, world.actor, "service_record", record_id, "wrong therapist")
        again = await inventory.reverse(session, world.actor, "service_record", record_id, "job retried")
    assert again == []
    assert {r.reverses_id for r in reversals} == {m.id for m in consumed}
    assert all(r.kind == "reversal" and r.quantity == -m.quantity
               for r, m in zip(sorted(reversals, key=lambda r: r.reverses_id),
                               sorted(consumed, key=lambda m: m.id), strict=True))
    assert await balance(world, world.store_a, world.oil) == 100
    assert await balance(world, world.store_a, world.sheet) == 5
    await assert_ledger_consistent(world)


async def test_a_short_item_is_named_and_nothing_of_the_call_is_written():
    world = await make_world()
    await receive(world, world.store_a, 100, consumable_id=world.oil)  # oil enough, no sheets at all
    before = await ledger(world)
    with pytest.raises(AppError) as caught:
        async with session_scope(world.tenant_id) as session:
            await inventory.consume_for_service(session, world.actor, world.store_a, world.massage,
                                                "service_record", uuid.uuid4())
    error = caught.value
    assert error.status == 409 and error.code == "insufficient_stock"
    assert error.extra["item_name"] == "一次性床单" and error.extra["available"] == 0
    assert error.extra["requested"] == 1 and error.extra["item_id"] == str(world.sheet)
    assert "一次性床单" in error.detail
    assert [m.id for m in await ledger(world)] == [m.id for m in before]
    assert await balance(world, world.store_a, world.oil) == 100


async def test_the_call_is_all_or_nothing_even_when_the_caller_carries_on():
    """A caller that catches the 409 (e.g. to record 'charge at checkout') keeps a clean transaction."""
    world = await make_world()
    await receive(world, world.store_a, 100, consumable_id=world.oil)
    async with session_scope(world.tenant_id) as session:
        with pytest.raises(AppError):
            await inventory.consume_for_service(session, world.actor, world.store_a, world.massage,
                                                "service_record", uuid.uuid4())
        await inventory.sell_products(session, world.actor, world.store_a, [], "order", uuid.uuid4())
    assert await balance(world, world.store_a, world.oil) == 100  # the oil line was rolled back with the call
    await assert_ledger_consistent(world)


async def test_negative_stock_when_the_tenant_allows_it():
    world = await make_world()
    await allow_negative_stock(world.tenant_id)
    async with session_scope(world.tenant_id) as session:
        await inventory.consume_for_service(session, world.actor, world.store_a, world.massage, "service_record",
                                            uuid.uuid4())
        await inventory.sell_products(session, world.actor, world.store_a, [SaleLine(world.tea, 2)], "order",
                                      uuid.uuid4())
    assert await balance(world, world.store_a, world.oil) == -10
    assert await balance(world, world.store_a, world.tea) == -2
    await assert_ledger_consistent(world)
    await allow_negative_stock(world.tenant_id, False)
    with pytest.raises(AppError, match="养生茶"):
        async with session_scope(world.tenant_id) as session:
            await inventory.sell_products(session, world.actor, world.store_a, [SaleLine(world.tea, 1)], "order",
                                          uuid.uuid4())


async def test_sell_products_validates_lines():
    world = await make_world()
    await receive(world, world.store_a, 10, product_id=world.tea)
    for lines, status in (([SaleLine(world.tea, 0)], 422), ([SaleLine(world.tea, 1.0)], 422),
                          ([SaleLine(world.oil, 1)], 404), ([SaleLine(uuid.uuid4(), 1)], 404),
                          ([SaleLine(world.tea, 11)], 409)):
        with pytest.raises(AppError) as caught:
            async with session_scope(world.tenant_id) as session:
                await inventory.sell_products(session, world.actor, world.store_a, lines, "order", uuid.uuid4())
        assert caught.value.status == status, lines
    async with session_scope(world.tenant_id) as session:
        sold = await inventory.sell_products(session, world.actor, world.store_a,
                                             [SaleLine(world.tea, 3), SaleLine(world.tea, 2)], "order", "o-1")
    assert [m.balance_after for m in sold] == [7, 5] and all(m.kind == "sale" for m in sold)
    with pytest.raises(AppError) as caught:
        async with session_scope(world.tenant_id) as session:
            await inventory.consume_for_service(session, world.actor, world.store_a, uuid.uuid4(), "sr", "x")
    assert caught.value.status == 404 and caught.value.code == "service_not_found"


async def _low_stock_events(tenant_id) -> list[OutboxEvent]:
    async with session_scope(tenant_id) as session:
        stmt = select(OutboxEvent).where(OutboxEvent.topic == inventory.LOW_STOCK_TOPIC)
        return list((await session.exec(stmt)).all())


async def test_low_stock_event_once_when_the_threshold_is_crossed():
    world = await make_world(oil_threshold=35)
    await receive(world, world.store_a, 60, consumable_id=world.oil)
    await receive(world, world.store_a, 10, consumable_id=world.sheet)
    for _ in range(4):  # oil 60 → 50 → 40 → 30 (crosses 35) → 20
        async with session_scope(world.tenant_id) as session:
            await inventory.consume_for_service(session, world.actor, world.store_a, world.massage, "service_record",
                                                uuid.uuid4())
    events = await _low_stock_events(world.tenant_id)
    oil_events = [e for e in events if e.payload["item_id"] == str(world.oil)]
    assert len(oil_events) == 1
    assert oil_events[0].payload | {"movement_id": None} == {
        "store_id": str(world.store_a), "item_kind": "consumable", "item_id": str(world.oil),
        "consumable_id": str(world.oil), "name": "按摩精油", "unit": "ml", "quantity": 30, "threshold": 35,
        "movement_id": None}
    # Sheets (threshold 0) have not run out; a failed deduction emits nothing either.
    assert [e for e in events if e.payload["item_id"] == str(world.sheet)] == []


async def test_concurrent_consumption_never_overdraws():
    world = await make_world()
    await receive(world, world.store_a, 30, consumable_id=world.oil)  # exactly 3 massages
    await receive(world, world.store_a, 50, consumable_id=world.sheet)

    async def complete_one() -> str:
        try:
            async with session_scope(world.tenant_id) as session:
                await inventory.consume_for_service(session, world.actor, world.store_a, world.massage,
                                                    "service_record", uuid.uuid4())
            return "ok"
        except AppError as exc:
            return exc.code

    results = await asyncio.gather(*(complete_one() for _ in range(20)))
    assert results.count("ok") == 3 and results.count("insufficient_stock") == 17
    assert await balance(world, world.store_a, world.oil) == 0
    assert await balance(world, world.store_a, world.sheet) == 47
    assert len([m for m in await ledger(world, world.store_a, world.oil) if m.kind == "consume"]) == 3
    await assert_ledger_consistent(world)


async def test_concurrent_opposite_transfers_do_not_deadlock():
    """A→B and B→A at once lock the same balance rows; sorted lock order keeps them from waiting in a cycle."""
    from app.domain.inventory.schemas import TransferCreate, TransferLine

    world = await make_world()
    for store in (world.store_a, world.store_b):
        await receive(world, store, 1000, consumable_id=world.oil)
        await receive(world, store, 1000, consumable_id=world.sheet)

    async def move(source, target):
        async with session_scope(world.tenant_id) as session:
            await inventory.transfer(session, world.actor, TransferCreate(
                from_store_id=source, to_store_id=target,
                lines=[TransferLine(consumable_id=world.sheet, quantity=1),
                       TransferLine(consumable_id=world.oil, quantity=1)]))

    await asyncio.wait_for(asyncio.gather(*(move(world.store_a, world.store_b) if i % 2 else
                                            move(world.store_b, world.store_a) for i in range(12))), 60)
    assert await balance(world, world.store_a, world.oil) + await balance(world, world.store_b, world.oil) == 2000
    await assert_ledger_consistent(world)


async def test_concurrent_reversals_of_one_reference_restore_stock_once():
    world = await make_world()
    await receive(world, world.store_a, 100, consumable_id=world.oil)
    await receive(world, world.store_a, 10, consumable_id=world.sheet)
    record_id = uuid.uuid4()
    async with session_scope(world.tenant_id) as session:
        await inventory.consume_for_service(session, world.actor, world.store_a, world.massage, "service_record",
                                            record_id)

    async def undo() -> int:
        async with session_scope(world.tenant_id) as session:
            return len(await inventory.reverse(session, world.actor, "service_record", record_id, "重复提交"))

    written = await asyncio.gather(*(undo() for _ in range(6)))
    assert sorted(written) == [0, 0, 0, 0, 0, 2]
    assert await balance(world, world.store_a, world.oil) == 100
    assert await balance(world, world.store_a, world.sheet) == 10
    await assert_ledger_consistent(world)
