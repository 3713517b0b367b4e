"""Treatment plans: create and validate, progress from real completions (once, also on a redelivered event),
the completion event, reversal, cancel, the care rule (refusals audited), the next-visit offer, the patient's
own plans, and the GraphQL sidebar and mini-program queries."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from app.core.db import session_scope
from app.core.events import OutboxEvent
from app.domain.clinical import handlers
from app.workers.dispatch import dispatch_event
from tests.booking.appointment_helpers import Shop, make_shop
from tests.clinical.helpers import audit_rows, field_names
from tests.factories import deliver, demo_reader
from tests.members.helpers import patient_token
from tests.platform.test_graphql import codes, gql


def plan_body(shop: Shop, **extra: Any) -> dict[str, Any]:
    body = {"member_id": shop.member, "store_id": shop.store, "title": "颈肩腰腿痛调理疗程",
            "goals": "缓解颈肩酸痛，VAS降至3分以下", "interval_days": 7,
            "items": [{"service_id": shop.massage, "sessions": 1}, {"service_id": shop.consult, "sessions": 1}],
            "responsible_staff_id": shop.therapists[0], "start_date": shop.day.isoformat()}
    return body | extra


async def make_plan(shop: Shop, token: str | None = None, **extra: Any) -> dict:
    r = await shop.kit.post("/treatment-plans", plan_body(shop, **extra), token)
    assert r.status_code == 201, r.text
    return r.json()


async def complete(shop: Shop, hour: int, service: str | None = None, **kw: Any) -> str:
    """Book and complete an appointment through the API; returns the service record id."""
    appointment = await shop.booked(shop.at(hour), service=service, **kw)
    r = await shop.act(appointment["id"], "complete")
    assert r.status_code == 200, r.text
    return r.json()["service_record_id"]


async def plan(shop: Shop, plan_id: str) -> dict:
    r = await shop.kit.get(f"/treatment-plans/{plan_id}")
    assert r.status_code == 200, r.text
    return r.json()


async def outbox(tenant_id: Any, topic: str) -> list[dict]:
    async with session_scope(system=True) as session:
        rows = (await session.execute(text(
            "SELECT payload FROM outbox WHERE tenant_id = :t AND topic = :p ORDER BY id"),
            {"t": uuid.UUID(str(tenant_id)), "p": topic})).scalars().all()
    return list(rows)


async def test_create_and_validate(client):
    shop = await make_shop(client)
    created = await make_plan(shop)
    assert created["status"] == "active" and created["sessions_planned"] == 2 and created["sessions_done"] == 0
    assert created["goals"] == "缓解颈肩酸痛，VAS降至3分以下"
    assert [(i["service_id"], i["sessions_planned"], i["remaining"]) for i in created["items"]] == [
        (shop.massage, 1, 1), (shop.consult, 1, 1)]
    assert created["next_visit_date"] == shop.day.isoformat()
    assert (await outbox(shop.tenant_id, "treatment_plan.created"))[0]["plan_id"] == created["id"]

    unknown = str(uuid.uuid4())
    bad = [
        (plan_body(shop, items=[{"service_id": unknown, "sessions": 3}]), "items.0.service_id"),
        (plan_body(shop, items=[{"service_id": shop.massage, "sessions": 0}]), "items.0.sessions"),
        (plan_body(shop, items=[{"service_id": shop.massage, "sessions": -2}]), "items.0.sessions"),
        (plan_body(shop, items=[{"service_id": shop.massage, "sessions": 2},
                                {"service_id": shop.massage, "sessions": 1}]), "items.1.service_id"),
        (plan_body(shop, interval_days=0), "interval_days"),
        (plan_body(shop, interval_days=366), "interval_days"),
        (plan_body(shop, items=[]), "items"),
        (plan_body(shop, responsible_staff_id=unknown), "responsible_staff_id"),
        (plan_body(shop, store_id=unknown), "store_id"),
        (plan_body(shop, card_id=unknown), "card_id"),
        (plan_body(shop, start_date=(shop.day + timedelta(days=800)).isoformat()), "start_date"),
    ]
    for body, field in bad:
        r = await shop.kit.post("/treatment-plans", body)
        assert field in {f.removeprefix("body.") for f in field_names(r)}, (field, r.text)
    listed = (await shop.kit.get("/treatment-plans", params={"member_id": shop.member})).json()["items"]
    assert [p["id"] for p in listed] == [created["id"]]  # nothing else was written


async def test_progress_from_completions_once_and_completion_event(client):
    shop = await make_shop(client)
    created = await make_plan(shop, start_date=None)
    massage_record = await complete(shop, 10)
    assert await deliver(shop.tenant_id, "service.completed") == ["done"]
    after = await plan(shop, created["id"])
    assert after["sessions_done"] == 1 and after["status"] == "active"
    assert {i["service_id"]: i["sessions_done"] for i in after["items"]} == {shop.massage: 1, shop.consult: 0}
    assert [(e["kind"], e["service_record_id"]) for e in after["progress"]] == [("visit", massage_record)]
    # The next visit is the interval after the last one.
    assert after["next_visit_date"] == (datetime.now(shop.tz).date() + timedelta(days=7)).isoformat()

    # At-least-once delivery: the same event handled again changes nothing.
    async with session_scope(shop.tenant_id) as session:
        event = (await session.execute(text(
            "SELECT id FROM outbox WHERE tenant_id = :t AND topic = 'service.completed'"),
            {"t": shop.tenant_id})).scalar_one()
        row = await session.get(OutboxEvent, (shop.tenant_id, event))
        await handlers.count_visit_against_plan(session, row)
        await handlers.count_visit_against_plan(session, row)
    assert (await plan(shop, created["id"]))["sessions_done"] == 1
    assert len(await outbox(shop.tenant_id, "treatment_plan.progressed")) == 1

    consult_record = await complete(shop, 12, service=shop.consult)
    await deliver(shop.tenant_id, "service.completed")
    done = await plan(shop, created["id"])
    assert done["status"] == "completed" and done["sessions_done"] == 2 and done["next_visit_date"] is None
    completed_events = await outbox(shop.tenant_id, "treatment_plan.completed")
    assert len(completed_events) == 1 and completed_events[0]["plan_id"] == created["id"]
    # A visit beyond the plan does not count.
    await complete(shop, 14)
    await deliver(shop.tenant_id, "service.completed")
    assert (await plan(shop, created["id"]))["sessions_done"] == 2

    # Reversing a counted visit takes it back and reopens the plan; a second delivery changes nothing.
    r = await shop.kit.post(f"/service-records/{consult_record}/reverse", {"reason": "记错项目"})
    assert r.status_code == 200, r.text
    assert await deliver(shop.tenant_id, "service.reversed") == ["done"]
    reopened = await plan(shop, created["id"])
    assert reopened["status"] == "active" and reopened["sessions_done"] == 1 and reopened["completed_at"] is None
    reversal = reopened["progress"][-1]
    assert (reversal["kind"], reversal["delta"], reversal["service_record_id"]) == ("reversal", -1, consult_record)
    async with session_scope(shop.tenant_id) as session:
        assert await handlers.plans.uncount_visit(session, shop.tenant_id, uuid.UUID(consult_record)) is None
    # The ledger sums to the kept counts.
    async with session_scope(system=True) as session:
        summed = (await session.execute(text(
            "SELECT sum(delta) FROM treatment_plan_progress WHERE plan_id = :p"), {"p": created["id"]})).scalar_one()
    assert summed == 1


async def test_cancel(client):
    shop = await make_shop(client)
    created = await make_plan(shop, start_date=None)
    r = await shop.kit.post(f"/treatment-plans/{created['id']}/cancel", {"reason": "患者转外院继续治疗"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["cancel_reason"] == "患者转外院继续治疗"
    again = await shop.kit.post(f"/treatment-plans/{created['id']}/cancel", {"reason": "再次取消"})
    assert again.status_code == 409 and again.json()["code"] == "treatment_plan_not_active"
    assert (await shop.kit.post(f"/treatment-plans/{created['id']}/cancel", {"reason": ""})).status_code == 422
    events = await outbox(shop.tenant_id, "treatment_plan.cancelled")
    assert len(events) == 1 and "reason" not in events[0]
    # Visits after the cancellation do not count; no next visit is offered.
    await complete(shop, 10)
    await deliver(shop.tenant_id, "service.completed")
    assert (await plan(shop, created["id"]))["sessions_done"] == 0
    offer = await shop.kit.get(f"/treatment-plans/{created['id']}/next-visit")
    assert offer.status_code == 409 and offer.json()["code"] == "treatment_plan_not_active"


async def test_not_in_care_is_403_and_audited(client):
    shop = await make_shop(client)
    created = await make_plan(shop)
    stranger = await shop.kit.staff(["therapist"], [shop.store])
    attempts = [
        await shop.kit.get("/treatment-plans", stranger["token"], params={"member_id": shop.member}),
        await shop.kit.get(f"/treatment-plans/{created['id']}", stranger["token"]),
        await shop.kit.post("/treatment-plans", plan_body(shop), stranger["token"]),
        await shop.kit.post(f"/treatment-plans/{created['id']}/cancel", {"reason": "不需要了"}, stranger["token"]),
        await shop.kit.get(f"/treatment-plans/{created['id']}/next-visit", stranger["token"]),
    ]
    for r in attempts:
        assert r.status_code == 403 and r.json()["code"] == "not_in_care", r.text
    refused = await audit_rows(shop.kit.tenant_id, "treatment_plan.access_refused")
    assert len(refused) == 5 and {r["actor_id"] for r in refused} == {stranger["id"]}  # (one more below)
    assert sorted(r["summary"]["attempted"] for r in refused) == [
        "plan_cancel", "plan_create", "plan_list", "plan_next_visit", "plan_read"]
    assert (await plan(shop, created["id"]))["status"] == "active"  # the refused cancel wrote nothing
    # Front desk reads no health data: no plan, but the next-visit offer (booking data only) to book it.
    front_desk = await shop.kit.staff(["front_desk"], [shop.store])
    r = await shop.kit.get(f"/treatment-plans/{created['id']}", front_desk["token"])
    assert r.status_code == 403 and r.json()["code"] == "permission_denied"
    assert (await shop.kit.get(f"/treatment-plans/{created['id']}/next-visit", front_desk["token"])).status_code == 200
    offers = await shop.kit.get("/treatment-plan-offers", front_desk["token"], params={"member_id": shop.member})
    assert offers.status_code == 200, offers.text
    assert [o["plan_id"] for o in offers.json()["items"]] == [created["id"]] and offers.json()["items"][0]["slots"]
    assert "goals" not in offers.json()["items"][0]
    refused = await shop.kit.get("/treatment-plan-offers", stranger["token"], params={"member_id": shop.member})
    assert refused.status_code == 403 and refused.json()["code"] == "not_in_care"
    # Reads are audited.
    reads = await audit_rows(shop.kit.tenant_id, "treatment_plan.read")
    assert [r["target_id"] for r in reads] == [created["id"]]


async def test_next_visit_offer_is_bookable(client):
    shop = await make_shop(client)
    created = await make_plan(shop)
    r = await shop.kit.get(f"/treatment-plans/{created['id']}/next-visit", params={"limit": 3})
    assert r.status_code == 200, r.text
    offer = r.json()
    assert offer["suggested_date"] == shop.day.isoformat() and offer["service_id"] == shop.massage
    assert 1 <= len(offer["slots"]) <= 3
    slot = offer["slots"][0]
    assert slot["starts_at"].startswith(shop.day.isoformat())
    booked = await shop.kit.post("/appointments", {"member_id": shop.member, "store_id": shop.store,
                                                   "service_id": offer["service_id"], "staff_id": slot["staff_id"],
                                                   "starts_at": slot["starts_at"]})
    assert booked.status_code == 201, booked.text
    # The patient asks for the same offer for their own plan.
    mine = await shop.kit.get(f"/treatment-plans/{created['id']}/next-visit", patient_token(shop.kit, shop.member))
    assert mine.status_code == 200 and mine.json()["service_id"] == shop.massage
    assert (await shop.kit.get(f"/treatment-plans/{created['id']}/next-visit",
                               params={"days": 15})).status_code == 422


async def test_patient_sees_own_plans_only(client):
    shop = await make_shop(client)
    created = await make_plan(shop)
    other = (await shop.kit.post("/members", {"name": "钱七", "phone": f"139{uuid.uuid4().int % 10**8:08d}"})).json()
    own = await shop.kit.get("/patient/treatment-plans", patient_token(shop.kit, shop.member))
    assert own.status_code == 200 and [p["id"] for p in own.json()["items"]] == [created["id"]]
    assert own.json()["items"][0]["items"][0]["service_name"]
    r = await shop.kit.get("/patient/treatment-plans", patient_token(shop.kit, shop.member),
                           params={"member_id": other["id"]})
    assert r.status_code == 404
    theirs = patient_token(shop.kit, other["id"])
    assert (await shop.kit.get("/patient/treatment-plans", theirs)).json()["items"] == []
    assert (await shop.kit.get(f"/treatment-plans/{created['id']}/next-visit", theirs)).status_code == 404
    # Staff tokens do not reach the patient route.
    assert (await shop.kit.get("/patient/treatment-plans")).status_code in (401, 403)


async def test_timeline_shows_the_plan(client):
    shop = await make_shop(client)
    created = await make_plan(shop)
    r = await shop.kit.get(f"/members/{shop.member}/timeline", params={"type": "treatment_plan"})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["id"] for i in items] == [f"treatment_plan:{created['id']}:created"]
    assert "goals" not in items[0]["data"]


PLANS_QUERY = """query($memberId: ID!) { memberTreatmentPlans(memberId: $memberId) { items {
  id title status sessionsPlanned sessionsDone nextVisitDate
  items { serviceName sessionsPlanned sessionsDone remaining }
} } }"""
NEXT_VISIT = """query($planId: ID!) { treatmentPlanNextVisit(planId: $planId, limit: 2) {
  serviceId serviceName suggestedDate slots { startsAt staffId } } }"""
MY_PLANS = (
    "{ myTreatmentPlans { items { id title goals sessionsDone sessionsPlanned "
    "items { serviceId remaining } } } }")


async def test_graphql_sidebar_and_patient(client):
    shop = await make_shop(client)
    carer = await shop.kit.staff(["therapist"], [shop.store])
    r = await shop.kit.post("/members", {"name": "孙八", "phone": f"136{uuid.uuid4().int % 10**8:08d}",
                                         "owner_staff_id": carer["id"]})
    member = r.json()["id"]
    created = await make_plan(shop, carer["token"], member_id=member)

    found = await gql(shop.kit, PLANS_QUERY, carer["token"], {"memberId": member})
    assert not found.get("errors"), found
    plans = found["data"]["memberTreatmentPlans"]["items"]
    assert [p["id"] for p in plans] == [created["id"]] and plans[0]["sessionsPlanned"] == 2
    assert plans[0]["items"][0]["remaining"] == 1 and plans[0]["items"][0]["serviceName"]

    stranger = await shop.kit.staff(["therapist"], [shop.store])
    refused = await gql(shop.kit, PLANS_QUERY, stranger["token"], {"memberId": member})
    assert codes(refused) == ["not_in_care"]
    assert len(await audit_rows(shop.kit.tenant_id, "treatment_plan.access_refused")) == 1

    offer = await gql(shop.kit, NEXT_VISIT, carer["token"], {"planId": created["id"]})
    assert not offer.get("errors"), offer
    assert offer["data"]["treatmentPlanNextVisit"]["suggestedDate"] == shop.day.isoformat()
    assert offer["data"]["treatmentPlanNextVisit"]["slots"]

    mine = await gql(shop.kit, MY_PLANS, patient_token(shop.kit, member))
    assert not mine.get("errors"), mine
    assert [p["id"] for p in mine["data"]["myTreatmentPlans"]["items"]] == [created["id"]]
    nobody = await gql(shop.kit, MY_PLANS, patient_token(shop.kit, shop.member))
    assert nobody["data"]["myTreatmentPlans"]["items"] == []


async def test_demo_has_a_plan_with_progress(client):
    get = await demo_reader(client)
    members = {m["name"]: m["id"] for m in (await get("/members", limit=100))["items"]}
    found = (await get("/treatment-plans", member_id=members["李娜"]))["items"]
    assert len(found) == 1
    demo = found[0]
    assert demo["title"] == "颈肩腰腿痛调理疗程" and demo["status"] == "active" and demo["card_id"]
    assert {i["service_name"]: (i["sessions_planned"], i["sessions_done"]) for i in demo["items"]} == {
        "推拿": (10, 3), "拔罐": (5, 0)}
    assert demo["sessions_done"] == 3 and demo["interval_days"] == 7 and demo["next_visit_date"]
    offer = await get(f"/treatment-plans/{demo['id']}/next-visit")
    assert offer["service_name"] == "推拿"


async def test_concurrent_deliveries_count_within_the_plan(client):
    """Two completions of a service with one planned session left, delivered at the same time on separate
    connections: the plan row lock makes the second see the first, so only one counts."""
    shop = await make_shop(client, rooms=2)
    created = await make_plan(shop, start_date=None)
    await complete(shop, 10)
    await complete(shop, 10, staff=shop.therapists[1])
    async with session_scope(system=True) as session:
        events = (await session.execute(text(
            "SELECT id FROM outbox WHERE tenant_id = :t AND topic = 'service.completed' ORDER BY id"),
            {"t": shop.tenant_id})).scalars().all()
    assert len(events) == 2
    outcomes = await asyncio.gather(*(dispatch_event(None, str(shop.tenant_id), str(e)) for e in events))
    assert outcomes == ["done", "done"]
    after = await plan(shop, created["id"])
    assert {i["service_id"]: i["sessions_done"] for i in after["items"]} == {shop.massage: 1, shop.consult: 0}
    assert len(after["progress"]) == 1
