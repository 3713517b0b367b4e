"""Orders: pricing and its rounding rule, the contract's answer, what each line type does when paid,
receipts, reads, and bad input."""

from __future__ import annotations

import random

import pytest

from app.domain.checkout import pricing
from tests.cards.helpers import (
    CUPPING_PRICE,
    MASSAGE_PRICE,
    MOXA_PRICE,
    assert_problem,
    card_state,
    consistency,
    count_card,
    events,
    make_member,
    make_template,
    owner_sql,
)
from tests.checkout.helpers import (
    SV_BONUS,
    SV_FACE,
    TEA_PRICE,
    card_json,
    card_line,
    cash,
    make_shop,
    order_rows,
    paid_order,
    post_order,
    product_line,
    product_stock,
    service_line,
    set_tier,
    stored_value_card,
    stored_value_template,
    tag_member,
    top_up_line,
)
from tests.factories import new_tenant

# ---------------------------------------------------------------- pricing rules (pure)


def test_percent_discounts_floor_to_the_fen_per_line():
    # 9折 on 199.99: 19.999 off → 19.99 off; the member pays 180.00.
    assert pricing.percent_discount(19999, 10) == 1999
    priced = pricing.price_order([pricing.LineInput(19999, 1, tier_percent=10),
                                  pricing.LineInput(333, 3, line_discount=1, tier_percent=5)])
    assert [(p.tier_discount, p.amount) for p in priced.lines] == [(1999, 18000), (49, 949)]
    assert priced.total == 18000 + 949 and priced.subtotal == 19999 + 999


def test_order_discount_split_by_largest_remainder_sums_exactly():
    priced = pricing.price_order([pricing.LineInput(100, 1), pricing.LineInput(100, 1), pricing.LineInput(100, 1)],
                                 order_discount=100)
    # 33.33… each: the fen left over goes to the earliest of equal lines.
    assert [p.order_discount_share for p in priced.lines] == [34, 33, 33]
    assert priced.total == 200 and sum(p.amount for p in priced.lines) == 200
    # Proportional to what each line costs after tier discounts; a free (card-settled) line gets nothing.
    priced = pricing.price_order([pricing.LineInput(19800, 1, tier_percent=10), pricing.LineInput(9800, 1),
                                  pricing.LineInput(5000, 1, settled_by_card=True)], order_discount=1001)
    assert [p.order_discount_share for p in priced.lines] == [646, 355, 0]
    assert priced.total == 17820 + 9800 - 1001


