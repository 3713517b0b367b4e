"""The demo tenant shows filled TCM and aesthetics records: signed ones, one with an amendment."""

from __future__ import annotations

from tests.factories import demo_reader


async def test_demo_has_signed_and_amended_records(client):
    get = await demo_reader(client)
    members = {m["name"]: m["id"] for m in (await get("/members", limit=100))["items"]}
    tcm = (await get("/clinical-records", member_id=members["张伟"]))["items"]
    assert {r["template_code"]: r["status"] for r in tcm} == {"tcm_four_exams": "signed", "pain_vas": "signed"}
    record = await get(f"/clinical-records/{next(r['id'] for r in tcm if r['template_code'] == 'tcm_four_exams')}")
    assert "qi_deficiency" in record["values"]["constitution"] and record["hash_verified"] is True

    skin = (await get("/clinical-records", member_id=members["王芳"]))["items"]
    assert len(skin) == 1 and skin[0]["amendment_count"] == 1
    record = await get(f"/clinical-records/{skin[0]['id']}")
    assert record["values"]["concerns"] == ["pigmentation", "enlarged_pores"]
    assert record["current_values"]["concerns"] == ["melasma", "enlarged_pores"]
    assert "黄褐斑" in record["amendments"][0]["reason"] and record["hash_verified"] is True
