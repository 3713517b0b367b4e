"""Booking over GraphQL: the mini-program's slots → book → my appointments → cancel, and the sidebar's day."""

from __future__ import annotations

from datetime import datetime

from tests.booking.appointment_helpers import make_shop, schedule
from tests.cards.helpers import make_member
from tests.members.helpers import patient_token
from tests.platform.test_graphql import codes, gql

SLOTS = "query($s: ID!, $v: ID!, $d: Date!) { availability(storeId: $s, serviceId: $v, date: $d) { startsAt staffId } }"
BOOK = """mutation($i: BookingInput!) { bookAppointment(input: $i) { id status startsAt endsAt staffId channel
  resourceIds } }"""
MINE = "query($m: ID) { appointments(memberId: $m) { items { id status } } }"
DAY = "{ appointments(mine: true) { items { id memberId } } }"
CANCEL = "mutation($id: ID!) { cancelAppointment(id: $id, reason: \"改天\") { id status } }"


async def test_patient_books_from_the_offered_slots_and_cancels(client):
    shop = await make_shop(client, therapists=1, days_ahead=2)
    token = patient_token(shop.kit, shop.member)
    slots = await gql(shop.kit, SLOTS, token, {"s": shop.store, "v": shop.massage, "d": shop.day.isoformat()})
    assert "errors" not in slots, slots
    offered = slots["data"]["availability"]
    assert offered and offered[0]["staffId"] == shop.therapists[0]
    start = offered[0]["startsAt"]
    booked = await gql(shop.kit, BOOK, token, {"i": {"memberId": shop.member, "storeId": shop.store,
                                                     "serviceId": shop.massage, "startsAt": start}})
    assert "errors" not in booked, booked
    appointment = booked["data"]["bookAppointment"]
    assert appointment["status"] == "booked" and appointment["channel"] == "mini_program"
    assert datetime.fromisoformat(appointment["startsAt"]) == datetime.fromisoformat(start)
    assert appointment["resourceIds"] == shop.rooms

    # The slot is gone from what is offered, and booking it again is the REST conflict code.
    again = await gql(shop.kit, SLOTS, token, {"s": shop.store, "v": shop.massage, "d": shop.day.isoformat()})
    assert start not in [s["startsAt"] for s in again["data"]["availability"]]
    taken = await gql(shop.kit, BOOK, token, {"i": {"memberId": shop.member, "storeId": shop.store,
                                                    "serviceId": shop.massage, "startsAt": start,
                                                    "staffId": shop.therapists[0]}})
    assert codes(taken) == ["staff_busy"]

    mine = await gql(shop.kit, MINE, token, {"m": shop.member})
    assert [a["id"] for a in mine["data"]["appointments"]["items"]] == [appointment["id"]]
    cancelled = await gql(shop.kit, CANCEL, token, {"id": appointment["id"]})
    assert cancelled["data"]["cancelAppointment"]["status"] == "cancelled", cancelled
    assert codes(await gql(shop.kit, CANCEL, token, {"id": appointment["id"]})) == ["invalid_status"]


async def test_the_sidebar_shows_the_therapists_own_appointments(client):
    shop = await make_shop(client, therapists=1, rooms=2)
    therapist = await shop.kit.staff(["therapist"], [shop.store])
    await schedule(shop.tenant_id, shop.store, [therapist["id"]], [shop.massage, shop.consult])
    theirs = await shop.booked(shop.at(10), staff=therapist["id"])
    await shop.booked(shop.at(10), staff=shop.therapists[0], member=await make_member(shop.kit))  # someone else's
    day = await gql(shop.kit, DAY, therapist["token"])
    assert "errors" not in day, day
    assert [(a["id"], a["memberId"]) for a in day["data"]["appointments"]["items"]] == [(theirs["id"], shop.member)]


async def test_bad_arguments_are_problem_codes(client):
    shop = await make_shop(client, therapists=1)
    token = patient_token(shop.kit, shop.member)
    assert codes(await gql(shop.kit, SLOTS, token, {"s": "nope", "v": shop.massage,
                                                    "d": shop.day.isoformat()})) == ["validation_error"]
    assert codes(await gql(shop.kit, SLOTS, token, {"s": shop.store, "v": shop.massage,
                                                    "d": "1900-01-01"})) == ["validation_error"]
    long_notes = {"memberId": shop.member, "storeId": shop.store, "serviceId": shop.massage,
                  "startsAt": shop.iso(10), "notes": "长" * 3000}
    assert codes(await gql(shop.kit, BOOK, token, {"i": long_notes})) == ["validation_error"]
    assert codes(await gql(shop.kit, DAY, token)) == ["validation_error"]
