"""Who may read and write records: the clinical permissions, the care relationship (refusals audited), and
every read audited."""

from __future__ import annotations

from tests.clinical.helpers import TCM_VALUES, audit_rows, draft, member
from tests.factories import new_tenant


async def test_care_relationship_is_required_and_refusals_are_audited(client):
    kit = await new_tenant(client)
    store_id = await kit.store()
    mine = await kit.staff(["therapist"], [store_id])
    other = await kit.staff(["therapist"], [store_id])
    member_id = await member(kit, "周杰", owner_staff_id=mine["id"])

    # The therapist caring for the member writes, signs and reads.
    record = await draft(kit, member_id, token=mine["token"])
    assert (await kit.post(f"/clinical-records/{record['id']}/sign", {}, mine["token"])).status_code == 200
    assert (await kit.get(f"/clinical-records/{record['id']}", mine["token"])).status_code == 200

    # Another therapist with the same permissions but no relationship: 403 not_in_care, for every action.
    attempts = [
        await kit.get(f"/clinical-records/{record['id']}", other["token"]),
        await kit.get("/clinical-records", other["token"], params={"member_id": member_id}),
        await kit.post("/clinical-records", {"member_id": member_id, "template_code": "tcm_four_exams",
                                             "values": TCM_VALUES}, other["token"]),
        await kit.post(f"/clinical-records/{record['id']}/amendments", {"reason": "x", "values": TCM_VALUES},
                       other["token"]),
    ]
    for r in attempts:
        assert r.status_code == 403 and r.json()["code"] == "not_in_care", r.text
    refused = await audit_rows(kit.tenant_id, "clinical_record.access_refused")
    assert len(refused) == 4 and {r["actor_id"] for r in refused} == {other["id"]}
    assert sorted(r["summary"]["attempted"] for r in refused) == ["amend", "create", "list", "read"]
    assert all(r["summary"]["member_id"] == member_id and r["summary"]["reason"] == "not_in_care" for r in refused)
    # Nothing was written by the refused ones.
    listed = (await kit.get("/clinical-records", params={"member_id": member_id})).json()["items"]
    assert len(listed) == 1 and listed[0]["amendment_count"] == 0


async def test_permissions_are_needed(client):
    kit = await new_tenant(client)
    front_desk = await kit.staff(["front_desk"], [await kit.store()])
    member_id = await member(kit)
    record = await draft(kit, member_id)
    for r in (await kit.get(f"/clinical-records/{record['id']}", front_desk["token"]),
              await kit.post("/clinical-records", {"member_id": member_id, "template_code": "pain_vas",
                                                   "values": {"regions": ["neck"], "vas": 3}}, front_desk["token"])):
        assert r.status_code == 403 and r.json()["code"] == "permission_denied", r.text
    assert (await kit.get(f"/clinical-records/{'0' * 8}-0000-4000-8000-{'0' * 12}")).status_code == 404


async def test_every_read_is_audited(client):
    kit = await new_tenant(client)
    member_id = await member(kit)
    record = await draft(kit, member_id)
    for _ in range(3):
        assert (await kit.get(f"/clinical-records/{record['id']}")).status_code == 200
    await kit.get("/clinical-records", params={"member_id": member_id})
    reads = await audit_rows(kit.tenant_id, "clinical_record.read")
    assert len(reads) == 3 and {r["target_id"] for r in reads} == {record["id"]}
    listing = await audit_rows(kit.tenant_id, "clinical_record.list")
    assert listing[0]["target_id"] == member_id and listing[0]["summary"]["record_ids"] == [record["id"]]
