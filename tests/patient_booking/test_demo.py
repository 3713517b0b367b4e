"""The demo tenant shows the patient's side of the mini-program: 王芳's subscribe consent records, the coupon she
claimed, and her booked visit prepaid in the mini-program with the coupon and her stored value."""

from __future__ import annotations

from tests.factories import demo_reader


async def test_demo_has_a_patient_with_consent_records_and_a_paid_mini_program_order(client):
    get = await demo_reader(client)

    [wang] = [m for m in (await get("/members", q="王芳"))["items"] if m["name"] == "王芳"]
    records = (await get(f"/members/{wang['id']}/message-consent-records"))["items"]
    assert {(r["template_key"], r["result"]) for r in records} >= {("appointment_reminder", "accept"),
                                                                   ("waitlist_offer", "accept")}
    orders = [await get(f"/orders/{o['id']}") for o in (await get("/orders", member_id=wang["id"]))["items"]]
    prepaid = [o for o in orders if o["appointment_id"] and o["note"] == "小程序预付"]
    assert len(prepaid) == 1 and prepaid[0]["status"] == "paid"
    assert {p["method"] for p in prepaid[0]["payments"]} == {"coupon", "stored_value"}
    publications = (await get("/coupon-publications"))["items"]
    assert any(p["title"] == "新客立减20元" and p["claimed_count"] >= 1 for p in publications)
