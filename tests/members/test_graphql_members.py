"""Members over GraphQL: the sidebar searches and annotates, the mini-program shows the patient themselves."""

from __future__ import annotations

from tests.factories import new_tenant
from tests.members.helpers import make_member, patient_token
from tests.platform.test_graphql import codes, gql

MEMBER = """query($id: ID!) { member(id: $id) { id name phone phoneMasked tags health { allergyHistory }
  healthVisible timeline(limit: 10) { items { type title data } nextCursor } } }"""
SEARCH = "query($q: String) { members(q: $q, limit: 5) { items { id name phone } nextCursor } }"
NOTE = "mutation($m: ID!, $b: String!) { addMemberNote(memberId: $m, body: $b) { type id data } }"
TAGS = "mutation($m: ID!, $add: [String!]) { changeMemberTags(memberId: $m, add: $add) }"


async def test_sidebar_searches_by_pinyin_and_annotates(client):
    kit = await new_tenant(client)
    store = await kit.store()
    member = await make_member(kit, "张三丰", health={"allergy_history": "青霉素"})
    await make_member(kit, "李四")
    front_desk = await kit.staff(["front_desk"], [store])

    found = await gql(kit, SEARCH, front_desk["token"], {"q": "zsf"})
    assert "errors" not in found, found
    assert [m["name"] for m in found["data"]["members"]["items"]] == ["张三丰"]

    note = await gql(kit, NOTE, front_desk["token"], {"m": member["id"], "b": "想约周六上午"})
    assert "errors" not in note, note
    assert note["data"]["addMemberNote"]["data"]["body"] == "想约周六上午"
    tags = await gql(kit, TAGS, None, {"m": member["id"], "add": ["颈椎病"]})
    assert tags["data"]["changeMemberTags"] == ["颈椎病"]

    profile = (await gql(kit, MEMBER, None, {"id": member["id"]}))["data"]["member"]
    assert profile["name"] == "张三丰" and profile["tags"] == ["颈椎病"]
    assert profile["health"]["allergyHistory"] == "青霉素" and not profile["phoneMasked"]
    assert [i["type"] for i in profile["timeline"]["items"]] == ["note", "member"]

    # The front desk has no health permission: the profile says so instead of showing it.
    masked = (await gql(kit, MEMBER, front_desk["token"], {"id": member["id"]}))["data"]["member"]
    assert masked["health"] is None and masked["healthVisible"] is False


async def test_the_patient_sees_themselves_without_staff_notes(client):
    kit = await new_tenant(client)
    member = await make_member(kit, "王五")
    other = await make_member(kit, "赵六")
    await gql(kit, NOTE, None, {"m": member["id"], "b": "内部备注：价格敏感"})
    token = patient_token(kit, member["id"])

    own = await gql(kit, MEMBER, token, {"id": member["id"]})
    assert "errors" not in own, own
    assert [i["type"] for i in own["data"]["member"]["timeline"]["items"]] == ["member"]
    assert codes(await gql(kit, MEMBER, token, {"id": other["id"]})) == ["member_not_found"]
    assert codes(await gql(kit, SEARCH, token, {"q": "zl"})) == ["wrong_audience"]
    assert codes(await gql(kit, NOTE, token, {"m": member["id"], "b": "x"})) == ["wrong_audience"]


async def test_bad_arguments_are_problem_codes_and_write_nothing(client):
    kit = await new_tenant(client)
    member = await make_member(kit, "钱七")
    assert codes(await gql(kit, MEMBER, None, {"id": "not-a-uuid"})) == ["validation_error"]
    assert codes(await gql(kit, NOTE, None, {"m": member["id"], "b": " "})) == ["validation_error"]
    assert codes(await gql(kit, SEARCH, None, {"q": "x" * 51})) == ["validation_error"]
    assert codes(await gql(kit, TAGS, None, {"m": member["id"], "add": ["x" * 500]})) == ["validation_error"]
    timeline = (await gql(kit, MEMBER, None, {"id": member["id"]}))["data"]["member"]["timeline"]["items"]
    assert [i["type"] for i in timeline] == ["member"]
