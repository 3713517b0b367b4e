"""The FHIR R4 read API: every resource it answers validates with fhir.resources' R4B models; searches page,
sync incrementally by `_lastUpdated` and find members by another system's identifier; errors are
OperationOutcomes; scopes, the care relationship and tenancy hold as on the rest of the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from app.seed import DEMO_PASSWORD, DEMO_TENANT
from tests.booking.appointment_helpers import make_shop
from tests.clinical.helpers import audit_rows, draft, member
from tests.factories import TenantKit, demo_reader, login, new_tenant

FHIR = "/api/v1/fhir"
FHIR_JSON = "application/fhir+json"
MODELS = {"Patient": Patient, "Appointment": Appointment, "Encounter": Encounter,
          "QuestionnaireResponse": QuestionnaireResponse, "Consent": Consent, "DocumentReference": DocumentReference}
PAIN = {"regions": ["neck", "shoulder_right"], "vas": 6, "character": ["aching"], "onset_date": "2026-09-01"}
PAIN_AMENDED = {**PAIN, "vas": 4}


async def fhir_get(kit: TenantKit, path: str, token: str | None = None, **params: Any) -> httpx.Response:
    return await kit.client.get(FHIR + path, headers=kit.auth(token), params=params)


def ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON), r.headers["content-type"]
    return r.json()


def bundle(r: httpx.Response, resource_type: str) -> tuple[Bundle, list[Any]]:
    """The searchset, and each entry's resource parsed with its own R4B model."""
    body = ok(r)
    parsed = Bundle.model_validate(body)
    assert parsed.type == "searchset" and parsed.total is not None
    resources = [MODELS[resource_type].model_validate(e["resource"]) for e in body.get("entry", [])]
    for entry, resource in zip(body.get("entry", []), resources, strict=True):
        assert entry["fullUrl"].endswith(f"/api/v1/fhir/{resource_type}/{resource.id}")
    return parsed, resources


def outcome(r: httpx.Response, status: int, code: str) -> OperationOutcome:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON), r.headers["content-type"]
    parsed = OperationOutcome.model_validate(r.json())
    assert parsed.issue[0].details.coding[0].code == code, r.text
    return parsed


async def integration(kit: TenantKit, scopes: list[str]) -> str:
    created = await kit.post("/api-clients", {"name": "仁济 HIS", "scopes": scopes})
    assert created.status_code == 201, created.text
    creds = created.json()
    r = await kit.client.post("/api/v1/oauth/token", data={
        "grant_type": "client_credentials", "client_id": creds["client_id"], "client_secret": creds["client_secret"]})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


async def clinic(client: httpx.AsyncClient) -> dict[str, Any]:
    """A shop with a member who had a massage (appointment → service record) and a pain score, signed and
    amended, plus a draft that FHIR must not show."""
    shop = await make_shop(client, therapists=1, rooms=1)
    kit = shop.kit
    booked = await shop.booked(shop.at(10))
    done = await shop.act(booked["id"], "complete", {"notes": "肩颈推拿"})
    assert done.status_code == 200, done.text
    record = await draft(kit, shop.member, "pain_vas", PAIN, service_record_id=done.json()["service_record_id"])
    assert (await kit.post(f"/clinical-records/{record['id']}/sign", {})).status_code == 200
    amended = await kit.post(f"/clinical-records/{record['id']}/amendments",
                             {"reason": "复核后更正", "values": PAIN_AMENDED})
    assert amended.status_code == 201, amended.text
    unsigned = await draft(kit, shop.member, "pain_vas", PAIN)
    return {"shop": shop, "kit": kit, "member": shop.member, "appointment": booked["id"],
            "encounter": done.json()["service_record_id"], "record": record["id"], "draft": unsigned["id"]}


async def test_capability_statement_needs_no_sign_in(client):
    r = await client.get(f"{FHIR}/metadata")
    statement = CapabilityStatement.model_validate(ok(r))
    served = {res.type: res for res in statement.rest[0].resource}
    assert set(served) == set(MODELS)
    assert {p.name for p in served["Patient"].searchParam} >= {"identifier", "_id", "_lastUpdated"}
    assert {p.name for p in served["Appointment"].searchParam} >= {"patient", "date", "_lastUpdated"}


