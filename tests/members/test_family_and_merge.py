"""Family groups (and what a family head sees in the mini-program), tags and exclusive tag groups,
duplicate detection and merging two members."""

from __future__ import annotations

import asyncio
from uuid import UUID

from sqlalchemy import text

from app.core.errors import Conflict
from app.domain.members.hooks import MERGE_MOVERS, merge_mover
from tests.factories import new_tenant
from tests.members.helpers import (
    VALID_ID,
    assert_problem,
    audit_entries,
    delete,
    execute_as_owner,
    make_member,
    new_phone,
    patch,
    patient_token,
    search_ids,
)


async def test_family_groups(client):
    kit = await new_tenant(client)
    head, child, spouse, stranger = [await make_member(kit, n) for n in ("林父", "林子", "林母", "路人")]
    r = await kit.post("/families", {"name": "林家", "head_member_id": head["id"]})
    assert r.status_code == 201, r.text
    family = r.json()
    assert family["head_member_id"] == head["id"]
    assert family["members"] == [{"member_id": head["id"], "name": "林父", "role": "head", "relation": "self"}]
    for member, relation in ((child, "child"), (spouse, "spouse")):
        r = await kit.post(f"/families/{family['id']}/members", {"member_id": member["id"], "relation": relation})
        assert r.status_code == 200, r.text
    members = {m["member_id"]: m for m in r.json()["members"]}
    assert {k: (v["role"], v["relation"]) for k, v in members.items()} == {
        head["id"]: ("head", "self"), child["id"]: ("member", "child"), spouse["id"]: ("member", "spouse")}
    assert (await kit.get(f"/members/{child['id']}")).json()["family"] == {
        "group_id": family["id"], "role": "member", "relation": "child"}

    # One family per member.
    other = (await kit.post("/families", {"name": "路家", "head_member_id": stranger["id"]})).json()
    assert_problem(await kit.post(f"/families/{other['id']}/members", {"member_id": child["id"], "relation": "child"}),
                   409, "already_in_family")
    assert_problem(await kit.post("/families", {"name": "子家", "head_member_id": child["id"]}),
                   409, "already_in_family")
    assert_problem(await kit.post(f"/families/{family['id']}/members", {"member_id": head["id"], "relation": "x"}),
                   409, "already_in_family")
    # The head cannot leave; a member can, and may join again.
    assert_problem(await delete(kit, f"/families/{family['id']}/members/{head['id']}"), 409, "family_head")
    assert_problem(await delete(kit, f"/families/{other['id']}/members/{child['id']}"), 404, "not_in_family")
    r = await delete(kit, f"/families/{family['id']}/members/{spouse['id']}")
    assert r.status_code == 200 and spouse["id"] not in {m["member_id"] for m in r.json()["members"]}, r.text
    assert (await kit.get(f"/members/{spouse['id']}")).json()["family"] is None
    r = await kit.post(f"/families/{family['id']}/members", {"member_id": spouse["id"], "relation": "spouse"})
    assert r.status_code == 200, r.text

    elsewhere = await new_tenant(client)
    assert_problem(await elsewhere.get(f"/families/{family['id']}"), 404, "family_not_found")
    assert_problem(await elsewhere.post(f"/families/{family['id']}/members",
                                        {"member_id": stranger["id"], "relation": "child"}), 404)
    assert_problem(await elsewhere.post("/families", {"name": "偷", "head_member_id": head["id"]}), 404)


