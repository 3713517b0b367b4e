"""The waitlist (a cancellation offers the freed slot), the front desk's day board and the iCal feed."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import icalendar

from tests.booking.appointment_helpers import make_shop
from tests.cards.helpers import assert_problem, make_member, owner_sql
from tests.factories import deliver
from tests.members.helpers import patient_token


async def deliver_all(tenant_id: UUID, topic: str) -> None:
    outcomes = await deliver(tenant_id, topic)
    assert outcomes and set(outcomes) == {"done"}, f"{topic}: {outcomes}"


async def offers(tenant_id: UUID) -> list[dict]:
    rows = await owner_sql("SELECT payload FROM outbox WHERE tenant_id = :t AND topic = 'waitlist.slot_offered' "
                           "ORDER BY id", t=tenant_id)
    return [payload for (payload,) in rows]


async def test_a_cancellation_offers_the_slot_to_the_first_matching_waiter(client):
    shop = await make_shop(client, therapists=1)
    kit = shop.kit
    booked = await shop.booked(shop.at(10))
    first = await make_member(kit, "孙悦")
    second = await make_member(kit, "周晴")
    entries = []
    for member in (first, second):
        r = await kit.post("/waitlist", {"member_id": member, "store_id": shop.store, "service_id": shop.massage,
                                         "day": shop.day.isoformat()})
        assert r.status_code == 201, r.text
        entries.append(r.json())
    assert entries[0]["status"] == "waiting"
    # The same member twice for the same day: refused, nothing added.
    again = await kit.post("/waitlist", {"member_id": first, "store_id": shop.store, "service_id": shop.massage,
                                         "day": shop.day.isoformat()})
    assert_problem(again, 409, "already_waiting")

    assert (await shop.act(booked["id"], "cancel", {"reason": "临时有事"})).status_code == 200
    await deliver_all(shop.tenant_id, "appointment.cancelled")
    [offer] = await offers(shop.tenant_id)
    assert offer["member_id"] == first and offer["staff_id"] == shop.therapists[0]
    assert datetime.fromisoformat(offer["starts_at"]) == shop.at(10)
    listed = (await kit.get("/waitlist", params={"store_id": shop.store, "day": shop.day.isoformat()})).json()
    assert {e["member_id"]: e["status"] for e in listed["items"]} == {first: "offered", second: "waiting"}

    # The offered member books the slot: their entry closes; the second still waits.
    taken = await shop.booked(shop.at(10), member=first)
    await deliver_all(shop.tenant_id, "appointment.booked")
    listed = (await kit.get("/waitlist", params={"store_id": shop.store, "status": "booked"})).json()["items"]
    assert [(e["member_id"], e["appointment_id"]) for e in listed] == [(first, taken["id"])]


async def test_no_offer_when_the_slot_was_taken_again(client):
    shop = await make_shop(client, therapists=1)
    booked = await shop.booked(shop.at(15))
    waiter = await make_member(shop.kit, "郑雪")
    r = await shop.kit.post("/waitlist", {"member_id": waiter, "store_id": shop.store, "service_id": shop.massage,
                                          "day": shop.day.isoformat()})
    assert r.status_code == 201, r.text
    await shop.act(booked["id"], "cancel", {})
    await shop.booked(shop.at(15), member=await make_member(shop.kit, "王芳"))  # walk-in took it first
    await deliver_all(shop.tenant_id, "appointment.cancelled")
    assert await offers(shop.tenant_id) == []
    entry = (await shop.kit.get("/waitlist", params={"member_id": waiter})).json()["items"][0]
    assert entry["status"] == "waiting"


async def test_patients_join_and_leave_for_themselves_only(client):
    shop = await make_shop(client, therapists=1)
    stranger = await make_member(shop.kit, "冯刚")
    token = patient_token(shop.kit, shop.member)
    body = {"member_id": shop.member, "store_id": shop.store, "service_id": shop.massage,
            "day": shop.day.isoformat()}
    mine = await shop.kit.post("/waitlist", body, token=token)
    assert mine.status_code == 201, mine.text
    assert_problem(await shop.kit.post("/waitlist", {**body, "member_id": stranger}, token=token), 404)
    assert_problem(await shop.kit.get("/waitlist", token=token), 422, "validation_error")
    own = (await shop.kit.get("/waitlist", params={"member_id": shop.member}, token=token)).json()["items"]
    assert [e["id"] for e in own] == [mine.json()["id"]]
    left = await shop.kit.post(f"/waitlist/{mine.json()['id']}/cancel", {}, token=token)
    assert left.status_code == 200 and left.json()["status"] == "cancelled"
    assert_problem(await shop.kit.post(f"/waitlist/{mine.json()['id']}/cancel", {}, token=token), 409,
                   "invalid_status")
    for bad in ({**body, "day": "1900-01-01"}, {**body, "day": "2031-13-01"}, {**body, "service_id": "x"},
                {k: v for k, v in body.items() if k != "day"}):
        assert_problem(await shop.kit.post("/waitlist", bad), 422, "validation_error")


async def test_store_day_board_lists_each_therapist_and_room(client):
    shop = await make_shop(client, therapists=2, rooms=2)
    a = await shop.booked(shop.at(9), staff=shop.therapists[0])
    b = await shop.booked(shop.at(9), staff=shop.therapists[1], member=await make_member(shop.kit))
    c = await shop.booked(shop.at(11), staff=shop.therapists[0], service=shop.consult)
    cancelled = await shop.booked(shop.at(14), staff=shop.therapists[1])
    await shop.act(cancelled["id"], "cancel", {})
    r = await shop.kit.get("/calendar/store-day", params={"store_id": shop.store, "date": shop.day.isoformat()})
    assert r.status_code == 200, r.text
    board = r.json()
    by_staff = {t["staff_id"]: [e["id"] for e in t["appointments"]] for t in board["therapists"]}
    assert by_staff == {shop.therapists[0]: [a["id"], c["id"]], shop.therapists[1]: [b["id"]]}
    by_room = {room["resource_id"]: [e["id"] for e in room["appointments"]] for room in board["resources"]}
    assert sorted(by_room) == sorted(shop.rooms)
    assert sorted(i for ids in by_room.values() for i in ids) == sorted([a["id"], b["id"]])
    assert board["timezone"] == "Asia/Shanghai" and board["date"] == shop.day.isoformat()
    other = await make_shop(client)
    assert_problem(await shop.kit.get("/calendar/store-day", params={"store_id": other.store,
                                                                    "date": shop.day.isoformat()}), 404)
    assert_problem(await shop.kit.get("/calendar/store-day", params={"store_id": shop.store, "date": "tomorrow"}),
                   422, "validation_error")


async def test_ical_feed_parses_and_revokes(client):
    shop = await make_shop(client, therapists=1)
    booked = await shop.booked(shop.at(10))
    gone = await shop.booked(shop.at(13))
    await shop.act(gone["id"], "cancel", {})
    issued = await shop.kit.post(f"/staff/{shop.therapists[0]}/calendar-feed", {})
    assert issued.status_code == 201, issued.text
    url = issued.json()["url"]
    path = url[url.index("/api/v1"):]
    feed = await client.get(path)
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(feed.content)
    events = {str(e["uid"]): e for e in calendar.walk("VEVENT")}
    assert set(events) == {f"{booked['id']}@careloop", f"{gone['id']}@careloop"}
    event = events[f"{booked['id']}@careloop"]
    assert event.decoded("dtstart") == shop.at(10) and str(event["status"]) == "CONFIRMED"
    assert str(events[f"{gone['id']}@careloop"]["status"]) == "CANCELLED"
    assert "赵**" in str(event["summary"])  # the member's surname only: the URL is a bearer secret

    # A new feed revokes the old; revoking leaves none; a forged token finds nothing.
    reissued = (await shop.kit.post(f"/staff/{shop.therapists[0]}/calendar-feed", {})).json()["url"]
    assert_problem(await client.get(path), 404, "calendar_feed_not_found")
    assert (await client.get(reissued[reissued.index("/api/v1"):])).status_code == 200
    assert (await shop.kit.delete(f"/staff/{shop.therapists[0]}/calendar-feed")).status_code == 204
    assert_problem(await client.get(reissued[reissued.index("/api/v1"):]), 404, "calendar_feed_not_found")
    forged = path.rsplit("/", 1)[0] + "/" + "A" * 43 + ".ics"
    assert_problem(await client.get(forged), 404, "calendar_feed_not_found")
    # Another tenant's feed path with this tenant's token: nothing (the tenant scopes the lookup).
    other = await make_shop(client)
    fresh = (await shop.kit.post(f"/staff/{shop.therapists[0]}/calendar-feed", {})).json()["url"]
    token = fresh.rsplit("/", 1)[1]
    assert_problem(await client.get(f"/api/v1/calendar/feeds/{other.tenant_id}/{token}"), 404)
    front_desk = await shop.kit.staff(["front_desk"], [shop.store])
    assert_problem(await shop.kit.post(f"/staff/{shop.therapists[0]}/calendar-feed", {},
                                       token=front_desk["token"]), 403, "permission_denied")
