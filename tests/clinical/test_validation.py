"""Values that do not fit their form are 422 naming the field (`values.<key>`), and nothing is written."""

from __future__ import annotations

import pytest

from tests.clinical.helpers import TCM_VALUES, draft, field_names, member
from tests.factories import new_tenant

SKIN = {"skin_type": "oily", "concerns": ["acne"], "pregnant": False, "allergies": False}
INTAKE = {"visit_reason": "腰痛", "surgery_history": False, "patient_signature": "files/signatures/abc.png"}

# (template, valid values, the field broken, a value that does not fit it)
CASES = [
    ("tcm_four_exams", TCM_VALUES, "tongue_coating", ["purple_spots"]),  # multi_select: unknown code
    ("tcm_four_exams", TCM_VALUES, "tongue_coating", "yellow"),  # multi_select: not a list
    ("tcm_four_exams", TCM_VALUES, "pulse", ["wiry", "wiry"]),  # multi_select: twice
    ("tcm_four_exams", TCM_VALUES, "sleep", "sometimes"),  # single_select: unknown code
    ("tcm_four_exams", TCM_VALUES, "pulse_rate", 400),  # number: above max
    ("tcm_four_exams", TCM_VALUES, "pulse_rate", "72"),  # number: a string
    ("tcm_four_exams", TCM_VALUES, "pulse_rate", True),  # number: a boolean
    ("tcm_four_exams", TCM_VALUES, "chief_complaint", 12),  # text: not a string
    ("tcm_four_exams", TCM_VALUES, "chief_complaint", "痛" * 501),  # text: over max_length
    ("tcm_four_exams", TCM_VALUES, "tongue_photo", ""),  # image: empty reference
    ("pain_vas", {"regions": ["neck"], "vas": 5}, "vas", 11),  # scale: above max
    ("pain_vas", {"regions": ["neck"], "vas": 5}, "vas", 4.5),  # scale: not a whole step
    ("pain_vas", {"regions": ["neck"], "vas": 5}, "regions", ["tail"]),  # body_region: unknown region
    ("pain_vas", {"regions": ["neck"], "vas": 5}, "onset_date", "2026-13-01"),  # date: no such day
    ("pain_vas", {"regions": ["neck"], "vas": 5}, "onset_date", "01/09/2026"),  # date: not ISO
    ("aesthetic_skin", SKIN, "pregnant", "no"),  # boolean: a string
    ("aesthetic_skin", SKIN, "hydration", -1),  # number: below min
    ("intake_questionnaire", INTAKE, "patient_signature", 42),  # signature: not a reference string
]


@pytest.mark.parametrize(("code", "valid", "key", "bad"), CASES)
async def test_a_value_that_does_not_fit_names_its_field(client, code, valid, key, bad):
    kit = await new_tenant(client)
    member_id = await member(kit)
    await draft(kit, member_id, code, valid)  # the valid values pass
    r = await kit.post("/clinical-records", {"member_id": member_id, "template_code": code,
                                             "values": valid | {key: bad}})
    assert field_names(r) == {f"values.{key}"}, r.text
    assert r.json()["code"] == "validation_error"
    listed = await kit.get("/clinical-records", params={"member_id": member_id})
    assert len(listed.json()["items"]) == 1  # only the valid one


async def test_unknown_missing_and_conditional_fields(client):
    kit = await new_tenant(client)
    member_id = await member(kit)

    async def refused(code: str, values: dict) -> set[str]:
        return field_names(await kit.post("/clinical-records", {"member_id": member_id, "template_code": code,
                                                                "values": values}))

    assert await refused("tcm_four_exams", TCM_VALUES | {"tongue_colour": ["red"]}) == {"values.tongue_colour"}
    missing = {k: v for k, v in TCM_VALUES.items() if k not in ("pulse", "tongue_body")}
    assert await refused("tcm_four_exams", missing) == {"values.pulse", "values.tongue_body"}
    # A required field behind a condition: asked only when the condition holds.
    assert await refused("aesthetic_skin", SKIN | {"allergies": True}) == {"values.allergy_detail"}
    await draft(kit, member_id, "aesthetic_skin", SKIN | {"allergies": True, "allergy_detail": "酒精过敏"})
    await draft(kit, member_id, "aesthetic_skin", SKIN)
    # …and an answer to a question not asked is refused.
    assert await refused("aesthetic_skin", SKIN | {"allergy_detail": "酒精过敏"}) == {"values.allergy_detail"}
    # any_of conditions.
    check = {"reaction": "bruising"}
    assert await refused("post_treatment_check", check) == {"values.reaction_detail"}
    await draft(kit, member_id, "post_treatment_check", check | {"reaction_detail": "针刺处小片瘀青"})
    await draft(kit, member_id, "post_treatment_check", {"reaction": "none"})
    # Unknown template.
    r = await kit.post("/clinical-records", {"member_id": member_id, "template_code": "no_such_form", "values": {}})
    assert field_names(r) == {"template_code"}
    r = await kit.post("/clinical-records", {"member_id": member_id, "values": {}})
    assert r.status_code == 422


async def test_a_linked_appointment_or_service_record_must_be_the_members(client):
    kit = await new_tenant(client)
    member_id = await member(kit)
    unknown = "00000000-0000-4000-8000-000000000000"
    for link in ("appointment_id", "service_record_id"):
        r = await kit.post("/clinical-records", {"member_id": member_id, "template_code": "tcm_four_exams",
                                                 "values": TCM_VALUES, link: unknown})
        assert field_names(r) == {link}, r.text


async def test_a_record_links_to_the_members_own_service_record(client):
    kit = await new_tenant(client)
    store_id = await kit.store()
    therapist = await kit.staff(["therapist"], [store_id])
    r = await kit.post("/services", {"name": "推拿", "duration_minutes": 60, "price": 19800})
    assert r.status_code == 201, r.text
    patient, other = await member(kit, "钱琳"), await member(kit, "孙浩")
    r = await kit.post("/service-records", {"member_id": patient, "store_id": store_id, "service_id": r.json()["id"],
                                            "staff_id": therapist["id"]})
    assert r.status_code == 201, r.text
    service_record_id = r.json()["id"]
    r = await kit.post("/clinical-records", {"member_id": other, "template_code": "post_treatment_check",
                                             "values": {"reaction": "none"}, "service_record_id": service_record_id})
    assert field_names(r) == {"service_record_id"}
    linked = await draft(kit, patient, "post_treatment_check", {"reaction": "none"},
                         service_record_id=service_record_id)
    assert linked["service_record_id"] == service_record_id
