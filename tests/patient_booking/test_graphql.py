"""The mini-program's GraphQL: book, claim a coupon, pay with points, the coupon and WeChat Pay for the rest,
WeChat's notification, the receipt; bad input names the field in the error's extensions."""

from __future__ import annotations

from tests.checkout.helpers import order_rows
from tests.patient_booking.helpers import (
    MASSAGE_PRICE,
    NOTIFY,
    coupon_publication,
    give_points,
    login,
    make_clinic,
)
from tests.platform.test_graphql import gql

BOOK = "mutation($i: BookingInput!) { bookAppointment(input: $i) { id status } }"
CLAIM = "mutation($p: ID!) { claimCoupon(publicationId: $p) { id } }"
PAY = """mutation($i: PatientOrderInput!) {
  payOrder(input: $i) { id status total paidTotal wechatPayParams lines { type amount } } }"""
RECEIPT = """query($o: ID!) { orderReceipt(orderId: $o) {
  orderNo status total tenders { method label amount } lines { name amount } } }"""


async def test_book_claim_and_pay_with_points_coupon_and_wechat_pay_over_graphql(client, wechat, pay):
    clinic = await make_clinic(client)
    token, openid = await login(clinic, wechat)
    await give_points(clinic, 3000)
    booked = await gql(clinic.kit, BOOK, token, {"i": {"memberId": clinic.member, "storeId": clinic.store,
                                                       "serviceId": clinic.massage, "startsAt": clinic.iso(14),
                                                       "staffId": clinic.therapists[0]}})
    assert "errors" not in booked, booked
    appointment = booked["data"]["bookAppointment"]["id"]
    coupon = (await gql(clinic.kit, CLAIM, token, {"p": await coupon_publication(clinic, value=2000)}))
    coupon_id = coupon["data"]["claimCoupon"]["id"]
    rest = MASSAGE_PRICE - 3000 - 2000

    def order(*payments: dict) -> dict:
        return {"i": {"storeId": clinic.store, "appointmentId": appointment,
                      "lines": [{"type": "service", "serviceId": clinic.massage}], "payments": list(payments)}}

    tenders = [{"method": "points", "points": 3000}, {"method": "coupon", "couponId": coupon_id}]
    before = await order_rows(clinic.tenant_id)
    short = await gql(clinic.kit, PAY, token, order(*tenders, {"method": "wechat_pay", "amount": rest - 1}))
    assert short["errors"][0]["extensions"]["code"] == "payment_mismatch"
    assert short["errors"][0]["extensions"]["field"] == "payments" and short["errors"][0]["extensions"]["gap"] == 1
    cash = await gql(clinic.kit, PAY, token, order({"method": "cash", "amount": MASSAGE_PRICE}))
    assert cash["errors"][0]["extensions"]["code"] == "validation_error"
    assert await order_rows(clinic.tenant_id) == before

    paid = await gql(clinic.kit, PAY, token, order(*tenders, {"method": "wechat_pay", "amount": rest}))
    assert "errors" not in paid, paid
    pending = paid["data"]["payOrder"]
    assert (pending["status"], pending["total"]) == ("pending", MASSAGE_PRICE)
    assert pending["wechatPayParams"]["signType"] == "RSA"
    otn = next(n for n, o in pay.orders.items() if o["payer"]["openid"] == openid)
    headers, body = pay.notification(otn)
    assert (await client.post(NOTIFY, content=body, headers=headers)).status_code == 204

    receipt = await gql(clinic.kit, RECEIPT, token, {"o": pending["id"]})
    assert "errors" not in receipt, receipt
    shown = receipt["data"]["orderReceipt"]
    assert (shown["status"], shown["total"]) == ("paid", MASSAGE_PRICE)
    assert [(t["method"], t["amount"]) for t in shown["tenders"]] == [("points", 3000), ("coupon", 2000),
                                                                      ("wechat_pay", rest)]
