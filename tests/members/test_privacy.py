"""Who sees which part of a member (contact and health data by preset role, the care relationship),
health writes, encryption at rest and key rotation, the PIPL export and erasure."""

from __future__ import annotations

import base64
import json
import os
from uuid import UUID

import pytest

from app.core import crypto
from app.core.crypto import FieldKeys
from app.core.db import session_scope
from app.domain.iam.permissions import PRESET_ROLES
from app.domain.members import service
from app.domain.members.hooks import RELATIONSHIP_CHECKS, care_relationship
from tests.factories import new_tenant, seal_audit
from tests.members.helpers import (
    VALID_ID,
    assert_problem,
    audit_entries,
    execute_as_owner,
    make_member,
    member_row,
    new_phone,
    patch,
    search_ids,
)

# role: (sees contact data unmasked, which members' health it sees: "all", "care" (in their care) or None)
ROLE_ACCESS = {
    "owner": (True, "all"),
    "store_manager": (True, "all"),
    "doctor": (True, "care"),
    "therapist": (False, "care"),
    "consultant": (True, None),
    "front_desk": (True, None),
    "marketing": (False, None),
    "finance": (False, None),
}
ADDRESS = "上海市静安区南京西路1号"
HEALTH = {"allergy_history": "青霉素过敏", "past_history": "高血压", "constitution": ["气虚", "痰湿"]}


def masked(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:]


async def tenant_with_fields(client):
    kit = await new_tenant(client)
    for body in ({"key": "tongue", "label": "舌象", "type": "multi_select", "health": True,
                  "options": [{"value": "齿痕"}, {"value": "厚腻"}]},
                 {"key": "skin", "label": "肤质", "type": "single_select", "options": [{"value": "油性"}]}):
        r = await kit.post("/member-fields", body)
        assert r.status_code == 201, r.text
    return kit


def full_profile(**extra) -> dict:
    return {"id_number": VALID_ID, "address": ADDRESS, "health": HEALTH,
            "custom_fields": {"tongue": ["齿痕"], "skin": "油性"}, **extra}


def test_preset_roles_match_the_security_baseline():
    for role, (contact, health) in ROLE_ACCESS.items():
        permissions = PRESET_ROLES[role][1]
        assert ("members.contact:read" in permissions) is contact, role
        assert ("members.health:read" in permissions) is (health is not None), role
        assert ("members.health:all" in permissions) is (health == "all"), role
        assert "members:read" in permissions, role
    assert "members:erase" not in PRESET_ROLES["front_desk"][1]


@pytest.mark.parametrize("role", list(ROLE_ACCESS))
async def test_contact_and_health_visibility_by_role(client, role):
    kit = await tenant_with_fields(client)
    store = await kit.store()
    staff = await kit.staff([role], [store])
    phones = {"mine": new_phone(), "other": new_phone()}
    members = {
        "mine": await make_member(kit, "张三", phone=phones["mine"], owner_staff_id=staff["id"], **full_profile()),
        "other": await make_member(kit, "李四", phone=phones["other"], **full_profile()),
    }
    contact, health_scope = ROLE_ACCESS[role]
    expected_health_reads = []
    for which, member in members.items():
        r = await kit.get(f"/members/{member['id']}", token=staff["token"])
        assert r.status_code == 200, r.text
        seen = r.json()
        if contact:
            assert (seen["phone"], seen["id_number"], seen["address"]) == (phones[which], VALID_ID, ADDRESS)
        else:
            assert seen["phone"] == masked(phones[which]) and seen["phone_masked"] is True
            assert seen["id_number"] == "1101**********002X" and seen["address"] is None
        shows_health = health_scope == "all" or (health_scope == "care" and which == "mine")
        assert seen["health_visible"] is shows_health, (which, seen)
        if shows_health:
            assert seen["health"]["allergy_history"] == "青霉素过敏"
            assert seen["health"]["constitution"] == ["气虚", "痰湿"]
            assert seen["custom_fields"] == {"tongue": ["齿痕"], "skin": "油性"}
            expected_health_reads.append(member["id"])
        else:
            assert seen["health"] is None
            assert seen["custom_fields"] == {"skin": "油性"}, "a health-flagged field leaked"

    found = await kit.get("/members", token=staff["token"], params={"limit": 200})
    assert found.status_code == 200
    by_id = {m["id"]: m for m in found.json()["items"]}
    for which, member in members.items():
        assert by_id[member["id"]]["phone"] == (phones[which] if contact else masked(phones[which]))
        assert "health" not in by_id[member["id"]]
    # The masked number is not a search key that finds the member for those who cannot see it.
    assert await search_ids(kit, token=staff["token"], q=masked(phones["mine"])) == []

    reads = await audit_entries(kit, action="member.health.read", actor_id=staff["id"])
    assert sorted(e["target_id"] for e in reads) == sorted(expected_health_reads)


