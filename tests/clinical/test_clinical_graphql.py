"""Clinical records in GraphQL: the sidebar fills, signs and amends forms and completes a visit with its form
in one call; the mini-program shows a patient their signed records and who opened them. Same services and
permissions as REST."""

from __future__ import annotations

from tests.booking.appointment_helpers import make_shop, schedule
from tests.cards.helpers import issue, make_template, row_counts
from tests.clinical.helpers import TCM_VALUES, audit_rows, member
from tests.factories import new_tenant
from tests.members.helpers import patient_token


async def gql(kit, query: str, token: str | None = None, variables: dict | None = None) -> dict:
    r = await kit.client.post("/graphql", json={"query": query, "variables": variables or {}},
                              headers=kit.auth(token))
    assert r.status_code in (200, 400), r.text
    return r.json()


def codes(result: dict) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in result.get("errors") or []]


COMPLETE = """mutation($a: ID!, $card: ID, $form: VisitFormInput) {
  completeVisit(appointmentId: $a, cardId: $card, notes: "艾灸后局部微红", form: $form) {
    appointmentId status serviceRecordId cardId cardRemaining
    clinicalRecord { id status contentHash appointmentId serviceRecordId currentValues }
  }
}"""
CREATE = """mutation($i: ClinicalRecordInput!) {
  createClinicalRecord(input: $i) { id status values templateCode hashVerified }
}"""
WRITTEN = ("appointment_status_history", "service_records", "commissions", "card_ledger", "clinical_records",
           "outbox")


async def test_the_sidebar_completes_a_visit_with_its_form_in_one_call(client):
    shop = await make_shop(client, rooms=2)
    therapist = await shop.kit.staff(["therapist"], [shop.store])
    await schedule(shop.tenant_id, shop.store, [therapist["id"]], [shop.massage, shop.consult])
    template = await make_template(shop.kit, kind="count", price=30000, valid_days=365,
                                   items=[{"service_id": shop.massage, "sessions": 3}])
    card = (await issue(shop.kit, shop.member, template, shop.store, 30000))["id"]
    first = await shop.booked(shop.at(9), staff=therapist["id"])
    second = await shop.booked(shop.at(11), staff=therapist["id"])
    third = await shop.booked(shop.at(14), staff=therapist["id"])

    # A value that does not fit: named as in REST, and nothing of the completion remains.
    before = await row_counts(shop.tenant_id, *WRITTEN)
    bad = await gql(shop.kit, COMPLETE, therapist["token"], {"a": first["id"], "card": card, "form": {
        "templateCode": "tcm_four_exams", "values": TCM_VALUES | {"tongue_body": ["blue"]}, "sign": True}})
    assert codes(bad) == ["validation_error"], bad
    assert [e["field"] for e in bad["errors"][0]["extensions"]["errors"]] == ["record.values.tongue_body"]
    assert await row_counts(shop.tenant_id, *WRITTEN) == before

    done = await gql(shop.kit, COMPLETE, therapist["token"], {"a": first["id"], "card": card, "form": {
        "templateCode": "tcm_four_exams", "values": TCM_VALUES, "sign": True}})
    assert "errors" not in done, done
    visit = done["data"]["completeVisit"]
    assert visit["status"] == "completed" and visit["cardRemaining"] == 2 and visit["cardId"] == card
    record = visit["clinicalRecord"]
    assert record["status"] == "signed" and record["contentHash"] and record["appointmentId"] == first["id"]
    assert record["serviceRecordId"] == visit["serviceRecordId"] and record["currentValues"] == TCM_VALUES

    # Without a form it is the plain completion.
    plain = await gql(shop.kit, COMPLETE, therapist["token"], {"a": second["id"], "card": card})
    assert "errors" not in plain, plain
    assert plain["data"]["completeVisit"]["clinicalRecord"] is None
    assert plain["data"]["completeVisit"]["cardRemaining"] == 1

    # Another therapist (not caring for the member) is refused before anything is written, and audited.
    stranger = await shop.kit.staff(["therapist"], [shop.store])
    before = await row_counts(shop.tenant_id, *WRITTEN)
    refused = await gql(shop.kit, COMPLETE, stranger["token"], {"a": third["id"], "form": {
        "templateCode": "pain_vas", "values": {"regions": ["neck"], "vas": 3}}})
    assert codes(refused) == ["not_in_care"], refused
    assert await row_counts(shop.tenant_id, *WRITTEN) == before
    attempts = await audit_rows(str(shop.tenant_id), "clinical_record.access_refused")
    assert [a["actor_id"] for a in attempts] == [stranger["id"]]