async def test_every_resource_reads_and_searches_as_valid_r4(client):
    c = await clinic(client)
    kit, member_id = c["kit"], c["member"]
    ids = {"Patient": member_id, "Appointment": c["appointment"], "Encounter": c["encounter"],
           "QuestionnaireResponse": c["record"]}
    for resource_type, resource_id in ids.items():
        read = MODELS[resource_type].model_validate(ok(await fhir_get(kit, f"/{resource_type}/{resource_id}")))
        assert read.id == resource_id and read.meta.lastUpdated is not None
        params = {"_id": resource_id} if resource_type == "Patient" else {"patient": f"Patient/{member_id}"}
        found, resources = bundle(await fhir_get(kit, f"/{resource_type}", **params), resource_type)
        assert found.total == 1 and [r.id for r in resources] == [resource_id], resource_type

    patient = Patient.model_validate(ok(await fhir_get(kit, f"/Patient/{member_id}")))
    assert ("urn:careloop:member", member_id) in {(i.system, i.value) for i in patient.identifier}
    assert patient.telecom and patient.telecom[0].system == "phone"  # the owner may see contact data
    appointment = Appointment.model_validate(ok(await fhir_get(kit, f"/Appointment/{c['appointment']}")))
    assert appointment.status == "fulfilled" and appointment.participant[0].actor.reference == f"Patient/{member_id}"
    encounter = Encounter.model_validate(ok(await fhir_get(kit, f"/Encounter/{c['encounter']}")))
    assert encounter.status == "finished" and encounter.appointment[0].reference == f"Appointment/{c['appointment']}"

    # The signed record with its amendment applied; the draft is not a QuestionnaireResponse.
    response = QuestionnaireResponse.model_validate(ok(await fhir_get(kit, f"/QuestionnaireResponse/{c['record']}")))
    assert response.status == "amended"
    assert response.questionnaire == "https://careloop.dev/fhir/Questionnaire/pain_vas|1"
    assert response.encounter.reference == f"Encounter/{c['encounter']}"
    answers = {i.linkId: i.answer for group in response.item for i in group.item}
    assert answers["vas"][0].valueInteger == 4
    assert [a.valueCoding.code for a in answers["regions"]] == ["neck", "shoulder_right"]
    assert str(answers["onset_date"][0].valueDate) == "2026-09-01"
    outcome(await fhir_get(kit, f"/QuestionnaireResponse/{c['draft']}"), 404, "resource_not_found")

    # Health data reads are audited.
    reads = await audit_rows(kit.tenant_id, "clinical_record.read")
    assert any(r["summary"].get("via") == "fhir" and c["record"] in r["summary"]["record_ids"] for r in reads)


async def test_contact_data_only_for_callers_who_may_see_it(client):
    kit = await new_tenant(client)
    member_id = await member(kit, "陈静")
    therapist = await kit.staff(["therapist"], [await kit.store()])  # members:read, no members.contact:read
    patient = Patient.model_validate(ok(await fhir_get(kit, f"/Patient/{member_id}", therapist["token"])))
    assert patient.telecom is None
    assert Patient.model_validate(ok(await fhir_get(kit, f"/Patient/{member_id}"))).telecom


async def test_search_by_identifier_after_an_integration_set_it(client):
    kit = await new_tenant(client)
    member_id, other_id = await member(kit, "张伟"), await member(kit, "刘洋")
    his = await integration(kit, ["members:read", "members:write"])
    r = await kit.client.put(f"/api/v1/members/{member_id}/identifiers", headers=kit.auth(his),
                             json={"system": "urn:his:renji", "value": "P000123"})
    assert r.status_code == 200 and r.json()["set_by_kind"] == "integration", r.text

    for identifier in ("urn:his:renji|P000123", "P000123", "urn:his:renji|", f"urn:careloop:member|{member_id}"):
        found, patients = bundle(await fhir_get(kit, "/Patient", his, identifier=identifier), "Patient")
        assert found.total == 1 and patients[0].id == member_id, identifier
        assert ("urn:his:renji", "P000123") in {(i.system, i.value) for i in patients[0].identifier}
    for identifier in ("urn:his:renji|P999999", "urn:his:other|P000123", "|P000123", "urn:careloop:member|nope"):
        found, _ = bundle(await fhir_get(kit, "/Patient", his, identifier=identifier), "Patient")
        assert found.total == 0, identifier
    found, _ = bundle(await fhir_get(kit, "/Patient", his, _id=f"{member_id},{other_id}"), "Patient")
    assert found.total == 2