async def test_a_health_read_is_recorded_by_the_statement_that_reads_and_only_for_a_member_found(client):
    """Staff who see all health data have the read recorded by the loading statement itself: one entry per
    read with who and which request, none for an id that finds nobody (404)."""
    kit = await tenant_with_fields(client)
    owner = await kit.staff(["owner"], [await kit.store()])
    member = await make_member(kit, "赵六", **full_profile())
    for _ in range(2):
        assert (await kit.get(f"/members/{member['id']}", token=owner["token"])).status_code == 200
    unknown = "00000000-0000-4000-8000-00000000abcd"
    missing = await kit.get(f"/members/{unknown}", token=owner["token"])
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")

    reads = await audit_entries(kit, action="member.health.read", actor_id=owner["id"])
    assert [e["target_id"] for e in reads] == [member["id"], member["id"]]
    assert all(e["request_id"] and e["actor_type"] == "staff" for e in reads)


async def test_care_relationship_hook_opens_health_to_caring_staff_only(client):
    kit = await tenant_with_fields(client)
    store = await kit.store()
    therapist, doctor, front_desk = [await kit.staff([r], [store]) for r in ("therapist", "doctor", "front_desk")]
    member = await make_member(kit, "王五", **full_profile())

    async def health_of(token: str) -> dict | None:
        r = await kit.get(f"/members/{member['id']}", token=token)
        assert r.status_code == 200, r.text
        return r.json()["health"]

    assert await health_of(therapist["token"]) is None
    assert_problem(await patch(kit, f"/members/{member['id']}", {"health": {"health_summary": "好转"}},
                               token=therapist["token"]), 403, "not_in_care")

    calls = []

    async def had_appointment(session, actor, member_id):
        calls.append((actor.id, member_id))
        return actor.id == UUID(therapist["id"]) and member_id == UUID(member["id"])

    async def front_desk_cares(session, actor, member_id):
        return actor.id == UUID(front_desk["id"])

    care_relationship(had_appointment)
    care_relationship(front_desk_cares)
    try:
        assert (await health_of(therapist["token"]))["allergy_history"] == "青霉素过敏"
        assert await health_of(doctor["token"]) is None
        assert await health_of(front_desk["token"]) is None, "front desk never sees health data"
        r = await patch(kit, f"/members/{member['id']}", {"health": {"health_summary": "好转"}},
                        token=therapist["token"])
        assert r.status_code == 200, r.text
        assert r.json()["health"]["health_summary"] == "好转"
        assert (UUID(therapist["id"]), UUID(member["id"])) in calls
    finally:
        RELATIONSHIP_CHECKS.remove(had_appointment)
        RELATIONSHIP_CHECKS.remove(front_desk_cares)
    assert await health_of(therapist["token"]) is None


async def test_health_writes_need_the_permission_and_the_care_relationship(client):
    kit = await tenant_with_fields(client)
    store = await kit.store()
    staff = {}
    for role in ("therapist", "doctor", "front_desk", "consultant"):
        staff[role] = await kit.staff([role], [store])
    cared = await make_member(kit, "赵六", owner_staff_id=staff["therapist"]["id"], **full_profile())
    doctors = await make_member(kit, "钱七", owner_staff_id=staff["doctor"]["id"], **full_profile())
    other = await make_member(kit, "孙八", **full_profile())
    new_health = {"health": {"allergy_history": "无"}}

    for role in ("front_desk", "consultant"):
        token = staff[role]["token"]
        assert_problem(await patch(kit, f"/members/{other['id']}", new_health, token=token), 403, "permission_denied")
        assert_problem(await patch(kit, f"/members/{other['id']}", {"custom_fields": {"tongue": ["厚腻"]}},
                                   token=token), 403, "permission_denied")
        assert_problem(await kit.post("/members", {"name": "周九", "phone": new_phone(), **new_health}, token=token),
                       403, "permission_denied")
        assert_problem(await kit.post("/members", {"name": "周九", "phone": new_phone(),
                                                   "custom_fields": {"tongue": ["厚腻"]}}, token=token),
                       403, "permission_denied")
    for role in ("therapist", "doctor"):
        token = staff[role]["token"]
        assert_problem(await patch(kit, f"/members/{other['id']}", new_health, token=token), 403, "not_in_care")
        assert_problem(await patch(kit, f"/members/{other['id']}", {"custom_fields": {"tongue": ["厚腻"]}},
                                   token=token), 403, "not_in_care")

    # A therapist holds members.health:write but not members:write: health of members in their care only.
    token = staff["therapist"]["token"]
    r = await patch(kit, f"/members/{cared['id']}", {**new_health, "custom_fields": {"tongue": ["厚腻"]}}, token=token)
    assert r.status_code == 200, r.text
    assert r.json()["health"]["allergy_history"] == "无" and r.json()["custom_fields"]["tongue"] == ["厚腻"]
    assert_problem(await patch(kit, f"/members/{cared['id']}", {"name": "改名"}, token=token), 403, "permission_denied")
    assert_problem(await patch(kit, f"/members/{cared['id']}", {**new_health, "address": "别处"}, token=token),
                   403, "permission_denied")
    assert_problem(await patch(kit, f"/members/{cared['id']}", {"custom_fields": {"skin": "油性"}}, token=token),
                   403, "permission_denied")
    r = await patch(kit, f"/members/{doctors['id']}", new_health, token=staff["doctor"]["token"])
    assert r.status_code == 200 and r.json()["health"]["allergy_history"] == "无", r.text

    untouched = (await kit.get(f"/members/{other['id']}")).json()
    assert untouched["health"]["allergy_history"] == "青霉素过敏" and untouched["custom_fields"]["tongue"] == ["齿痕"]
    assert (await kit.get(f"/members/{cared['id']}")).json()["name"] == "赵六"
    assert await search_ids(kit, q="周九") == []