async def test_patients_see_themselves_and_a_head_sees_the_family(client):
    kit = await new_tenant(client)
    head, child, outsider = [await make_member(kit, n, health={"allergy_history": f"{n}的过敏史"})
                             for n in ("陈父", "陈子", "外人")]
    family = (await kit.post("/families", {"name": "陈家", "head_member_id": head["id"]})).json()
    await kit.post(f"/families/{family['id']}/members", {"member_id": child["id"], "relation": "child"})
    head_token, child_token, outsider_token = (patient_token(kit, m["id"]) for m in (head, child, outsider))

    for target in (head, child):
        r = await kit.get(f"/members/{target['id']}", token=head_token)
        assert r.status_code == 200, r.text
        assert r.json()["name"] == target["name"]
    assert (await kit.get(f"/families/{family['id']}", token=head_token)).status_code == 200
    assert (await kit.get(f"/members/{child['id']}/timeline", token=head_token)).status_code == 200
    # A family member who is not the head sees only themselves (and the family's roster).
    assert (await kit.get(f"/members/{child['id']}", token=child_token)).status_code == 200
    assert_problem(await kit.get(f"/members/{head['id']}", token=child_token), 404, "member_not_found")
    assert (await kit.get(f"/families/{family['id']}", token=child_token)).status_code == 200
    # Anyone else: not found, not forbidden (nothing to learn about who exists).
    for path in (f"/members/{child['id']}", f"/members/{head['id']}", f"/families/{family['id']}",
                 f"/members/{child['id']}/timeline"):
        assert_problem(await kit.get(path, token=outsider_token), 404)
    # Patients do not reach staff endpoints.
    for path in ("/members", f"/members/{outsider['id']}/export", "/members/duplicates"):
        assert_problem(await kit.get(path, token=outsider_token), 401, "wrong_audience")
    assert_problem(await patch(kit, f"/members/{outsider['id']}", {"name": "改"}, token=outsider_token), 401)
    # A patient token naming a member that its tenant does not have is refused outright.
    elsewhere = await new_tenant(client)
    foreign = patient_token(elsewhere, head["id"])
    assert_problem(await kit.get(f"/members/{head['id']}", token=foreign), 401, "account_disabled")

    # Once the child leaves, the head no longer sees them.
    assert (await delete(kit, f"/families/{family['id']}/members/{child['id']}")).status_code == 200
    assert_problem(await kit.get(f"/members/{child['id']}", token=head_token), 404)


async def test_tags_and_exclusive_groups(client):
    kit = await new_tenant(client)
    level = (await kit.post("/tag-groups", {"name": "会员等级", "exclusive": True})).json()
    skin = (await kit.post("/tag-groups", {"name": "肤质"})).json()
    for name, group in (("金卡", level), ("银卡", level), ("铜卡", level), ("油性", skin), ("敏感", skin)):
        r = await kit.post("/tags", {"name": name, "group_id": group["id"], "color": "#aa3300"})
        assert r.status_code == 201, r.text
    member = await make_member(kit, "韩一", tags=["银卡", "油性"])
    assert member["tags"] == ["油性", "银卡"]

    async def change(add=(), remove=()):
        r = await kit.post(f"/members/{member['id']}/tags", {"add": list(add), "remove": list(remove)})
        assert r.status_code == 200, r.text
        return r.json()["tags"]

    assert await change(add=["金卡"]) == ["油性", "金卡"]
    assert await change(add=["敏感"]) == ["敏感", "油性", "金卡"]
    assert await change(remove=["油性", "金卡"]) == ["敏感"]
    assert await change(add=["新标签"]) == ["敏感", "新标签"]
    assert await change(remove=["不存在"]) == ["敏感", "新标签"]
    assert_problem(await kit.post(f"/members/{member['id']}/tags", {"add": ["敏感"], "remove": ["敏感"]}), 422)
    # Two tags of one exclusive group at once cannot both be kept.
    assert_problem(await kit.post(f"/members/{member['id']}/tags", {"add": ["金卡", "银卡"]}), 422, field="add")
    assert_problem(await kit.post("/members", {"name": "韩二", "phone": new_phone(), "tags": ["金卡", "铜卡"]}),
                   422, field="tags")
    r = await patch(kit, f"/members/{member['id']}", {"tags": ["银卡", "金卡"]})
    assert_problem(r, 422, field="tags")
    assert (await kit.get(f"/members/{member['id']}")).json()["tags"] == ["敏感", "新标签"]
    r = await patch(kit, f"/members/{member['id']}", {"tags": ["铜卡"]})
    assert r.status_code == 200 and r.json()["tags"] == ["铜卡"], r.text

    counts = {t["name"]: t["member_count"] for t in (await kit.get("/tags")).json()}
    assert counts["铜卡"] == 1 and counts["金卡"] == 0
    assert [t["name"] for t in (await kit.get("/tags", params={"group_id": level["id"]})).json()] == [
        "金卡", "铜卡", "银卡"]
    assert_problem(await kit.post("/tag-groups", {"name": "会员等级"}), 409, "tag_group_exists")


