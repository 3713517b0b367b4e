"""The patient pays in the mini-program with any mix of stored value, points, a coupon and WeChat Pay: what adds
up is paid, what does not is a 422 naming the field with nothing written, and concurrent spending of the same
balance, coupon or appointment succeeds once (checkout's own paths, not a copy of them)."""

from __future__ import annotations

import asyncio

import pytest

from tests.cards.helpers import consistency
from tests.checkout.helpers import order_rows
from tests.members.helpers import assert_problem, make_member, patient_token
from tests.patient_booking.helpers import (
    MASSAGE_PRICE,
    MOXA_PRICE,
    claim,
    coupon,
    coupon_publication,
    give_points,
    make_clinic,
    make_service,
    pay_order,
    points,
    service_line,
    stored,
    stored_value_card,
    wechat_pay,
)


async def _points(clinic, member: str | None = None) -> int:
    return (await clinic.kit.get(f"/members/{member or clinic.member}/points")).json()["balance"]


async def _coupon_status(clinic, coupon_id: str) -> str:
    coupons = (await clinic.kit.get(f"/members/{clinic.member}/coupons")).json()["items"]
    return next(c["status"] for c in coupons if c["id"] == coupon_id)


async def test_points_a_claimed_coupon_and_stored_value_pay_at_once(client):
    clinic = await make_clinic(client)
    token = patient_token(clinic.kit, clinic.member)
    card = await stored_value_card(clinic, face=20000)
    await give_points(clinic, 5000)
    claimed = await claim(clinic, token, await coupon_publication(clinic, value=3000))
    r = await pay_order(clinic, token, [service_line(clinic.massage)],
                        [points(5000), coupon(claimed, 3000), stored(MASSAGE_PRICE - 5000 - 3000, card)])
    assert r.status_code == 201, r.text
    order = r.json()
    assert (order["status"], order["total"], order["paid_total"]) == ("paid", MASSAGE_PRICE, MASSAGE_PRICE)
    assert order["wechat_pay"] is None
    assert await _coupon_status(clinic, claimed) == "used"
    # 50 yuan of points spent; the stored-value principal (118 yuan) earns 118 points.
    assert await _points(clinic) == 5000 - 5000 + (MASSAGE_PRICE - 8000) // 100
    assert await consistency(clinic.tenant_id, card) == []
    receipt = (await clinic.kit.get(f"/orders/{order['id']}/receipt", token=token)).json()
    assert [t["method"] for t in receipt["tenders"]] == ["points", "coupon", "stored_value"]


async def test_bad_mixes_are_422_naming_the_field_and_write_nothing(client):
    clinic = await make_clinic(client)
    token = patient_token(clinic.kit, clinic.member)
    card = await stored_value_card(clinic, face=50000)
    await give_points(clinic, 20000)
    moxa_only = await claim(clinic, token, await coupon_publication(clinic, value=1000, services=[clinic.moxa]))
    unpublished = await make_service(clinic.kit, "刮痧", 6800)
    stranger = (await make_member(clinic.kit, "赵强"))["id"]
    massage = [service_line(clinic.massage)]
    cases = [
        # The tenders must add up to the total, exactly.
        (massage, [stored(10000, card)], 422, "payment_mismatch", "payments"),
        (massage, [stored(10000, card), points(100)], 422, "payment_mismatch", "payments"),
        # Points pay at most half of the order (the tenant's cap): 100 yuan of points is above it.
        (massage, [points(10000), stored(MASSAGE_PRICE - 10000, card)], 422, "points_cap_exceeded",
         "payments.0.points"),
        # A coupon for 艾灸 does not apply to a 推拿 line.
        (massage, [coupon(moxa_only), stored(MASSAGE_PRICE - 1000, card)], 422, "coupon_not_applicable",
         "payments.0.coupon_id"),
        # Cash is for the front desk; so are discounts.
        (massage, [{"method": "cash", "amount": MASSAGE_PRICE}], 422, "validation_error", "payments.0"),
        ([{**service_line(clinic.massage), "line_discount": 1000}], [stored(MASSAGE_PRICE, card)], 422,
         "validation_error", "lines.0.service.line_discount"),
        ([service_line(unpublished)], [stored(6800, card)], 404, "service_not_found", "lines.0.service_id"),
    ]
    before = await order_rows(clinic.tenant_id)
    for lines, payments, status, code, field in cases:
        r = await pay_order(clinic, token, lines, payments)
        assert_problem(r, status, code, field=field)
    for extra, status, code, field in [
        ({"order_discount": 1000}, 422, "validation_error", "order_discount"),
        ({"member_id": stranger}, 404, "member_not_found", "member_id"),
        ({"appointment_id": "00000000-0000-4000-8000-000000000000"}, 404, "appointment_not_found",
         "appointment_id"),
    ]:
        assert_problem(await pay_order(clinic, token, massage, [stored(MASSAGE_PRICE, card)], **extra), status, code,
                       field=field)
    assert await order_rows(clinic.tenant_id) == before
    assert await _coupon_status(clinic, moxa_only) == "issued"
    assert await _points(clinic) == 20000
    # Staff open orders at the front desk, not here.
    assert_problem(await pay_order(clinic, clinic.kit.owner_token, massage, [stored(MASSAGE_PRICE, card)]), 401,
                   "wrong_audience")