async def test_phone_and_id_number_are_encrypted_at_rest(client):
    kit = await new_tenant(client)
    phone = new_phone()
    member = await make_member(kit, "吴十", phone=f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}", id_number=VALID_ID)
    twin = await make_member(kit, "吴十一", id_number=VALID_ID.lower())
    row, twin_row = await member_row(member["id"]), await member_row(twin["id"])
    for column, value in row.items():
        assert phone not in str(value) and VALID_ID not in str(value), f"plaintext in members.{column}"
    keys = crypto.field_keys()
    assert crypto.key_id(row["phone_encrypted"]) == keys.active_kid
    assert crypto.decrypt(row["phone_encrypted"]) == phone and crypto.decrypt(row["id_number_encrypted"]) == VALID_ID
    assert row["phone_index"] == crypto.blind_index(phone, purpose="phone")
    assert row["phone_masked"] == masked(phone) and row["id_number_masked"] == "1101**********002X"
    # Same ID number: the same blind index, but a fresh nonce each time.
    assert twin_row["id_number_index"] == row["id_number_index"]
    assert twin_row["id_number_encrypted"] != row["id_number_encrypted"]
    # Nor does the number leak into the audit log or the outbox of the tenant.
    await seal_audit()  # what the worker does every two seconds
    for table, column in (("audit_log", "summary"), ("outbox", "payload")):
        rows = await execute_as_owner(f"SELECT {column}::text FROM {table} WHERE tenant_id = :t",
                                      t=UUID(kit.tenant_id))
        assert rows and not [r for r in rows if phone in r[0] or VALID_ID in r[0]], table


async def test_key_rotation_reencrypts_and_lookup_still_works(client, monkeypatch):
    kit = await new_tenant(client)
    phones = [new_phone() for _ in range(3)]
    members = [await make_member(kit, f"旋转{i}", phone=p, id_number=VALID_ID if i == 0 else None)
               for i, p in enumerate(phones)]
    old = crypto.field_keys()
    new_key = os.urandom(32)
    rotated = FieldKeys(active_kid="k-rotated", keys={"k-rotated": new_key, **old.keys}, index_key=old.index_key)
    monkeypatch.setattr(crypto, "field_keys", lambda: rotated)

    total = 0
    for _ in range(10):
        async with session_scope(UUID(kit.tenant_id), system=True) as session:
            done = await service.reencrypt_batch(session, UUID(kit.tenant_id), batch=2)
        total += done
        if done == 0:
            break
    assert total == 3

    only_new = FieldKeys(active_kid="k-rotated", keys={"k-rotated": new_key}, index_key=old.index_key)
    for member, phone in zip(members, phones, strict=True):
        row = await member_row(member["id"])
        assert crypto.key_id(row["phone_encrypted"]) == "k-rotated"
        assert crypto.decrypt(row["phone_encrypted"], keys=only_new) == phone
        assert await search_ids(kit, q=phone) == [member["id"]]
    first = await member_row(members[0]["id"])
    assert crypto.decrypt(first["id_number_encrypted"], keys=only_new) == VALID_ID
    assert (await kit.get(f"/members/{members[0]['id']}")).json()["phone"] == phones[0]
    async with session_scope(UUID(kit.tenant_id), system=True) as session:
        assert await service.reencrypt_batch(session, UUID(kit.tenant_id)) == 0
    assert crypto.decrypt(crypto.encrypt("x"), keys=only_new) == "x"
    assert base64.b64decode(crypto.encrypt("x").partition(":")[2])  # still "<kid>:<base64>"


