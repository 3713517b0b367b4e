"""The demo tenant shows booking working: resources, shifts, free slots, bookings, the board and a waitlist."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from app.seed import DEMO_PASSWORD, DEMO_TENANT, seed_demo
from tests.factories import login


async def test_demo_has_a_working_booking_desk(client):
    result = await seed_demo(if_missing=True)
    token = await login(client, DEMO_TENANT, "frontdesk", DEMO_PASSWORD)
    headers = {"Authorization": f"Bearer {token}"}

    async def get(path: str, **params) -> dict:
        r = await client.get(f"/api/v1{path}", headers=headers, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    store = next(s for s in (await get("/stores"))["items"] if s["name"] == "康悦堂·静安旗舰店")
    resources = (await get("/resources", store_id=store["id"]))["items"]
    assert {"1号推拿床", "艾灸仪A", "1号诊室", "养生课堂"} <= {r["name"] for r in resources}
    services = {s["name"]: s["id"] for s in (await get("/services"))["items"]}
    today = datetime.now(ZoneInfo(store["timezone"])).date()
    week = await get("/availability", store_id=store["id"], service_id=services["推拿"],
                     **{"from": (today + timedelta(days=1)).isoformat(), "to": (today + timedelta(days=7)).isoformat()})
    assert len(week["slots"]) > 20

    start = datetime.combine(today, datetime.min.time(), ZoneInfo(store["timezone"]))
    booked = (await get("/appointments", store_id=store["id"], **{"from": start.isoformat(),
                                                                  "to": (start + timedelta(days=9)).isoformat()}))
    assert len(booked["items"]) >= 5 and {a["status"] for a in booked["items"]} == {"booked"}
    if result.get("created"):
        assert len(result["appointments"]) == 8
    first_day = datetime.fromisoformat(booked["items"][0]["starts_at"]).astimezone(ZoneInfo(store["timezone"]))
    board = await get("/calendar/store-day", store_id=store["id"], date=first_day.date().isoformat())
    assert {"陈晓明", "刘芳"} <= {t["name"] for t in board["therapists"]}
    assert any(t["appointments"] for t in board["therapists"])
    waiting = (await get("/waitlist", store_id=store["id"]))["items"]
    assert [w["status"] for w in waiting] == ["waiting"]
