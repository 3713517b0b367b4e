"""The demo tenant shows the patient's side of the mini-program: 王芳's subscribe consent records, the coupon she
claimed, and her booked visit prepaid in the mini-program with the coupon and her stored value."""

from __future__ import annotations

from app.seed import DEMO_PASSWORD, DEMO_TENANT, seed_demo
from tests.factories import login


async def test_demo_has_a_patient_with_consent_records_and_a_paid_mini_program_order(client):
    await seed_demo(if_missing=True)
    headers = {"Authorization": f"Bearer {await login(client, DEMO_TENANT, 'owner', DEMO_PASSWORD)}"}

    async def get(path: str, **params) -> dict:
        r = await client.get(f"/api/v1{path}", headers=headers, params=params)
        assert r.status_code == 200, r.text
        return r.json()

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