async def test_the_sidebar_fills_signs_and_amends_a_form(client):
    kit = await new_tenant(client)
    store = await kit.store()
    therapist = await kit.staff(["therapist"], [store])
    member_id = await member(kit, "孙丽", owner_staff_id=therapist["id"])
    token = therapist["token"]

    templates = await gql(kit, "{ formTemplates { code version fields } }", token)
    assert "errors" not in templates, templates
    by_code = {t["code"]: t for t in templates["data"]["formTemplates"]}
    assert {"tcm_four_exams", "pain_vas", "aesthetic_skin"} <= set(by_code)
    remark = [f for f in by_code["tcm_four_exams"]["fields"] if f["key"] == "clinician_remark"]
    assert remark and remark[0]["staff_only"] is True

    made = await gql(kit, CREATE, token, {"i": {"memberId": member_id, "templateCode": "pain_vas",
                                               "values": {"regions": ["neck"], "vas": 7}}})
    assert "errors" not in made, made
    record = made["data"]["createClinicalRecord"]
    assert record["status"] == "draft" and record["hashVerified"] is None
    edited = await gql(kit, "mutation($id: ID!, $v: JSON!) { updateClinicalRecord(id: $id, values: $v) { values } }",
                       token, {"id": record["id"], "v": {"regions": ["neck"], "vas": 6}})
    assert edited["data"]["updateClinicalRecord"]["values"]["vas"] == 6, edited
    bad = await gql(kit, "mutation($id: ID!, $v: JSON!) { updateClinicalRecord(id: $id, values: $v) { values } }",
                    token, {"id": record["id"], "v": {"regions": ["neck"], "vas": 11}})
    assert codes(bad) == ["validation_error"]
    assert bad["errors"][0]["extensions"]["errors"][0]["field"] == "values.vas"
    signed = await gql(kit, "mutation($id: ID!) { signClinicalRecord(id: $id) { status contentHash } }", token,
                       {"id": record["id"]})
    assert signed["data"]["signClinicalRecord"]["status"] == "signed", signed
    again = await gql(kit, "mutation($id: ID!, $v: JSON!) { updateClinicalRecord(id: $id, values: $v) { id } }",
                      token, {"id": record["id"], "v": {"regions": ["neck"], "vas": 5}})
    assert codes(again) == ["record_signed"]
    amended = await gql(kit, """mutation($id: ID!, $v: JSON!) {
      amendClinicalRecord(id: $id, reason: "疼痛部位补记右肩", values: $v) {
        values currentValues amendments { seq reason values } hashVerified } }""",
                        token, {"id": record["id"], "v": {"regions": ["neck", "shoulder_right"], "vas": 6}})
    assert "errors" not in amended, amended
    shown = amended["data"]["amendClinicalRecord"]
    assert shown["values"]["regions"] == ["neck"] and shown["currentValues"]["regions"] == ["neck", "shoulder_right"]
    assert shown["amendments"][0]["reason"] == "疼痛部位补记右肩" and shown["hashVerified"] is True

    # Signed at once, in the same call.
    at_once = await gql(kit, CREATE, token, {"i": {"memberId": member_id, "templateCode": "tcm_four_exams",
                                                  "values": TCM_VALUES, "sign": True}})
    assert at_once["data"]["createClinicalRecord"]["status"] == "signed", at_once

    listed = await gql(kit, """query($m: ID!) { memberClinicalRecords(memberId: $m, limit: 1) {
        items { id templateCode status amendmentCount } nextCursor } }""", token, {"m": member_id})
    page = listed["data"]["memberClinicalRecords"]
    assert page["items"][0]["templateCode"] == "tcm_four_exams" and page["nextCursor"], listed
    one = await gql(kit, "query($id: ID!) { clinicalRecord(id: $id) { id amendments { seq } } }", token,
                    {"id": record["id"]})
    assert one["data"]["clinicalRecord"]["amendments"] == [{"seq": 1}], one

    # Outside the care relationship: refused (and audited), nothing written.
    stranger = await kit.staff(["therapist"], [store])
    refused = await gql(kit, CREATE, stranger["token"], {"i": {"memberId": member_id, "templateCode": "pain_vas",
                                                               "values": {"regions": ["neck"], "vas": 1}}})
    assert codes(refused) == ["not_in_care"]
    refused = await gql(kit, "query($id: ID!) { clinicalRecord(id: $id) { id } }", stranger["token"],
                        {"id": record["id"]})
    assert codes(refused) == ["not_in_care"]
    assert len(await audit_rows(kit.tenant_id, "clinical_record.access_refused")) == 2
    # Front desk has no clinical permission; a patient token is not a sidebar token.
    front_desk = await kit.staff(["front_desk"], [store])
    assert codes(await gql(kit, "{ formTemplates { code } }", front_desk["token"])) == ["permission_denied"]
    assert codes(await gql(kit, "{ formTemplates { code } }", patient_token(kit, member_id))) == ["wrong_audience"]


async def test_the_mini_program_shows_signed_records_and_who_opened_them(client):
    kit = await new_tenant(client)
    member_id = await member(kit, "吴倩")
    token = patient_token(kit, member_id)
    made = await gql(kit, CREATE, None, {"i": {"memberId": member_id, "templateCode": "pain_vas", "sign": True,
                                              "values": {"regions": ["knee_left"], "vas": 4,
                                                         "clinician_remark": "疑似夸大疼痛"}}})
    signed = made["data"]["createClinicalRecord"]
    await gql(kit, CREATE, None, {"i": {"memberId": member_id, "templateCode": "pain_vas",
                                        "values": {"regions": ["neck"], "vas": 2}}})  # a draft
    opened = await gql(kit, "query($id: ID!) { clinicalRecord(id: $id) { id } }", None, {"id": signed["id"]})
    assert "errors" not in opened, opened

    mine = await gql(kit, """{ myClinicalRecords { items { id formName values originalValues fields
        amendments { seq } } nextCursor } }""", token)
    assert "errors" not in mine, mine
    items = mine["data"]["myClinicalRecords"]["items"]
    assert [i["id"] for i in items] == [signed["id"]]
    assert items[0]["values"] == {"regions": ["knee_left"], "vas": 4} and items[0]["formName"] == "疼痛评分（VAS）"
    assert "clinician_remark" not in {f["key"] for f in items[0]["fields"]}

    log = await gql(kit, "{ myHealthRecordAccess { items { action actionLabel accessorType accessorName "
                         "accessorRoles occurredAt } nextCursor } }", token)
    assert "errors" not in log, log
    reads = [i for i in log["data"]["myHealthRecordAccess"]["items"] if i["action"] == "clinical_record.read"]
    assert len(reads) == 1 and reads[0]["accessorType"] == "staff" and "owner" in reads[0]["accessorRoles"]
    # Staff tokens are refused on the patient's own views.
    assert codes(await gql(kit, "{ myClinicalRecords { nextCursor } }")) == ["wrong_audience"]
