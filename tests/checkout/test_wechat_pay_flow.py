"""WeChat Pay end to end against the fake Pay server over real HTTP: prepay and paySign, the notification
(exactly once, also when delivered five times at once), forged and replayed notifications, cancelling,
and the timeout job."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from app.core.settings import get_settings
from app.integrations.wechat.pay import verify
from app.workers.scheduled import run_wechat_order_timeouts
from tests.cards.helpers import MOXA_PRICE, consistency, events, make_template, owner_sql
from tests.checkout.helpers import (
    OPENID,
    bind_patient_wechat,
    card_json,
    card_line,
    give_points,
    make_shop,
    order_rows,
    points,
    points_balance,
    post_order,
    service_line,
    stored,
    stored_value_card,
    wechat,
)
from tests.factories import seal_audit
from tests.fakes.wechat_pay import FakeWeChatPay, fake_pay_thread, use_fake_pay
from tests.members.helpers import patient_token

NOTIFY = "/api/v1/payments/wechat/notify"


@pytest.fixture(scope="module")
def fake_pay():
    with fake_pay_thread() as fake:
        yield fake


@pytest.fixture
def wechat_pay(fake_pay: FakeWeChatPay, monkeypatch) -> FakeWeChatPay:
    """The fake Pay server, and the process settings pointed at it for this test."""
    use_fake_pay(monkeypatch, fake_pay)
    return fake_pay


async def _patient_buys_a_card(shop, price: int = 150000) -> tuple[dict, str]:
    """The mini-program sends no openid: the server charges the patient's own bound WeChat account."""
    await bind_patient_wechat(shop)
    template = await make_template(shop.kit, kind="count", price=price, valid_days=365, on_sale=True,
                                   items=[{"service_id": shop.clinic.moxa, "sessions": 10}])
    r = await post_order(shop, [card_line(template)], [wechat(price, openid=None)],
                         token=patient_token(shop.kit, shop.member))
    assert r.status_code == 201, r.text
    return r.json(), template


def _out_trade_no(order: dict) -> str:
    return next(p["out_trade_no"] for p in order["payments"] if p["method"] == "wechat_pay")


async def _state(shop, order_id: str) -> dict:
    r = await shop.kit.get(f"/orders/{order_id}")
    assert r.status_code == 200, r.text
    return r.json()


async def _member_cards(shop) -> list[dict]:
    return (await shop.kit.get(f"/members/{shop.member}/cards")).json()["items"]


async def test_patient_pays_with_wechat_and_five_notifications_complete_it_once(client, wechat_pay):
    shop = await make_shop(client)
    order, _ = await _patient_buys_a_card(shop)
    assert (order["status"], order["total"], order["issued_cards"]) == ("pending", 150000, [])
    otn = _out_trade_no(order)
    payment = next(p for p in order["payments"] if p["method"] == "wechat_pay")
    assert otn == UUID(payment["id"]).hex and len(otn) == 32
    expires = datetime.fromisoformat(order["expires_at"])
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)
    # The prepay order WeChat holds, and the signed parameters for wx.requestPayment.
    held = wechat_pay.orders[otn]
    assert held["amount"]["total"] == 150000 and held["payer"]["openid"] == OPENID
    params = order["wechat_pay"]["mini_program_params"]
    assert params["package"] == f"prepay_id={order['wechat_pay']['prepay_id']}" and params["signType"] == "RSA"
    message = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n".encode()
    assert verify(wechat_pay.merchant_key.public_key(), message, params["paySign"])
    assert await _member_cards(shop) == []

    headers, body = wechat_pay.notification(otn)
    answers = await asyncio.gather(*(client.post(NOTIFY, content=body, headers=headers) for _ in range(5)))
    assert [r.status_code for r in answers] == [204] * 5, [r.text for r in answers]
    again = await client.post(NOTIFY, content=body, headers=headers)  # and once more, later
    assert again.status_code == 204

    paid = await _state(shop, order["id"])
    assert paid["status"] == "paid" and paid["paid_total"] == 150000 and len(paid["issued_cards"]) == 1
    payment = next(p for p in paid["payments"] if p["method"] == "wechat_pay")
    assert payment["status"] == "succeeded" and payment["transaction_id"].startswith("4200")
    cards = await _member_cards(shop)
    assert [c["id"] for c in cards] == paid["issued_cards"]
    assert await consistency(shop.tenant_id, cards[0]["id"]) == []
    assert len(await events(shop.tenant_id, "order.paid")) == 1
    assert len(await events(shop.tenant_id, "points.earned")) == 1
    assert await points_balance(shop) == 1500 == paid["points_earned"]
    assert paid["wechat_pay"] is None


