"""Member-tier discounts are set over REST by whoever may set prices, and price the next order."""

from __future__ import annotations

from tests.cards.helpers import MASSAGE_PRICE, assert_problem
from tests.checkout.helpers import cash, make_shop, post_order, service_line, tag_member


async def test_a_tier_discount_set_over_rest_prices_the_next_order(client):
    shop = await make_shop(client)
    r = await shop.kit.client.put("/api/v1/tier-discounts", headers=shop.kit.auth(),
                                  json={"tag_name": "金卡会员", "percent_off": 10})
    assert r.status_code == 200, r.text
    assert r.json()["line_types"] == ["service", "product"]
    listed = (await shop.kit.get("/tier-discounts")).json()
    assert [(t["tag_name"], t["percent_off"], t["active"]) for t in listed] == [("金卡会员", 10, True)]
    await tag_member(shop, "金卡会员")
    expected = MASSAGE_PRICE - MASSAGE_PRICE * 10 // 100
    order = await post_order(shop, [service_line(shop.clinic.massage)], [cash(expected)])
    assert order.status_code == 201, order.text
    assert order.json()["total"] == expected

    front_desk = await shop.kit.staff(["front_desk"], [shop.store])
    denied = await shop.kit.client.put("/api/v1/tier-discounts", headers=shop.kit.auth(front_desk["token"]),
                                       json={"tag_name": "金卡会员", "percent_off": 50})
    assert_problem(denied, 403, "permission_denied")
    for bad in ({"tag_name": "金卡会员", "percent_off": 95}, {"tag_name": "金卡会员", "percent_off": 9.5},
                {"tag_name": "", "percent_off": 10}, {"tag_name": "x", "percent_off": 10, "line_types": ["gift"]}):
        r = await shop.kit.client.put("/api/v1/tier-discounts", headers=shop.kit.auth(), json=bad)
        assert_problem(r, 422, "validation_error")
    assert [t["percent_off"] for t in (await shop.kit.get("/tier-discounts")).json()] == [10]
