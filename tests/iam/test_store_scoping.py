"""A store-scoped role acts only in its assigned stores; a role with stores:all acts everywhere."""

from __future__ import annotations

import uuid

from tests.factories import new_tenant
from tests.iam.helpers import assert_problem, bearer


async def _chain(client):
    kit = await new_tenant(client)
    store_1 = await kit.store("一号店")
    store_2 = await kit.store("二号店")
    manager = await kit.staff(["store_manager"], [store_1])
    return kit, store_1, store_2, manager


def _new_staff(store_ids: list[str], roles: list[str] | None = None) -> dict:
    return {"username": f"s{uuid.uuid4().hex[:8]}", "password": "long-enough-pw", "display_name": "新员工",
            "roles": roles or ["therapist"], "store_ids": store_ids}


async def test_manager_changes_only_own_store(client):
    kit, store_1, store_2, manager = await _chain(client)
    # Changing a store needs stores:write, which the preset store manager does not hold at all
    # (permissions.py), so the refusal comes before the store scope is looked at.
    for store_id in (store_2, store_1):
        r = await client.patch(f"/api/v1/stores/{store_id}", json={"name": "改名"}, headers=bearer(manager["token"]))
        assert_problem(r, 403, "permission_denied")
    assert (await kit.get(f"/stores/{store_2}")).json()["name"] == "二号店"

    # A tenant role with stores:write but without stores:all is held to its stores.
    r = await kit.post("/roles", {"name": "store_editor", "permissions": ["stores:read", "stores:write"]})
    assert r.status_code == 201, r.text
    editor = await kit.staff(["store_editor"], [store_1])
    r = await client.patch(f"/api/v1/stores/{store_1}", json={"name": "一号旗舰店"}, headers=bearer(editor["token"]))
    assert r.status_code == 200 and r.json()["name"] == "一号旗舰店", r.text
    r = await client.patch(f"/api/v1/stores/{store_2}", json={"name": "改名"}, headers=bearer(editor["token"]))
    assert_problem(r, 403, "store_forbidden")


async def test_manager_creates_staff_only_for_own_store(client):
    kit, store_1, store_2, manager = await _chain(client)
    for stores in ([store_2], [store_1, store_2], []):
        r = await kit.post("/staff", _new_staff(stores), token=manager["token"])
        assert_problem(r, 403, "store_forbidden")
    r = await kit.post("/staff", _new_staff([store_1]), token=manager["token"])
    assert r.status_code == 201, r.text
    assert r.json()["store_ids"] == [store_1]
    # Nothing was left behind by the refused attempts.
    listed = (await kit.get("/staff", params={"store_id": store_2})).json()["items"]
    assert listed == []


async def test_manager_cannot_update_staff_of_another_store(client):
    kit, store_1, store_2, manager = await _chain(client)
    elsewhere = await kit.staff(["therapist"], [store_2])
    both = await kit.staff(["therapist"], [store_1, store_2])
    mine = await kit.staff(["therapist"], [store_1])

    for target in (elsewhere, both):
        for change in ({"display_name": "改"}, {"active": False}, {"password": "taken-over-now"}):
            r = await client.patch(f"/api/v1/staff/{target['id']}", json=change, headers=bearer(manager["token"]))
            assert_problem(r, 403, "store_forbidden")
        assert (await kit.get("/me", token=target["token"])).status_code == 200

    # Own staff: yes, but not moved into a store the manager does not run.
    r = await client.patch(f"/api/v1/staff/{mine['id']}", json={"store_ids": [store_1, store_2]},
                           headers=bearer(manager["token"]))
    assert_problem(r, 403, "store_forbidden")
    r = await client.patch(f"/api/v1/staff/{mine['id']}", json={"store_ids": [store_2]},
                           headers=bearer(manager["token"]))
    assert_problem(r, 403, "store_forbidden")
    r = await client.patch(f"/api/v1/staff/{mine['id']}", json={"display_name": "王师傅"},
                           headers=bearer(manager["token"]))
    assert r.status_code == 200 and r.json()["store_ids"] == [store_1], r.text

    # Nor can the manager widen their own reach.
    r = await client.patch(f"/api/v1/staff/{manager['id']}", json={"store_ids": [store_1, store_2]},
                           headers=bearer(manager["token"]))
    assert_problem(r, 403, "store_forbidden")
    assert (await kit.get("/me", token=manager["token"])).json()["store_ids"] == [store_1]


async def test_unassigned_staff_are_outside_a_managers_reach(client):
    """Staff without stores (like the owner) belong to no store a manager runs."""
    kit, _, _, manager = await _chain(client)
    owner_id = (await kit.get("/me")).json()["id"]
    r = await client.patch(f"/api/v1/staff/{owner_id}", json={"password": "taken-over-now"},
                           headers=bearer(manager["token"]))
    assert_problem(r, 403, "store_forbidden")


async def test_owner_acts_in_every_store(client):
    kit, store_1, store_2, _ = await _chain(client)
    assert (await kit.get("/me")).json()["store_ids"] is None
    r = await client.patch(f"/api/v1/stores/{store_2}", json={"name": "二号旗舰店"}, headers=kit.auth())
    assert r.status_code == 200 and r.json()["name"] == "二号旗舰店", r.text
    r = await kit.post("/staff", _new_staff([store_1, store_2]))
    assert r.status_code == 201, r.text
    elsewhere = await kit.staff(["therapist"], [store_2])
    r = await client.patch(f"/api/v1/staff/{elsewhere['id']}", json={"store_ids": [store_1], "display_name": "调店"},
                           headers=kit.auth())
    assert r.status_code == 200 and r.json()["store_ids"] == [store_1], r.text


async def test_unknown_or_foreign_store_is_not_found(client):
    kit, store_1, _, _ = await _chain(client)
    other = await new_tenant(client)
    foreign_store = await other.store()
    r = await kit.post("/staff", _new_staff([foreign_store]))
    assert_problem(r, 404, "store_not_found")
    r = await client.patch(f"/api/v1/stores/{foreign_store}", json={"name": "x"}, headers=kit.auth())
    assert_problem(r, 404, "store_not_found")
    assert (await other.get(f"/stores/{foreign_store}")).json()["name"] != "x"
