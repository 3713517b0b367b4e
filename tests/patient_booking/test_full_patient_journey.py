"""Issue 13's patient journey end to end, over real HTTP to the fake WeChat servers (mini-program API, WeChat
Pay): wx.login of an unknown phone → register from a shared link → browse the storefront → the front desk
sells a stored-value card at the counter → book a slot from availability → pay with stored value plus WeChat
Pay → WeChat's signed notification pays the order → the day-before reminder rule reaches the patient as a
subscribe message → the therapist completes the visit → "my visits" shows it with the aftercare note.

Only the clinic's setup goes through the staff API; everything the patient does uses the patient's token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from tests.cards.helpers import consistency
from tests.care.helpers import patch_rule, runs
from tests.checkout.helpers import card_line, cash
from tests.factories import deliver, login
from tests.members.helpers import assert_problem, make_member, new_phone
from tests.patient.helpers import AFTERCARE, JINGAN, bearer, make_storefront, ok, sign_up, uid
from tests.patient_booking.helpers import (
    MINI_LOGIN,
    NOTIFY,
    ZONE,
    Clinic,
    out_trade_no,
    pay_order,
    service_line,
    stored,
    wechat_pay,
)

MOXA_PRICE = 12800  # the storefront's 艾灸
CARD_FACE = 10000  # 储值卡 100 元, sold at the counter
REMINDER = {
    "key": "appointment_reminder", "name": "预约提醒", "channel": "mini_program_subscribe",
    "wechat_template_id": "tmpl-visit-reminder", "page": "pages/appointments/index",
    "body": "{{member_name}}您好，您预约的{{service_name}}将于{{starts_at}}在{{store_name}}开始。",
    "variables": ["member_name", "service_name", "starts_at", "store_name"],
    "wechat_fields": {"thing1": "{{service_name}}", "time2": "{{starts_at}}", "thing3": "{{store_name}}"}}


async def test_login_register_browse_book_pay_notify_visit_and_aftercare(client, subscribe_channel, pay):
    wechat, pay_server = subscribe_channel, pay
    shop = await make_storefront(client)
    kit, tenant_id = shop.kit, UUID(shop.kit.tenant_id)
    # The clinic's own setup: the published therapist works in 静安 every day, the reminder rule is on with
    # its subscribe template, and an existing member shares the mini-program with a friend.
    therapist = ok(await kit.get(f"/staff/{shop.therapist}"))
    ok(await kit.post("/shift-patterns", {"staff_id": shop.therapist, "store_id": shop.jingan,
                                          "weekdays": list(range(1, 8)), "starts": "09:00", "ends": "21:00",
                                          "valid_from": datetime.now(ZONE).date().isoformat()}), 201)
    ok(await kit.post("/message-templates", REMINDER), 201)
    await patch_rule(kit, "appointment_reminder", enabled=True)
    referrer = await make_member(kit, "周阿姨")

    # 1. wx.login with the phone button, for a phone no member has: not a member yet.
    phone, openid = new_phone(), uid("o")
    code, phone_code = uid("c"), uid("p")
    wechat.add_login_code(code, openid)
    wechat.add_phone_code(phone_code, phone)
    assert_problem(await client.post(MINI_LOGIN, json={"tenant": kit.code, "code": code, "phone_code": phone_code}),
                   404, "member_not_found")

    # 2. Register, opened from 周阿姨's share card (scene 1007), accepting the privacy policy.
    registered = await sign_up(client, wechat, kit.code, phone=phone, openid=openid, name="林晓", scene=1007,
                               referrer_id=referrer["id"])
    assert (registered["registered"], registered["bound"]) == (True, True)
    token, member_id = registered["access_token"], registered["member_id"]
    member = ok(await kit.get(f"/members/{member_id}"))
    assert (member["name"], member["phone"]) == ("林晓", phone)
    assert (member["source_channel"], member["referrer_id"]) == ("mini_program_share", referrer["id"])
    me = ok(await client.get("/api/v1/patient/me", headers=bearer(token)))
    assert me["id"] == member_id
    assert [(c["kind"], c["version"]) for c in me["consents"]] == [("privacy_policy", "2026-03")]

    # 3. Browse: published stores nearest first, what 静安 sells, who works there.
    stores = ok(await kit.get("/patient/stores", token=token,
                              params={"latitude": JINGAN[0] + 0.001, "longitude": JINGAN[1]}))["items"]
    assert [s["id"] for s in stores] == [shop.jingan, shop.lujiazui]  # 浦东仓库 is not published
    assert stores[0]["distance_m"] < stores[1]["distance_m"]
    assert stores[0]["address"] == "上海市静安区南京西路 1515 号" and len(stores[0]["hours"]) == 7
    services = ok(await kit.get(f"/patient/stores/{shop.jingan}/services", token=token))["items"]
    assert {s["name"] for s in services} == {"艾灸", "推拿"}
    moxa = next(s for s in services if s["id"] == shop.moxa)
    assert (moxa["price"], moxa["duration_minutes"], moxa["aftercare_note"]) == (MOXA_PRICE, 60, AFTERCARE)
    therapists = ok(await kit.get(f"/patient/stores/{shop.jingan}/therapists", token=token))["items"]
    assert [t["id"] for t in therapists] == [shop.therapist]
    assert "艾灸" in {s["name"] for s in therapists[0]["skills"]}

    # 4. At the counter the front desk sells the new member a 100-yuan stored-value card, paid in cash.
    desk = await kit.staff(["front_desk"], [shop.jingan])
    template = ok(await kit.post("/card-templates", {"name": "储值卡100元", "kind": "stored_value",
                                                     "price": CARD_FACE, "face_value": CARD_FACE}), 201)["id"]
    sale = ok(await kit.post("/orders", {"member_id": member_id, "store_id": shop.jingan,
                                         "lines": [card_line(template)], "payments": [cash(CARD_FACE)]},
                             token=desk["token"]), 201)
    assert sale["status"] == "paid" and len(sale["issued_cards"]) == 1
    card = sale["issued_cards"][0]
    (mine,) = ok(await kit.get("/patient/me/cards", token=token))["items"]
    assert (mine["id"], mine["kind"], mine["balance"]) == (card, "stored_value", CARD_FACE)

    # 5. Book 艾灸 with the therapist at a free 10:00 two days ahead, as availability offers it.
    clinic = Clinic(kit, tenant_id, shop.jingan, [shop.therapist], shop.massage, shop.moxa, member_id, phone,
                    datetime.now(ZONE).date() + timedelta(days=2))
    slots = ok(await kit.get("/availability", token=token, params={
        "store_id": shop.jingan, "service_id": shop.moxa, "date": clinic.day.isoformat(),
        "staff_id": shop.therapist}))["slots"]
    assert clinic.iso(10) in [s["starts_at"] for s in slots]
    appointment = ok(await clinic.book(token, clinic.at(10), service=shop.moxa), 201)
    assert (appointment["status"], appointment["channel"], appointment["member_id"]) == \
        ("booked", "mini_program", member_id)
    # The mini-program asks for the reminder subscription right after booking; the patient accepts.
    consents = ok(await kit.post("/patient/message-consents", {"results": {"tmpl-visit-reminder": "accept"},
                                                               "scene": "booking"}, token=token))
    assert consents["consents"] == [{"wechat_template_id": "tmpl-visit-reminder", "granted": 1}]

    # 6. Pay: the whole card balance plus WeChat Pay for the rest, charged to the signed-in WeChat account.
    order = ok(await pay_order(clinic, token, [service_line(shop.moxa)],
                               [stored(CARD_FACE, card), wechat_pay(MOXA_PRICE - CARD_FACE)],
                               appointment_id=appointment["id"]), 201)
    assert (order["status"], order["total"], order["member_id"]) == ("pending", MOXA_PRICE, member_id)
    otn = out_trade_no(order)
    held = pay_server.orders[otn]
    assert (held["payer"]["openid"], held["amount"]["total"]) == (openid, MOXA_PRICE - CARD_FACE)
    assert order["wechat_pay"]["mini_program_params"]["package"].startswith("prepay_id=")
    (mine,) = ok(await kit.get("/patient/me/cards", token=token))["items"]
    assert mine["balance"] == 0  # held while WeChat Pay is open

    # 7. WeChat's signed payment notification pays the order.
    headers, body = pay_server.notification(otn)
    assert (await client.post(NOTIFY, content=body, headers=headers)).status_code == 204
    paid = ok(await kit.get(f"/orders/{order['id']}", token=token))
    assert (paid["status"], paid["paid_total"]) == ("paid", MOXA_PRICE)
    assert {p["method"]: p["status"] for p in paid["payments"]} == {"stored_value": "succeeded",
                                                                   "wechat_pay": "succeeded"}
    my_orders = ok(await kit.get("/patient/me/orders", token=token))["items"]
    assert {(o["id"], o["status"]) for o in my_orders} == {(order["id"], "paid"), (sale["id"], "paid")}
    assert await consistency(tenant_id, card) == []

    # 8. The day before, the reminder rule messages the patient: a subscribe message through the mini-program
    # API, to the WeChat account they registered with, using up the consent they gave.
    assert set(await deliver(tenant_id, "appointment.reminder_due")) == {"done"}
    (run,) = await runs(tenant_id, "appointment_reminder")
    assert run["member_id"] == member_id
    assert run["run_at"] == clinic.at(10).astimezone(UTC) - timedelta(hours=24)
    assert set(await deliver(tenant_id, "care.rule_due")) == {"done"}
    assert set(await deliver(tenant_id, "message.send")) == {"done"}
    (sent,) = [m for m in wechat.subscribe_messages if m["touser"] == openid]
    assert sent["template_id"] == "tmpl-visit-reminder" and sent["page"] == "pages/appointments/index"
    assert sent["data"] == {"thing1": {"value": "艾灸"}, "time2": {"value": f"{clinic.day.isoformat()} 10:00"},
                            "thing3": {"value": "静安店"}}
    (message,) = ok(await kit.get("/messages", params={"member_id": member_id}))["items"]
    assert (message["template_key"], message["status"]) == ("appointment_reminder", "sent")
    assert ok(await kit.get("/patient/message-consents", token=token)) == [
        {"wechat_template_id": "tmpl-visit-reminder", "granted": 0}]

    # 9. The therapist, signed in, completes the visit; the prepaid order settles its service record.
    therapist_token = await login(client, kit.code, therapist["username"])
    done = ok(await kit.post(f"/appointments/{appointment['id']}/complete", {}, token=therapist_token))
    assert done["status"] == "completed" and done["service_record_id"]
    assert set(await deliver(tenant_id, "appointment.completed")) == {"done"}
    settled = ok(await kit.get(f"/orders/{order['id']}"))
    assert settled["lines"][0]["service_record_id"] == done["service_record_id"]

    # 10. "My visits": the visit is past, with the service's aftercare note; nothing is upcoming.
    visits = ok(await kit.get("/patient/me/visits", token=token))
    assert visits["upcoming"] == []
    (past,) = visits["past"]
    assert (past["kind"], past["id"], past["status"]) == ("service_record", done["service_record_id"], "completed")
    assert (past["service_id"], past["store_name"], past["aftercare_note"]) == (shop.moxa, "静安店", AFTERCARE)
