"""Form templates as data: built-ins for every tenant, versions on edit, records keep their version."""

from __future__ import annotations

from app.domain.clinical.builtin_templates import BUILTIN_TEMPLATES
from tests.clinical.helpers import TCM_VALUES, draft, member
from tests.factories import new_tenant

BUILTIN_CODES = {"tcm_four_exams", "pain_vas", "aesthetic_skin", "intake_questionnaire", "post_treatment_check"}


async def test_a_new_tenant_has_the_builtin_forms(client):
    kit = await new_tenant(client)
    r = await kit.get("/form-templates")
    assert r.status_code == 200, r.text
    items = {t["code"]: t for t in r.json()["items"]}
    assert set(items) >= BUILTIN_CODES == {t["code"] for t in BUILTIN_TEMPLATES}
    tcm = items["tcm_four_exams"]
    assert tcm["version"] == 1 and tcm["builtin"] is True
    fields = {f["key"]: f for f in tcm["fields"]}
    for key in ("tongue_body", "tongue_coating", "pulse", "constitution"):
        assert fields[key]["type"] == "multi_select" and fields[key]["options"], key
    assert {"code": "yellow_greasy", "label": "黄腻苔"} in fields["tongue_coating"]["options"]
    vas = {f["key"]: f for f in items["pain_vas"]["fields"]}["vas"]
    assert (vas["type"], vas["min"], vas["max"]) == ("scale", 0, 10)
    regions = {f["key"]: f for f in items["pain_vas"]["fields"]}["regions"]
    assert regions["type"] == "body_region" and any(o["code"] == "neck" for o in regions["options"])


async def test_editing_a_template_makes_a_new_version_and_records_keep_theirs(client):
    kit = await new_tenant(client)
    member_id = await member(kit)
    v1 = next(t for t in (await kit.get("/form-templates")).json()["items"] if t["code"] == "tcm_four_exams")
    old = await draft(kit, member_id)
    assert (old["template_id"], old["template_version"]) == (v1["id"], 1)

    sections = v1["sections"]
    sections[0]["fields"].append({"key": "tongue_moisture", "label": "舌面润燥", "type": "single_select",
                                  "required": True, "options": [{"code": "moist", "label": "润"},
                                                                {"code": "dry", "label": "燥"}]})
    r = await kit.post(f"/form-templates/{v1['id']}/versions", {"sections": sections})
    assert r.status_code == 201, r.text
    v2 = r.json()
    assert (v2["code"], v2["version"], v2["name"]) == ("tcm_four_exams", 2, v1["name"])

    # The latest version is what a code fills now: its new required field is asked.
    r = await kit.post("/clinical-records", {"member_id": member_id, "template_code": "tcm_four_exams",
                                             "values": TCM_VALUES})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "values.tongue_moisture", r.text
    new = await draft(kit, member_id, values=TCM_VALUES | {"tongue_moisture": "dry"})
    assert new["template_version"] == 2

    # The old record is still of version 1, and is edited and validated against version 1.
    r = await kit.client.patch(f"/api/v1/clinical-records/{old['id']}", json={"values": TCM_VALUES},
                               headers=kit.auth())
    assert r.status_code == 200 and r.json()["template_version"] == 1, r.text
    # Filling an exact version by id still works.
    r = await kit.post("/clinical-records", {"member_id": member_id, "template_id": v1["id"], "values": TCM_VALUES})
    assert r.status_code == 201 and r.json()["template_version"] == 1, r.text

    listed = (await kit.get("/form-templates", params={"code": "tcm_four_exams", "all_versions": "true"})).json()
    assert [t["version"] for t in listed["items"]] == [2, 1]


async def test_custom_template_and_bad_definitions(client):
    kit = await new_tenant(client)
    body = {"code": "acupuncture_note", "name": "针灸记录", "sections": [{"key": "main", "title": "针灸", "fields": [
        {"key": "points", "label": "穴位", "type": "text", "required": True},
        {"key": "needles", "label": "针数", "type": "number", "min": 1, "max": 60}]}]}
    r = await kit.post("/form-templates", body)
    assert r.status_code == 201 and r.json()["version"] == 1, r.text
    assert (await kit.post("/form-templates", body)).status_code == 409

    bad = body | {"code": "bad_one", "sections": [{"key": "main", "title": "x", "fields": [
        {"key": "a", "label": "A", "type": "single_select"}]}]}  # a select without options
    assert (await kit.post("/form-templates", bad)).status_code == 422
    bad = body | {"code": "bad_two", "sections": [{"key": "main", "title": "x", "fields": [
        {"key": "a", "label": "A", "type": "text", "shown_if": {"field": "later", "equals": "x"}},
        {"key": "later", "label": "B", "type": "text"}]}]}  # a condition on a later field
    assert (await kit.post("/form-templates", bad)).status_code == 422


async def test_therapists_fill_forms_but_do_not_edit_them(client):
    kit = await new_tenant(client)
    therapist = await kit.staff(["therapist"], [await kit.store()])
    listed = await kit.get("/form-templates", therapist["token"])
    assert listed.status_code == 200
    template_id = listed.json()["items"][0]["id"]
    r = await kit.post(f"/form-templates/{template_id}/versions", {"sections": listed.json()["items"][0]["sections"]},
                       therapist["token"])
    assert r.status_code == 403, r.text
    front_desk = await kit.staff(["front_desk"], [])
    assert (await kit.get("/form-templates", front_desk["token"])).status_code == 403
