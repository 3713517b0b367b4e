"""No double booking under concurrent requests: real HTTP requests against the app, all at once, each in
its own transaction on its own database connection (the request machinery's), racing for one slot.

The availability check alone would let several through (each sees the slot free before any commits);
the holds' exclusion constraint and the capacity row lock decide.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from uuid import UUID

import httpx

from tests.booking.appointment_helpers import Shop, add_therapists, holds_of, make_shop
from tests.cards.helpers import make_member, owner_sql

CLIENTS = 50


async def race(shop: Shop, bodies: list[dict], path: str = "/appointments") -> tuple[list[dict], Counter]:
    """POST every body at once; the successes, and the refusals' codes counted."""
    async def send(body: dict) -> httpx.Response:
        return await shop.kit.post(path, body)

    responses = await asyncio.gather(*(send(b) for b in bodies))
    for r in responses:
        assert r.status_code in (200, 201, 409), r.text  # never a 500, never a deadlock
    done = [r.json() for r in responses if r.status_code in (200, 201)]
    return done, Counter(r.json()["code"] for r in responses if r.status_code == 409)


async def members(shop: Shop, count: int) -> list[str]:
    return [await make_member(shop.kit) for _ in range(count)]


def each_with_own_therapist(shop: Shop, start, therapists: list[str], who: list[str]) -> list[dict]:
    return [shop.body(start, staff=t, member=m) for t, m in zip(therapists, who, strict=True)]


async def overlapping_active_holds(shop: Shop, ref_id: str) -> int:
    """The most active holds of one staff member or resource that cover one instant."""
    rows = await owner_sql(
        "SELECT max(n) FROM (SELECT (SELECT count(*) FROM appointment_holds o WHERE o.ref_id = h.ref_id "
        "AND o.active AND o.starts_at <= h.starts_at AND o.ends_at > h.starts_at) AS n "
        "FROM appointment_holds h WHERE h.ref_id = :r AND h.active) AS peaks", r=UUID(ref_id))
    return rows[0][0] or 0


async def test_fifty_bookings_of_one_therapist_and_slot_make_exactly_one_appointment(client):
    shop = await make_shop(client, therapists=1, rooms=CLIENTS)
    who = await members(shop, CLIENTS)
    done, refused = await race(shop, [shop.body(shop.at(10), member=m) for m in who])
    assert len(done) == 1 and refused == {"staff_busy": CLIENTS - 1}
    assert await overlapping_active_holds(shop, shop.therapists[0]) == 1
    rows = await owner_sql("SELECT count(*) FROM appointments WHERE tenant_id = :t", t=shop.tenant_id)
    assert rows[0][0] == 1
    # Slightly shifted times overlap too: still nobody else gets the therapist.
    done, refused = await race(shop, [shop.body(shop.at(10, 15 * (i % 4)), member=m) for i, m in enumerate(who)])
    assert done == [] and refused == {"staff_busy": CLIENTS}


async def test_the_last_free_room_goes_to_exactly_one_of_fifty_therapists(client):
    shop = await make_shop(client, therapists=1, rooms=2)
    taken = await shop.booked(shop.at(10))  # one of the two rooms
    therapists = await add_therapists(shop.tenant_id, shop.store, CLIENTS, [shop.massage])
    who = await members(shop, CLIENTS)
    done, refused = await race(shop, each_with_own_therapist(shop, shop.at(10), therapists, who))
    assert len(done) == 1 and refused == {"resource_unavailable": CLIENTS - 1}
    (last_room,) = set(shop.rooms) - set(taken["resource_ids"])
    assert done[0]["resource_ids"] == [last_room]
    for room in shop.rooms:
        assert await overlapping_active_holds(shop, room) == 1


async def test_a_room_of_capacity_three_takes_exactly_three(client):
    shop = await make_shop(client, therapists=0, rooms=1, capacity=3)
    therapists = await add_therapists(shop.tenant_id, shop.store, CLIENTS, [shop.massage])
    who = await members(shop, CLIENTS)
    done, refused = await race(shop, each_with_own_therapist(shop, shop.at(10), therapists, who))
    assert len(done) == 3 and refused == {"resource_unavailable": CLIENTS - 3}
    assert {d["resource_ids"][0] for d in done} == {shop.rooms[0]}
    assert await overlapping_active_holds(shop, shop.rooms[0]) == 3
    # Freed by a cancellation, the place is taken again by exactly one more.
    assert (await shop.act(done[0]["id"], "cancel")).status_code == 200
    free = [t for t in therapists if t not in {d["staff_id"] for d in done}][:20]
    idle = [m for m in who if m not in {d["member_id"] for d in done[1:]}][:20]  # the others are in the room
    more, refused = await race(shop, each_with_own_therapist(shop, shop.at(10, 30), free, idle))
    assert len(more) == 1 and refused == {"resource_unavailable": 19}