async def test_last_updated_gives_an_incremental_sync(client):
    kit = await new_tenant(client)
    first, second = await member(kit, "赵磊"), await member(kit, "孙丽")
    _, everyone = bundle(await fhir_get(kit, "/Patient", _count=100), "Patient")
    assert {p.id for p in everyone} == {first, second}
    synced_to = max(p.meta.lastUpdated for p in everyone)

    # Nothing changed since: an empty page. Then one member changes and only they come back.
    assert bundle(await fhir_get(kit, "/Patient", _lastUpdated=f"gt{synced_to.isoformat()}"), "Patient")[0].total == 0
    assert (await kit.client.patch(f"/api/v1/members/{second}", headers=kit.auth(),
                                   json={"name": "孙丽华"})).status_code == 200
    found, changed = bundle(await fhir_get(kit, "/Patient", _lastUpdated=f"gt{synced_to.isoformat()}"), "Patient")
    assert found.total == 1 and changed[0].id == second and changed[0].name[0].text == "孙丽华"
    # ge/le/lt and a range; a date alone is a day.
    unchanged = bundle(await fhir_get(kit, "/Patient", _lastUpdated=f"le{synced_to.isoformat()}"), "Patient")[1]
    assert [p.id for p in unchanged] == [first]
    at = changed[0].meta.lastUpdated.isoformat()
    ranged = await kit.client.get(f"{FHIR}/Patient", headers=kit.auth(),
                                  params=[("_lastUpdated", f"ge{at}"), ("_lastUpdated", f"lt{at}")])
    assert bundle(ranged, "Patient")[0].total == 0
    assert bundle(await fhir_get(kit, "/Patient", _lastUpdated="lt2000-01-01"), "Patient")[0].total == 0
    assert bundle(await fhir_get(kit, "/Patient", _lastUpdated="ge2000"), "Patient")[0].total == 2
    # A naked `+` of an offset arrives as a space; it is read as the `+` it was.
    spaced = synced_to.astimezone().isoformat().replace("+", " ")
    assert (await kit.client.get(f"{FHIR}/Patient?_lastUpdated=gt{spaced}", headers=kit.auth())).status_code == 200


async def test_last_updated_on_clinical_resources(client):
    c = await clinic(client)
    kit = c["kit"]
    for resource_type in ("Appointment", "Encounter", "QuestionnaireResponse"):
        _, found = bundle(await fhir_get(kit, f"/{resource_type}"), resource_type)
        assert len(found) == 1, resource_type
        last = found[0].meta.lastUpdated.isoformat()
        assert bundle(await fhir_get(kit, f"/{resource_type}", _lastUpdated=f"gt{last}"), resource_type)[0].total == 0
        assert bundle(await fhir_get(kit, f"/{resource_type}", _lastUpdated=f"ge{last}"), resource_type)[0].total == 1
    day = datetime.fromisoformat(c["shop"].iso(10)).date().isoformat()
    assert bundle(await fhir_get(kit, "/Appointment", date=day), "Appointment")[0].total == 1
    assert bundle(await fhir_get(kit, "/Appointment", date=f"gt{day}"), "Appointment")[0].total == 0


async def test_searches_page_with_count_and_next_links(client):
    kit = await new_tenant(client)
    made = {await member(kit, f"会员{i}") for i in range(5)}
    seen: list[str] = []
    r = await fhir_get(kit, "/Patient", _count=2)
    pages = 0
    while True:
        found, patients = bundle(r, "Patient")
        pages += 1
        assert found.total == 5 and len(patients) <= 2
        seen += [p.id for p in patients]
        following = [link.url for link in found.link if link.relation == "next"]
        if not following:
            break
        r = await kit.client.get(following[0], headers=kit.auth())
    assert sorted(seen) == sorted(made) and len(seen) == 5 and pages >= 3
    assert len(bundle(await fhir_get(kit, "/Patient", _count=100000), "Patient")[1]) == 5  # bounded, not refused


async def test_bad_input_is_an_operation_outcome(client):
    kit = await new_tenant(client)
    member_id = await member(kit)
    outcome(await fhir_get(kit, "/Observation"), 404, "unknown_resource_type")
    outcome(await fhir_get(kit, "/Observation/1"), 404, "unknown_resource_type")
    outcome(await fhir_get(kit, "/Patient/not-a-uuid"), 404, "resource_not_found")
    outcome(await fhir_get(kit, "/Patient/00000000-0000-4000-8000-000000000000"), 404, "resource_not_found")
    for params in ({"name": "张"}, {"_lastUpdated": "xx2026-01-01"}, {"_lastUpdated": "2026-13-01"},
                   {"_lastUpdated": "yesterday"}, {"_count": "ten"}, {"_count": "0"}, {"date": "2026-01-01"},
                   {"_format": "xml"}):
        parsed = outcome(await fhir_get(kit, "/Patient", **params), 400, "invalid_search_parameter")
        assert parsed.issue[0].expression, params
    outcome(await fhir_get(kit, "/Patient", _cursor="not-a-cursor!!"), 400, "invalid_cursor")
    # What no field can store (a NUL) is refused as everywhere (422 validation_error), as an OperationOutcome.
    assert outcome(await fhir_get(kit, "/Patient", identifier="a\u0000b"), 422, "validation_error").issue[0].expression
    r = await client.get(f"{FHIR}/Patient/{member_id}")
    outcome(r, 401, "not_authenticated")
    outcome(await client.get(f"{FHIR}/Patient", headers={"Authorization": "Bearer nonsense"}), 401, "invalid_token")


