"""Notes and the member timeline: newest first, merged across sources, keyset-paginated."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from app.domain.members.hooks import TIMELINE_SOURCES, timeline_source
from app.domain.members.schemas import TimelineItem
from tests.factories import new_tenant
from tests.members.helpers import assert_problem, make_member, patient_token


async def add_notes(kit, member_id: str, bodies: list[str], token: str | None = None) -> list[dict]:
    notes = []
    for body in bodies:
        r = await kit.post(f"/members/{member_id}/notes", {"body": body}, token=token)
        assert r.status_code == 201, r.text
        notes.append(r.json())
    return notes


async def walk(kit, member_id: str, limit: int, token: str | None = None, **params) -> list[dict]:
    items, cursor = [], None
    while True:
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        r = await kit.get(f"/members/{member_id}/timeline", token=token, params=query)
        assert r.status_code == 200, r.text
        assert len(r.json()["items"]) <= limit
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


def sort_key(item: dict) -> tuple[datetime, str]:
    return datetime.fromisoformat(item["occurred_at"]), item["id"]


async def test_notes_newest_first_then_the_member_item(client):
    kit = await new_tenant(client)
    store = await kit.store()
    front_desk = await kit.staff(["front_desk"], [store])
    member = await make_member(kit, "许一", source_channel="美团")
    notes = await add_notes(kit, member["id"], ["初诊", "复诊"])
    notes += await add_notes(kit, member["id"], ["电话回访"], token=front_desk["token"])
    assert notes[2]["author_type"] == "staff" and notes[2]["author_id"] == front_desk["id"]

    r = await kit.get(f"/members/{member['id']}/timeline")
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["type"] for i in items] == ["note", "note", "note", "member"]
    assert [i["data"].get("body") for i in items[:3]] == ["电话回访", "复诊", "初诊"]
    assert items[3]["id"] == f"member:{member['id']}" and items[3]["data"] == {"source_channel": "美团"}
    assert items == sorted(items, key=sort_key, reverse=True)
    for item in items:
        assert datetime.fromisoformat(item["occurred_at"]).utcoffset() is not None

    assert [i["type"] for i in (await kit.get(f"/members/{member['id']}/timeline",
                                              params={"type": "member"})).json()["items"]] == ["member"]
    only_notes = (await kit.get(f"/members/{member['id']}/timeline", params={"type": "note"})).json()["items"]
    assert len(only_notes) == 3 and {i["type"] for i in only_notes} == {"note"}
    own = await kit.get(f"/members/{member['id']}/timeline", token=patient_token(kit, member["id"]))
    # Staff notes are internal: the patient's own timeline leaves them out.
    assert own.status_code == 200 and [i["type"] for i in own.json()["items"]] == ["member"]

    marketing = await kit.staff(["marketing"], [store])
    assert_problem(await kit.post(f"/members/{member['id']}/notes", {"body": "营销"}, token=marketing["token"]),
                   403, "permission_denied")
    for bad in ({}, {"body": ""}, {"body": "   "}, {"body": "长" * 4001}, {"body": 5}, {"body": "ok", "pinned": True}):
        r = await kit.post(f"/members/{member['id']}/notes", bad)
        assert_problem(r, 422, "validation_error")
    assert len((await kit.get(f"/members/{member['id']}/timeline", params={"type": "note"})).json()["items"]) == 3


async def test_unknown_timeline_type_is_a_bad_request(client):
    kit = await new_tenant(client)
    member = await make_member(kit, "许二")
    for types in (["visits"], ["note", "visits"], [""]):
        r = await kit.get(f"/members/{member['id']}/timeline", params={"type": types})
        body = assert_problem(r, 400, "unknown_timeline_type")
        assert "note" in body["detail"] and "member" in body["detail"]
    for cursor in ("garbage", "W10", "WyIyMDI0LTAxLTAxVDAwOjAwOjAwIiwgIngiXQ"):  # the last: a naive time
        assert_problem(await kit.get(f"/members/{member['id']}/timeline", params={"cursor": cursor}), 400,
                       "invalid_cursor")
    assert_problem(await kit.get(f"/members/{member['id']}/timeline", params={"limit": 0}), 422, field="limit")


async def test_pagination_across_sources_returns_every_item_once_in_order(client):
    kit = await new_tenant(client)
    member = await make_member(kit, "许三")
    bystander = await make_member(kit, "许四")
    notes = await add_notes(kit, member["id"], [f"备注{i}" for i in range(5)])
    await add_notes(kit, bystander["id"], ["别人的备注"])
    created = [datetime.fromisoformat(n["created_at"]) for n in notes]
    # Visits interleave with the notes, tie with one exactly, and tie among themselves.
    times = [created[0] + timedelta(microseconds=1), created[2], created[2], created[3] - timedelta(microseconds=1),
             created[4] + timedelta(seconds=1), created[4] + timedelta(seconds=1), created[4] + timedelta(seconds=2)]
    visits = [TimelineItem(type="test_visit", occurred_at=at, id=f"test_visit:{i:02d}", title="到店",
                           data={"n": i}) for i, at in enumerate(times)]
    calls = []

    @timeline_source("test_visit")
    async def visit_source(session, tenant_id, member_id, before, limit):
        calls.append(limit)
        if member_id != UUID(member["id"]):
            return []
        rows = [v for v in visits if before is None or (v.occurred_at, v.id) < before]
        return sorted(rows, key=lambda v: (v.occurred_at, v.id), reverse=True)[:limit]

    try:
        everything = (await kit.get(f"/members/{member['id']}/timeline", params={"limit": 200})).json()["items"]
        assert len(everything) == len(notes) + len(visits) + 1
        assert everything == sorted(everything, key=sort_key, reverse=True)
        assert everything[-1]["type"] == "member"
        assert len({i["id"] for i in everything}) == len(everything)
        for limit in (1, 2, 3, 5, 13, 14):
            assert await walk(kit, member["id"], limit) == everything, limit
        visits_only = await walk(kit, member["id"], 2, type="test_visit")
        assert [i["id"] for i in visits_only] == [i["id"] for i in everything if i["type"] == "test_visit"]
        mixed = await walk(kit, member["id"], 3, type=["test_visit", "note"])
        assert mixed == [i for i in everything if i["type"] != "member"]
        assert all(limit <= 201 for limit in calls)
        bystanders = await walk(kit, bystander["id"], 1)
        assert [i["type"] for i in bystanders] == ["note", "member"]
    finally:
        TIMELINE_SOURCES.pop("test_visit")
    assert "test_visit" not in {i["type"] for i in await walk(kit, member["id"], 50)}
    assert_problem(await kit.get(f"/members/{member['id']}/timeline", params={"type": "test_visit"}), 400)


async def test_timeline_of_another_tenants_member_is_not_found(client):
    kit = await new_tenant(client)
    elsewhere = await new_tenant(client)
    member = await make_member(elsewhere, "许五")
    assert_problem(await kit.get(f"/members/{member['id']}/timeline"), 404, "member_not_found")
    assert_problem(await kit.post(f"/members/{member['id']}/notes", {"body": "x"}), 404, "member_not_found")
    assert (await elsewhere.get(f"/members/{member['id']}/timeline")).json()["items"][0]["type"] == "member"
