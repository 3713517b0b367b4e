"""Hostile and mistaken input on every members endpoint: always a 4xx problem+json naming what was wrong,
never a 500, and nothing written."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx

from tests.factories import new_tenant
from tests.members.helpers import (
    BAD_CHECK_DIGIT_ID,
    PROBLEM_JSON,
    make_member,
    names_field,
    new_phone,
    problem_fields,
    table_counts,
)

TABLES = ("members", "member_tags", "tags", "tag_groups", "tag_synonyms", "member_notes", "family_groups",
          "member_field_definitions", "audit_log", "outbox")


@dataclass
class Case:
    method: str
    path: str
    payload: Any
    status: int
    field: str | None = None  # the field the answer must name
    code: str | None = None


async def send(kit, case: Case) -> httpx.Response:
    url, headers = f"/api/v1{case.path}", kit.auth()
    if case.method == "GET":
        return await kit.client.get(url, params=case.payload, headers=headers)
    return await kit.client.request(case.method, url, json=case.payload, headers=headers)


def mismatch(case: Case, r: httpx.Response) -> str | None:
    """Why the answer is not the expected problem, or None."""
    if r.status_code != case.status or not r.headers.get("content-type", "").startswith(PROBLEM_JSON):
        return f"{r.status_code} {r.text[:300]}"
    body = r.json()
    if case.code is not None and body.get("code") != case.code:
        return f"code {body.get('code')}: {r.text[:300]}"
    if case.field is not None and not names_field(body, case.field):
        return f"field not named: {r.text[:300]}"
    return None


async def world(client):
    """A tenant with a member, store, staff, tag group, field and family, and another tenant's ids."""
    kit = await new_tenant(client)
    other = await new_tenant(client)
    store, foreign_store = await kit.store(), await other.store()
    staff, foreign_staff = await kit.staff(["consultant"], [store]), await other.staff(["consultant"], [foreign_store])
    member = await make_member(kit, "张三", home_store_id=store)
    second = await make_member(kit, "李四")
    foreign_member = await make_member(other, "外人")
    group = (await kit.post("/tag-groups", {"name": "等级", "exclusive": True})).json()
    foreign_group = (await other.post("/tag-groups", {"name": "等级"})).json()
    field = (await kit.post("/member-fields", {"key": "pain", "label": "疼痛", "type": "scale",
                                               "min_value": 0, "max_value": 10})).json()
    foreign_field = (await other.post("/member-fields", {"key": "pain", "label": "疼痛", "type": "text"})).json()
    family = (await kit.post("/families", {"name": "张家", "head_member_id": member["id"]})).json()
    foreign_family = (await other.post("/families", {"name": "外家", "head_member_id": foreign_member["id"]})).json()
    return kit, {
        "store": store, "foreign_store": foreign_store, "staff": staff["id"], "foreign_staff": foreign_staff["id"],
        "member": member["id"], "second": second, "foreign_member": foreign_member["id"], "group": group["id"],
        "foreign_group": foreign_group["id"], "field": field["id"], "foreign_field": foreign_field["id"],
        "family": family["id"], "foreign_family": foreign_family["id"],
    }


