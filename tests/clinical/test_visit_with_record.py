"""Completing a visit with its form: one call, one transaction — the appointment's completion (card session,
service record, commission) and the clinical record linked to both, optionally signed; any refusal leaves
nothing written."""

from __future__ import annotations

from uuid import UUID

from tests.booking.appointment_helpers import make_shop
from tests.cards.helpers import assert_problem, events, issue, make_template, row_counts
from tests.clinical.helpers import TCM_VALUES, audit_rows
from tests.factories import demo_reader

PATH = "/appointments/{}/complete-with-record"
# Everything a completion or a record writes.
WRITTEN = ("appointment_status_history", "service_records", "commissions", "card_ledger", "clinical_records",
           "outbox")


async def _card(shop, sessions: int = 1) -> str:
    template = await make_template(shop.kit, kind="count", price=20000, valid_days=365,
                                   items=[{"service_id": shop.massage, "sessions": sessions}])
    return (await issue(shop.kit, shop.member, template, shop.store, 20000))["id"]


async def test_one_call_completes_the_visit_and_records_its_signed_form(client):
    shop = await make_shop(client, rooms=2)
    card = await _card(shop)
    appointment = await shop.booked(shop.at(9))
    r = await shop.kit.post(PATH.format(appointment["id"]), {
        "card_id": card, "notes": "肩颈放松", "record": {"template_code": "tcm_four_exams", "values": TCM_VALUES,
                                                        "sign": True}})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "completed" and done["card_remaining"] == 0 and done["notes"] == "肩颈放松"
    record = done["clinical_record"]
    assert record["status"] == "signed" and len(record["content_hash"]) == 64 and record["hash_verified"] is True
    assert record["appointment_id"] == appointment["id"]
    assert record["service_record_id"] == done["service_record_id"]
    assert record["values"] == TCM_VALUES and record["member_id"] == shop.member

    service_record = (await shop.kit.get(f"/service-records/{done['service_record_id']}")).json()
    assert service_record["appointment_id"] == appointment["id"] and service_record["card_id"] == card
    assert (await shop.kit.get(f"/appointments/{appointment['id']}")).json()["status"] == "completed"
    shown = (await shop.kit.get(f"/clinical-records/{record['id']}")).json()
    assert shown["service_record_id"] == done["service_record_id"] and shown["status"] == "signed"
    # One event per fact: the completion's and the signing's.
    topics = [t for t, _ in await events(shop.tenant_id)]
    assert topics.count("appointment.completed") == 1 and topics.count("clinical_record.signed") == 1


async def test_a_draft_by_template_id_without_a_card(client):
    shop = await make_shop(client, rooms=1)
    template = (await shop.kit.get("/form-templates", params={"code": "pain_vas"})).json()["items"][0]
    appointment = await shop.booked(shop.at(10))
    r = await shop.kit.post(PATH.format(appointment["id"]), {
        "record": {"template_id": template["id"], "values": {"regions": ["neck"], "vas": 4}}})
    assert r.status_code == 200, r.text
    assert r.json()["card_id"] is None and r.json()["clinical_record"]["status"] == "draft"
    assert r.json()["clinical_record"]["template_version"] == template["version"]


async def test_a_value_that_does_not_fit_rolls_back_the_completion_too(client):
    shop = await make_shop(client, rooms=1)
    card = await _card(shop)
    appointment = await shop.booked(shop.at(9))
    before = await row_counts(shop.tenant_id, *WRITTEN)
    r = await shop.kit.post(PATH.format(appointment["id"]), {
        "card_id": card, "record": {"template_code": "tcm_four_exams", "sign": True,
                                    "values": TCM_VALUES | {"pulse": ["nonsense"], "pulse_rate": 500}}})
    problem = assert_problem(r, 422, "validation_error")
    assert {e["field"] for e in problem["errors"]} == {"record.values.pulse", "record.values.pulse_rate"}
    # The completion ran before the form was checked, in the same transaction: none of it remains.
    assert await row_counts(shop.tenant_id, *WRITTEN) == before
    assert (await shop.kit.get(f"/appointments/{appointment['id']}")).json()["status"] == "booked"
    cards = (await shop.kit.get(f"/members/{shop.member}/cards")).json()["items"]
    assert [i["remaining"] for c in cards if c["id"] == card for i in c["items"]] == [1]

    r = await shop.kit.post(PATH.format(appointment["id"]), {
        "card_id": card, "record": {"template_code": "no_such_form", "values": {}}})
    assert {e["field"] for e in assert_problem(r, 422, "validation_error")["errors"]} == {"record.template_code"}
    assert await row_counts(shop.tenant_id, *WRITTEN) == before
    # Both template_code and template_id, or neither: refused by the body check.
    r = await shop.kit.post(PATH.format(appointment["id"]), {"record": {"values": {}}})
    assert r.status_code == 422 and await row_counts(shop.tenant_id, *WRITTEN) == before