async def test_forged_stale_wrong_and_unknown_notifications_change_nothing(client, wechat_pay):
    shop = await make_shop(client)
    order, _ = await _patient_buys_a_card(shop)
    otn = _out_trade_no(order)
    before = await order_rows(shop.tenant_id)

    def fail(r, status: int) -> None:
        assert r.status_code == status, r.text
        body = r.json()
        assert body["code"] == "FAIL" and isinstance(body["message"], str) and body["message"]

    cases = [
        (wechat_pay.notification(otn, bad_signature=True), 401),
        (wechat_pay.notification(otn, timestamp=int(time.time()) - 3600), 401),
        (wechat_pay.notification(otn, amount=1), 400),
        (wechat_pay.notification(otn, tamper=True), 400),
        (wechat_pay.notification(otn, serial="PUB_KEY_ID_UNKNOWN"), 401),
        (wechat_pay.notification("a" * 32, amount=150000), 404),
    ]
    for (headers, body), status in cases:
        fail(await client.post(NOTIFY, content=body, headers=headers), status)
    # Unsigned garbage is refused the same way.
    fail(await client.post(NOTIFY, content=b"{}", headers={"content-type": "application/json"}), 401)
    # A genuine notification's body with a changed amount byte, keeping the old signature: forged.
    headers, body = wechat_pay.notification(otn)
    fail(await client.post(NOTIFY, content=body.replace(b'"summary"', b'"Summary"'), headers=headers), 401)

    state = await _state(shop, order["id"])
    assert state["status"] == "pending" and state["issued_cards"] == []
    assert all(p["status"] == "pending" for p in state["payments"] if p["method"] == "wechat_pay")
    after = await order_rows(shop.tenant_id)
    assert after == before
    await seal_audit()  # what the worker does every two seconds
    rejected = await owner_sql("SELECT summary FROM audit_log WHERE tenant_id = :t AND action = "
                               "'payment.wechat_rejected' ORDER BY seq", t=shop.tenant_id)
    reasons = [row[0]["reason"] for row in rejected]
    # Attributable rejections are in the tenant's audit log (the stale, re-signed and wrong-amount ones).
    assert "mismatch:amount" in reasons and "stale_timestamp" in reasons and "bad_signature" in reasons
    # The genuine notification still completes it.
    r = await client.post(NOTIFY, content=body, headers=headers)
    assert r.status_code == 204, r.text
    assert (await _state(shop, order["id"]))["status"] == "paid"


