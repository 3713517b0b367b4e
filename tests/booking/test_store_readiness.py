"""Why a store offers nothing: availability's explain output names the day-level reason (no opening hours,
closed that weekday, a closed day, an inactive service), and `GET /stores/{id}/readiness` lists what still
keeps the store from taking bookings — each check with `ok` and a message, `ready` when all pass."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from tests.booking.appointment_helpers import add_therapists, make_service
from tests.cards.helpers import assert_problem
from tests.factories import new_tenant
from tests.members.helpers import patient_token

TZ = ZoneInfo("Asia/Shanghai")
WEEKDAYS_ONLY = [{"weekday": d, "opens": "09:00", "closes": "18:00"} for d in range(1, 6)]
EVERY_DAY = [{"weekday": d, "opens": "09:00", "closes": "18:00"} for d in range(1, 8)]


async def put(kit, path: str, body: dict):
    return await kit.client.put(f"/api/v1{path}", json=body, headers=kit.auth())


async def patch(kit, path: str, body: dict):
    return await kit.client.patch(f"/api/v1{path}", json=body, headers=kit.auth())


def checks(body: dict) -> dict[str, bool]:
    return {c["code"]: c["ok"] for c in body["checks"]}


def message(body: dict, code: str) -> str:
    return next(c["message"] for c in body["checks"] if c["code"] == code)


async def test_explain_says_why_a_store_without_opening_hours_offers_nothing(client):
    kit = await new_tenant(client)
    store = await kit.store()
    service = await make_service(kit, "问诊", 30)
    await add_therapists(UUID(kit.tenant_id), store, 1, [service])  # skilled and on shift every day
    first = datetime.now(TZ).date() + timedelta(days=1)
    week = {"store_id": store, "service_id": service, "from": first.isoformat(),
            "to": (first + timedelta(days=6)).isoformat()}

    r = await kit.get("/availability", params={**week, "explain": "true"})
    assert r.status_code == 200, r.text
    found = r.json()
    assert found["slots"] == [] and found["unavailable"] == []  # no hours: no grid, no slot to explain
    assert [d["date"] for d in found["unavailable_days"]] == [(first + timedelta(days=i)).isoformat()
                                                              for i in range(7)]
    assert {d["reason"] for d in found["unavailable_days"]} == {"no_opening_hours"}
    assert "no opening hours" in found["unavailable_days"][0]["message"]
    plain = (await kit.get("/availability", params=week)).json()
    assert plain["slots"] == [] and plain["unavailable"] is None and plain["unavailable_days"] is None

    # Weekdays only, and one of them closed: the weekend and that day say so; the other days have slots.
    assert (await put(kit, f"/stores/{store}/hours", {"hours": WEEKDAYS_ONLY})).status_code == 200
    workday = next(first + timedelta(days=i) for i in range(7) if (first + timedelta(days=i)).isoweekday() <= 5)
    r = await kit.post(f"/stores/{store}/closures", {"day": workday.isoformat(), "reason": "装修"})
    assert r.status_code == 201, r.text
    found = (await kit.get("/availability", params={**week, "explain": "true"})).json()
    days = {d["date"]: d for d in found["unavailable_days"]}
    for i in range(7):
        day = first + timedelta(days=i)
        if day == workday:
            assert days[day.isoformat()]["reason"] == "store_closed" and "装修" in days[day.isoformat()]["message"]
        elif day.isoweekday() > 5:
            assert days[day.isoformat()]["reason"] == "closed_weekday"
            assert ("Saturdays" if day.isoweekday() == 6 else "Sundays") in days[day.isoformat()]["message"]
        else:
            assert day.isoformat() not in days
            assert any(datetime.fromisoformat(s["starts_at"]).date() == day for s in found["slots"])

    # A service no longer offered: every day says so.
    assert (await patch(kit, f"/services/{service}", {"active": False})).status_code == 200
    found = (await kit.get("/availability", params={**week, "explain": "true"})).json()
    assert found["slots"] == [] and {d["reason"] for d in found["unavailable_days"]} == {"service_inactive"}
    assert len(found["unavailable_days"]) == 7


async def test_readiness_lists_what_still_blocks_booking_until_the_store_is_ready(client):
    kit = await new_tenant(client)
    store = await kit.store()
    r = await kit.get(f"/stores/{store}/readiness")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["store_id"] == store and body["ready"] is False and body["days_checked"] == 7
    assert checks(body) == {"store_active": True, "opening_hours": False, "staff_with_skills": False,
                            "shifts": False, "resources": True}
    assert "no opening hours" in message(body, "opening_hours")
    assert "no active staff" in message(body, "staff_with_skills")

    assert (await put(kit, f"/stores/{store}/hours", {"hours": EVERY_DAY})).status_code == 200
    massage = await make_service(kit, "推拿", 60, requirements=[{"kind": "room"}])
    therapist = await kit.staff(["therapist"], [store])
    body = (await kit.get(f"/stores/{store}/readiness")).json()
    assert checks(body)["opening_hours"] is True and checks(body)["staff_with_skills"] is False
    assert "skilled" in message(body, "staff_with_skills")

    r = await put(kit, f"/staff/{therapist['id']}/skills", {"service_ids": [massage]})
    assert r.status_code == 200, r.text
    body = (await kit.get(f"/stores/{store}/readiness")).json()
    assert checks(body) == {"store_active": True, "opening_hours": True, "staff_with_skills": True,
                            "shifts": False, "resources": False}
    assert "推拿 needs a room" in message(body, "resources")

    today = datetime.now(TZ).date()
    r = await kit.post("/shift-patterns", {"staff_id": therapist["id"], "store_id": store,
                                           "weekdays": list(range(1, 8)), "starts": "09:00", "ends": "18:00",
                                           "valid_from": today.isoformat()})
    assert r.status_code == 201, r.text
    r = await kit.post("/resources", {"store_id": store, "kind": "room", "name": "1号房"})
    assert r.status_code == 201, r.text
    body = (await kit.get(f"/stores/{store}/readiness")).json()
    assert body["ready"] is True and all(checks(body).values()), body
    # Ready means bookable: availability now offers slots.
    day = today + timedelta(days=2)
    offered = (await kit.get("/availability", params={"store_id": store, "service_id": massage,
                                                      "date": day.isoformat()})).json()
    assert offered["slots"]

    # A deactivated store is not ready again, whatever else is set up.
    assert (await patch(kit, f"/stores/{store}", {"active": False})).status_code == 200
    body = (await kit.get(f"/stores/{store}/readiness")).json()
    assert body["ready"] is False and checks(body)["store_active"] is False


async def test_readiness_needs_the_schedule_read_permission_and_the_store(client):
    kit = await new_tenant(client)
    store, other = await kit.store(), await kit.store("徐汇店")
    front_desk = await kit.staff(["front_desk"], [store])
    assert (await kit.get(f"/stores/{store}/readiness", token=front_desk["token"])).status_code == 200
    assert_problem(await kit.get(f"/stores/{other}/readiness", token=front_desk["token"]), 403, "store_forbidden")
    assert_problem(await kit.get(f"/stores/{UUID(int=1)}/readiness"), 404, "store_not_found")
    elsewhere = await new_tenant(client)
    assert_problem(await elsewhere.get(f"/stores/{store}/readiness"), 404, "store_not_found")
    assert_problem(await kit.get(f"/stores/{store}/readiness", token=patient_token(kit, str(UUID(int=2)))), 401)
