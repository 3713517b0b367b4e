"""The mini-program buys a card over GraphQL with WeChat Pay; WeChat's notification then completes it."""

from __future__ import annotations

import pytest

from tests.cards.helpers import make_template
from tests.checkout.helpers import OPENID, bind_patient_wechat, make_shop
from tests.fakes.wechat_pay import FakeWeChatPay, fake_pay_thread, use_fake_pay
from tests.members.helpers import patient_token
from tests.platform.test_graphql import codes, gql

BUY = """mutation($m: ID!, $s: ID!, $t: ID, $amount: Int!, $openid: String!) {
  buyWithWechatPay(memberId: $m, storeId: $s, cardTemplateId: $t, amount: $amount, payerOpenid: $openid) {
    id status total issuedCards wechatPayParams lines { type name amount } } }"""
ORDERS = "query($m: ID!) { orders(memberId: $m) { items { id status paidTotal issuedCards } } }"


@pytest.fixture(scope="module")
def fake_pay():
    with fake_pay_thread() as fake:
        yield fake


async def test_patient_buys_a_card_and_sees_it_paid(client, fake_pay: FakeWeChatPay, monkeypatch):
    use_fake_pay(monkeypatch, fake_pay)
    shop = await make_shop(client)
    template = await make_template(shop.kit, kind="count", price=150000, valid_days=365, on_sale=True,
                                   items=[{"service_id": shop.clinic.moxa, "sessions": 10}])
    token = patient_token(shop.kit, shop.member)
    await bind_patient_wechat(shop)
    bought = await gql(shop.kit, BUY, token, {"m": shop.member, "s": shop.store, "t": template, "amount": 150000,
                                              "openid": OPENID})
    assert "errors" not in bought, bought
    order = bought["data"]["buyWithWechatPay"]
    assert order["status"] == "pending" and order["total"] == 150000 and order["issuedCards"] == []
    assert order["wechatPayParams"]["signType"] == "RSA" and order["wechatPayParams"]["paySign"]

    [payment] = (await shop.kit.get(f"/orders/{order['id']}")).json()["payments"]
    out_trade_no = payment["out_trade_no"]
    assert out_trade_no in fake_pay.orders  # our prepay call registered it with (the fake) WeChat
    headers, body = fake_pay.notification(out_trade_no)
    r = await client.post("/api/v1/payments/wechat/notify", content=body, headers=headers)
    assert r.status_code in (200, 204), r.text

    listed = await gql(shop.kit, ORDERS, token, {"m": shop.member})
    [paid] = [o for o in listed["data"]["orders"]["items"] if o["id"] == order["id"]]
    assert paid["status"] == "paid" and paid["paidTotal"] == 150000 and len(paid["issuedCards"]) == 1


async def test_bad_purchases_are_problem_codes(client, fake_pay: FakeWeChatPay, monkeypatch):
    use_fake_pay(monkeypatch, fake_pay)
    shop = await make_shop(client)
    token = patient_token(shop.kit, shop.member)
    await bind_patient_wechat(shop)
    base = {"m": shop.member, "s": shop.store, "t": None, "amount": 100, "openid": OPENID}
    assert codes(await gql(shop.kit, BUY, token, base)) == ["validation_error"]  # neither card nor top-up
    assert codes(await gql(shop.kit, BUY, token, {**base, "t": "x"})) == ["validation_error"]
    assert codes(await gql(shop.kit, BUY, token, {**base, "t": shop.member, "amount": -5})) == ["validation_error"]