async def test_a_refused_completion_writes_no_record(client):
    shop = await make_shop(client, rooms=2)
    card = await _card(shop)
    first = await shop.booked(shop.at(9))
    assert (await shop.act(first["id"], "complete", {"card_id": card})).status_code == 200
    second = await shop.booked(shop.at(11))
    before = await row_counts(shop.tenant_id, *WRITTEN)
    r = await shop.kit.post(PATH.format(second["id"]), {
        "card_id": card, "record": {"template_code": "tcm_four_exams", "values": TCM_VALUES, "sign": True}})
    assert_problem(r, 409, "no_sessions_left")
    assert await row_counts(shop.tenant_id, *WRITTEN) == before
    # A completed appointment cannot be completed again, with or without a form.
    r = await shop.kit.post(PATH.format(first["id"]), {"record": {"template_code": "pain_vas",
                                                                  "values": {"regions": ["neck"], "vas": 2}}})
    assert_problem(r, 409, "invalid_status")
    assert await row_counts(shop.tenant_id, *WRITTEN) == before


async def test_a_therapist_outside_the_care_relationship_is_refused_and_audited(client):
    shop = await make_shop(client, rooms=1)
    stranger = await shop.kit.staff(["therapist"], [shop.store])
    front_desk = await shop.kit.staff(["front_desk"], [shop.store])
    appointment = await shop.booked(shop.at(9))
    before = await row_counts(shop.tenant_id, *WRITTEN)
    body = {"record": {"template_code": "tcm_four_exams", "values": TCM_VALUES, "sign": True}}
    r = await shop.kit.post(PATH.format(appointment["id"]), body, stranger["token"])
    assert_problem(r, 403, "not_in_care")
    # Front desk completes visits but never writes clinical records.
    assert_problem(await shop.kit.post(PATH.format(appointment["id"]), body, front_desk["token"]), 403,
                   "permission_denied")
    assert await row_counts(shop.tenant_id, *WRITTEN) == before
    assert (await shop.kit.get(f"/appointments/{appointment['id']}")).json()["status"] == "booked"
    refused = await audit_rows(str(shop.tenant_id), "clinical_record.access_refused")
    assert [(r["actor_id"], r["summary"]["attempted"], r["summary"]["member_id"]) for r in refused] == [
        (stranger["id"], "complete_with_record", shop.member)]


async def test_an_unknown_appointment_is_404(client):
    shop = await make_shop(client, rooms=1)
    r = await shop.kit.post(PATH.format(UUID(int=7)), {"record": {"template_code": "pain_vas",
                                                                  "values": {"regions": ["neck"], "vas": 2}}})
    assert_problem(r, 404, "appointment_not_found")


async def test_the_demo_has_a_visit_completed_with_its_signed_form(client):
    get = await demo_reader(client)
    members = {m["name"]: m["id"] for m in (await get("/members", limit=100))["items"]}
    records = (await get("/clinical-records", member_id=members["黄磊"]))["items"]
    (summary,) = [r for r in records if r["template_code"] == "post_treatment_check"]
    assert summary["status"] == "signed" and summary["appointment_id"] and summary["service_record_id"]
    record = await get(f"/clinical-records/{summary['id']}")
    assert record["values"]["reaction"] == "redness" and record["hash_verified"] is True
    appointment = await get(f"/appointments/{summary['appointment_id']}")
    assert appointment["status"] == "completed" and appointment["service_record_id"] == summary["service_record_id"]


async def test_a_repeat_with_the_same_idempotency_key_replays_the_answer(client):
    shop = await make_shop(client, rooms=1)
    appointment = await shop.booked(shop.at(9))
    body = {"record": {"template_code": "pain_vas", "values": {"regions": ["neck"], "vas": 3}, "sign": True}}
    headers = {"Idempotency-Key": f"visit-{appointment['id']}"}
    first = await shop.kit.post(PATH.format(appointment["id"]), body, headers=headers)
    counts = await row_counts(shop.tenant_id, *WRITTEN)
    again = await shop.kit.post(PATH.format(appointment["id"]), body, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == first.json()
    assert await row_counts(shop.tenant_id, *WRITTEN) == counts