async def test_duplicates_are_found(client):
    kit = await new_tenant(client)
    a = await make_member(kit, "马一", birthday="1980-01-02")
    b = await make_member(kit, "马一", birthday="1980-01-02")
    await make_member(kit, "马一", birthday="1981-01-02")
    await make_member(kit, "马一")
    c = await make_member(kit, "马二", id_number=VALID_ID)
    d = await make_member(kit, "马贰", id_number=VALID_ID.lower())
    r = await kit.get("/members/duplicates")
    assert r.status_code == 200, r.text
    pairs = {(frozenset(p["member_ids"]), p["reason"]) for p in r.json()["items"]}
    assert pairs == {(frozenset({a["id"], b["id"]}), "same_name_birthday"),
                     (frozenset({c["id"], d["id"]}), "same_id_number")}
    store = await kit.store()
    marketing = await kit.staff(["marketing"], [store])
    assert (await kit.get("/members/duplicates", token=marketing["token"])).status_code == 200
    assert (await kit.post(f"/members/{a['id']}/merge", {"duplicate_id": b["id"]})).status_code == 200
    pairs = {p["reason"] for p in (await kit.get("/members/duplicates")).json()["items"]}
    assert pairs == {"same_id_number"}


async def merge_pair(kit):
    """A survivor and a duplicate with overlapping and complementary data, notes, tags and a referral."""
    level = (await kit.post("/tag-groups", {"name": "等级", "exclusive": True})).json()
    for name in ("金卡", "银卡"):
        await kit.post("/tags", {"name": name, "group_id": level["id"]})
    await kit.post("/member-fields", {"key": "skin", "label": "肤质", "type": "text"})
    await kit.post("/member-fields", {"key": "diet", "label": "饮食", "type": "text"})
    survivor = await make_member(kit, "杨一", gender="female", tags=["金卡", "颈椎病"],
                                 custom_fields={"skin": "干性"}, health={"allergy_history": "花粉"})
    duplicate_phone = new_phone()
    duplicate = await make_member(kit, "杨一", phone=duplicate_phone, gender="male", birthday="1979-09-09",
                                  address="杭州市西湖区", id_number=VALID_ID, tags=["银卡", "失眠"], notes="喜欢热敷",
                                  referrer_id=survivor["id"], custom_fields={"skin": "油性", "diet": "素食"},
                                  health={"allergy_history": "海鲜", "past_history": "胃炎", "constitution": ["阳虚"]})
    referred = await make_member(kit, "杨二", referrer_id=duplicate["id"])
    for member, body in ((survivor, "幸存者备注"), (duplicate, "重复者备注")):
        assert (await kit.post(f"/members/{member['id']}/notes", {"body": body})).status_code == 201
    return survivor, duplicate, referred, duplicate_phone


