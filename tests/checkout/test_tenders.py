"""Mixed tenders in one payment, and no double spend when orders race for the same stored value or coupon."""

from __future__ import annotations

import asyncio

from tests.cards.helpers import MASSAGE_PRICE, MOXA_PRICE, assert_problem, consistency, events, make_member
from tests.checkout.helpers import (
    TEA_PRICE,
    card_json,
    cash,
    coupon,
    coupon_status,
    give_points,
    issue_coupon,
    make_shop,
    order_rows,
    paid_order,
    points,
    points_balance,
    post_order,
    product_line,
    product_stock,
    service_line,
    stored,
    stored_value_card,
)
from tests.factories import new_tenant


async def test_cash_stored_value_points_and_coupon_in_one_payment(client):
    shop = await make_shop(client)
    card = await stored_value_card(shop, face=10000, bonus=5000)  # principal first (the default)
    await give_points(shop, 3000)
    coupon_id = await issue_coupon(shop, value=2000)
    # 推拿 19800 + 养生茶 9800 = 29600: coupon 2000, points 3000 (= 30 yuan, under the 50 % cap),
    # stored value 12000 (10000 principal + 2000 bonus), cash 12600 out of 13000 handed over.
    body = await paid_order(shop, [service_line(shop.clinic.massage), product_line(shop.tea)],
                            [coupon(coupon_id, 2000), points(3000), stored(12000, card), cash(12600, 13000)])
    assert (body["status"], body["total"], body["paid_total"], body["change_given"]) == ("paid", 29600, 29600, 400)
    by_method = {p["method"]: p for p in body["payments"]}
    assert by_method["stored_value"]["principal_used"] == 10000 and by_method["stored_value"]["bonus_used"] == 2000
    assert by_method["points"]["amount"] == 3000 and by_method["points"]["points"] == 3000
    assert by_method["coupon"]["amount"] == 2000 and all(p["status"] == "succeeded" for p in body["payments"])
    # Earned on cash 12600 + principal 10000 (not on bonus, points or the coupon): 226 points.
    assert body["points_earned"] == 226
    assert await points_balance(shop) == 3000 - 3000 + 226
    assert await coupon_status(shop, coupon_id) == "used"
    sv = await card_json(shop, card)
    assert (sv["principal_balance"], sv["bonus_balance"]) == (0, 3000)
    assert await consistency(shop.tenant_id, card) == []
    assert await product_stock(shop) == 9
    topics = [t for t, _ in await events(shop.tenant_id)]
    assert {"order.paid", "points.earned", "coupon.used"} <= set(topics)
    receipt = (await shop.kit.get(f"/orders/{body['id']}/receipt")).json()
    assert [t["label"] for t in receipt["tenders"]] == ["现金", "储值卡", "积分抵扣", "优惠券"] or \
        sorted(t["method"] for t in receipt["tenders"]) == ["cash", "coupon", "points", "stored_value"]


async def test_coupon_amount_must_match_its_quote_and_points_respect_the_cap(client):
    shop = await make_shop(client)
    coupon_id = await issue_coupon(shop, kind="percent", value=20, cap_fen=3000)  # 8折, at most 30 yuan off
    r = await post_order(shop, [service_line(shop.clinic.moxa)], [coupon(coupon_id, 2000), cash(MOXA_PRICE - 2000)])
    body = assert_problem(r, 422, "validation_error")
    assert body["field"] == "payments.0.amount" and body["quoted"] == 1960
    await give_points(shop, 10000)
    r = await post_order(shop, [service_line(shop.clinic.moxa)], [points(5000), cash(MOXA_PRICE - 5000)])
    body = assert_problem(r, 422, "points_cap_exceeded")
    assert body["field"] == "payments.0.points" and body["cap_fen"] == MOXA_PRICE // 2
    # Without an amount the coupon pays what it quotes.
    body = await paid_order(shop, [service_line(shop.clinic.moxa)], [coupon(coupon_id), points(4900),
                                                                      cash(MOXA_PRICE - 1960 - 4900)])
    assert {p["method"]: p["amount"] for p in body["payments"]}["coupon"] == 1960
    r = await post_order(shop, [service_line(shop.clinic.moxa)], [coupon(coupon_id), cash(MOXA_PRICE - 1960)])
    assert assert_problem(r, 409, "coupon_used")["field"] == "payments.0.coupon_id"


