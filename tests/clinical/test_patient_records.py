"""What a patient sees of their clinical record in the mini-program: their own and their children's SIGNED
records, amendments shown with the original, never drafts or staff-only fields; who opened their health
record and when (PIPL); and clinical records on the member timeline, by who is asking."""

from __future__ import annotations

import pytest

from tests.clinical.helpers import TCM_VALUES, draft, member
from tests.factories import new_tenant, seal_audit
from tests.members.helpers import patient_token

OAUTH = "/api/v1/oauth/token"
SKIN = {"skin_type": "combination", "concerns": ["pigmentation"], "pregnant": False, "allergies": False,
        "clinician_remark": "患者对价格敏感，勿推荐高价项目"}
PAIN = {"regions": ["neck"], "vas": 5}


async def _signed(kit, member_id: str, code: str, values: dict, token: str | None = None) -> dict:
    record = await draft(kit, member_id, code, values, token=token)
    r = await kit.post(f"/clinical-records/{record['id']}/sign", {}, token)
    assert r.status_code == 200, r.text
    return r.json()


async def _family(kit) -> tuple[str, str, str]:
    """A patient (their token) and the child they added in the mini-program."""
    parent = await member(kit, "陈静")
    token = patient_token(kit, parent)
    r = await kit.post("/patient/me/children", {"name": "陈小乐", "birthday": "2019-05-01", "gender": "female"},
                       token=token)
    assert r.status_code == 201, r.text
    return parent, r.json()["member_id"], token


async def _integration_token(kit, client) -> tuple[str, str]:
    r = await kit.post("/api-clients", {"name": "区医院HIS", "scopes": ["members:read", "members.health:all",
                                                                       "clinical:read"]})
    assert r.status_code == 201, r.text
    creds = r.json()
    r = await client.post(OAUTH, data={"grant_type": "client_credentials", "client_id": creds["client_id"],
                                       "client_secret": creds["client_secret"]})
    assert r.status_code == 200, r.text
    return r.json()["access_token"], creds["name"]


async def test_patients_see_their_own_and_their_childrens_signed_records_only(client):
    kit = await new_tenant(client)
    parent, child, token = await _family(kit)
    stranger = await member(kit, "周敏")
    tcm = await _signed(kit, parent, "tcm_four_exams", TCM_VALUES | {"clinician_remark": "依从性差，需随访"})
    skin = await _signed(kit, parent, "aesthetic_skin", SKIN)
    corrected = SKIN | {"concerns": ["melasma"], "allergies": True, "allergy_detail": "酒精过敏",
                        "clinician_remark": "复诊更正，注意沟通"}
    r = await kit.post(f"/clinical-records/{skin['id']}/amendments", {"reason": "确认为黄褐斑", "values": corrected})
    assert r.status_code == 201, r.text
    pending = await draft(kit, parent, "pain_vas", PAIN)
    child_record = await _signed(kit, child, "pain_vas", PAIN)
    others = await _signed(kit, stranger, "pain_vas", PAIN)

    r = await kit.get("/patient/clinical-records", token)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["id"] for i in items] == [skin["id"], tcm["id"]]  # newest first, the draft left out
    shown_skin, shown_tcm = items
    assert "clinician_remark" not in shown_tcm["values"] and shown_tcm["values"]["chief_complaint"] == "颈肩酸痛两周"
    assert shown_tcm["form_name"] == "中医四诊" and shown_tcm["signed_by_name"] and shown_tcm["signed_at"]
    assert "clinician_remark" not in {f["key"] for f in shown_tcm["fields"]}
    assert {"tongue_body", "pulse"} <= {f["key"] for f in shown_tcm["fields"]}
    # Amendments applied and shown with the original, staff-only fields left out of every version.
    assert shown_skin["values"]["concerns"] == ["melasma"] and shown_skin["original_values"]["concerns"] == [
        "pigmentation"]
    assert [a["reason"] for a in shown_skin["amendments"]] == ["确认为黄褐斑"]
    assert all("clinician_remark" not in v for v in (shown_skin["values"], shown_skin["original_values"],
                                                     shown_skin["amendments"][0]["values"]))
    assert "clinician_remark" not in r.text and "内部备注" not in r.text

    one = await kit.get(f"/patient/clinical-records/{tcm['id']}", token)
    assert one.status_code == 200 and one.json()["values"] == items[1]["values"]

    # Their child's (the family they head), never anyone else's, never a draft.
    r = await kit.get("/patient/clinical-records", token, params={"member_id": child})
    assert [i["id"] for i in r.json()["items"]] == [child_record["id"]]
    assert (await kit.get(f"/patient/clinical-records/{child_record['id']}", token)).status_code == 200
    assert (await kit.get("/patient/clinical-records", token, params={"member_id": stranger})).status_code == 404
    for record_id in (others["id"], pending["id"]):
        r = await kit.get(f"/patient/clinical-records/{record_id}", token)
        assert r.status_code == 404 and r.json()["code"] == "clinical_record_not_found", r.text
    # The child cannot read the parent's.
    child_token = patient_token(kit, child)
    assert (await kit.get("/patient/clinical-records", child_token, params={"member_id": parent})).status_code == 404

    # Staff tokens are not accepted here.
    assert (await kit.get("/patient/clinical-records")).status_code == 401
    # Pagination.
    page = (await kit.get("/patient/clinical-records", token, params={"limit": 1})).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = (await kit.get("/patient/clinical-records", token, params={"limit": 1,
                                                                     "cursor": page["next_cursor"]})).json()
    assert [i["id"] for i in rest["items"]] == [tcm["id"]]


