"""A member cannot be in two places at once: a booking or a move that would overlap another of the member's
active appointments is refused with 409 `member_busy` — also when two therapists book the member at the same
moment, each request in its own transaction on its own connection. A multi-service visit booked together
(back to back) stays allowed."""

from __future__ import annotations

import asyncio
from collections import Counter
from uuid import UUID

import httpx

from tests.booking.appointment_helpers import add_therapists, holds_of, make_shop
from tests.booking.test_booking_concurrency import race
from tests.cards.helpers import assert_problem, make_member, owner_sql
from tests.members.helpers import patient_token
from tests.platform.test_graphql import codes, gql

CLIENTS = 20
BOOK = "mutation($i: BookingInput!) { bookAppointment(input: $i) { id } }"


async def overlapping_active_pairs(member_id: str) -> int:
    """Pairs of the member's active appointments whose times overlap (0 when the member is never double-booked)."""
    rows = await owner_sql(
        "SELECT count(*) FROM appointments a JOIN appointments b ON a.member_id = b.member_id AND a.id < b.id "
        "AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at "
        "WHERE a.member_id = :m AND a.status IN ('booked', 'checked_in') AND b.status IN ('booked', 'checked_in')",
        m=UUID(member_id))
    return rows[0][0]


def assert_member_busy(r: httpx.Response, member_id: str, other_id: str | None = None) -> None:
    problem = assert_problem(r, 409, "member_busy")
    assert problem["conflict"]["kind"] == "member" and problem["conflict"]["id"] == member_id
    if other_id is not None:
        assert problem["conflict"]["appointment_id"] == other_id


async def test_the_member_cannot_be_booked_twice_at_overlapping_times(client):
    shop = await make_shop(client, therapists=3, rooms=3)
    first, second, third = shop.therapists
    booked = await shop.booked(shop.at(10), staff=first)  # 10:00–11:00

    # Another therapist, another room, but the same member: refused, and nothing is written.
    for start in (shop.at(10), shop.at(10, 30), shop.at(9, 30)):
        assert_member_busy(await shop.book(start, staff=second), shop.member, booked["id"])
    assert_member_busy(await shop.book(shop.at(10, 15), staff=None), shop.member, booked["id"])  # any therapist
    assert_member_busy(await shop.book(shop.at(10, 30), staff=third, service=shop.consult), shop.member)
    patient = patient_token(shop.kit, shop.member)
    assert_member_busy(await shop.book(shop.at(10, 30), staff=second, token=patient), shop.member)
    result = await gql(shop.kit, BOOK, patient, {"i": {"memberId": shop.member, "storeId": shop.store,
                                                       "serviceId": shop.consult, "startsAt": shop.iso(10, 45),
                                                       "staffId": third}})
    assert codes(result) == ["member_busy"]
    rows = await owner_sql("SELECT count(*) FROM appointments WHERE member_id = :m", m=UUID(shop.member))
    assert rows[0][0] == 1

    # Right after (half-open times), and someone else at the same time: fine.
    assert (await shop.book(shop.at(11), staff=second)).status_code == 201
    other = await make_member(shop.kit, "钱八")
    assert (await shop.book(shop.at(10), staff=second, member=other)).status_code == 201
    # A cancelled (or no-show) appointment no longer holds the member.
    assert (await shop.act(booked["id"], "cancel")).status_code == 200
    assert (await shop.book(shop.at(10, 15), staff=third, service=shop.consult)).status_code == 201
    assert await overlapping_active_pairs(shop.member) == 0


async def test_a_multi_service_visit_booked_together_is_allowed(client):
    shop = await make_shop(client, therapists=2, rooms=1, buffer=15)
    first, second = shop.therapists
    body = shop.body(shop.at(10))
    body.pop("service_id")
    body["services"] = [{"service_id": shop.massage, "staff_id": first},
                        {"service_id": shop.consult, "staff_id": second}]
    r = await shop.kit.post("/appointments", body)
    assert r.status_code == 201, r.text
    lines = r.json()["appointments"]
    assert [line["staff_id"] for line in lines] == [first, second]
    assert len({line["visit_id"] for line in lines}) == 1
    # The visit's second service (11:15–11:45) holds the member like any other appointment.
    assert_member_busy(await shop.book(shop.at(11, 30), staff=first, service=shop.consult), shop.member,
                       lines[1]["id"])
    assert await overlapping_active_pairs(shop.member) == 0