async def test_another_tenants_or_members_coupon_is_404_naming_the_field(client):
    shop = await make_shop(client)
    stranger = await new_tenant(client)
    their_member = await make_member(stranger, "外人")
    r = await stranger.post("/coupon-templates", {"name": "立减", "kind": "fixed", "value": 1000})
    r = await stranger.post("/coupons", {"template_id": r.json()["id"], "member_id": their_member})
    theirs = r.json()["id"]
    other = await make_member(shop.kit, "赵六")
    not_mine = await issue_coupon(shop, member=other, value=1000)
    before = await order_rows(shop.tenant_id)
    for coupon_id in (theirs, not_mine):
        r = await post_order(shop, [service_line(shop.clinic.moxa)], [coupon(coupon_id), cash(MOXA_PRICE - 1000)])
        assert assert_problem(r, 404, "coupon_not_found")["field"] == "payments.0.coupon_id"
    assert await order_rows(shop.tenant_id) == before


async def test_a_failed_tender_rolls_back_the_whole_order(client):
    shop = await make_shop(client)
    card = await stored_value_card(shop, face=5000, bonus=0)
    coupon_id = await issue_coupon(shop, value=1000)
    before = await order_rows(shop.tenant_id)
    # The coupon and the stock would go through; the stored value is short: nothing of it remains.
    r = await post_order(shop, [product_line(shop.tea)], [coupon(coupon_id), stored(TEA_PRICE - 1000, card)])
    assert assert_problem(r, 409, "insufficient_balance")["field"] == "payments.1.card_id"
    assert await order_rows(shop.tenant_id) == before
    assert await coupon_status(shop, coupon_id) == "issued" and await product_stock(shop) == 10
    assert (await card_json(shop, card))["balance"] == 5000


async def test_concurrent_orders_spending_the_last_stored_value_only_one_succeeds(client):
    shop = await make_shop(client)
    card = await stored_value_card(shop, face=5000, bonus=1000)
    await paid_order(shop, [service_line(shop.clinic.massage)], [stored(6000 - 1000, card), cash(MASSAGE_PRICE - 5000)])
    assert (await card_json(shop, card))["balance"] == 1000  # the last of it: the bonus
    before = await order_rows(shop.tenant_id)
    answers = await asyncio.gather(*(post_order(shop, [service_line(shop.clinic.massage)],
                                                [stored(1000, card), cash(MASSAGE_PRICE - 1000)]) for _ in range(6)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] + [409] * 5, [r.text for r in answers]
    assert all(r.json()["code"] == "insufficient_balance" for r in answers if r.status_code == 409)
    sv = await card_json(shop, card)
    assert (sv["principal_balance"], sv["bonus_balance"]) == (0, 0)
    assert await consistency(shop.tenant_id, card) == []
    after = await order_rows(shop.tenant_id)
    assert after["orders"] == before["orders"] + 1 and after["payments"] == before["payments"] + 2


async def test_concurrent_orders_using_one_coupon_only_one_succeeds(client):
    shop = await make_shop(client)
    coupon_id = await issue_coupon(shop, value=1000)
    answers = await asyncio.gather(*(post_order(shop, [service_line(shop.clinic.moxa)],
                                                [coupon(coupon_id), cash(MOXA_PRICE - 1000)]) for _ in range(4)))
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409], [r.text for r in answers]
    assert await coupon_status(shop, coupon_id) == "used"


async def test_family_shared_stored_value_pays_for_a_family_member(client):
    shop = await make_shop(client)
    spouse = await make_member(shop.kit, "李四的爱人")
    r = await shop.kit.post("/families", {"name": "李家", "head_member_id": shop.member})
    assert r.status_code == 201, r.text
    r = await shop.kit.post(f"/families/{r.json()['id']}/members", {"member_id": spouse, "relation": "spouse"})
    assert r.status_code in (200, 201), r.text
    card = await stored_value_card(shop, family_shareable=True)
    body = await paid_order(shop, [service_line(shop.clinic.moxa)], [stored(MOXA_PRICE, card)], member=spouse)
    assert body["status"] == "paid"
    unshared = await stored_value_card(shop)
    r = await post_order(shop, [service_line(shop.clinic.moxa)], [stored(MOXA_PRICE, unshared)], member=spouse)
    assert assert_problem(r, 403, "card_not_shared")["field"] == "payments.0.card_id"
