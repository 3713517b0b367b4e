"""Members' external identifiers: set by staff and integrations, unique per tenant, found by lookup, kept off
the member's own GET, following a merge, and kept apart between tenants."""

from __future__ import annotations

from tests.clinical.test_fhir import integration
from tests.factories import new_tenant
from tests.members.helpers import assert_problem
from tests.members.helpers import new_phone as phone

HIS = "urn:his:renji"


async def make(kit, name: str = "王芳") -> str:
    r = await kit.post("/members", {"name": name, "phone": phone()})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def put(kit, member_id: str, body: dict, token: str | None = None):
    return await kit.client.put(f"/api/v1/members/{member_id}/identifiers", json=body, headers=kit.auth(token))


async def listed(kit, member_id: str) -> set[tuple[str, str]]:
    r = await kit.get(f"/members/{member_id}/identifiers")
    assert r.status_code == 200, r.text
    return {(i["system"], i["value"]) for i in r.json()["items"]}


async def test_set_list_find_and_remove(client):
    kit = await new_tenant(client)
    member_id = await make(kit)
    r = await put(kit, member_id, {"system": HIS, "value": "P000123"})
    assert r.status_code == 200, r.text
    assert r.json() | {"created_at": None} == {"member_id": member_id, "system": HIS, "value": "P000123",
                                               "set_by_kind": "staff", "created_at": None}
    assert (await put(kit, member_id, {"system": HIS, "value": "P000123"})).status_code == 200  # no change
    assert (await put(kit, member_id, {"system": "https://emr.example.cn/pid", "value": "E-77"})).status_code == 200
    assert (await put(kit, member_id, {"system": HIS, "value": "P000124"})).status_code == 200  # two in one system
    assert await listed(kit, member_id) == {(HIS, "P000123"), (HIS, "P000124"), ("https://emr.example.cn/pid", "E-77")}

    found = await kit.get("/member-identifiers", params={"system": HIS, "value": "P000124"})
    assert found.status_code == 200 and found.json()["member_id"] == member_id
    assert_problem(await kit.get("/member-identifiers", params={"system": HIS, "value": "P9"}), 404,
                   "identifier_not_found")
    # Not on the member's own (hot) GET.
    assert "identifiers" not in (await kit.get(f"/members/{member_id}")).json()

    # Remove one value, then the rest of a system; removing what is not there is 404.
    r = await kit.delete(f"/members/{member_id}/identifiers", params={"system": HIS, "value": "P000124"})
    assert r.status_code == 204, r.text
    assert (await kit.delete(f"/members/{member_id}/identifiers", params={"system": HIS})).status_code == 204
    assert await listed(kit, member_id) == {("https://emr.example.cn/pid", "E-77")}
    assert_problem(await kit.delete(f"/members/{member_id}/identifiers", params={"system": HIS}), 404,
                   "identifier_not_found")
    assert_problem(await kit.delete(f"/members/{member_id}/identifiers"), 422, "validation_error", "system")


async def test_one_identifier_names_one_member(client):
    kit = await new_tenant(client)
    first, second = await make(kit, "李强"), await make(kit, "李强")
    assert (await put(kit, first, {"system": HIS, "value": "P1"})).status_code == 200
    assert_problem(await put(kit, second, {"system": HIS, "value": "P1"}), 409, "identifier_taken")
    assert await listed(kit, second) == set()


async def test_bad_identifiers_are_refused_naming_the_field(client):
    kit = await new_tenant(client)
    member_id = await make(kit)
    for body, field in (({"system": "renji", "value": "P1"}, "system"),
                        ({"system": "urn:his:renji|x", "value": "P1"}, "system"),
                        ({"system": HIS, "value": ""}, "value"),
                        ({"system": HIS, "value": "P\n1"}, "value"),
                        ({"system": HIS, "value": "x" * 129}, "value"),
                        ({"system": HIS}, "value"),
                        ({"system": HIS, "value": "P1", "extra": 1}, "extra"),
                        ({"system": "urn:careloop:member", "value": member_id}, "system")):
        assert_problem(await put(kit, member_id, body), 422, "validation_error", field)
    assert await listed(kit, member_id) == set()
    assert_problem(await put(kit, "00000000-0000-4000-8000-000000000000", {"system": HIS, "value": "P1"}), 404)


async def test_integrations_need_the_members_write_scope(client):
    kit = await new_tenant(client)
    member_id = await make(kit)
    reader = await integration(kit, ["members:read"])
    assert_problem(await put(kit, member_id, {"system": HIS, "value": "P1"}, reader), 403, "permission_denied")
    writer = await integration(kit, ["members:read", "members:write"])
    r = await put(kit, member_id, {"system": HIS, "value": "P1"}, writer)
    assert r.status_code == 200 and r.json()["set_by_kind"] == "integration", r.text
    found = await kit.client.get("/api/v1/member-identifiers", params={"system": HIS, "value": "P1"},
                                 headers=kit.auth(reader))
    assert found.status_code == 200 and found.json()["member_id"] == member_id
    front_desk = await kit.staff(["front_desk"], [await kit.store()])  # members:write
    assert (await put(kit, member_id, {"system": HIS, "value": "P2"}, front_desk["token"])).status_code == 200
    marketing = await kit.staff(["marketing"], [await kit.store()])  # members:read only
    assert_problem(await put(kit, member_id, {"system": HIS, "value": "P3"}, marketing["token"]), 403)


async def test_identifiers_follow_a_merge(client):
    kit = await new_tenant(client)
    survivor, duplicate = await make(kit, "周敏"), await make(kit, "周敏")
    assert (await put(kit, survivor, {"system": HIS, "value": "P100"})).status_code == 200
    assert (await put(kit, duplicate, {"system": HIS, "value": "P200"})).status_code == 200
    r = await kit.post(f"/members/{survivor}/merge", {"duplicate_id": duplicate, "reason": "重复建档"})
    assert r.status_code == 200, r.text
    assert r.json()["moved"]["member_identifiers"] == {"identifiers": 1}
    assert await listed(kit, survivor) == {(HIS, "P100"), (HIS, "P200")}
    found = await kit.get("/member-identifiers", params={"system": HIS, "value": "P200"})
    assert found.json()["member_id"] == survivor
    assert_problem(await put(kit, duplicate, {"system": HIS, "value": "P300"}), 409, "member_inactive")


async def test_tenants_keep_their_own_identifiers(client):
    a, b = await new_tenant(client), await new_tenant(client)
    in_a, in_b = await make(a), await make(b)
    assert (await put(a, in_a, {"system": HIS, "value": "P1"})).status_code == 200
    assert (await put(b, in_b, {"system": HIS, "value": "P1"})).status_code == 200  # unique per tenant only
    assert (await b.get("/member-identifiers", params={"system": HIS, "value": "P1"})).json()["member_id"] == in_b
    assert_problem(await b.get(f"/members/{in_a}/identifiers"), 404)
    assert_problem(await put(b, in_a, {"system": HIS, "value": "P2"}), 404)
