"""A patient reads their service records without the therapist's clinical remarks; staff read them whole."""

from __future__ import annotations

from tests.booking.appointment_helpers import make_shop
from tests.cards.helpers import assert_problem, make_member
from tests.members.helpers import patient_token

REMARKS = "舌淡苔白，脉细；肩井穴压痛明显，建议每周两次"


async def test_patients_get_service_records_without_the_therapists_remarks(client):
    shop = await make_shop(client, therapists=1, rooms=1)
    booked = await shop.booked(shop.at(10))
    done = await shop.act(booked["id"], "complete", {"notes": REMARKS})
    assert done.status_code == 200, done.text
    assert done.json()["notes"] == REMARKS  # the therapist sees what they wrote
    record_id = done.json()["service_record_id"]

    staff = (await shop.kit.get(f"/service-records/{record_id}")).json()
    assert staff["notes"] == REMARKS
    own = await shop.kit.get(f"/service-records/{record_id}", token=patient_token(shop.kit, shop.member))
    assert own.status_code == 200, own.text
    assert own.json()["id"] == record_id and own.json()["status"] == "completed"
    assert own.json()["notes"] is None
    assert {k: v for k, v in own.json().items() if k != "notes"} == {k: v for k, v in staff.items() if k != "notes"}
    listed = (await shop.kit.get("/service-records", params={"member_id": shop.member})).json()["items"]
    assert [r["notes"] for r in listed] == [REMARKS]

    # A walk-in's record (no appointment) is shown the same way.
    walk_in = await shop.kit.post("/service-records", {
        "member_id": shop.member, "store_id": shop.store, "service_id": shop.consult,
        "staff_id": shop.therapists[0], "notes": REMARKS})
    assert walk_in.status_code == 201 and walk_in.json()["notes"] == REMARKS
    seen = await shop.kit.get(f"/service-records/{walk_in.json()['id']}", token=patient_token(shop.kit, shop.member))
    assert seen.status_code == 200 and seen.json()["notes"] is None
    # Someone else's record does not exist for this patient.
    stranger = patient_token(shop.kit, await make_member(shop.kit, "路人"))
    assert_problem(await shop.kit.get(f"/service-records/{record_id}", token=stranger), 404)