async def test_scopes_and_the_care_relationship(client):
    c = await clinic(client)
    kit, member_id = c["kit"], c["member"]
    reader = await integration(kit, ["members:read"])
    ok(await fhir_get(kit, f"/Patient/{member_id}", reader))
    for path in (f"/Appointment/{c['appointment']}", "/Encounter", f"/QuestionnaireResponse/{c['record']}",
                 "/QuestionnaireResponse", "/Consent", "/DocumentReference"):
        outcome(await fhir_get(kit, path, reader), 403, "permission_denied")

    # clinical:read alone reaches no member's records: a HIS reading them all also holds members.health:all.
    clinical_only = await integration(kit, ["clinical:read", "members:read"])
    outcome(await fhir_get(kit, "/QuestionnaireResponse", clinical_only), 403, "patient_required")
    outcome(await fhir_get(kit, "/QuestionnaireResponse", clinical_only, patient=member_id), 403, "not_in_care")
    his = await integration(kit, ["clinical:read", "members:read", "members.health:all", "appointments:read"])
    assert bundle(await fhir_get(kit, "/QuestionnaireResponse", his), "QuestionnaireResponse")[0].total == 1
    ok(await fhir_get(kit, f"/QuestionnaireResponse/{c['record']}", his))
    assert bundle(await fhir_get(kit, "/Encounter", his), "Encounter")[0].total == 1

    # A therapist without the care relationship: refused, and the refusal is audited.
    stranger = await kit.staff(["therapist"], [c["shop"].store])
    outcome(await fhir_get(kit, f"/QuestionnaireResponse/{c['record']}", stranger["token"]), 403, "not_in_care")
    refused = await audit_rows(kit.tenant_id, "clinical_record.access_refused")
    assert [r["actor_id"] for r in refused] and str(refused[-1]["actor_id"]) == stranger["id"]


async def test_tenants_do_not_see_each_other(client):
    c = await clinic(client)
    other = await new_tenant(client)
    ids = {"Patient": c["member"], "Appointment": c["appointment"], "Encounter": c["encounter"],
           "QuestionnaireResponse": c["record"]}
    for resource_type, resource_id in ids.items():
        outcome(await fhir_get(other, f"/{resource_type}/{resource_id}"), 404, "resource_not_found")
        assert bundle(await fhir_get(other, f"/{resource_type}", _id=resource_id), resource_type)[0].total == 0
    assert bundle(await fhir_get(other, "/Patient", identifier=f"urn:careloop:member|{c['member']}"),
                  "Patient")[0].total == 0


async def test_demo_members_carry_a_his_identifier(client):
    get = await demo_reader(client)
    members = {m["name"]: m["id"] for m in (await get("/members", limit=100))["items"]}
    identifiers = (await get(f"/members/{members['张伟']}/identifiers"))["items"]
    assert [(i["system"], i["value"][:1]) for i in identifiers] == [("urn:his:renji", "P")]
    found = await get("/member-identifiers", system="urn:his:renji", value=identifiers[0]["value"])
    assert found["member_id"] == members["张伟"]


async def test_consents_and_photos_of_the_demo_as_valid_r4(client):
    """Consent (signed consents) and DocumentReference (clinical photos), read and searched."""
    await demo_reader(client)
    other = await new_tenant(client)
    headers = {"Authorization": f"Bearer {await login(client, DEMO_TENANT, 'owner', DEMO_PASSWORD)}"}
    members = {m["name"]: m["id"] for m in (await client.get("/api/v1/members", headers=headers,
                                                             params={"limit": 100})).json()["items"]}
    for resource_type, model, owner in (("Consent", Consent, "张伟"), ("DocumentReference", DocumentReference, "王芳")):
        found, resources = bundle(await client.get(f"{FHIR}/{resource_type}", headers=headers), resource_type)
        assert found.total and resources, resource_type
        mine, own = bundle(await client.get(f"{FHIR}/{resource_type}", headers=headers,
                                            params={"patient": f"Patient/{members[owner]}"}), resource_type)
        assert mine.total and all(r.id in {x.id for x in resources} for r in own)
        read = model.model_validate(ok(await client.get(f"{FHIR}/{resource_type}/{resources[0].id}",
                                                        headers=headers)))
        assert read.id == resources[0].id
        # Another tenant does not find it.
        outcome(await fhir_get(other, f"/{resource_type}/{read.id}"), 404, "resource_not_found")
        assert bundle(await fhir_get(other, f"/{resource_type}", _id=read.id), resource_type)[0].total == 0
        if resource_type == "Consent":
            assert read.status == "active" and read.patient.reference == f"Patient/{members[owner]}"
        else:
            assert read.content[0].attachment.url and read.content[0].attachment.contentType