def member_cases(ids: dict[str, Any]) -> list[Case]:
    m, phone = f"/members/{ids['member']}", new_phone()
    future = (date.today() + timedelta(days=2)).isoformat()

    def create(**fields) -> dict:
        return {"name": "王五", "phone": phone, **fields}

    bad_fields = [
        ({"name": "名" * 51}, "name"), ({"name": ""}, "name"), ({"name": "   "}, "name"), ({"name": 123}, "name"),
        ({"name": ["张三"]}, "name"), ({"phone": "12345"}, "phone"), ({"phone": 13812345678}, "phone"),
        ({"phone": "abcdefghijk"}, "phone"), ({"phone": "+86 12345678901"}, "phone"), ({"phone": "1" * 31}, "phone"),
        ({"id_number": BAD_CHECK_DIGIT_ID}, "id_number"), ({"id_number": "12345"}, "id_number"),
        ({"id_number": "110105194913310028"}, "id_number"), ({"birthday": "1899-12-31"}, "birthday"),
        ({"birthday": future}, "birthday"), ({"birthday": "2024-02-30"}, "birthday"),
        ({"birthday": "yesterday"}, "birthday"), ({"gender": "unknown"}, "gender"), ({"gender": 1}, "gender"),
        ({"tags": [f"标签{i}" for i in range(60)]}, "tags"), ({"tags": [""]}, "tags"), ({"tags": "VIP"}, "tags"),
        ({"tags": ["长" * 31]}, "tags"), ({"tags": [1]}, "tags"), ({"foo": 1}, "foo"),
        ({"custom_fields": "x"}, "custom_fields"), ({"custom_fields": {"pain": 11}}, "custom_fields.pain"),
        ({"custom_fields": {"nope": 1}}, "custom_fields.nope"),
        ({"health": {"allergy_history": 1}}, "health.allergy_history"), ({"health": {"blood": "A"}}, "health.blood"),
        ({"health": {"constitution": "气虚"}}, "health.constitution"), ({"health": "healthy"}, "health"),
        ({"health": {"constitution": ["体" * 21]}}, "health.constitution"),
        ({"health": {"constitution": [""]}}, "health.constitution"),
        ({"health": {"constitution": ["气虚"] * 10}}, "health.constitution"),
        ({"home_store_id": ids["foreign_store"]}, "home_store_id"), ({"home_store_id": "nope"}, "home_store_id"),
        ({"home_store_id": str(uuid.uuid4())}, "home_store_id"),
        ({"owner_staff_id": ids["foreign_staff"]}, "owner_staff_id"),
        ({"owner_staff_id": ids["member"]}, "owner_staff_id"),
        ({"referrer_id": ids["foreign_member"]}, "referrer_id"), ({"referrer_id": str(uuid.uuid4())}, "referrer_id"),
        ({"address": "址" * 301}, "address"), ({"notes": "注" * 2001}, "notes"),
        ({"source_channel": "渠" * 51}, "source_channel"), ({"status": "erased"}, "status"),
        ({"merged_into_id": ids["member"]}, "merged_into_id"),
    ]
    cases = [Case("POST", "/members", create(**fields), 422, field) for fields, field in bad_fields]
    cases += [Case("PATCH", m, fields, 422, field) for fields, field in bad_fields]
    cases += [
        Case("POST", "/members", {}, 422, "name"), Case("POST", "/members", {"name": "王五"}, 422, "phone"),
        Case("POST", "/members", [], 422), Case("POST", "/members", "张三", 422),
        Case("POST", "/members", create(phone=ids["second"]["phone"]), 409, "phone", "member_phone_exists"),
        Case("PATCH", m, {"phone": ids["second"]["phone"]}, 409, "phone", "member_phone_exists"),
        Case("PATCH", m, {"referrer_id": ids["member"]}, 422, "referrer_id"),
        Case("PATCH", m, [], 422), Case("PATCH", m, {"custom_fields": []}, 422, "custom_fields"),
        Case("PATCH", f"/members/{ids['foreign_member']}", {"name": "改"}, 404, code="member_not_found"),
        Case("PATCH", "/members/not-a-uuid", {"name": "改"}, 422, "member_id"),
        Case("PATCH", f"/members/{uuid.uuid4()}", {"name": "改"}, 404, code="member_not_found"),
    ]
    return cases