async def test_merge_moves_everything_to_the_survivor(client):
    kit = await new_tenant(client)
    survivor, duplicate, referred, duplicate_phone = await merge_pair(kit)
    r = await kit.post(f"/members/{survivor['id']}/merge", {"duplicate_id": duplicate["id"], "reason": "同一人"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["survivor_id"], result["duplicate_id"]) == (survivor["id"], duplicate["id"])
    assert result["moved"]["members"] == {"tags": 1, "notes": 1, "referrals": 1}

    merged = (await kit.get(f"/members/{survivor['id']}")).json()
    assert merged["name"] == "杨一" and merged["phone"] == survivor["phone"]
    assert merged["gender"] == "female", "the survivor's values win"
    assert (merged["birthday"], merged["address"], merged["id_number"], merged["notes"]) == (
        "1979-09-09", "杭州市西湖区", VALID_ID, "喜欢热敷"), "gaps are filled from the duplicate"
    assert merged["custom_fields"] == {"skin": "干性", "diet": "素食"}
    assert merged["health"]["allergy_history"] == "花粉" and merged["health"]["past_history"] == "胃炎"
    assert merged["health"]["constitution"] == ["阳虚"]
    assert merged["tags"] == ["失眠", "金卡", "颈椎病"], "an exclusive group keeps the survivor's tag"
    assert merged["referrer_id"] is None, "a member cannot end up referring themselves"
    notes = [i["data"]["body"] for i in (await kit.get(f"/members/{survivor['id']}/timeline",
                                                       params={"type": "note"})).json()["items"]]
    assert sorted(notes) == ["幸存者备注", "重复者备注"]
    assert (await kit.get(f"/members/{referred['id']}")).json()["referrer_id"] == survivor["id"]

    gone = (await kit.get(f"/members/{duplicate['id']}")).json()
    assert (gone["status"], gone["merged_into_id"], gone["tags"]) == ("merged", survivor["id"], [])
    assert (await kit.get(f"/members/{duplicate['id']}/timeline", params={"type": "note"})).json()["items"] == []
    assert await search_ids(kit, q=duplicate_phone) == []
    again = await make_member(kit, "杨一", phone=duplicate_phone)
    assert await search_ids(kit, q=duplicate_phone) == [again["id"]]

    entries = await audit_entries(kit, action="member.merge", target_id=survivor["id"])
    assert len(entries) == 1 and entries[0]["summary"]["duplicate"] == duplicate["id"]
    assert entries[0]["summary"]["reason"] == "同一人"


async def test_merge_refusals(client):
    kit = await new_tenant(client)
    store = await kit.store()
    a, b, c = [await make_member(kit, n) for n in ("何一", "何二", "何三")]
    for role in ("front_desk", "store_manager", "consultant"):
        staff = await kit.staff([role], [store])
        assert_problem(await kit.post(f"/members/{a['id']}/merge", {"duplicate_id": b["id"]}, token=staff["token"]),
                       403, "permission_denied")
    assert_problem(await kit.post(f"/members/{a['id']}/merge", {"duplicate_id": a["id"]}), 422, field="duplicate_id")
    assert_problem(await kit.post(f"/members/{a['id']}/merge", {"duplicate_id": "x"}), 422, field="duplicate_id")
    assert_problem(await kit.post(f"/members/{a['id']}/merge", {}), 422, field="duplicate_id")
    elsewhere = await new_tenant(client)
    foreign = await make_member(elsewhere, "外")
    assert_problem(await kit.post(f"/members/{a['id']}/merge", {"duplicate_id": foreign["id"]}), 404)
    assert (await kit.get(f"/members/{b['id']}")).json()["status"] == "active"

    assert (await kit.post(f"/members/{a['id']}/merge", {"duplicate_id": b["id"]})).status_code == 200
    assert_problem(await kit.post(f"/members/{a['id']}/merge", {"duplicate_id": b["id"]}), 409, "member_inactive")
    assert_problem(await kit.post(f"/members/{c['id']}/merge", {"duplicate_id": b["id"]}), 409, "member_inactive")
    assert_problem(await kit.post(f"/members/{b['id']}/merge", {"duplicate_id": c["id"]}), 409, "member_inactive")
    assert_problem(await patch(kit, f"/members/{b['id']}", {"name": "复活"}), 409, "member_inactive")
    assert len(await audit_entries(kit, action="member.merge")) == 1

    # A family head with others in the family cannot be folded away.
    head, kid = await make_member(kit, "何父"), await make_member(kit, "何子")
    family = (await kit.post("/families", {"name": "何家", "head_member_id": head["id"]})).json()
    await kit.post(f"/families/{family['id']}/members", {"member_id": kid["id"], "relation": "child"})
    assert_problem(await kit.post(f"/members/{c['id']}/merge", {"duplicate_id": head["id"]}), 409, "family_head")


async def test_other_contexts_movers_run_in_the_merge_transaction(client):
    kit = await new_tenant(client)
    survivor, duplicate, _, duplicate_phone = await merge_pair(kit)
    seen = {}

    @merge_mover("test_cards")
    async def move_cards(session, tenant_id, duplicate_id, survivor_id):
        # The members mover ran first in this same transaction: its uncommitted moves are visible here.
        rows = (await session.execute(
            text("SELECT member_id FROM member_notes WHERE tenant_id = :t"),
            {"t": tenant_id})).all()
        seen.update(duplicate=duplicate_id, survivor=survivor_id, note_owners={r[0] for r in rows})
        return {"cards": 2}

    try:
        r = await kit.post(f"/members/{survivor['id']}/merge", {"duplicate_id": duplicate["id"]})
    finally:
        MERGE_MOVERS.pop("test_cards")
    assert r.status_code == 200, r.text
    assert r.json()["moved"]["test_cards"] == {"cards": 2}
    assert seen == {"duplicate": UUID(duplicate["id"]), "survivor": UUID(survivor["id"]),
                    "note_owners": {UUID(survivor["id"])}}
    assert (await audit_entries(kit, action="member.merge"))[0]["summary"]["moved"]["test_cards"] == {"cards": 2}


async def test_a_failing_mover_rolls_the_whole_merge_back(client):
    kit = await new_tenant(client)
    survivor, duplicate, referred, duplicate_phone = await merge_pair(kit)
    before = {m["id"]: (await kit.get(f"/members/{m['id']}")).json() for m in (survivor, duplicate)}

    @merge_mover("test_failing")
    async def refuse(session, tenant_id, duplicate_id, survivor_id):
        raise Conflict("a card of the duplicate cannot move", code="card_not_movable")

    try:
        r = await kit.post(f"/members/{survivor['id']}/merge", {"duplicate_id": duplicate["id"]})
    finally:
        MERGE_MOVERS.pop("test_failing")
    assert_problem(r, 409, "card_not_movable")
    for member_id, was in before.items():
        now = (await kit.get(f"/members/{member_id}")).json()
        assert now == was
    notes = await execute_as_owner("SELECT body FROM member_notes WHERE member_id = :m", m=UUID(duplicate["id"]))
    assert [n[0] for n in notes] == ["重复者备注"]
    assert (await kit.get(f"/members/{referred['id']}")).json()["referrer_id"] == duplicate["id"]
    assert await search_ids(kit, q=duplicate_phone) == [duplicate["id"]]
    assert await audit_entries(kit, action="member.merge") == []
    # And with the mover gone, the merge goes through.
    assert (await kit.post(f"/members/{survivor['id']}/merge", {"duplicate_id": duplicate["id"]})).status_code == 200


async def test_merging_a_lone_family_head_dissolves_the_family(client):
    kit = await new_tenant(client)
    survivor, duplicate = await make_member(kit, "孔一"), await make_member(kit, "孔一")
    family = (await kit.post("/families", {"name": "孔家", "head_member_id": duplicate["id"]})).json()
    assert (await kit.post(f"/members/{survivor['id']}/merge", {"duplicate_id": duplicate["id"]})).status_code == 200
    assert_problem(await kit.get(f"/families/{family['id']}"), 404, "family_not_found")
    assert (await kit.get(f"/members/{duplicate['id']}")).json()["family"] is None


async def test_opposite_merges_at_once_leave_one_survivor(client):
    kit = await new_tenant(client)
    a, b = await make_member(kit, "曹一"), await make_member(kit, "曹一")
    results = await asyncio.gather(kit.post(f"/members/{a['id']}/merge", {"duplicate_id": b["id"]}),
                                   kit.post(f"/members/{b['id']}/merge", {"duplicate_id": a["id"]}))
    assert sorted(r.status_code for r in results) == [200, 409], [r.text for r in results]
    statuses = sorted([(await kit.get(f"/members/{m['id']}")).json()["status"] for m in (a, b)])
    assert statuses == ["active", "merged"]
    assert len(await audit_entries(kit, action="member.merge")) == 1
