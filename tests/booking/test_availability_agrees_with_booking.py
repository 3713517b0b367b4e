"""For random schedules: every slot availability offers can be booked, and every booking accepted was offered.

Each example builds a store (random rooms, cleanup buffer, therapists' breaks and existing bookings), then
tries random starts one after another: a start is booked (201) exactly when the availability fetched just
before offered it, and refused with a 4xx otherwise. Availability is about the store, not the member: each
booking is for a member with nothing else booked (a member's own overlap is `member_busy`, tested apart).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.booking.appointment_helpers import make_shop
from tests.cards.helpers import make_member

GRID = [(h, m) for h in range(8, 22) for m in (0, 15, 30, 45)]  # the store's 15-minute grid, 08:00–21:45
starts = st.sampled_from(GRID)
schedules = st.fixed_dictionaries({
    "rooms": st.integers(1, 2),
    "buffer": st.sampled_from([0, 10, 15]),
    "breaks": st.lists(st.tuples(st.integers(0, 1), starts, st.sampled_from([30, 45, 60, 120])), max_size=3),
    "existing": st.lists(st.tuples(st.integers(0, 1), starts, st.booleans()), max_size=4),
    "tries": st.lists(st.tuples(starts, st.sampled_from([None, 0, 1]), st.booleans()), min_size=3, max_size=8),
})


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedules)
async def test_offered_slots_are_exactly_the_bookable_ones(client, plan):
    shop = await make_shop(client, therapists=2, rooms=plan["rooms"], buffer=plan["buffer"])
    kit = shop.kit
    for who, (h, m), minutes in plan["breaks"]:
        start = shop.at(h, m)
        r = await kit.post("/time-off", {"staff_id": shop.therapists[who], "kind": "break",
                                         "starts_at": start.isoformat(),
                                         "ends_at": (start + timedelta(minutes=minutes)).isoformat()})
        assert r.status_code in (201, 409), r.text
    for who, (h, m), massage in plan["existing"]:  # whatever fits; refusals here are fine
        await shop.book(shop.at(h, m), staff=shop.therapists[who], service=shop.massage if massage else shop.consult,
                        member=await make_member(kit))

    for (h, m), who, massage in plan["tries"]:
        service = shop.massage if massage else shop.consult
        staff = None if who is None else shop.therapists[who]
        params = {"store_id": shop.store, "service_id": service, "date": shop.day.isoformat()}
        if staff:
            params["staff_id"] = staff
        r = await kit.get("/availability", params=params)
        assert r.status_code == 200, r.text
        offered = {datetime.fromisoformat(s["starts_at"]) for s in r.json()["slots"]}
        start = shop.at(h, m)
        booked = await shop.book(start, staff=staff, service=service, member=await make_member(kit))
        if start in offered:
            assert booked.status_code == 201, f"{start} was offered but booking said {booked.text}"
            if staff:
                assert booked.json()["staff_id"] == staff
        else:
            assert booked.status_code in (409, 422), f"{start} was not offered but booking said {booked.text}"