def query_cases(ids: dict[str, Any]) -> list[Case]:
    m = f"/members/{ids['member']}"
    bad_params = [
        ({"limit": 0}, "limit"), ({"limit": 201}, "limit"), ({"limit": "abc"}, "limit"), ({"limit": -1}, "limit"),
        ({"status": "deleted"}, "status"), ({"tag_mode": "most"}, "tag_mode"), ({"store_id": "x"}, "store_id"),
        ({"owner_staff_id": "x"}, "owner_staff_id"), ({"last_visit_from": "2024-13-01"}, "last_visit_from"),
        ({"last_visit_to": "soon"}, "last_visit_to"), ({"q": "查" * 51}, "q"), ({"q": "张\x00"}, "q"),
    ]
    cases = [Case("GET", "/members", params, 422, field) for params, field in bad_params]
    cases += [
        Case("GET", "/members", {"cursor": "garbage"}, 400, code="invalid_cursor"),
        Case("GET", "/members", {"cursor": "eyJhIjogMX0"}, 400, code="invalid_cursor"),
        Case("GET", "/members", {"cursor": "MTIz"}, 400, code="invalid_cursor"),
        Case("GET", "/members/duplicates", {"limit": 0}, 422, "limit"),
        Case("GET", "/members/not-a-uuid", None, 422, "member_id"),
        Case("GET", f"/members/{ids['foreign_member']}", None, 404, code="member_not_found"),
        Case("GET", f"/members/{ids['foreign_member']}/export", None, 404, code="member_not_found"),
        Case("GET", f"/members/{ids['foreign_member']}/timeline", None, 404, code="member_not_found"),
        Case("GET", f"{m}/timeline", {"type": "bogus"}, 400, code="unknown_timeline_type"),
        Case("GET", f"{m}/timeline", {"cursor": "garbage"}, 400, code="invalid_cursor"),
        Case("GET", f"{m}/timeline", {"limit": 500}, 422, "limit"),
        Case("GET", f"/families/{ids['foreign_family']}", None, 404, code="family_not_found"),
        Case("GET", "/families/not-a-uuid", None, 422, "family_id"),
        Case("GET", "/tags", {"group_id": "x"}, 422, "group_id"),
    ]
    return cases


def action_cases(ids: dict[str, Any]) -> list[Case]:
    m, foreign = f"/members/{ids['member']}", f"/members/{ids['foreign_member']}"
    family = f"/families/{ids['family']}"
    return [
        Case("POST", f"{m}/tags", {"add": "VIP"}, 422, "add"),
        Case("POST", f"{m}/tags", {"add": [f"t{i}" for i in range(60)]}, 422, "add"),
        Case("POST", f"{m}/tags", {"remove": [""]}, 422, "remove"),
        Case("POST", f"{m}/tags", {"tag": ["x"]}, 422, "tag"),
        Case("POST", f"{foreign}/tags", {"add": ["x"]}, 404, code="member_not_found"),
        Case("POST", f"{m}/notes", {}, 422, "body"),
        Case("POST", f"{m}/notes", {"body": None}, 422, "body"),
        Case("POST", f"{foreign}/notes", {"body": "x"}, 404, code="member_not_found"),
        Case("POST", f"{m}/erase", {}, 422, "reason"),
        Case("POST", f"{m}/erase", {"reason": "x"}, 422, "reason"),
        Case("POST", f"{m}/erase", {"reason": "理由" * 251}, 422, "reason"),
        Case("POST", f"{foreign}/erase", {"reason": "本人申请"}, 404, code="member_not_found"),
        Case("POST", f"{m}/merge", {"duplicate_id": "x"}, 422, "duplicate_id"),
        Case("POST", f"{m}/merge", {"duplicate_id": ids["member"]}, 422, "duplicate_id"),
        Case("POST", f"{m}/merge", {"duplicate_id": ids["foreign_member"]}, 404, code="member_not_found"),
        Case("POST", f"{m}/merge", {"duplicate_id": ids["second"]["id"], "reason": "因" * 501}, 422, "reason"),
        Case("POST", "/tag-groups", {"name": "组" * 31}, 422, "name"),
        Case("POST", "/tag-groups", {"name": "组", "position": -1}, 422, "position"),
        Case("POST", "/tag-groups", {"name": "组", "exclusive": "maybe"}, 422, "exclusive"),
        Case("POST", "/tag-groups", {"name": "等级"}, 409, "name", "tag_group_exists"),
        Case("POST", "/tags", {"name": "标", "color": "red"}, 422, "color"),
        Case("POST", "/tags", {"name": "标", "group_id": ids["foreign_group"]}, 422, "group_id"),
        Case("POST", "/tags", {"name": ""}, 422, "name"),
        Case("POST", "/tag-synonyms", {"synonym": "", "tag_name": "颈椎病"}, 422, "synonym"),
        Case("POST", "/tag-synonyms", {"synonym": "落枕"}, 422, "tag_name"),
        Case("POST", "/member-fields", {"key": "Pain", "label": "x", "type": "text"}, 422, "key"),
        Case("POST", "/member-fields", {"key": "p2", "label": "x", "type": "number", "min_value": "NaN"}, 422,
             "min_value"),
        Case("PATCH", f"/member-fields/{ids['field']}", {"label": ""}, 422, "label"),
        Case("PATCH", f"/member-fields/{ids['field']}", {"key": "other"}, 422, "key"),
        Case("PATCH", f"/member-fields/{ids['foreign_field']}", {"label": "x"}, 404),
        Case("POST", "/families", {"name": "", "head_member_id": ids["second"]["id"]}, 422, "name"),
        Case("POST", "/families", {"name": "家"}, 422, "head_member_id"),
        Case("POST", "/families", {"name": "家", "head_member_id": ids["foreign_member"]}, 404,
             code="member_not_found"),
        Case("POST", f"{family}/members", {"member_id": ids["second"]["id"], "relation": "关" * 21}, 422, "relation"),
        Case("POST", f"{family}/members", {"member_id": ids["foreign_member"], "relation": "child"}, 404,
             code="member_not_found"),
        Case("POST", f"/families/{ids['foreign_family']}/members", {"member_id": ids["second"]["id"],
                                                                  "relation": "child"}, 404, code="family_not_found"),
        Case("DELETE", f"{family}/members/{ids['foreign_member']}", None, 404),
        Case("DELETE", f"{family}/members/{ids['member']}", None, 409, code="family_head"),
    ]