async def test_export_contains_profile_health_and_notes_and_is_audited(client):
    kit = await tenant_with_fields(client)
    phone = new_phone()
    member = await make_member(kit, "郑十二", phone=phone, **full_profile(notes="喜欢安静"))
    assert (await kit.post(f"/members/{member['id']}/notes", {"body": "回访：肩颈好转"})).status_code == 201
    r = await kit.get(f"/members/{member['id']}/export")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["member"]["name"] == "郑十二" and data["member"]["phone"] == phone
    assert data["member"]["id_number"] == VALID_ID and data["member"]["address"] == ADDRESS
    assert data["member"]["health"]["allergy_history"] == "青霉素过敏"
    assert data["member"]["custom_fields"] == {"tongue": ["齿痕"], "skin": "油性"}
    assert [n["body"] for n in data["notes"]] == ["回访：肩颈好转"]
    assert "回访：肩颈好转" in json.dumps(data["timeline"], ensure_ascii=False)
    exports = await audit_entries(kit, action="member.export", target_id=member["id"])
    assert len(exports) == 1

    store = await kit.store()
    for role in ("front_desk", "marketing", "therapist"):
        staff = await kit.staff([role], [store])
        assert_problem(await kit.get(f"/members/{member['id']}/export", token=staff["token"]), 403)
    # A tenant role that may export but not see health data cannot export it either.
    r = await kit.post("/roles", {"name": "exporter", "permissions": ["members:read", "members:export",
                                                                      "members.contact:read"]})
    assert r.status_code == 201, r.text
    exporter = await kit.staff(["exporter"], [store])
    assert_problem(await kit.get(f"/members/{member['id']}/export", token=exporter["token"]), 403)
    assert len(await audit_entries(kit, action="member.export", target_id=member["id"])) == 1