async def test_a_pool_of_rooms_is_shared_out_one_each(client):
    shop = await make_shop(client, therapists=0, rooms=5)
    therapists = await add_therapists(shop.tenant_id, shop.store, 20, [shop.massage])
    who = await members(shop, 20)
    done, refused = await race(shop, each_with_own_therapist(shop, shop.at(9), therapists, who))
    assert len(done) == 5 and refused == {"resource_unavailable": 15}
    assert sorted(d["resource_ids"][0] for d in done) == sorted(shop.rooms)


async def test_concurrent_reschedules_into_one_slot_one_wins_and_the_rest_stay(client):
    shop = await make_shop(client, therapists=1, rooms=20)
    who = await members(shop, 10)
    originals = [await shop.booked(shop.at(9 + i), member=m) for i, m in enumerate(who)]
    target = shop.at(8)

    responses = await asyncio.gather(*(shop.act(a["id"], "reschedule", {"starts_at": target.isoformat()})
                                       for a in originals))
    assert sorted(r.status_code for r in responses) == [200] + [409] * 9, [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"staff_busy"}
    winner = next(r.json() for r in responses if r.status_code == 200)
    for original in originals:
        got = (await shop.kit.get(f"/appointments/{original['id']}")).json()
        holds = await holds_of(original["id"])
        if original["id"] == winner["id"]:
            assert got["schedule_version"] == 2 and [a for _, _, a in holds] == [False, False, True, True]
        else:  # refused: exactly as before, holds and all
            assert (got["starts_at"], got["schedule_version"]) == (original["starts_at"], 1)
            assert [a for _, _, a in holds] == [True, True]
    assert await overlapping_active_holds(shop, shop.therapists[0]) == 1


async def test_concurrent_multi_service_visits_are_all_or_nothing(client):
    shop = await make_shop(client, therapists=2, rooms=1)
    first, second = shop.therapists
    who = await members(shop, 20)
    bodies = []
    for i, m in enumerate(who):
        # Half start at 10:00 with (first, second), half at 10:30 with (second, first): the first half's
        # second service and the second half's first one both want the second therapist at 10:30.
        start, pair = (shop.at(10), (first, second)) if i % 2 else (shop.at(10, 30), (second, first))
        body = shop.body(start, member=m)
        body.pop("service_id")
        body["services"] = [{"service_id": shop.consult, "staff_id": pair[0]},
                            {"service_id": shop.consult, "staff_id": pair[1]}]
        bodies.append(body)
    done, refused = await race(shop, bodies)
    assert len(done) == 1 and sum(refused.values()) == 19 and set(refused) <= {"staff_busy"}
    visits = await owner_sql("SELECT visit_id, count(*) FROM appointments WHERE tenant_id = :t GROUP BY visit_id",
                             t=shop.tenant_id)
    assert [n for _, n in visits] == [2]  # no half-booked visit


async def test_cancel_and_rebook_race_leaves_one_booking(client):
    shop = await make_shop(client, therapists=1, rooms=1)
    booked = await shop.booked(shop.at(10))
    who = await members(shop, 10)
    cancel = shop.act(booked["id"], "cancel")
    rebook = [shop.kit.post("/appointments", shop.body(shop.at(10), member=m)) for m in who]
    responses = await asyncio.gather(cancel, *rebook)
    assert responses[0].status_code == 200
    assert all(r.status_code in (201, 409) for r in responses[1:])
    assert sum(r.status_code == 201 for r in responses[1:]) <= 1
    assert await overlapping_active_holds(shop, shop.therapists[0]) <= 1


async def test_any_therapist_under_load_fills_every_therapist_once(client):
    """Without a named therapist, a booking that loses its proposed one asks check_slot again."""
    shop = await make_shop(client, therapists=3, rooms=20)
    who = await members(shop, 20)
    done, refused = await race(shop, [shop.body(shop.at(10), staff=None, member=m) for m in who])
    assert len(done) == 3 and refused == {"staff_busy": 17}
    assert sorted(d["staff_id"] for d in done) == sorted(shop.therapists)
