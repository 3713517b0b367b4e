"""balance == sum(ledger) after any sequence of receive / adjust / transfer / consume / reverse, and every
operation succeeds exactly when a simple model of the stock says it may (stock never goes negative)."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.db import session_scope
from app.core.errors import AppError
from app.domain.inventory import service as inventory
from app.domain.inventory.schemas import MovementCreate, TransferCreate, TransferLine
from tests.inventory.helpers import assert_ledger_consistent, balance, make_world

RECIPE = {"oil": 10, "sheet": 1}  # what make_world's 推拿 uses

stores = st.sampled_from(["a", "b"])
items = st.sampled_from(["oil", "sheet"])
operations = st.one_of(
    st.tuples(st.just("receive"), stores, items, st.integers(1, 40)),
    st.tuples(st.just("adjust"), stores, items, st.integers(-30, 30).filter(bool)),
    st.tuples(st.just("transfer"), stores, items, st.integers(1, 30)),
    st.tuples(st.just("consume"), stores, st.just("oil"), st.just(0)),
    st.tuples(st.just("reverse"), stores, items, st.integers(0, 5)),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operations, min_size=1, max_size=14))
async def test_ledger_sum_equals_balance_after_any_sequence(ops):
    world = await make_world()
    store_ids = {"a": world.store_a, "b": world.store_b}
    item_ids = {"oil": world.oil, "sheet": world.sheet}
    model = {(s, i): 0 for s in store_ids for i in item_ids}
    consumed: list[tuple[str, str, bool]] = []  # (ref, store, reversed)

    for kind, store, item, quantity in ops:
        other = "b" if store == "a" else "a"
        expect_ok = True
        async with session_scope(world.tenant_id) as session:
            try:
                if kind == "receive":
                    await inventory.record_movement(session, world.actor, MovementCreate(
                        store_id=store_ids[store], kind="receive", quantity=quantity, consumable_id=item_ids[item]))
                    model[store, item] += quantity
                elif kind == "adjust":
                    expect_ok = model[store, item] + quantity >= 0
                    await inventory.record_movement(session, world.actor, MovementCreate(
                        store_id=store_ids[store], kind="adjust", quantity=quantity, reason="盘点",
                        consumable_id=item_ids[item]))
                    model[store, item] += quantity
                elif kind == "transfer":
                    expect_ok = model[store, item] >= quantity
                    await inventory.transfer(session, world.actor, TransferCreate(
                        from_store_id=store_ids[store], to_store_id=store_ids[other],
                        lines=[TransferLine(consumable_id=item_ids[item], quantity=quantity)]))
                    model[store, item] -= quantity
                    model[other, item] += quantity
                elif kind == "consume":
                    expect_ok = all(model[store, i] >= q for i, q in RECIPE.items())
                    ref = str(uuid.uuid4())
                    await inventory.consume_for_service(session, world.actor, store_ids[store], world.massage,
                                                        "service_record", ref)
                    for i, q in RECIPE.items():
                        model[store, i] -= q
                    consumed.append((ref, store, False))
                elif kind == "reverse" and consumed:
                    index = quantity % len(consumed)
                    ref, at, done = consumed[index]
                    reversals = await inventory.reverse(session, world.actor, "service_record", ref, "冲正")
                    assert len(reversals) == (0 if done else len(RECIPE))
                    if not done:
                        for i, q in RECIPE.items():
                            model[at, i] += q
                        consumed[index] = (ref, at, True)
                assert expect_ok, f"{kind} {store} {item} {quantity} should have been refused"
            except AppError as exc:
                # Caught inside the transaction, which then commits: the refused call must have left
                # nothing behind (it runs in a savepoint), which the final ledger check verifies.
                assert not expect_ok, f"{kind} {store} {item} {quantity} refused: {exc.detail}"
                assert exc.code == "insufficient_stock"
        assert all(expected >= 0 for expected in model.values())
    for (s, i), expected in model.items():
        assert await balance(world, store_ids[s], item_ids[i]) == expected, (s, i)
    await assert_ledger_consistent(world)