async def test_erasure_removes_personal_data_but_keeps_the_row(client):
    kit = await tenant_with_fields(client)
    store = await kit.store()
    front_desk = await kit.staff(["front_desk"], [store])
    phone = new_phone()
    head = await make_member(kit, "王大明")
    member = await make_member(kit, "王小明", phone=phone, gender="male", birthday="1990-05-06", tags=["颈椎病", "VIP"],
                               source_channel="抖音", **full_profile())
    r = await patch(kit, f"/members/{member['id']}", {"address": "北京市朝阳区1号", "notes": "怕冷"})
    assert r.status_code == 200, r.text
    assert (await kit.post(f"/members/{member['id']}/notes", {"body": "私密备注：离婚"})).status_code == 201
    family = (await kit.post("/families", {"name": "王家", "head_member_id": head["id"]})).json()
    r = await kit.post(f"/families/{family['id']}/members", {"member_id": member["id"], "relation": "child"})
    assert r.status_code == 200, r.text

    assert_problem(await kit.post(f"/members/{member['id']}/erase", {"reason": "本人申请注销"},
                                  token=front_desk["token"]), 403, "permission_denied")
    assert_problem(await kit.post(f"/members/{member['id']}/erase", {}), 422, "validation_error", "reason")
    r = await kit.post(f"/members/{member['id']}/erase", {"reason": "本人申请注销"})
    assert r.status_code == 200, r.text
    erased = r.json()
    assert erased["id"] == member["id"] and erased["status"] == "erased"
    assert erased["name"] not in ("王小明", "") and "王" not in erased["name"]
    for key in ("phone", "id_number", "address", "birthday", "gender", "notes", "family", "source_channel"):
        assert erased[key] is None, key
    assert erased["tags"] == [] and erased["custom_fields"] == {}
    assert erased["health"] == {"allergy_history": None, "past_history": None, "family_history": None,
                                "constitution": [], "health_summary": None}
    assert (await kit.get(f"/members/{member['id']}")).json() == erased

    row = await member_row(member["id"])
    assert row["status"] == "erased" and row["erased_at"] is not None
    assert row["custom_fields"] == {} and row["constitution"] == []
    secrets_ = ("王小明", phone, VALID_ID, ADDRESS, "北京市朝阳区", "怕冷", "青霉素", "高血压", "气虚", "私密备注",
                "离婚", "1990-05-06", "wangxiaoming", "wxm")
    raw = json.dumps({k: str(v) for k, v in row.items()}, ensure_ascii=False)
    assert not [s for s in secrets_ if s in raw], raw
    notes = await execute_as_owner("SELECT body FROM member_notes WHERE member_id = :m", m=UUID(member["id"]))
    assert notes and not [n for n in notes if "离婚" in n[0]]
    assert await execute_as_owner("SELECT 1 FROM member_tags WHERE member_id = :m", m=UUID(member["id"])) == []
    # The append-only audit log cannot be scrubbed, so it must never have held the personal data.
    audit_rows = await execute_as_owner("SELECT action, summary::text FROM audit_log WHERE tenant_id = :t",
                                        t=UUID(kit.tenant_id))
    leaks = [(a, s) for a, s in audit_rows for secret in secrets_ if secret in s]
    assert not leaks, leaks
    timeline = (await kit.get(f"/members/{member['id']}/timeline")).json()["items"]
    assert "离婚" not in json.dumps(timeline, ensure_ascii=False)
    assert (await kit.get(f"/families/{family['id']}")).json()["members"] == [
        {"member_id": head["id"], "name": "王大明", "role": "head", "relation": "self"}]

    for q in (phone, "王小明", "王小", "wxm", "wangxiaoming"):
        assert await search_ids(kit, q=q) == [], q
    assert member["id"] in await search_ids(kit, status="erased")
    assert member["id"] not in await search_ids(kit)

    assert_problem(await kit.post(f"/members/{member['id']}/erase", {"reason": "再次申请"}), 409, "member_erased")
    assert_problem(await patch(kit, f"/members/{member['id']}", {"name": "王小明"}), 409, "member_inactive")
    assert_problem(await kit.post(f"/members/{member['id']}/notes", {"body": "又写了一条"}), 409, "member_inactive")
    assert_problem(await kit.post(f"/members/{member['id']}/tags", {"add": ["颈椎病"]}), 409, "member_inactive")
    rejoin = await kit.post(f"/families/{family['id']}/members", {"member_id": member["id"], "relation": "child"})
    assert_problem(rejoin, 409, "member_inactive")
    again = await make_member(kit, "王小明", phone=phone)
    assert again["id"] != member["id"] and await search_ids(kit, q=phone) == [again["id"]]
    assert len(await audit_entries(kit, action="member.erase", target_id=member["id"])) == 1


async def test_erasing_a_family_head_with_members_is_refused(client):
    kit = await new_tenant(client)
    head, child = await make_member(kit, "冯一"), await make_member(kit, "冯二")
    family = (await kit.post("/families", {"name": "冯家", "head_member_id": head["id"]})).json()
    await kit.post(f"/families/{family['id']}/members", {"member_id": child["id"], "relation": "child"})
    assert_problem(await kit.post(f"/members/{head['id']}/erase", {"reason": "本人申请"}), 409, "family_head")
    assert (await kit.get(f"/members/{head['id']}")).json()["name"] == "冯一"


async def test_erasure_reaches_the_records_merged_into_the_member(client):
    """A merged duplicate is the same person's data: erasing the survivor must scrub it too."""
    kit = await new_tenant(client)
    survivor = await make_member(kit, "欧阳娜")
    phones = {"middle": new_phone(), "oldest": new_phone()}
    middle = await make_member(kit, "欧阳娜娜", phone=phones["middle"], address="广州市天河区", id_number=VALID_ID)
    oldest = await make_member(kit, "欧阳旧档", phone=phones["oldest"], health={"allergy_history": "芒果过敏"})
    assert (await kit.post(f"/members/{middle['id']}/merge", {"duplicate_id": oldest["id"]})).status_code == 200
    assert (await kit.post(f"/members/{survivor['id']}/merge", {"duplicate_id": middle["id"]})).status_code == 200
    assert (await kit.post(f"/members/{survivor['id']}/erase", {"reason": "本人申请注销"})).status_code == 200

    secrets_ = ("欧阳", phones["middle"], phones["oldest"], VALID_ID, "广州市", "芒果")
    for member in (survivor, middle, oldest):
        row = await member_row(member["id"])
        raw = json.dumps({k: str(v) for k, v in row.items()}, ensure_ascii=False)
        assert not [s for s in secrets_ if s in raw], raw
        assert row["phone_encrypted"] is None and row["id_number_encrypted"] is None and row["erased_at"]
    assert (await member_row(middle["id"]))["merged_into_id"] == UUID(survivor["id"])
    assert (await member_row(oldest["id"]))["status"] == "merged"