def test_rounding_invariants_hold_for_random_orders():
    rng = random.Random(20261128)
    for _ in range(500):
        lines = [pricing.LineInput(unit_price=rng.randint(0, 50000), quantity=rng.randint(1, 5),
                                   tier_percent=rng.choice([0, 5, 10, 15, 33]),
                                   settled_by_card=rng.random() < 0.1) for _ in range(rng.randint(1, 6))]
        lines = [pricing.LineInput(**{**line.__dict__, "line_discount": 0 if line.settled_by_card
                                      else rng.randint(0, line.unit_price * line.quantity // 4)}) for line in lines]
        base = pricing.price_order(lines)
        discount = rng.randint(0, base.total)
        priced = pricing.price_order(lines, discount)
        assert sum(p.order_discount_share for p in priced.lines) == discount
        assert sum(p.amount for p in priced.lines) == priced.total == base.total - discount
        assert priced.total == priced.subtotal - priced.discount_total
        for p, line in zip(priced.lines, lines, strict=True):
            assert p.amount >= 0
            assert p.amount == p.list_amount - p.line_discount - p.tier_discount - p.order_discount_share
            exact = (p.list_amount - p.line_discount) * line.tier_percent / 100
            assert exact - 1 < p.tier_discount <= exact


def test_discounts_larger_than_the_lines_are_refused():
    with pytest.raises(pricing.PricingError) as info:
        pricing.price_order([pricing.LineInput(100, 1, line_discount=101)])
    assert info.value.field == "lines.0.line_discount"
    with pytest.raises(pricing.PricingError) as info:
        pricing.price_order([pricing.LineInput(100, 1)], order_discount=101)
    assert info.value.field == "order_discount"


def test_top_up_bonus_per_full_face_value():
    assert [pricing.top_up_bonus(a, 100000, 20000) for a in (100000, 250000, 50000)] == [20000, 40000, 0]


def test_points_earn_basis_counts_money_in_once():
    assert pricing.points_earn_basis(cash=5000, wechat=0, stored_value_principal=3000, top_up_lines=0) == 8000
    # A top-up paid in cash earns nothing now (its principal earns when spent).
    assert pricing.points_earn_basis(cash=100000, wechat=0, stored_value_principal=0, top_up_lines=100000) == 0


# ---------------------------------------------------------------- the contract


async def test_cash_order_answers_the_contract(client):
    shop = await make_shop(client)
    r = await post_order(shop, [service_line(shop.clinic.massage)], [cash(MASSAGE_PRICE, 20000)])
    assert r.status_code == 201, r.text
    body = r.json()
    assert {"id", "status", "total", "issued_cards"} <= set(body)
    assert (body["status"], body["total"], body["issued_cards"]) == ("paid", MASSAGE_PRICE, [])
    assert body["change_given"] == 200 and body["paid_total"] == MASSAGE_PRICE
    assert body["payments"][0] | {"cash_received": 20000, "change_given": 200, "status": "succeeded"} \
        == body["payments"][0]
    assert body["points_earned"] == MASSAGE_PRICE // 100  # default: 1 point per yuan
    fetched = (await shop.kit.get(f"/orders/{body['id']}")).json()
    assert fetched["status"] == "paid" and fetched["lines"] == body["lines"]
    paid = await events(shop.tenant_id, "order.paid")
    assert len(paid) == 1 and paid[0][1]["total"] == MASSAGE_PRICE
    assert paid[0][1]["member_id"] == shop.member and paid[0][1]["store_id"] == shop.store
    assert paid[0][1]["lines"][0]["name"] == "推拿"
    assert len(await events(shop.tenant_id, "points.earned")) == 1


async def test_payment_mismatch_names_the_gap_and_writes_nothing(client):
    shop = await make_shop(client)
    before = await order_rows(shop.tenant_id)
    r = await post_order(shop, [service_line(shop.clinic.massage)], [cash(MASSAGE_PRICE - 800)])
    body = assert_problem(r, 422, "payment_mismatch")
    assert body["gap"] == 800 and body["field"] == "payments" and body["total"] == MASSAGE_PRICE
    r = await post_order(shop, [service_line(shop.clinic.massage)], [cash(MASSAGE_PRICE + 1)])
    assert assert_problem(r, 422, "payment_mismatch")["gap"] == -1
    r = await post_order(shop, [service_line(shop.clinic.massage)], [])
    assert assert_problem(r, 422, "payment_mismatch")["gap"] == MASSAGE_PRICE
    assert await order_rows(shop.tenant_id) == before


async def test_tier_line_and_order_discounts_price_the_order(client):
    shop = await make_shop(client)
    await set_tier(shop, "金卡会员", 10)
    await set_tier(shop, "银卡会员", 5)
    await tag_member(shop, "金卡会员")
    await tag_member(shop, "银卡会员")  # the better tier applies; tiers do not add up
    card_template = await make_template(shop.kit, kind="count", price=150000, valid_days=365,
                                        items=[{"service_id": shop.clinic.moxa, "sessions": 10}])
    lines = [service_line(shop.clinic.massage, line_discount=1001), product_line(shop.tea, 2),
             service_line(shop.clinic.cupping), card_line(card_template)]
    # 推拿 19800 - 1001 = 18799, 9折 → floor(1879.9) = 1879 off → 16920; 茶 19600 → 1960 off → 17640;
    # 拔罐 5000 → 500 off → 4500; the card line has no tier discount → 150000. Order discount 1000 split
    # over 16920 : 17640 : 4500 : 150000 (sum 189060): exact shares 89.50, 93.30, 23.80, 793.40 → floors
    # 89 + 93 + 23 + 793 = 998; the 2 fen left go to the largest fractions (.80 拔罐, .50 推拿).
    body = await paid_order(shop, lines, [cash(188060)], order_discount=1000)
    got = [(x["list_amount"], x["line_discount"], x["tier_discount"], x["order_discount_share"], x["amount"])
           for x in body["lines"]]
    shares = pricing.allocate(1000, [16920, 17640, 4500, 150000])
    assert shares == [90, 93, 24, 793]
    assert got == [(19800, 1001, 1879, 90, 16830), (19600, 0, 1960, 93, 17547), (5000, 0, 500, 24, 4476),
                   (150000, 0, 0, 793, 149207)]
    assert (body["subtotal"], body["total"]) == (194400, 188060)
    assert body["discount_total"] == 194400 - 188060 and sum(a for *_, a in got) == body["total"]
    # The card issued records what was actually paid for it.
    card = await card_json(shop, body["issued_cards"][0])
    assert card["price_paid"] == 149207


async def test_product_line_deducts_stock_and_short_stock_is_refused(client):
    shop = await make_shop(client, tea_stock=3)
    await paid_order(shop, [product_line(shop.tea, 2)], [cash(2 * TEA_PRICE)])
    assert await product_stock(shop) == 1
    before = await order_rows(shop.tenant_id)
    r = await post_order(shop, [service_line(shop.clinic.moxa), product_line(shop.tea, 2)],
                         [cash(MOXA_PRICE + 2 * TEA_PRICE)])
    body = assert_problem(r, 409, "insufficient_stock")
    assert body["field"] == "lines.1.product_id"
    assert await product_stock(shop) == 1 and await order_rows(shop.tenant_id) == before


async def test_card_line_issues_a_card_with_frozen_terms(client):
    shop = await make_shop(client)
    template = await make_template(shop.kit, kind="count", price=150000, valid_days=365, transferable=False,
                                   items=[{"service_id": shop.clinic.massage, "sessions": 10}])
    body = await paid_order(shop, [card_line(template)], [cash(150000)])
    assert len(body["issued_cards"]) == 1 and body["lines"][0]["issued_card_id"] == body["issued_cards"][0]
    card_id = body["issued_cards"][0]
    # Later changes to the template do not reach the card sold.
    await owner_sql("UPDATE card_templates SET price = 1, transferable = true WHERE id = :id", id=template)
    state, items = await card_state(shop.tenant_id, card_id)
    assert state.order_id is not None and str(state.order_id) == body["id"]
    assert state.terms["transferable"] is False and state.terms["template_price"] == 150000
    assert state.price_paid == 150000 and [(i.remaining, i.unit_value) for i in items] == [(10, 15000)]
    assert await consistency(shop.tenant_id, card_id) == []
    # Sessions of the card settle a later service line (the line costs nothing, one session is used).
    body = await paid_order(shop, [service_line(shop.clinic.massage, card_id=card_id, quantity=2)], [])
    assert (body["status"], body["total"], body["lines"][0]["settled_by_card"]) == ("paid", 0, True)
    _, items = await card_state(shop.tenant_id, card_id)
    assert items[0].remaining == 8


async def test_top_up_credits_principal_and_bonus(client):
    shop = await make_shop(client)
    template = await stored_value_template(shop)
    body = await paid_order(shop, [card_line(template)], [cash(SV_FACE)])
    card_id = body["issued_cards"][0]
    card = await card_json(shop, card_id)
    assert (card["principal_balance"], card["bonus_balance"]) == (SV_FACE, SV_BONUS)
    body = await paid_order(shop, [top_up_line(card_id, 250000)], [cash(250000)])
    assert (body["lines"][0]["top_up_principal"], body["lines"][0]["top_up_bonus"]) == (250000, 40000)
    assert body["points_earned"] == 0  # top-ups earn when their principal is spent
    card = await card_json(shop, card_id)
    assert (card["principal_balance"], card["bonus_balance"]) == (SV_FACE + 250000, SV_BONUS + 40000)
    assert await consistency(shop.tenant_id, card_id) == []


async def test_charging_a_completed_service_settles_it_once(client):
    shop = await make_shop(client)
    r = await shop.kit.post("/service-records", {"member_id": shop.member, "store_id": shop.store,
                                                 "service_id": shop.clinic.moxa,
                                                 "staff_id": shop.clinic.therapist["id"]})
    assert r.status_code == 201, r.text
    record = r.json()["service_record_id"] if "service_record_id" in r.json() else r.json()["id"]
    body = await paid_order(shop, [service_line(shop.clinic.moxa, service_record_id=record)], [cash(MOXA_PRICE)])
    rows = await owner_sql("SELECT order_id FROM service_records WHERE id = :id", id=record)
    assert str(rows[0][0]) == body["id"]
    r = await post_order(shop, [service_line(shop.clinic.moxa, service_record_id=record)], [cash(MOXA_PRICE)])
    assert assert_problem(r, 409, "service_record_settled")["field"] == "lines.0.service_record_id"


async def test_receipts_in_json_and_escaped_html(client):
    shop = await make_shop(client)
    r = await shop.kit.post("/stores", {"name": "<b>静安</b>&店"})
    store = r.json()["id"]
    r = await shop.kit.post("/products", {"name": "<script>alert(1)</script>茶", "unit": "罐", "price": 100})
    product = r.json()["id"]
    r = await shop.kit.post("/inventory/movements", {"store_id": store, "product_id": product, "kind": "receive",
                                                     "quantity": 5})
    assert r.status_code == 201, r.text
    body = await paid_order(shop, [product_line(product, 2)], [cash(200, 1000)], store_id=store)
    r = await shop.kit.get(f"/orders/{body['id']}/receipt")
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["total"] == 200 and receipt["change_given"] == 800 and receipt["tenders"][0]["label"] == "现金"
    r = await shop.kit.get(f"/orders/{body['id']}/receipt.html")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;茶" in page
    assert "&lt;b&gt;静安&lt;/b&gt;&amp;店" in page
    assert "应收" in page and "找零" in page and "¥2.00" in page


async def test_lists_filter_and_page_and_the_timeline_shows_orders(client):
    shop = await make_shop(client)
    other = await make_member(shop.kit, "赵六")
    ids = [(await paid_order(shop, [service_line(shop.clinic.cupping)], [cash(CUPPING_PRICE)]))["id"]
           for _ in range(3)]
    await paid_order(shop, [service_line(shop.clinic.cupping)], [cash(CUPPING_PRICE)], member=other)
    r = await shop.kit.get("/orders", params={"member_id": shop.member, "limit": 2})
    page = r.json()
    assert [o["id"] for o in page["items"]] == ids[::-1][:2] and page["next_cursor"]
    r = await shop.kit.get("/orders", params={"member_id": shop.member, "cursor": page["next_cursor"]})
    assert [o["id"] for o in r.json()["items"]] == [ids[0]]
    r = await shop.kit.get("/orders", params={"store_id": shop.store, "status": "paid"})
    assert len(r.json()["items"]) == 4
    r = await shop.kit.get("/orders", params={"status": "pending"})
    assert r.json()["items"] == []
    r = await shop.kit.get(f"/members/{shop.member}/timeline", params={"type": "order"})
    assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()["items"]] == [f"order:{i}" for i in ids[::-1]]


# ---------------------------------------------------------------- who may


async def test_staff_without_orders_write_and_patients_buying_services_are_refused(client):
    shop = await make_shop(client)
    r = await post_order(shop, [service_line(shop.clinic.massage)], [cash(MASSAGE_PRICE)],
                         token=shop.clinic.therapist["token"])
    assert_problem(r, 403, "permission_denied")
    from tests.members.helpers import patient_token

    token = patient_token(shop.kit, shop.member)
    r = await post_order(shop, [service_line(shop.clinic.massage)], [cash(MASSAGE_PRICE)], token=token)
    assert_problem(r, 403, "permission_denied")
    r = await shop.kit.get("/orders", token=token)
    assert r.status_code == 200 and r.json()["items"] == []


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("payment, field", [
    ({"method": "cash", "amount": -100}, "payments.0.cash.amount"),
    ({"method": "cash", "amount": 0}, "payments.0.cash.amount"),
    ({"method": "cash", "amount": 198.0}, "payments.0.cash.amount"),
    ({"method": "cash", "amount": "19800"}, "payments.0.cash.amount"),
    ({"method": "points", "points": 1.5}, "payments.0.points.points"),
    ({"method": "bitcoin", "amount": 19800}, "payments.0"),
    ({"method": "stored_value", "amount": 19800}, "payments.0.stored_value.card_id"),
])
async def test_bad_tenders_are_422_naming_the_field(client, payment, field):
    shop = await make_shop(client, tea_stock=0)
    before = await order_rows(shop.tenant_id)
    r = await post_order(shop, [service_line(shop.clinic.massage)], [payment])
    body = assert_problem(r, 422, "validation_error")
    assert any(e["field"].startswith(field) for e in body["errors"]), body["errors"]
    assert await order_rows(shop.tenant_id) == before


@pytest.mark.parametrize("line, field", [
    ({"type": "service", "service_id": "x"}, "lines.0.service.service_id"),
    ({"type": "product", "product_id": "00000000-0000-4000-8000-000000000000", "quantity": -1},
     "lines.0.product.quantity"),
    ({"type": "top_up", "card_id": "00000000-0000-4000-8000-000000000000", "amount": 10.5}, "lines.0.top_up.amount"),
    ({"type": "service", "service_id": "00000000-0000-4000-8000-000000000000", "line_discount": -1},
     "lines.0.service.line_discount"),
])
async def test_bad_lines_are_422_naming_the_field(client, line, field):
    shop = await make_shop(client, tea_stock=0)
    r = await post_order(shop, [line], [cash(100)])
    body = assert_problem(r, 422, "validation_error")
    assert any(e["field"].startswith(field) for e in body["errors"]), body["errors"]


async def test_unknown_and_foreign_references_are_404_naming_the_field(client):
    shop = await make_shop(client)
    stranger = await new_tenant(client)
    their_store = await stranger.store()
    their_member = await make_member(stranger, "外人")
    r = await stranger.post("/card-templates", {"name": "储值", "kind": "stored_value", "price": 1000,
                                               "face_value": 1000})
    r = await stranger.post("/cards", {"member_id": their_member, "template_id": r.json()["id"],
                                       "store_id": their_store, "reason": "测试"})
    their_card = r.json()["id"]
    before = await order_rows(shop.tenant_id)
    cases = [
        ([service_line(shop.clinic.massage)], [{"method": "stored_value", "amount": MASSAGE_PRICE,
                                               "card_id": their_card}], "payments.0.card_id", "card_not_found"),
        ([top_up_line(their_card, 1000)], [cash(1000)], "lines.0.card_id", "card_not_found"),
        ([service_line(shop.clinic.massage, card_id=their_card)], [], "lines.0.card_id", "card_not_found"),
        ([product_line("00000000-0000-4000-8000-000000000000")], [cash(1)], "lines.0.product_id",
         "product_not_found"),
    ]
    for lines, payments, field, code in cases:
        body = assert_problem(await post_order(shop, lines, payments), 404, code)
        assert body["field"] == field, body
    body = assert_problem(await post_order(shop, [service_line(shop.clinic.massage)], [cash(MASSAGE_PRICE)],
                                           member=their_member), 404, "member_not_found")
    assert body["field"] == "member_id"
    # Another member's card of this tenant, topped up: as if it did not exist.
    other = await make_member(shop.kit, "赵六")
    card = await stored_value_card(shop, member=other)
    body = assert_problem(await post_order(shop, [top_up_line(card, 1000)], [cash(1000)]), 404, "card_not_found")
    assert body["field"] == "lines.0.card_id"
    after = await order_rows(shop.tenant_id)
    assert after["orders"] == before["orders"] and after["payments"] == before["payments"]


async def test_cash_received_below_the_amount_and_oversized_discounts_are_422(client):
    shop = await make_shop(client)
    body = assert_problem(await post_order(shop, [service_line(shop.clinic.cupping)], [cash(CUPPING_PRICE, 100)]),
                          422, "validation_error")
    assert body["field"] == "payments.0.cash_received"
    body = assert_problem(await post_order(shop, [service_line(shop.clinic.cupping, line_discount=5001)],
                                           [cash(1)]), 422, "validation_error")
    assert body["field"] == "lines.0.line_discount"
    body = assert_problem(await post_order(shop, [service_line(shop.clinic.cupping)], [cash(1)],
                                           order_discount=5001), 422, "validation_error")
    assert body["field"] == "order_discount"


async def test_count_card_settles_only_what_it_holds(client):
    shop = await make_shop(client)
    card = await count_card(shop.clinic, 1)
    r = await post_order(shop, [service_line(shop.clinic.massage, card_id=card["id"], quantity=2)], [])
    assert assert_problem(r, 409, "no_sessions_left")["field"] == "lines.0.card_id"
    _, items = await card_state(shop.tenant_id, card["id"])
    assert items[0].remaining == 1


# ---------------------------------------------------------------- demo data


async def test_demo_checkout_seed_makes_paid_orders(client):
    from sqlmodel import select

    from app.core.actor import Actor
    from app.core.db import session_scope
    from app.domain.checkout.demo import seed_checkout
    from app.domain.tenancy import service as tenancy
    from app.domain.tenancy.models import Store
    from app.seed import DEMO_TENANT, seed_demo

    await seed_demo(if_missing=True)
    async with session_scope(system=True) as session:
        tenant = await tenancy.get_tenant_by_code(session, DEMO_TENANT)
    async with session_scope(tenant.id) as session:
        stores = list((await session.exec(select(Store).order_by(Store.id))).all())
        made = await seed_checkout(session, Actor.system(tenant.id), stores, {})
    assert len(made) == 3, made
    rows = await owner_sql("SELECT status, count(*) FROM orders WHERE tenant_id = :t GROUP BY status", t=tenant.id)
    assert dict(rows).get("paid", 0) >= 3
