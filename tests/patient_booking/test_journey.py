"""The patient's journey end to end, over real HTTP to the fake WeChat servers: mini-program sign-in → book →
pay with stored value plus WeChat Pay (JSAPI prepay charged to the signed-in WeChat account) → WeChat's signed
notification → the order is paid → the visit settles the prepaid service."""

from __future__ import annotations

from app.integrations.wechat.pay import verify
from tests.cards.helpers import consistency, events
from tests.factories import deliver
from tests.patient_booking.helpers import (
    MASSAGE_PRICE,
    NOTIFY,
    login,
    make_clinic,
    out_trade_no,
    pay_order,
    service_line,
    stored,
    stored_value_card,
    wechat_pay,
)


async def test_login_book_pay_with_stored_value_and_wechat_pay_then_the_notification_pays_the_order(
        client, wechat, pay):
    pay_server = pay
    clinic = await make_clinic(client)
    card = await stored_value_card(clinic, face=10000)
    token, openid = await login(clinic, wechat)

    rules = await clinic.kit.get(f"/stores/{clinic.store}/booking-rules", token=token)
    assert rules.status_code == 200, rules.text
    assert (rules.json()["horizon_days"], rules.json()["cancel_window_hours"]) == (30, 2)
    slots = await clinic.kit.get("/availability", token=token, params={
        "store_id": clinic.store, "service_id": clinic.massage, "date": clinic.day.isoformat(),
        "staff_id": clinic.therapists[0]})
    assert clinic.iso(10) in [s["starts_at"] for s in slots.json()["slots"]]
    booked = await clinic.book(token, clinic.at(10))
    assert booked.status_code == 201, booked.text
    appointment = booked.json()
    assert (appointment["status"], appointment["channel"]) == ("booked", "mini_program")

    r = await pay_order(clinic, token, [service_line(clinic.massage)],
                        [stored(10000, card), wechat_pay(MASSAGE_PRICE - 10000)], appointment_id=appointment["id"])
    assert r.status_code == 201, r.text
    order = r.json()
    assert (order["status"], order["total"], order["appointment_id"]) == ("pending", MASSAGE_PRICE, appointment["id"])
    # The prepay order WeChat holds is charged to the account the patient signed in with (no openid sent).
    otn = out_trade_no(order)
    held = pay_server.orders[otn]
    assert held["payer"]["openid"] == openid and held["amount"]["total"] == MASSAGE_PRICE - 10000
    params = order["wechat_pay"]["mini_program_params"]
    message = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n".encode()
    assert verify(pay_server.merchant_key.public_key(), message, params["paySign"])
    # The stored value is held at once, so the same balance cannot pay twice while WeChat Pay is open.
    cards = (await clinic.kit.get(f"/members/{clinic.member}/cards", token=token)).json()["items"]
    assert [c["balance"] for c in cards if c["id"] == card] == [0]

    headers, body = pay_server.notification(otn)
    for _ in range(2):  # WeChat repeats notifications: the second changes nothing
        assert (await client.post(NOTIFY, content=body, headers=headers)).status_code == 204
    paid = (await clinic.kit.get(f"/orders/{order['id']}", token=token)).json()
    assert (paid["status"], paid["paid_total"]) == ("paid", MASSAGE_PRICE)
    assert {p["method"]: p["status"] for p in paid["payments"]} == {"stored_value": "succeeded",
                                                                   "wechat_pay": "succeeded"}
    assert paid["points_earned"] == MASSAGE_PRICE // 100  # WeChat Pay and stored-value principal earn
    assert len(await events(clinic.tenant_id, "order.paid")) == 1
    assert await consistency(clinic.tenant_id, card) == []

    receipt = (await clinic.kit.get(f"/orders/{order['id']}/receipt", token=token)).json()
    assert [(t["label"], t["amount"]) for t in receipt["tenders"]] == [("储值卡", 10000),
                                                                      ("微信支付", MASSAGE_PRICE - 10000)]
    assert receipt["status"] == "paid" and receipt["lines"][0]["amount"] == MASSAGE_PRICE

    # The visit: the therapist completes it, and the prepaid order settles the service record, so the front
    # desk finds nothing left to charge.
    done = await clinic.kit.post(f"/appointments/{appointment['id']}/complete", {})
    assert done.status_code == 200, done.text
    assert set(await deliver(clinic.tenant_id, "appointment.completed")) == {"done"}
    settled = (await clinic.kit.get(f"/orders/{order['id']}")).json()
    assert settled["lines"][0]["service_record_id"] == done.json()["service_record_id"]
    unsettled = (await clinic.kit.get("/service-records", params={"member_id": clinic.member,
                                                                   "unsettled": "true"})).json()["items"]
    assert unsettled == []