async def test_bad_input_is_a_problem_naming_the_field_and_writes_nothing(client):
    kit, ids = await world(client)
    before = await table_counts(kit.tenant_id, TABLES)
    failures = []
    for case in member_cases(ids) + query_cases(ids) + action_cases(ids):
        r = await send(kit, case)
        why = mismatch(case, r)
        if why:
            failures.append(f"{case.method} {case.path} {str(case.payload)[:80]} → {why}")
    assert not failures, "\n".join(failures)
    assert await table_counts(kit.tenant_id, TABLES) == before


async def test_malformed_bodies(client):
    kit, ids = await world(client)
    before = await table_counts(kit.tenant_id, TABLES)
    headers = {**kit.auth(), "content-type": "application/json"}
    for path in ("/members", f"/members/{ids['member']}/notes", f"/members/{ids['member']}/tags"):
        r = await kit.client.post(f"/api/v1{path}", content=b'{"name": "\xe5', headers=headers)
        assert r.status_code == 400 and r.headers["content-type"].startswith(PROBLEM_JSON), r.text
        r = await kit.client.post(f"/api/v1{path}", content=b"not json", headers=headers)
        assert r.status_code == 400 and r.json()["code"] == "malformed_json", r.text
    r = await kit.post("/members", {"name": "张\u0000三", "phone": new_phone()})
    assert r.status_code == 422 and "name" in problem_fields(r.json()), r.text
    r = await kit.client.patch(f"/api/v1/members/{ids['member']}", content=b'{"notes": "x"', headers=headers)
    assert r.status_code == 400 and r.headers["content-type"].startswith(PROBLEM_JSON), r.text
    assert await table_counts(kit.tenant_id, TABLES) == before


async def test_the_same_phone_twice_at_once_creates_one_member(client):
    kit = await new_tenant(client)
    phone = new_phone()
    results = await asyncio.gather(*(kit.post("/members", {"name": f"并发{i}", "phone": phone}) for i in range(4)))
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409], [r.text for r in results]
    for r in results:
        if r.status_code == 409:
            assert r.headers["content-type"].startswith(PROBLEM_JSON)
    counts = await table_counts(kit.tenant_id, ("members",))
    assert counts == {"members": 1}