async def test_patients_see_who_opened_their_health_record(client):
    kit = await new_tenant(client)
    parent, child, token = await _family(kit)
    stranger = await member(kit, "周敏")
    store = await kit.store()
    doctor = await kit.staff(["doctor"], [store])
    record = await _signed(kit, parent, "tcm_four_exams", TCM_VALUES)
    child_record = await _signed(kit, child, "pain_vas", PAIN)
    others = await _signed(kit, stranger, "pain_vas", PAIN)
    his_token, his_name = await _integration_token(kit, client)

    # The owner lists and opens the record; the HIS opens it; a doctor not caring for them is refused (a
    # refusal opened nothing); the patient reads their own (not listed back); the stranger's is read too.
    assert (await kit.get("/clinical-records", params={"member_id": parent})).status_code == 200
    assert (await kit.get(f"/clinical-records/{record['id']}")).status_code == 200
    assert (await kit.get(f"/clinical-records/{record['id']}", his_token)).status_code == 200
    assert (await kit.get(f"/clinical-records/{record['id']}", doctor["token"])).status_code == 403
    assert (await kit.get("/patient/clinical-records", token)).status_code == 200
    assert (await kit.get(f"/clinical-records/{others['id']}")).status_code == 200
    # The parent opens their child's record in the mini-program.
    assert (await kit.get(f"/patient/clinical-records/{child_record['id']}", token)).status_code == 200

    # Shown at once, whether or not the sealer has moved the entries into the chain yet.
    r = await kit.get("/patient/health-record-access", token)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    # (Creating the member answered its profile with health fields to the owner: that read is listed too.)
    assert {i["action"] for i in items} == {"clinical_record.read", "clinical_record.list", "member.health.read"}
    clinical = [i for i in items if i["action"].startswith("clinical_record.")]
    assert [(i["action"], i["accessor_type"]) for i in clinical] == [
        ("clinical_record.read", "integration"), ("clinical_record.read", "staff"),
        ("clinical_record.list", "staff")]
    his, owner_read, owner_list = clinical
    assert his["accessor_name"] == his_name and his["accessor_roles"] == []
    assert owner_read["accessor_name"] and "owner" in owner_read["accessor_roles"]
    assert owner_read["action_label"] == "查看病历" and owner_read["occurred_at"] >= owner_list["occurred_at"]
    assert "actor_id" not in owner_read

    # After sealing, the same list (now read from the chain, through the member index).
    await seal_audit()
    sealed = (await kit.get("/patient/health-record-access", token)).json()["items"]
    assert sealed == items
    page = (await kit.get("/patient/health-record-access", token, params={"limit": 2})).json()
    assert page["items"] == items[:2] and page["next_cursor"]
    rest = (await kit.get("/patient/health-record-access", token,
                          params={"limit": 50, "cursor": page["next_cursor"]})).json()
    assert rest["items"] == items[2:] and rest["next_cursor"] is None

    # The child's log shows the parent's read (as family); no one else's log is reachable.
    child_log = (await kit.get("/patient/health-record-access", token, params={"member_id": child})).json()["items"]
    assert [(i["action"], i["accessor_type"], i["accessor_name"]) for i in child_log
            if i["action"].startswith("clinical_record.")] == [("clinical_record.read", "family", None)]
    assert {i["accessor_type"] for i in child_log} <= {"family", "staff"}
    assert (await kit.get("/patient/health-record-access", token, params={"member_id": stranger})).status_code == 404
    assert (await kit.get("/patient/health-record-access")).status_code == 401
    r = await kit.get("/patient/health-record-access", token, params={"cursor": "bm90IGEgY3Vyc29y"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_cursor"


@pytest.mark.parametrize("who", ["owner", "patient", "front_desk", "stranger_therapist", "own_therapist"])
async def test_records_on_the_timeline_depend_on_who_asks(client, who):
    kit = await new_tenant(client)
    store = await kit.store()
    own = await kit.staff(["therapist"], [store])
    member_id = await member(kit, "黄磊", owner_staff_id=own["id"])
    signed = await _signed(kit, member_id, "tcm_four_exams", TCM_VALUES | {"clinician_remark": "仅员工可见"})
    pending = await draft(kit, member_id, "pain_vas", PAIN)
    tokens = {"owner": None, "patient": patient_token(kit, member_id),
              "front_desk": (await kit.staff(["front_desk"], [store]))["token"],
              "stranger_therapist": (await kit.staff(["therapist"], [store]))["token"], "own_therapist": own["token"]}
    r = await kit.get(f"/members/{member_id}/timeline", tokens[who], params={"type": "clinical_record"})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    expected = {"owner": [pending, signed], "own_therapist": [pending, signed], "patient": [signed],
                "front_desk": [], "stranger_therapist": []}[who]
    assert [i["id"] for i in items] == [f"clinical_record:{x['id']}" for x in expected]
    for item in items:
        # A summary only, never the values.
        assert "values" not in item["data"] and "颈肩" not in str(item) and "仅员工可见" not in str(item)
        assert item["data"]["form_name"] in ("中医四诊", "疼痛评分（VAS）")
    if who == "patient":
        assert items[0]["title"] == "中医四诊 · 已签署" and items[0]["data"]["signed_by_name"]
        assert "author_id" not in items[0]["data"] and "signed_by_id" not in items[0]["data"]
    if who == "owner":
        assert items[0]["data"]["status"] == "draft" and items[1]["data"]["signed_at"]