async def test_the_same_balance_coupon_or_appointment_is_spent_once_under_concurrent_requests(client):
    clinic = await make_clinic(client)
    token = patient_token(clinic.kit, clinic.member)
    card = await stored_value_card(clinic, face=MOXA_PRICE + 5000)
    moxa = [service_line(clinic.moxa)]

    answers = await asyncio.gather(*(pay_order(clinic, token, moxa, [stored(MOXA_PRICE, card)]) for _ in range(4)))
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409], [r.text for r in answers]
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {"insufficient_balance"}
    assert await consistency(clinic.tenant_id, card) == []

    claimed = await claim(clinic, token, await coupon_publication(clinic, value=MOXA_PRICE))
    answers = await asyncio.gather(*(pay_order(clinic, token, moxa, [coupon(claimed)]) for _ in range(3)))
    assert sorted(r.status_code for r in answers) == [201, 409, 409], [r.text for r in answers]
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {"coupon_used"}

    booked = await clinic.book(token, clinic.at(15), service=clinic.massage)
    assert booked.status_code == 201, booked.text
    funds = await stored_value_card(clinic, face=MASSAGE_PRICE * 3)
    answers = await asyncio.gather(*(pay_order(clinic, token, [service_line(clinic.massage)],
                                               [stored(MASSAGE_PRICE, funds)], appointment_id=booked.json()["id"])
                                     for _ in range(3)))
    assert sorted(r.status_code for r in answers) == [201, 409, 409], [r.text for r in answers]
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {"appointment_already_paid"}
    balance = next(c["balance"] for c in (await clinic.kit.get(f"/members/{clinic.member}/cards")).json()["items"]
                   if c["id"] == funds)
    assert balance == MASSAGE_PRICE * 2
    assert await consistency(clinic.tenant_id, funds) == []


@pytest.mark.parametrize("status_after", ["cancelled"])
async def test_a_cancelled_prepay_frees_the_appointment_and_the_card(client, wechat, pay, status_after):
    """A pending WeChat prepay holds the appointment and the stored value; cancelling it gives both back."""
    from tests.patient_booking.helpers import login

    clinic = await make_clinic(client)
    token, _ = await login(clinic, wechat)
    card = await stored_value_card(clinic, face=10000)
    booked = (await clinic.book(token, clinic.at(11))).json()
    body = ([service_line(clinic.massage)], [stored(10000, card), wechat_pay(MASSAGE_PRICE - 10000)])
    first = await pay_order(clinic, token, *body, appointment_id=booked["id"])
    assert first.status_code == 201 and first.json()["status"] == "pending", first.text
    assert_problem(await pay_order(clinic, token, *body, appointment_id=booked["id"]), 409,
                   "appointment_already_paid")
    cancelled = await clinic.kit.post(f"/orders/{first.json()['id']}/cancel", {"reason": "换个时间再付"}, token=token)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == status_after, cancelled.text
    again = await pay_order(clinic, token, *body, appointment_id=booked["id"])
    assert again.status_code == 201, again.text
    assert await consistency(clinic.tenant_id, card) == []


async def test_a_parent_books_and_pays_for_a_child_with_a_family_card(client):
    clinic = await make_clinic(client)
    token = patient_token(clinic.kit, clinic.member)
    child = (await make_member(clinic.kit, "王小宝"))["id"]
    family = await clinic.kit.post("/families", {"name": "王家", "head_member_id": clinic.member})
    assert family.status_code == 201, family.text
    r = await clinic.kit.post(f"/families/{family.json()['id']}/members", {"member_id": child, "relation": "child"})
    assert r.status_code == 200, r.text
    shared = await stored_value_card(clinic, face=50000, family_shareable=True)

    booked = await clinic.book(token, clinic.at(9), member=child, service=clinic.moxa)
    assert booked.status_code == 201, booked.text
    r = await pay_order(clinic, token, [service_line(clinic.moxa)], [stored(MOXA_PRICE, shared)], member_id=child,
                        appointment_id=booked.json()["id"])
    assert r.status_code == 201, r.text
    assert (r.json()["member_id"], r.json()["status"]) == (child, "paid")
    # Someone outside the family is not the patient's to book or pay for.
    stranger = (await make_member(clinic.kit, "李雷"))["id"]
    assert_problem(await clinic.book(token, clinic.at(12), member=stranger), 404)
    assert_problem(await pay_order(clinic, token, [service_line(clinic.moxa)], [stored(MOXA_PRICE, shared)],
                                   member_id=stranger), 404, "member_not_found")
