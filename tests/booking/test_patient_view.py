"""Patients see their appointments without the store's notes, over REST and GraphQL alike: one presenter per
audience, picked from the actor (the member timeline hides the same `notes`)."""

from __future__ import annotations

from tests.booking.appointment_helpers import make_shop
from tests.cards.helpers import make_member
from tests.members.helpers import patient_token
from tests.platform.test_graphql import gql

STAFF_NOTE = "内部：客户对价格敏感，勿推荐套餐"
LIST = "query($m: ID) { appointments(memberId: $m) { items { id notes status } } }"
BOOK = "mutation($i: BookingInput!) { bookAppointment(input: $i) { id notes } }"
MOVE = "mutation($id: ID!, $at: DateTime!) { rescheduleAppointment(id: $id, startsAt: $at) { id notes } }"
CANCEL = "mutation($id: ID!) { cancelAppointment(id: $id) { id notes status } }"


async def test_patients_never_get_the_stores_notes_over_rest(client):
    shop = await make_shop(client, therapists=2, rooms=2)
    child = await make_member(shop.kit, "小明")
    family = (await shop.kit.post("/families", {"name": "赵家", "head_member_id": shop.member})).json()
    await shop.kit.post(f"/families/{family['id']}/members", {"member_id": child, "relation": "child"})
    patient = patient_token(shop.kit, shop.member)
    booked = await shop.booked(shop.at(10), notes=STAFF_NOTE)
    for_child = await shop.booked(shop.at(10), member=child, staff=shop.therapists[1], notes=STAFF_NOTE)
    assert booked["notes"] == STAFF_NOTE  # the front desk sees what it wrote

    for appointment in (booked, for_child):
        got = (await shop.kit.get(f"/appointments/{appointment['id']}", token=patient)).json()
        assert got["id"] == appointment["id"] and got["status"] == "booked" and got["notes"] is None
        assert (await shop.kit.get(f"/appointments/{appointment['id']}")).json()["notes"] == STAFF_NOTE
    for member in (shop.member, child):
        listed = (await shop.kit.get("/appointments", token=patient, params={"member_id": member})).json()["items"]
        assert len(listed) == 1 and all(a["notes"] is None for a in listed)
        staff_list = (await shop.kit.get("/appointments", params={"member_id": member})).json()["items"]
        assert [a["notes"] for a in staff_list] == [STAFF_NOTE]

    # What a patient's own change answers with goes through the same presenter.
    moved = await shop.act(booked["id"], "reschedule", {"starts_at": shop.iso(14)}, token=patient)
    assert moved.status_code == 200, moved.text
    assert moved.json()["notes"] is None
    cancelled = await shop.act(for_child["id"], "cancel", {"reason": "有事"}, token=patient)
    assert cancelled.status_code == 200 and cancelled.json()["notes"] is None
    # A booking of the patient's own answers without notes too (the visit's lines included).
    own = await shop.book(shop.at(16), token=patient, notes="颈椎不适")
    assert own.status_code == 201, own.text
    assert own.json()["notes"] is None and [a["notes"] for a in own.json()["appointments"]] == [None]


async def test_patients_never_get_the_stores_notes_over_graphql(client):
    shop = await make_shop(client, therapists=2, rooms=2)
    patient = patient_token(shop.kit, shop.member)
    booked = await shop.booked(shop.at(10), notes=STAFF_NOTE)

    mine = await gql(shop.kit, LIST, patient, {"m": shop.member})
    assert "errors" not in mine, mine
    assert mine["data"]["appointments"]["items"] == [{"id": booked["id"], "notes": None, "status": "booked"}]
    staff = await gql(shop.kit, LIST, shop.kit.owner_token, {"m": shop.member})
    assert staff["data"]["appointments"]["items"][0]["notes"] == STAFF_NOTE

    moved = await gql(shop.kit, MOVE, patient, {"id": booked["id"], "at": shop.iso(14)})
    assert "errors" not in moved, moved
    assert moved["data"]["rescheduleAppointment"] == {"id": booked["id"], "notes": None}
    own = await gql(shop.kit, BOOK, patient, {"i": {"memberId": shop.member, "storeId": shop.store,
                                                    "serviceId": shop.consult, "startsAt": shop.iso(17),
                                                    "notes": "颈椎不适"}})
    assert "errors" not in own, own
    assert own["data"]["bookAppointment"]["notes"] is None
    cancelled = await gql(shop.kit, CANCEL, patient, {"id": booked["id"]})
    assert cancelled["data"]["cancelAppointment"] == {"id": booked["id"], "notes": None, "status": "cancelled"}