async def test_a_move_onto_the_members_other_appointment_is_refused_and_changes_nothing(client):
    shop = await make_shop(client, therapists=2, rooms=2)
    first, second = shop.therapists
    morning = await shop.booked(shop.at(10), staff=first)  # 10:00–11:00
    noon = await shop.booked(shop.at(12), staff=second)  # 12:00–13:00

    for start in (shop.at(10, 30), shop.at(9, 30), shop.at(10)):
        r = await shop.act(noon["id"], "reschedule", {"starts_at": start.isoformat()})
        assert_member_busy(r, shop.member, morning["id"])
    r = await shop.act(noon["id"], "reschedule", {"starts_at": shop.iso(10, 30)},
                       token=patient_token(shop.kit, shop.member))
    assert_member_busy(r, shop.member, morning["id"])
    got = (await shop.kit.get(f"/appointments/{noon['id']}")).json()
    assert (got["starts_at"], got["schedule_version"]) == (noon["starts_at"], 1)
    assert [active for _, _, active in await holds_of(noon["id"])] == [True, True]

    # Moving within its own time is no conflict with itself; right after the other one is fine too.
    assert (await shop.act(morning["id"], "reschedule", {"starts_at": shop.iso(10, 15)})).status_code == 200
    assert (await shop.act(noon["id"], "reschedule", {"starts_at": shop.iso(11, 15)})).status_code == 200
    assert await overlapping_active_pairs(shop.member) == 0


async def test_concurrent_bookings_of_one_member_by_different_therapists_make_one_appointment(client):
    shop = await make_shop(client, therapists=0, rooms=CLIENTS)
    therapists = await add_therapists(shop.tenant_id, shop.store, CLIENTS, [shop.massage, shop.consult])
    # Every therapist and room is free: only the member stands between the requests.
    done, refused = await race(shop, [shop.body(shop.at(10), staff=t) for t in therapists])
    assert len(done) == 1 and refused == {"member_busy": CLIENTS - 1}
    # Shifted but overlapping times, another service, the other therapists: nobody else gets the member.
    free = [t for t in therapists if t != done[0]["staff_id"]]
    done, refused = await race(shop, [shop.body(shop.at(10, 15 * (i % 4)), staff=t, service=shop.consult)
                                      for i, t in enumerate(free)])
    assert done == [] and refused == {"member_busy": CLIENTS - 1}
    # At a free time exactly one of the racers wins again.
    done, refused = await race(shop, [shop.body(shop.at(14, 15 * (i % 3)), staff=t)
                                      for i, t in enumerate(therapists)])
    assert len(done) == 1 and refused == {"member_busy": CLIENTS - 1}
    assert await overlapping_active_pairs(shop.member) == 0
    rows = await owner_sql("SELECT count(*) FROM appointments WHERE member_id = :m", m=UUID(shop.member))
    assert rows[0][0] == 2


async def test_concurrent_moves_of_one_members_appointments_onto_one_time_leave_one_there(client):
    shop = await make_shop(client, therapists=0, rooms=10)
    therapists = await add_therapists(shop.tenant_id, shop.store, 10, [shop.massage])
    # The member's ten appointments through the day, each with its own therapist.
    originals = [await shop.booked(shop.at(9 + i), staff=t) for i, t in enumerate(therapists)]
    target = shop.at(20)

    responses = await asyncio.gather(*(shop.act(a["id"], "reschedule", {"starts_at": target.isoformat()})
                                       for a in originals))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 409: 9}, [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"member_busy"}
    assert await overlapping_active_pairs(shop.member) == 0


async def test_a_booking_racing_a_move_of_the_same_member_leaves_no_overlap(client):
    shop = await make_shop(client, therapists=0, rooms=10)
    therapists = await add_therapists(shop.tenant_id, shop.store, 10, [shop.massage])
    moving = await shop.booked(shop.at(9), staff=therapists[0])
    move = shop.act(moving["id"], "reschedule", {"starts_at": shop.iso(15)})
    books = [shop.kit.post("/appointments", shop.body(shop.at(15), staff=t)) for t in therapists[1:]]
    responses = await asyncio.gather(move, *books)
    assert all(r.status_code in (200, 201, 409) for r in responses), [r.text for r in responses]
    assert sum(r.status_code in (200, 201) for r in responses) == 1
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"member_busy"}
    assert await overlapping_active_pairs(shop.member) == 0


