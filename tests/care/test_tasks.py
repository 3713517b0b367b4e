"""Follow-up tasks: the contract's list, who may change what, overdue for managers, the sidebar's
GraphQL, and the member timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.cards.helpers import assert_problem, make_clinic
from tests.platform.test_graphql import codes, gql


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


async def test_task_list_permissions_overdue_graphql_and_timeline(client):
    clinic = await make_clinic(client)
    kit = clinic.kit
    therapist = clinic.therapist
    colleague = await kit.staff(["therapist"], [clinic.store])
    manager = await kit.staff(["store_manager"], [clinic.store])

    r = await kit.post("/tasks", {"kind": "follow_up", "title": "术后回访", "member_id": clinic.member,
                                  "assignee_id": therapist["id"], "due_at": _iso(timedelta(hours=-2))})
    assert r.status_code == 201, r.text
    late = r.json()
    assert late["store_id"] is None and late["overdue"] is True
    r = await kit.post("/tasks", {"title": "自己的待办", "due_at": _iso(timedelta(days=1)),
                                  "store_id": clinic.store}, token=therapist["token"])
    assert r.status_code == 201, r.text
    own = r.json()
    assert own["assignee_id"] == therapist["id"] and own["kind"] == "custom"

    # The contract's list: filters and fields.
    r = await kit.get("/tasks", params={"assignee_id": therapist["id"], "status": "open"}, token=therapist["token"])
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert {i["id"] for i in items} == {late["id"], own["id"]}
    assert {"id", "kind", "member_id", "assignee_id", "status", "due_at"} <= set(items[0])
    r = await kit.get("/tasks", params={"member_id": clinic.member})
    assert [i["id"] for i in r.json()["items"]] == [late["id"]]

    # Overdue is the managers' list.
    assert_problem(await kit.get("/tasks", params={"overdue": "true"}, token=therapist["token"]), 403)
    r = await kit.get("/tasks", params={"overdue": "true"}, token=manager["token"])
    assert [i["id"] for i in r.json()["items"]] == [late["id"]]

    # Only the assignee or a manager changes a task; only a manager reassigns.
    path = f"/api/v1/tasks/{late['id']}"
    r = await client.patch(path, json={"status": "done"}, headers=kit.auth(colleague["token"]))
    assert_problem(r, 403, "not_task_assignee")
    r = await client.patch(path, json={"assignee_id": colleague["id"]}, headers=kit.auth(therapist["token"]))
    assert_problem(r, 403, "not_task_manager")
    r = await client.patch(path, json={"status": "finished"}, headers=kit.auth(therapist["token"]))
    assert assert_problem(r, 422)["errors"][0]["field"] == "status"

    # The sidebar: my open tasks, then complete one with the result of the call.
    mine = await gql(kit, "{ myTasks { items { id title overdue status } } }", token=therapist["token"])
    assert {t["id"] for t in mine["data"]["myTasks"]["items"]} == {late["id"], own["id"]}
    done = await gql(kit, "mutation($id: ID!) { completeTask(id: $id, resultNote: \"已电话回访，恢复良好\") "
                          "{ status resultNote completedAt } }", token=therapist["token"], variables={"id": late["id"]})
    assert done["data"]["completeTask"]["status"] == "done", done
    again = await gql(kit, "mutation($id: ID!) { completeTask(id: $id) { status } }", token=colleague["token"],
                      variables={"id": own["id"]})
    assert codes(again) == ["not_task_assignee"]
    r = await kit.get("/tasks", params={"overdue": "true"}, token=manager["token"])
    assert r.json()["items"] == []

    timeline = (await kit.get(f"/members/{clinic.member}/timeline")).json()["items"]
    assert [(i["type"], i["data"]["status"], i["data"]["result_note"]) for i in timeline if i["type"] == "task"] == [
        ("task", "done", "已电话回访，恢复良好")]
