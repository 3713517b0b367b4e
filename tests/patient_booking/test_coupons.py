"""Published coupons (领券中心): marketing publishes a template for a while and in a limited quantity; patients
see what is open and claim coupons themselves, never beyond the total or their own limit, also when claims
arrive at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.cards.helpers import row_counts
from tests.members.helpers import assert_problem, make_member, patient_token
from tests.patient_booking.helpers import coupon_publication, make_clinic
from tests.platform.test_graphql import gql

CLAIM = "mutation($p: ID!) { claimCoupon(publicationId: $p) { id name status value } }"
OPEN = "{ claimableCoupons { id title remaining claimedByMe canClaim } }"


async def test_a_patient_claims_a_published_coupon_once(client):
    clinic = await make_clinic(client)
    token = patient_token(clinic.kit, clinic.member)
    publication = await coupon_publication(clinic, value=2000, total=100, per_member=1)
    listed = await clinic.kit.get("/patient/coupon-publications", token=token)
    assert listed.status_code == 200, listed.text
    [offer] = listed.json()
    assert (offer["id"], offer["value"], offer["remaining"], offer["claimed_by_me"], offer["can_claim"]) == \
        (publication, 2000, 100, 0, True)

    claimed = await clinic.kit.post(f"/coupon-publications/{publication}/claim", {}, token=token)
    assert claimed.status_code == 201, claimed.text
    coupon = claimed.json()
    assert (coupon["member_id"], coupon["status"], coupon["value"]) == (clinic.member, "issued", 2000)
    mine = (await clinic.kit.get(f"/members/{clinic.member}/coupons", token=token)).json()["items"]
    assert [c["id"] for c in mine] == [coupon["id"]]
    assert_problem(await clinic.kit.post(f"/coupon-publications/{publication}/claim", {}, token=token), 409,
                   "claim_limit_reached")
    [offer] = (await clinic.kit.get("/patient/coupon-publications", token=token)).json()
    assert (offer["remaining"], offer["claimed_by_me"], offer["can_claim"]) == (99, 1, False)
    staff_view = (await clinic.kit.get("/coupon-publications")).json()["items"]
    assert [(p["id"], p["claimed_count"]) for p in staff_view] == [(publication, 1)]

    # GraphQL: the same view and the same refusal.
    listed = await gql(clinic.kit, OPEN, token)
    assert listed["data"]["claimableCoupons"][0]["claimedByMe"] == 1
    again = await gql(clinic.kit, CLAIM, token, {"p": publication})
    assert again["errors"][0]["extensions"]["code"] == "claim_limit_reached"

    # Closed: it is gone for patients (404), and the coupon claimed stays valid.
    closed = await clinic.kit.post(f"/coupon-publications/{publication}/close", {})
    assert closed.status_code == 200 and closed.json()["active"] is False
    other = patient_token(clinic.kit, (await make_member(clinic.kit, "孙悦"))["id"])
    assert_problem(await clinic.kit.post(f"/coupon-publications/{publication}/claim", {}, token=other), 404,
                   "coupon_publication_not_found")
    assert (await clinic.kit.get("/patient/coupon-publications", token=other)).json() == []
    # Staff issue coupons at POST /coupons; this is the patient's own door.
    assert_problem(await clinic.kit.post(f"/coupon-publications/{publication}/claim", {}), 401, "wrong_audience")


async def test_concurrent_claims_never_exceed_the_total_or_the_member_limit(client):
    clinic = await make_clinic(client)
    publication = await coupon_publication(clinic, value=1000, total=3, per_member=2)
    people = [clinic.member] + [(await make_member(clinic.kit, f"会员{i}"))["id"] for i in range(3)]
    tokens = [patient_token(clinic.kit, p) for p in people]

    async def grab(token: str):
        return await gql(clinic.kit, CLAIM, token, {"p": publication})

    # Everyone twice at once: 8 claims for 3 coupons.
    answers = await asyncio.gather(*(grab(t) for t in tokens for _ in range(2)))
    won = [a for a in answers if "errors" not in a]
    codes = sorted(a["errors"][0]["extensions"]["code"] for a in answers if "errors" in a)
    assert len(won) == 3, answers
    assert set(codes) <= {"publication_sold_out", "claim_limit_reached"} and len(codes) == 5
    assert (await row_counts(clinic.tenant_id, "coupon_claims", "coupons")) == {"coupon_claims": 3, "coupons": 3}
    staff_view = (await clinic.kit.get("/coupon-publications")).json()["items"][0]
    assert staff_view["claimed_count"] == 3

    # One member, many claims at once, no total: the per-member limit holds.
    solo = await coupon_publication(clinic, value=500, per_member=1)
    answers = await asyncio.gather(*(clinic.kit.post(f"/coupon-publications/{solo}/claim", {}, token=tokens[0])
                                     for _ in range(4)))
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409], [r.text for r in answers]


async def test_publishing_bad_input_is_422_naming_the_field(client):
    clinic = await make_clinic(client)
    r = await clinic.kit.post("/coupon-templates", {"name": "立减10元", "kind": "fixed", "value": 1000})
    template = r.json()["id"]
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    before = await row_counts(clinic.tenant_id, "coupon_publications")
    for body, status, field in [
        ({"template_id": template, "title": "x", "per_member_limit": 0}, 422, "per_member_limit"),
        ({"template_id": template, "title": "x", "total_quantity": 0}, 422, "total_quantity"),
        ({"template_id": template, "title": "x", "ends_at": past}, 422, "ends_at"),
        ({"template_id": template, "title": ""}, 422, "title"),
        ({"template_id": "00000000-0000-4000-8000-000000000000", "title": "x"}, 404, "template_id"),
    ]:
        assert_problem(await clinic.kit.post("/coupon-publications", body), status, field=field)
    assert await row_counts(clinic.tenant_id, "coupon_publications") == before
    therapist = await clinic.kit.staff(["therapist"], [clinic.store])
    assert_problem(await clinic.kit.post("/coupon-publications", {"template_id": template, "title": "x"},
                                         token=therapist["token"]), 403, "permission_denied")