async def test_staff_order_holds_other_tenders_and_cancel_releases_them(client, wechat_pay):
    shop = await make_shop(client)
    card = await stored_value_card(shop, face=5000, bonus=0)
    await give_points(shop, 2000)
    r = await post_order(shop, [service_line(shop.clinic.moxa)], [stored(5000, card), points(2000),
                                                                 wechat(MOXA_PRICE - 7000)])
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "pending" and order["wechat_pay"]["prepay_id"]
    # Held now: the card and the points are spent while WeChat Pay is open.
    assert (await card_json(shop, card))["balance"] == 0 and await points_balance(shop) == 0
    # The detail page can start the payment again.
    assert (await _state(shop, order["id"]))["wechat_pay"]["prepay_id"] == order["wechat_pay"]["prepay_id"]
    r = await shop.kit.post(f"/orders/{order['id']}/cancel", {"reason": "顾客改用现金"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert wechat_pay.orders[_out_trade_no(order)]["trade_state"] == "CLOSED"
    assert (await card_json(shop, card))["balance"] == 5000 and await points_balance(shop) == 2000
    assert await consistency(shop.tenant_id, card) == []
    assert all(p["status"] == "closed" for p in r.json()["payments"])
    r = await shop.kit.post(f"/orders/{order['id']}/cancel", {})
    assert r.status_code == 409 and r.json()["code"] == "order_not_cancellable"


async def test_timeout_job_closes_unpaid_orders_and_completes_paid_ones(client, wechat_pay):
    shop = await make_shop(client)
    card = await stored_value_card(shop, face=5000, bonus=0)
    r = await post_order(shop, [service_line(shop.clinic.moxa)], [stored(5000, card), wechat(MOXA_PRICE - 5000)])
    unpaid = r.json()
    paid_meanwhile, _ = await _patient_buys_a_card(shop)
    not_due, _ = await _patient_buys_a_card(shop)
    for o in (unpaid, paid_meanwhile):
        await owner_sql("UPDATE orders SET expires_at = now() - interval '1 minute' WHERE id = :id", id=UUID(o["id"]))
    # The patient paid but the notification never came.
    wechat_pay.pay(_out_trade_no(paid_meanwhile))

    done = await run_wechat_order_timeouts()
    assert done.get("cancelled", 0) >= 1 and done.get("paid", 0) >= 1
    assert (await _state(shop, unpaid["id"]))["status"] == "cancelled"
    assert wechat_pay.orders[_out_trade_no(unpaid)]["trade_state"] == "CLOSED"
    assert (await card_json(shop, card))["balance"] == 5000
    completed = await _state(shop, paid_meanwhile["id"])
    assert completed["status"] == "paid" and len(completed["issued_cards"]) == 1
    assert (await _state(shop, not_due["id"]))["status"] == "pending"
    # Idempotent: a second run finds nothing of this tenant to do, and a late notification is a no-op.
    before = await order_rows(shop.tenant_id)
    await run_wechat_order_timeouts()
    headers, body = wechat_pay.notification(_out_trade_no(paid_meanwhile))
    assert (await client.post(NOTIFY, content=body, headers=headers)).status_code == 204
    assert await order_rows(shop.tenant_id) == before
    assert len(await _member_cards(shop)) == 2  # the stored-value card and the one card sold


async def test_a_patient_pays_only_from_their_own_wechat_account(client, wechat_pay):
    shop = await make_shop(client)
    token = patient_token(shop.kit, shop.member)
    unlisted = await make_template(shop.kit, kind="count", price=MOXA_PRICE, valid_days=365,
                                   items=[{"service_id": shop.clinic.moxa, "sessions": 1}])
    r = await post_order(shop, [card_line(unlisted)], [wechat(MOXA_PRICE, openid=None)], token=token)
    assert r.status_code == 404 and r.json()["code"] == "card_template_not_found", r.text  # not on sale to patients
    assert (await shop.kit.get(f"/card-templates/{unlisted}", token=token)).status_code == 404
    template = await make_template(shop.kit, kind="count", price=MOXA_PRICE, valid_days=365, on_sale=True,
                                   items=[{"service_id": shop.clinic.moxa, "sessions": 1}])
    listed = (await shop.kit.get("/card-templates", token=token)).json()["items"]
    assert [t["id"] for t in listed] == [template]
    r = await post_order(shop, [card_line(template)], [wechat(MOXA_PRICE, openid=None)], token=token)
    assert r.status_code == 422 and r.json()["code"] == "payer_openid_unknown", r.text  # never signed in
    await bind_patient_wechat(shop)
    r = await post_order(shop, [card_line(template)], [wechat(MOXA_PRICE, openid="oSomeoneElse00000001")],
                         token=token)
    assert r.status_code == 422 and r.json()["code"] == "payer_openid_not_yours", r.text
    assert r.json()["field"] == "payments.0.payer_openid"
    r = await post_order(shop, [card_line(template)], [wechat(MOXA_PRICE, openid=None)], token=token)
    assert r.status_code == 201, r.text
    out_trade_no = _out_trade_no(r.json())
    assert wechat_pay.orders[out_trade_no]["payer"]["openid"] == OPENID


async def test_wechat_tender_needs_an_openid_and_a_configured_merchant(client, wechat_pay, monkeypatch):
    shop = await make_shop(client)
    r = await post_order(shop, [service_line(shop.clinic.moxa)], [wechat(MOXA_PRICE, openid=None)])
    assert r.status_code == 422 and r.json()["field"] == "payments.0.payer_openid", r.text

    monkeypatch.setattr(get_settings(), "wechat_pay_mchid", None)
    r = await post_order(shop, [service_line(shop.clinic.moxa)], [wechat(MOXA_PRICE)])
    assert r.status_code == 409 and r.json()["code"] == "wechat_pay_unavailable", r.text
    assert json.loads((await client.post(NOTIFY, content=b"{}")).text)["code"] == "FAIL"
