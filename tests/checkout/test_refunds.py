"""Refunds: back to the original tenders exactly, goods back, approvals, WeChat refund notifications, bad input.

Paid orders are made through the real `POST /orders`; refunds through the API. Amounts in the comments
are fen.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest

from tests.cards.helpers import (
    assert_problem,
    consistency,
    events,
    make_member,
    make_service,
    make_template,
    owner_sql,
)
from tests.factories import TenantKit, deliver, new_tenant, seal_audit

TEA_PRICE = 8800
MASSAGE_PRICE = 19800


# ---------------------------------------------------------------- builders (also used by test_daily_close)


@dataclass
class Shop:
    kit: TenantKit
    store: str
    member: str
    massage: str  # 推拿 19800
    tea: str  # 养生茶 8800, 20 in stock
    sv_template: str  # stored value: 100000 principal + 20000 bonus, spent proportionally

    @property
    def tenant_id(self) -> UUID:
        return UUID(self.kit.tenant_id)


async def make_shop(client: httpx.AsyncClient) -> Shop:
    kit = await new_tenant(client)
    store = await kit.store()
    member = await make_member(kit, "李四")
    massage = await make_service(kit, "推拿", MASSAGE_PRICE)
    r = await kit.post("/products", {"name": "养生茶", "unit": "罐", "price": TEA_PRICE})
    assert r.status_code == 201, r.text
    tea = r.json()["id"]
    r = await kit.post("/inventory/movements", {"store_id": store, "product_id": tea, "kind": "receive",
                                                "quantity": 20})
    assert r.status_code == 201, r.text
    sv = await make_template(kit, kind="stored_value", price=100000, face_value=100000, bonus=20000,
                             spend_order="proportional")
    return Shop(kit, store, member, massage, tea, sv)


async def stored_value_card(shop: Shop) -> str:
    r = await shop.kit.post("/cards", {"member_id": shop.member, "template_id": shop.sv_template,
                                       "store_id": shop.store, "price_paid": 100000, "reason": "测试开卡"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def give_points(shop: Shop, points: int) -> None:
    r = await shop.kit.post(f"/members/{shop.member}/points/adjust", {"delta": points, "reason": "测试积分"})
    assert r.status_code == 201, r.text


async def points_of(shop: Shop) -> int:
    r = await shop.kit.get(f"/members/{shop.member}/points")
    assert r.status_code == 200, r.text
    return r.json()["balance"]


async def card_of(shop: Shop, card_id: str) -> dict:
    r = await shop.kit.get(f"/cards/{card_id}")
    assert r.status_code == 200, r.text
    return r.json()


async def order(shop: Shop, lines: list[dict], payments: list[dict], token: str | None = None) -> dict:
    r = await shop.kit.post("/orders", {"member_id": shop.member, "store_id": shop.store, "lines": lines,
                                        "payments": payments}, token=token)
    assert r.status_code == 201, r.text
    return r.json()


async def refund(shop: Shop, order_id: str, amount: Any, *, token: str | None = None, **extra: Any) -> httpx.Response:
    return await shop.kit.post(f"/orders/{order_id}/refunds", {"amount": amount, "reason": "客户不满意", **extra},
                               token=token)


async def set_approval(shop: Shop, threshold: int, levels: list[list[str]]) -> None:
    r = await shop.kit.client.put("/api/v1/checkout/settings", json={"refund_approval_threshold": threshold,
                                                                     "approval_levels": levels},
                                  headers=shop.kit.auth())
    assert r.status_code == 200, r.text


async def stock(shop: Shop) -> int:
    r = await shop.kit.get("/inventory/stock", params={"store_id": shop.store})
    assert r.status_code == 200, r.text
    return sum(i["quantity"] for i in r.json()["items"] if i.get("product_id") == shop.tea)


def line_of(paid: dict, type_: str) -> dict:
    return next(line for line in paid["lines"] if line["type"] == type_)


async def mixed_order(shop: Shop, card_id: str) -> dict:
    """推拿 19800 + 养生茶 8800 = 28600, paid by stored value 10000 (proportional: 8334 principal + 1666
    bonus), 3000 points (1 point = 1 fen) and cash 15600 (20000 handed over)."""
    await give_points(shop, 5000)
    paid = await order(shop, [{"type": "service", "service_id": shop.massage},
                              {"type": "product", "product_id": shop.tea, "quantity": 1}],
                       [{"method": "stored_value", "amount": 10000, "card_id": card_id},
                        {"method": "points", "points": 3000},
                        {"method": "cash", "amount": 15600, "cash_received": 20000}])
    assert paid["status"] == "paid" and paid["paid_total"] == 28600, paid
    return paid


# ---------------------------------------------------------------- back to the tenders, exactly


async def test_partial_refund_across_three_tenders_restores_each_exactly(client):
    shop = await make_shop(client)
    card_id = await stored_value_card(shop)
    paid = await mixed_order(shop, card_id)
    sv = next(p for p in paid["payments"] if p["method"] == "stored_value")
    assert (sv["principal_used"], sv["bonus_used"]) == (8334, 1666)
    earned = paid["points_earned"]  # on cash 15600 + principal 8334 = 239.34 yuan → 239 points
    assert earned == 239
    assert await points_of(shop) == 5000 - 3000 + earned
    assert await stock(shop) == 19

    # 27000 back, with the tea (its 8800 is part of the 27000): stored value 10000, cash 15600, points 1400.
    r = await refund(shop, paid["id"], 27000, lines=[{"line_id": line_of(paid, "product")["id"]}])
    assert r.status_code == 201, r.text
    done = r.json()
    assert done["status"] == "completed"
    assert [(a["method"], a["amount"], a["status"]) for a in done["allocations"]] == [
        ("stored_value", 10000, "succeeded"), ("cash", 15600, "succeeded"), ("points", 1400, "succeeded")]
    card = await card_of(shop, card_id)
    assert (card["principal_balance"], card["bonus_balance"]) == (100000, 20000)  # both parts back, exactly
    assert await consistency(shop.tenant_id, card_id) == []
    taken = earned * 27000 // 28600  # earned points in proportion to the refunded share, rounded down: 225
    assert await points_of(shop) == 5000 - 3000 + earned + 1400 - taken
    assert await stock(shop) == 20
    got = (await shop.kit.get(f"/orders/{paid['id']}")).json()
    assert (got["status"], got["refunded_total"]) == ("partially_refunded", 27000)
    assert {p["method"]: p["refunded_amount"] for p in got["payments"]} == {
        "stored_value": 10000, "cash": 15600, "points": 1400}
    assert line_of(got, "product")["refunded_amount"] == 8800

    # The rest: the last 1600 points come back and the last earned points are taken.
    r = await refund(shop, paid["id"], 1600)
    assert r.status_code == 201, r.text
    assert [(a["method"], a["amount"]) for a in r.json()["allocations"]] == [("points", 1600)]
    assert await points_of(shop) == 5000  # exactly where the member started
    got = (await shop.kit.get(f"/orders/{paid['id']}")).json()
    assert (got["status"], got["refunded_total"]) == ("refunded", 28600)
    topics = [t for t, _ in await events(shop.tenant_id) if t.startswith("refund.")]
    assert topics == ["refund.requested", "refund.completed"] * 2

    # Nothing is left: a refunded order takes no further refund.
    assert_problem(await refund(shop, paid["id"], 1), 409, "order_not_refundable")


async def test_stored_value_refund_in_steps_returns_principal_and_bonus_as_used(client):
    shop = await make_shop(client)
    card_id = await stored_value_card(shop)
    paid = await order(shop, [{"type": "service", "service_id": shop.massage}],
                       [{"method": "stored_value", "amount": MASSAGE_PRICE, "card_id": card_id}])
    sv = paid["payments"][0]
    principal, bonus = sv["principal_used"], sv["bonus_used"]
    assert principal + bonus == MASSAGE_PRICE and bonus > 0
    for amount in (333, 7001, 5000, MASSAGE_PRICE - 333 - 7001 - 5000):
        r = await refund(shop, paid["id"], amount)
        assert r.status_code == 201, r.text
    card = await card_of(shop, card_id)
    assert (card["principal_balance"], card["bonus_balance"]) == (100000, 20000)
    assert await consistency(shop.tenant_id, card_id) == []


async def test_full_refund_restores_the_coupon_whole(client):
    shop = await make_shop(client)
    r = await shop.kit.post("/coupon-templates", {"name": "立减20元", "kind": "fixed", "value": 2000})
    assert r.status_code == 201, r.text
    r = await shop.kit.post("/coupons", {"template_id": r.json()["id"], "member_id": shop.member, "reason": "新客"})
    assert r.status_code == 201, r.text
    coupon_id = r.json()["id"]
    paid = await order(shop, [{"type": "service", "service_id": shop.massage}],
                       [{"method": "coupon", "coupon_id": coupon_id, "amount": 2000},
                        {"method": "cash", "amount": MASSAGE_PRICE - 2000}])
    assert paid["paid_total"] == MASSAGE_PRICE

    async def coupon_status() -> str:
        page = (await shop.kit.get(f"/members/{shop.member}/coupons")).json()
        return next(c["status"] for c in page["items"] if c["id"] == coupon_id)

    assert await coupon_status() == "used"
    r = await refund(shop, paid["id"], 10000)  # cash only: the coupon stays used
    assert [(a["method"], a["amount"]) for a in r.json()["allocations"]] == [("cash", 10000)]
    assert await coupon_status() == "used"
    # 9000 would need 1200 of the coupon's 2000: a coupon comes back whole or not at all.
    body = assert_problem(await refund(shop, paid["id"], 9000), 422, "refund_splits_coupon")
    assert (body["without_coupon"], body["with_coupon"]) == (7800, 9800)
    r = await refund(shop, paid["id"], 9800)
    assert r.status_code == 201, r.text
    assert [(a["method"], a["amount"]) for a in r.json()["allocations"]] == [("cash", 7800), ("coupon", 2000)]
    assert await coupon_status() == "issued"
    assert (await shop.kit.get(f"/orders/{paid['id']}")).json()["status"] == "refunded"


async def test_card_line_refund_closes_the_card_and_is_limited_to_unused_sessions(client):
    shop = await make_shop(client)
    await set_approval(shop, 10_000_000, [["store_manager"], ["finance"]])  # no approval in this test
    template = await make_template(shop.kit, kind="count", price=150000, valid_days=365,
                                   items=[{"service_id": shop.massage, "sessions": 10}])
    paid = await order(shop, [{"type": "card", "card_template_id": template}], [{"method": "cash", "amount": 150000}])
    card_id = paid["issued_cards"][0]
    therapist = await shop.kit.staff(["therapist"], [shop.store])
    for _ in range(3):
        r = await shop.kit.post("/service-records", {"member_id": shop.member, "store_id": shop.store,
                                                     "service_id": shop.massage, "staff_id": therapist["id"],
                                                     "card_id": card_id}, token=therapist["token"])
        assert r.status_code == 201, r.text
    line = line_of(paid, "card")
    # 7 unused sessions x 15000 = 105000 is all a refund of this card may give back.
    body = assert_problem(await refund(shop, paid["id"], 120000, lines=[{"line_id": line["id"], "amount": 120000}]),
                          409, "card_used_beyond_refund")
    assert body["refundable"] == 105000
    r = await refund(shop, paid["id"], 105000, lines=[{"line_id": line["id"], "amount": 105000}])
    assert r.status_code == 201, r.text
    assert r.json()["lines"][0]["sessions_written_off"] == 7
    card = await card_of(shop, card_id)
    assert card["status"] == "closed" and card["items"][0]["remaining"] == 0
    assert await consistency(shop.tenant_id, card_id) == []
    # The line cannot give back goods twice.
    assert_problem(await refund(shop, paid["id"], 1000, lines=[{"line_id": line["id"], "amount": 1000}]), 409,
                   "card_closed")


async def test_top_up_refund_takes_the_value_back_out_of_the_card(client):
    shop = await make_shop(client)
    await set_approval(shop, 10_000_000, [["store_manager"], ["finance"]])  # no approval in this test
    card_id = await stored_value_card(shop)
    paid = await order(shop, [{"type": "top_up", "card_id": card_id, "amount": 100000}],
                       [{"method": "cash", "amount": 100000}])
    line = line_of(paid, "top_up")
    credited = (line["top_up_principal"], line["top_up_bonus"])
    card = await card_of(shop, card_id)
    assert (card["principal_balance"], card["bonus_balance"]) == (100000 + credited[0], 20000 + credited[1])
    r = await refund(shop, paid["id"], 40000, lines=[{"line_id": line["id"], "amount": 40000}])
    assert r.status_code == 201, r.text
    out = r.json()["lines"][0]
    assert out["principal_out"] == credited[0] * 40000 // 100000
    r = await refund(shop, paid["id"], 60000, lines=[{"line_id": line["id"]}])
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "completed"
    card = await card_of(shop, card_id)
    assert (card["principal_balance"], card["bonus_balance"]) == (100000, 20000)  # exactly what was credited
    assert await consistency(shop.tenant_id, card_id) == []


# ---------------------------------------------------------------- approval


@dataclass
class Approvers:
    desk: dict  # front desk: requests
    manager: dict  # store_manager
    manager2: dict
    finance: dict


async def approvers(shop: Shop) -> Approvers:
    kit = shop.kit
    desk, manager, manager2, finance = await asyncio.gather(
        kit.staff(["front_desk"], [shop.store]), kit.staff(["store_manager"], [shop.store]),
        kit.staff(["store_manager"], [shop.store]), kit.staff(["finance"], []))
    return Approvers(desk, manager, manager2, finance)


async def cash_order(shop: Shop, quantity: int = 1) -> dict:
    """推拿 x quantity, paid in cash (19800 each)."""
    return await order(shop, [{"type": "service", "service_id": shop.massage, "quantity": quantity}],
                       [{"method": "cash", "amount": MASSAGE_PRICE * quantity}])


async def decide(shop: Shop, refund_id: str, who: dict, decision: str = "approve", **body: Any) -> httpx.Response:
    return await shop.kit.post(f"/refunds/{refund_id}/{decision}", {"note": "同意", **body}, token=who["token"])


async def test_approval_below_threshold_is_immediate_above_needs_each_level_in_order(client):
    shop = await make_shop(client)
    people = await approvers(shop)
    await set_approval(shop, 10000, [["store_manager"], ["finance"]])
    paid = await cash_order(shop, 10)  # 10 x 推拿

    r = await refund(shop, paid["id"], 10000, token=people.desk["token"])  # at the threshold: at once
    assert r.status_code == 201 and r.json()["status"] == "completed", r.text

    r = await refund(shop, paid["id"], 50000, token=people.desk["token"])
    assert r.status_code == 201, r.text
    pending = r.json()
    assert (pending["status"], pending["levels_required"], pending["allocations"]) == ("pending_approval", 2, [])
    queue = (await shop.kit.get("/refunds", token=people.manager["token"],
                                params={"status": "pending_approval", "store_id": shop.store})).json()["items"]
    assert [q["id"] for q in queue] == [pending["id"]]

    # Level 1 is the store manager's: finance first is refused, a therapist lacks the permission.
    assert_problem(await decide(shop, pending["id"], people.finance), 403, "approval_role_required")
    therapist = await shop.kit.staff(["therapist"], [shop.store])
    assert_problem(await decide(shop, pending["id"], therapist), 403, "permission_denied")
    r = await decide(shop, pending["id"], people.manager, level=1)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["levels_approved"]) == ("pending_approval", 1)
    # One person decides one level: the same manager cannot also pass level 2 (nor could they hold it).
    assert_problem(await decide(shop, pending["id"], people.manager), 403, "already_decided")
    r = await decide(shop, pending["id"], people.finance, level=2)
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "completed"
    assert [(a["level"], a["decision"], a["role"]) for a in done["approvals"]] == [
        (1, "approve", "store_manager"), (2, "approve", "finance")]
    assert [(a["method"], a["amount"]) for a in done["allocations"]] == [("cash", 50000)]
    assert (await shop.kit.get(f"/orders/{paid['id']}")).json()["refunded_total"] == 60000
    topics = [t for t, _ in await events(shop.tenant_id) if t.startswith("refund.")]
    assert topics == ["refund.requested", "refund.completed", "refund.requested", "refund.level_approved",
                      "refund.approved", "refund.completed"]
    await seal_audit()  # what the worker does every two seconds
    audited = await owner_sql("SELECT action FROM audit_log WHERE tenant_id = :t AND target_id = :r ORDER BY seq",
                              t=shop.tenant_id, r=pending["id"])
    assert [a for (a,) in audited] == ["refund.request", "refund.approve", "refund.approve", "refund.execute"]
    # Decisions are append-only rows.
    with pytest.raises(Exception, match="append-only"):
        await owner_sql("UPDATE refund_approvals SET note = 'x' WHERE refund_id = :r", r=UUID(pending["id"]))


async def test_self_approval_is_refused_and_a_rejection_ends_the_refund(client):
    shop = await make_shop(client)
    people = await approvers(shop)
    await set_approval(shop, 10000, [["store_manager"]])
    paid = await cash_order(shop, 10)
    r = await refund(shop, paid["id"], 150000, token=people.manager["token"])  # a manager may request too
    assert r.status_code == 201, r.text
    pending = r.json()
    assert_problem(await decide(shop, pending["id"], people.manager), 403, "self_approval")
    # The pending refund reserves its amount: 48000 more would exceed what was paid.
    assert_problem(await refund(shop, paid["id"], 48001, token=people.desk["token"]), 422,
                   "refund_exceeds_refundable")
    r = await decide(shop, pending["id"], people.manager2, "reject", note="金额不对")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected"
    assert r.json()["approvals"][0]["decision"] == "reject"
    assert_problem(await decide(shop, pending["id"], people.manager2), 409, "refund_not_pending")
    got = (await shop.kit.get(f"/orders/{paid['id']}")).json()
    assert (got["status"], got["refunded_total"]) == ("paid", 0)
    # The rejected amount is free again.
    r = await refund(shop, paid["id"], 198000, token=people.desk["token"])
    assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text


async def test_concurrent_approvals_of_the_same_level_one_wins(client):
    shop = await make_shop(client)
    people = await approvers(shop)
    await set_approval(shop, 10000, [["store_manager"], ["finance"]])
    paid = await cash_order(shop, 10)
    pending = (await refund(shop, paid["id"], 60000, token=people.desk["token"])).json()
    results = await asyncio.gather(decide(shop, pending["id"], people.manager, level=1),
                                   decide(shop, pending["id"], people.manager2, level=1))
    assert sorted(r.status_code for r in results) == [200, 409], [r.text for r in results]
    loser = next(r for r in results if r.status_code == 409)
    assert loser.json()["code"] == "approval_level_moved"
    got = (await shop.kit.get(f"/refunds/{pending['id']}", token=people.finance["token"])).json()
    assert (got["levels_approved"], len(got["approvals"]), got["status"]) == (1, 1, "pending_approval")


async def test_checkout_settings_need_the_owner_and_known_approving_roles(client):
    shop = await make_shop(client)
    people = await approvers(shop)
    r = await shop.kit.get("/checkout/settings", token=people.desk["token"])
    assert r.status_code == 200 and r.json()["approval_levels"] == [["store_manager"], ["finance"]], r.text
    put = shop.kit.client.put
    r = await put("/api/v1/checkout/settings", json={"refund_approval_threshold": 1, "approval_levels": []},
                  headers=shop.kit.auth(people.manager["token"]))
    assert_problem(r, 403, "permission_denied")
    for levels, code in (([["no_such_role"]], "unknown_role"), ([["front_desk"]], "role_cannot_approve"),
                         ([[]], "validation_error")):
        r = await put("/api/v1/checkout/settings", json={"refund_approval_threshold": 1, "approval_levels": levels},
                      headers=shop.kit.auth())
        assert_problem(r, 422, code)
    await set_approval(shop, 0, [["finance"]])
    assert (await shop.kit.get("/checkout/settings")).json()["refund_approval_threshold"] == 0


# ---------------------------------------------------------------- WeChat Pay refunds


async def test_wechat_refund_completes_once_on_five_notifications_and_forgeries_change_nothing(client, monkeypatch):
    from tests.fakes.wechat_pay import running_fake_pay, use_fake_pay

    shop = await make_shop(client)
    async with running_fake_pay() as fake:
        use_fake_pay(monkeypatch, fake)
        card_id = await stored_value_card(shop)
        opened = await order(shop, [{"type": "service", "service_id": shop.massage}],
                             [{"method": "stored_value", "amount": 4800, "card_id": card_id},
                              {"method": "wechat_pay", "amount": 15000, "payer_openid": "o-test-openid"}])
        out_trade_no = next(p["out_trade_no"] for p in opened["payments"] if p["method"] == "wechat_pay")
        headers, body = fake.notification(out_trade_no)
        r = await client.post("/api/v1/payments/wechat/notify", content=body, headers=headers)
        assert r.status_code == 204, r.text
        assert (await shop.kit.get(f"/orders/{opened['id']}")).json()["status"] == "paid"

        r = await refund(shop, opened["id"], 17000)  # WeChat 15000 first, then 2000 of stored value
        assert r.status_code == 201, r.text
        processing = r.json()
        assert processing["status"] == "processing"
        assert [(a["method"], a["amount"], a["status"]) for a in processing["allocations"]] == [
            ("wechat_pay", 15000, "pending"), ("stored_value", 2000, "succeeded")]
        out_refund_no = processing["allocations"][0]["out_refund_no"]
        # WeChat is asked by the worker once the refund has committed, and asked again (the same refund)
        # if the worker's first try is lost.
        assert out_refund_no not in fake.refunds
        await deliver_all(shop.tenant_id, "refund.wechat_requested")
        assert fake.refunds[out_refund_no]["amount"]["refund"] == 15000

        # Forged (another key), tampered (undecryptable) and stale notifications are refused.
        for kwargs, status in (({"bad_signature": True}, 401), ({"tamper": True}, 400),
                               ({"timestamp": 1_600_000_000}, 401)):
            h, b = fake.refund_notification(out_refund_no, **kwargs)
            r = await client.post("/api/v1/payments/wechat/refund-notify", content=b, headers=h)
            assert r.status_code == status, (kwargs, r.text)
            assert r.json()["code"] == "FAIL"
        assert (await shop.kit.get(f"/refunds/{processing['id']}")).json()["status"] == "processing"

        headers, body = fake.refund_notification(out_refund_no)
        answers = await asyncio.gather(*(client.post("/api/v1/payments/wechat/refund-notify", content=body,
                                                     headers=headers) for _ in range(5)))
        assert [a.status_code for a in answers] == [204] * 5, [a.text for a in answers]
        done = (await shop.kit.get(f"/refunds/{processing['id']}")).json()
        assert done["status"] == "completed" and done["completed_at"]
        assert all(a["status"] == "succeeded" for a in done["allocations"])
        completed = [p for t, p in await events(shop.tenant_id, "refund.completed")]
        assert [p["refund_id"] for p in completed] == [processing["id"]]
        got = (await shop.kit.get(f"/orders/{opened['id']}")).json()
        assert (got["status"], got["refunded_total"]) == ("partially_refunded", 17000)


async def deliver_all(tenant_id, topic: str) -> None:
    outcomes = await deliver(tenant_id, topic)
    assert outcomes and set(outcomes) == {"done"}, f"{topic}: {outcomes}"


async def test_a_refused_wechat_refund_fails_the_refund_and_frees_the_amount(client, monkeypatch):
    from tests.fakes.wechat_pay import running_fake_pay, use_fake_pay

    shop = await make_shop(client)
    async with running_fake_pay() as fake:
        use_fake_pay(monkeypatch, fake)
        opened = await order(shop, [{"type": "service", "service_id": shop.massage}],
                             [{"method": "wechat_pay", "amount": MASSAGE_PRICE, "payer_openid": "o-test-openid"}])
        out_trade_no = opened["payments"][0]["out_trade_no"]
        headers, body = fake.notification(out_trade_no)
        assert (await client.post("/api/v1/payments/wechat/notify", content=body, headers=headers)).status_code == 204
        r = await refund(shop, opened["id"], 5000)
        assert r.status_code == 201, r.text
        fake.fail_next(403, "USER_ACCOUNT_ABNORMAL", "退款请求失败")
        await deliver_all(shop.tenant_id, "refund.wechat_requested")
        failed = (await shop.kit.get(f"/refunds/{r.json()['id']}")).json()
        assert failed["status"] == "failed"
        got = (await shop.kit.get(f"/orders/{opened['id']}")).json()
        assert (got["status"], got["refunded_total"]) == ("paid", 0)


@pytest.mark.parametrize(("status", "code"), [(429, "FREQUENCY_LIMITED"), (500, "SYSTEM_ERROR"),
                                              (403, "NOT_ENOUGH")])
async def test_a_wechat_refund_turned_away_for_now_is_asked_again_with_the_same_number(client, monkeypatch, status,
                                                                                     code):
    from tests.fakes.wechat_pay import running_fake_pay, use_fake_pay

    shop = await make_shop(client)
    async with running_fake_pay() as fake:
        use_fake_pay(monkeypatch, fake)
        opened = await order(shop, [{"type": "service", "service_id": shop.massage}],
                             [{"method": "wechat_pay", "amount": MASSAGE_PRICE, "payer_openid": "o-test-openid"}])
        headers, body = fake.notification(opened["payments"][0]["out_trade_no"])
        assert (await client.post("/api/v1/payments/wechat/notify", content=body, headers=headers)).status_code == 204
        r = await refund(shop, opened["id"], 5000)
        assert r.status_code == 201, r.text
        out_refund_no = r.json()["allocations"][0]["out_refund_no"]
        fake.fail_next(status, code, "稍后再试")
        assert await deliver(shop.tenant_id, "refund.wechat_requested") == ["pending"]  # retried, not failed
        assert (await shop.kit.get(f"/refunds/{r.json()['id']}")).json()["status"] == "processing"
        assert out_refund_no not in fake.refunds
        await deliver_all(shop.tenant_id, "refund.wechat_requested")
        assert fake.refunds[out_refund_no]["amount"]["refund"] == 5000  # the same number, asked once more
        headers, body = fake.refund_notification(out_refund_no)
        assert (await client.post("/api/v1/payments/wechat/refund-notify", content=body,
                                  headers=headers)).status_code == 204
        assert (await shop.kit.get(f"/refunds/{r.json()['id']}")).json()["status"] == "completed"


# ---------------------------------------------------------------- bad input


async def test_bad_amounts_and_other_tenants_orders_are_refused(client):
    shop = await make_shop(client)
    paid = await cash_order(shop)
    for amount in (-100, 0, 100.5, "100", None, True):
        assert_problem(await refund(shop, paid["id"], amount), 422, "validation_error")
    assert_problem(await refund(shop, paid["id"], 100, lines=[{"line_id": paid["lines"][0]["id"],
                                                               "amount": 10.0}]), 422, "validation_error")
    assert_problem(await refund(shop, paid["id"], MASSAGE_PRICE + 1), 422, "refund_exceeds_refundable")
    assert_problem(await refund(shop, paid["id"], 100, lines=[{"line_id": paid["id"]}]), 422, "line_not_in_order")
    assert_problem(await refund(shop, paid["id"], 100, lines=[{"line_id": paid["lines"][0]["id"]}]), 422,
                   "lines_exceed_amount")
    other = await make_shop(client)
    assert_problem(await refund(other, paid["id"], 100), 404, "order_not_found")
    assert (await other.kit.get("/refunds", params={"order_id": paid["id"]})).json()["items"] == []
    r = await refund(shop, paid["id"], 100)
    assert r.status_code == 201, r.text
    assert_problem(await other.kit.get(f"/refunds/{r.json()['id']}"), 404, "refund_not_found")
    assert_problem(await other.kit.post(f"/refunds/{r.json()['id']}/approve", {}), 404, "refund_not_found")
    # A front desk of another store of the same tenant may not refund this store's order.
    elsewhere = await shop.kit.store("徐汇店")
    desk = await shop.kit.staff(["front_desk"], [elsewhere])
    assert_problem(await refund(shop, paid["id"], 100, token=desk["token"]), 403, "store_forbidden")
