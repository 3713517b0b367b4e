"""Every card kind through sale → deductions → expiry: count, package (with a shared pool), period (with a
daily cap), stored value (spend orders, top-up), gifted sessions, how the price is split into session
values, and the worker's expiry and expiring-soon notice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.core.errors import AppError
from app.domain.cards import service as cards
from app.workers.scheduled import run_card_housekeeping
from tests.cards.helpers import (
    MASSAGE_PRICE,
    MOXA_PRICE,
    assert_problem,
    card_state,
    complete,
    consistency,
    count_card,
    events,
    in_tenant,
    issue,
    ledger_rows,
    make_clinic,
    make_template,
    new_ref,
    owner_sql,
    set_card_times,
)


def remaining_by_service(card: dict) -> dict[str | None, int]:
    return {i["service_id"]: i["remaining"] for i in card["items"]}


async def test_count_card_sale_deductions_and_exhaustion(client):
    clinic = await make_clinic(client)
    card = await count_card(clinic, 3, price=45000)
    assert card["kind"] == "count" and card["status"] == "active" and card["price_paid"] == 45000
    assert [(i["service_id"], i["sessions_total"], i["remaining"], i["unit_value"]) for i in card["items"]] == [
        (clinic.massage, 3, 3, 15000)]
    expires = datetime.fromisoformat(card["expires_at"])
    assert timedelta(days=364) < expires - datetime.now(UTC) <= timedelta(days=365)

    for left in (2, 1, 0):
        r = await complete(clinic, card["id"])
        assert r.status_code == 201, r.text
        # A card session earns its share of the card price: 10 % of 15000.
        assert r.json()["card_remaining"] == left and r.json()["earned_amount"] == 15000
        assert r.json()["commission"] == 1500 and r.json()["settlement"] == "card"
    listed = (await clinic.kit.get(f"/members/{clinic.member}/cards")).json()["items"]
    assert [(c["id"], c["status"], remaining_by_service(c)) for c in listed] == [
        (card["id"], "exhausted", {clinic.massage: 0})]

    assert_problem(await complete(clinic, card["id"]), 409, "no_sessions_left")
    kinds = [e.kind for e in await ledger_rows(clinic.tenant_id, card["id"])]
    assert kinds == ["issue", "deduct", "deduct", "deduct"]
    assert await consistency(clinic.tenant_id, card["id"]) == []


async def test_package_card_uses_items_then_the_shared_pool(client):
    clinic = await make_clinic(client)
    template = await make_template(clinic.kit, kind="package", price=50000, valid_days=180, shared_pool_sessions=2,
                                   items=[{"service_id": clinic.massage, "sessions": 2},
                                          {"service_id": clinic.moxa, "sessions": 1}])
    card = await issue(clinic.kit, clinic.member, template, clinic.store, 50000)
    assert remaining_by_service(card) == {clinic.massage: 2, clinic.moxa: 1, None: 2}

    async def use(service: str) -> dict:
        r = await complete(clinic, card["id"], service=service)
        assert r.status_code == 201, r.text
        return remaining_by_service((await clinic.kit.get(f"/cards/{card['id']}")).json())

    assert await use(clinic.massage) == {clinic.massage: 1, clinic.moxa: 1, None: 2}
    assert await use(clinic.massage) == {clinic.massage: 0, clinic.moxa: 1, None: 2}
    # 拔罐 is not on the card: the pool is only for the services the card lists.
    assert_problem(await complete(clinic, card["id"], service=clinic.cupping), 409, "service_not_on_card")
    # The massage item is used up: the pool pays.
    assert await use(clinic.massage) == {clinic.massage: 0, clinic.moxa: 1, None: 1}
    # Moxa still has its own session, which goes first.
    assert await use(clinic.moxa) == {clinic.massage: 0, clinic.moxa: 0, None: 1}
    assert await use(clinic.moxa) == {clinic.massage: 0, clinic.moxa: 0, None: 0}
    assert_problem(await complete(clinic, card["id"], service=clinic.massage), 409, "no_sessions_left")
    assert (await clinic.kit.get(f"/cards/{card['id']}")).json()["status"] == "exhausted"
    assert await consistency(clinic.tenant_id, card["id"]) == []


async def test_package_template_rules(client):
    clinic = await make_clinic(client)
    kit = clinic.kit
    base = {"name": "套餐", "kind": "package", "price": 10000, "valid_days": 90}
    # An item with no sessions needs a pool to draw from.
    r = await kit.post("/card-templates", base | {"items": [{"service_id": clinic.massage, "sessions": 2},
                                                            {"service_id": clinic.moxa, "sessions": 0}]})
    assert_problem(r, 422)
    r = await kit.post("/card-templates", base | {"shared_pool_sessions": 3,
                                                  "items": [{"service_id": clinic.massage, "sessions": 2},
                                                            {"service_id": clinic.moxa, "sessions": 0}]})
    assert r.status_code == 201, r.text
    # The same service twice, a pool on a count card, a count card of two services.
    assert_problem(await kit.post("/card-templates", base | {"items": [{"service_id": clinic.massage, "sessions": 1},
                                                                       {"service_id": clinic.massage, "sessions": 1}]}),
                   422)
    assert_problem(await kit.post("/card-templates", base | {
        "kind": "count", "shared_pool_sessions": 2, "items": [{"service_id": clinic.massage, "sessions": 1}]}), 422)
    assert_problem(await kit.post("/card-templates", base | {
        "kind": "count", "items": [{"service_id": clinic.massage, "sessions": 1},
                                   {"service_id": clinic.moxa, "sessions": 1}]}), 422)


async def test_period_card_is_unlimited_within_validity(client):
    clinic = await make_clinic(client)
    template = await make_template(clinic.kit, kind="period", price=30000, valid_days=30,
                                   items=[{"service_id": clinic.massage}])
    card = await issue(clinic.kit, clinic.member, template, clinic.store, 30000)
    for _ in range(4):
        r = await complete(clinic, card["id"])
        assert r.status_code == 201, r.text
        # A period use has no per-session value: it earns the list price.
        assert r.json()["earned_amount"] == MASSAGE_PRICE
    assert_problem(await complete(clinic, card["id"], service=clinic.moxa), 409, "service_not_on_card")
    assert (await clinic.kit.get(f"/cards/{card['id']}")).json()["status"] == "active"
    assert await consistency(clinic.tenant_id, card["id"]) == []

    # Without a validity a period card would be a lifetime pass.
    assert_problem(await clinic.kit.post("/card-templates", {"name": "年卡", "kind": "period", "price": 1,
                                                             "items": [{"service_id": clinic.massage}]}), 422)


async def test_period_card_daily_cap_counts_the_store_local_day(client):
    clinic = await make_clinic(client)
    template = await make_template(clinic.kit, kind="period", price=30000, valid_days=30, daily_cap=1,
                                   items=[{"service_id": clinic.massage}])
    card = await issue(clinic.kit, clinic.member, template, clinic.store, 30000)
    # A use yesterday (store-local) does not count against today.
    local_midnight = datetime.now(ZoneInfo("Asia/Shanghai")).replace(
        hour=0, minute=0, second=0, microsecond=0)
    await owner_sql(
        "INSERT INTO card_ledger (tenant_id, id, created_at, card_id, kind, card_item_id, sessions_delta, "
        "principal_delta, bonus_delta, actor_type, details) "
        "SELECT tenant_id, gen_random_uuid(), :at, card_id, 'deduct', id, 0, 0, 0, 'system', '{}' "
        "FROM card_items WHERE card_id = :card", at=local_midnight - timedelta(minutes=1), card=UUID(card["id"]))

    first = await complete(clinic, card["id"])
    assert first.status_code == 201, first.text
    assert_problem(await complete(clinic, card["id"]), 409, "daily_cap_reached")
    # Reversing today's use gives the day's use back.
    undo = await clinic.kit.post(f"/service-records/{first.json()['id']}/reverse", {"reason": "录错会员"})
    assert undo.status_code == 200, undo.text
    again = await complete(clinic, card["id"])
    assert again.status_code == 201, again.text
    assert_problem(await complete(clinic, card["id"]), 409, "daily_cap_reached")
    assert await consistency(clinic.tenant_id, card["id"]) == []

    assert_problem(await clinic.kit.post("/card-templates", {
        "name": "次卡", "kind": "count", "price": 1, "daily_cap": 1, "valid_days": 30,
        "items": [{"service_id": clinic.massage, "sessions": 3}]}), 422)


async def stored_value_card(clinic, spend_order: str = "principal_first", face_value: int = 100000,
                            bonus: int = 20000) -> UUID:
    template = await make_template(clinic.kit, kind="stored_value", price=face_value, face_value=face_value,
                                   bonus=bonus, spend_order=spend_order)
    card = await issue(clinic.kit, clinic.member, template, clinic.store, face_value)
    assert (card["principal_balance"], card["bonus_balance"], card["balance"]) == (face_value, bonus,
                                                                                   face_value + bonus)
    assert card["expires_at"] is None and card["items"] == []
    return UUID(card["id"])


async def charge(clinic, card_id: UUID, amount: int) -> tuple[int, int]:
    """Pay `amount` from the card; what came from (principal, bonus)."""
    async with in_tenant(clinic.tenant_id) as session:
        paid = await cards.charge_value(session, clinic.actor, card_id, amount=amount, member_id=UUID(clinic.member),
                                        store_id=UUID(clinic.store), ref_type="order", ref_id=new_ref())
        return paid.principal, paid.bonus


async def balances(clinic, card_id: UUID) -> tuple[int, int]:
    card, _ = await card_state(clinic.tenant_id, card_id)
    return card.principal_balance, card.bonus_balance


@pytest.mark.parametrize(("spend_order", "first", "second"), [
    # 100000 principal + 20000 bonus; pay 30000, then 80000.
    ("principal_first", (30000, 0), (70000, 10000)),
    ("bonus_first", (10000, 20000), (80000, 0)),
    # Bonus in proportion to the balances (1/6 of each payment), rounded down to the fen.
    ("proportional", (25000, 5000), (66667, 13333)),
])
async def test_stored_value_spend_orders(client, spend_order, first, second):
    clinic = await make_clinic(client)
    card_id = await stored_value_card(clinic, spend_order)
    assert await charge(clinic, card_id, 30000) == first
    assert await balances(clinic, card_id) == (100000 - first[0], 20000 - first[1])
    assert await charge(clinic, card_id, 80000) == second
    assert sum(await balances(clinic, card_id)) == 10000
    assert await consistency(clinic.tenant_id, card_id) == []


async def test_stored_value_insufficient_balance_and_top_up(client):
    clinic = await make_clinic(client)
    card_id = await stored_value_card(clinic, face_value=10000, bonus=2000)
    with pytest.raises(AppError) as refused:
        await charge(clinic, card_id, 12001)
    assert (refused.value.status, refused.value.code) == (409, "insufficient_balance")
    assert refused.value.extra["available"] == 12000
    assert await balances(clinic, card_id) == (10000, 2000)
    for amount in (0, -100):
        with pytest.raises(AppError) as bad:
            await charge(clinic, card_id, amount)
        assert bad.value.status == 422
    assert await charge(clinic, card_id, 12000) == (10000, 2000)
    # A session card pays no money, a stored-value card holds no sessions.
    r = await complete(clinic, str(card_id))
    assert_problem(r, 409, "card_kind_mismatch")

    async with in_tenant(clinic.tenant_id) as session:
        await cards.top_up(session, clinic.actor, card_id, principal=50000, bonus=5000, store_id=UUID(clinic.store),
                           ref_type="order", ref_id=new_ref())
    assert await balances(clinic, card_id) == (50000, 5000)
    with pytest.raises(AppError) as bad:
        async with in_tenant(clinic.tenant_id) as session:
            await cards.top_up(session, clinic.actor, card_id, principal=0, bonus=100, store_id=UUID(clinic.store),
                               ref_type="order", ref_id=new_ref())
    assert bad.value.status == 422
    assert [e.kind for e in await ledger_rows(clinic.tenant_id, card_id)] == ["issue", "charge", "top_up"]
    assert await consistency(clinic.tenant_id, card_id) == []
    listed = (await clinic.kit.get(f"/members/{clinic.member}/cards")).json()["items"]
    assert [(c["kind"], c["balance"]) for c in listed] == [("stored_value", 55000)]


async def test_stored_value_templates_cannot_expire_or_hold_sessions(client):
    clinic = await make_clinic(client)
    base = {"name": "充1000送200", "kind": "stored_value", "price": 100000, "face_value": 100000, "bonus": 20000}
    r = await clinic.kit.post("/card-templates", base)
    assert r.status_code == 201, r.text
    assert (r.json()["face_value"], r.json()["bonus"], r.json()["spend_order"]) == (100000, 20000, "principal_first")
    assert_problem(await clinic.kit.post("/card-templates", base | {"valid_days": 365}), 422)
    assert_problem(await clinic.kit.post("/card-templates", base | {"valid_until": "2030-01-01"}), 422)
    assert_problem(await clinic.kit.post("/card-templates", base | {"face_value": 0}), 422)
    assert_problem(await clinic.kit.post("/card-templates", base | {"spend_order": "random"}), 422)
    assert_problem(await clinic.kit.post("/card-templates", base | {
        "items": [{"service_id": clinic.massage, "sessions": 1}]}), 422)
    assert_problem(await clinic.kit.post("/card-templates", {
        "name": "次卡", "kind": "count", "price": 100, "face_value": 100, "valid_days": 30,
        "items": [{"service_id": clinic.massage, "sessions": 1}]}), 422)


async def test_gifted_sessions(client):
    clinic = await make_clinic(client)
    # 买2送1: three sessions for the price of two; each session is worth a third of the price.
    card = await count_card(clinic, 2, price=20000, item={"gifted_sessions": 1})
    assert [(i["sessions_total"], i["gifted_sessions"], i["remaining"], i["unit_value"]) for i in card["items"]] == [
        (3, 1, 3, 6666)]
    for left in (2, 1, 0):
        r = await complete(clinic, card["id"])
        assert r.status_code == 201, r.text
        assert (r.json()["card_remaining"], r.json()["earned_amount"], r.json()["commission"]) == (left, 6666, 667)
    assert_problem(await complete(clinic, card["id"]), 409, "no_sessions_left")
    # A template of only gifted sessions is a valid gift card.
    template = await make_template(clinic.kit, kind="count", price=0, valid_days=30,
                                   items=[{"service_id": clinic.moxa, "sessions": 0, "gifted_sessions": 2}])
    gift = await issue(clinic.kit, clinic.member, template, clinic.store)
    assert [(i["sessions_total"], i["remaining"], i["unit_value"]) for i in gift["items"]] == [(2, 2, 0)]
    assert gift["price_paid"] == 0


async def test_price_is_split_over_items_by_list_price_weight(client):
    clinic = await make_clinic(client)
    template = await make_template(clinic.kit, kind="package", price=50000, valid_days=180,
                                   items=[{"service_id": clinic.massage, "sessions": 2},
                                          {"service_id": clinic.moxa, "sessions": 3}])
    card = await issue(clinic.kit, clinic.member, template, clinic.store, 50000)
    values = {i["service_id"]: (i["sessions_total"], i["unit_value"]) for i in card["items"]}
    # Weights 2 × 19800 and 3 × 9800 of 69000: 28696 and 21304 fen (whole fen, summing to the price paid).
    assert cards._allocate(50000, [2 * MASSAGE_PRICE, 3 * MOXA_PRICE]) == [28696, 21304]
    assert values == {clinic.massage: (2, 14348), clinic.moxa: (3, 7101)}
    r = await complete(clinic, card["id"], service=clinic.moxa)
    assert r.json()["earned_amount"] == 7101 and r.json()["commission"] == 1000  # moxa pays a fixed commission


@given(price=st.integers(0, 10_000_000), weights=st.lists(st.integers(0, 5_000_000), min_size=1, max_size=8))
@example(price=1, weights=[0, 1, 1])
@example(price=2, weights=[1, 3])
@example(price=50000, weights=[3 * MOXA_PRICE, 2 * MASSAGE_PRICE])
def test_allocation_is_whole_fen_summing_to_the_price(price, weights):
    shares = cards._allocate(price, weights)
    total = sum(weights)
    assert all(isinstance(s, int) and s >= 0 for s in shares)
    if total == 0:
        assert shares == [0] * len(weights)
        return
    assert sum(shares) == price
    for share, weight in zip(shares, weights, strict=True):
        exact = price * weight / total
        assert exact - 1 < share < exact + 1  # within a fen of the exact proportion
        if weight == 0:
            assert share == 0  # an item that carries no price (all gifted) gets none of it
    # The split does not depend on the order the items come in.
    assert sorted(cards._allocate(price, weights[::-1])) == sorted(shares)


async def test_expiry_writes_off_sessions_and_extension_gives_them_back(client):
    clinic = await make_clinic(client)
    card = await count_card(clinic, 3, valid_days=30)
    assert (await complete(clinic, card["id"])).status_code == 201
    await set_card_times(card["id"], expires_at=datetime.now(UTC) - timedelta(minutes=1))
    # Past its expiry the card is refused even before the worker marks it.
    assert_problem(await complete(clinic, card["id"]), 409, "card_expired")

    done = await run_card_housekeeping()
    assert done["expired"] >= 1
    state, items = await card_state(clinic.tenant_id, card["id"])
    assert state.status == "expired" and [i.remaining for i in items] == [0]
    expired = [e for e in await ledger_rows(clinic.tenant_id, card["id"]) if e.kind == "expire"]
    assert [(e.sessions_delta, e.ref_type, e.ref_id) for e in expired] == [(-2, "expiry", card["id"])]
    assert [p["card_id"] for _, p in await events(clinic.tenant_id, "card.expired")] == [card["id"]]
    assert await consistency(clinic.tenant_id, card["id"]) == []
    assert_problem(await complete(clinic, card["id"]), 409, "card_expired")
    # A second run finds nothing more to do for this card.
    await run_card_housekeeping()
    assert len(await events(clinic.tenant_id, "card.expired")) == 1

    r = await clinic.kit.post(f"/cards/{card['id']}/extend", {"days": 30, "reason": "顾客住院, 店长同意延期"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active" and remaining_by_service(r.json()) == {clinic.massage: 2}
    assert datetime.fromisoformat(r.json()["expires_at"]) > datetime.now(UTC) + timedelta(days=29)
    assert sorted(e.kind for e in await ledger_rows(clinic.tenant_id, card["id"])) == [
        "deduct", "expire", "extend", "issue", "reverse"]
    assert await consistency(clinic.tenant_id, card["id"]) == []
    r = await complete(clinic, card["id"])
    assert r.status_code == 201 and r.json()["card_remaining"] == 1, r.text


async def test_an_exhausted_card_expires_too(client):
    clinic = await make_clinic(client)
    card = await count_card(clinic, 1, valid_days=30)
    assert (await complete(clinic, card["id"])).status_code == 201
    await set_card_times(card["id"], expires_at=datetime.now(UTC) - timedelta(seconds=1))
    await run_card_housekeeping()
    state, _ = await card_state(clinic.tenant_id, card["id"])
    assert state.status == "expired"
    assert await consistency(clinic.tenant_id, card["id"]) == []


async def test_expiring_soon_notice_is_sent_once(client):
    clinic = await make_clinic(client)
    soon = await count_card(clinic, 3, valid_days=3)
    later = await count_card(clinic, 3, valid_days=60)
    await run_card_housekeeping()
    await run_card_housekeeping()
    notices = await events(clinic.tenant_id, "card.expiring")
    assert [p["card_id"] for _, p in notices] == [soon["id"]]
    assert notices[0][1]["member_id"] == clinic.member
    assert later["id"] not in {p["card_id"] for _, p in notices}
