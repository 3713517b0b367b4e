"""The member-profile form engine: every field type validated on every write, required fields,
and definitions that evolve (retired options, deactivated fields, relabelling) without losing values."""

from __future__ import annotations

import json

import pytest

from tests.factories import new_tenant
from tests.members.helpers import assert_problem, make_member, new_phone, patch, search_ids

DEFINITIONS = [
    {"key": "remark", "label": "备注", "type": "text", "max_length": 10},
    {"key": "weight", "label": "体重", "type": "number", "min_value": 0, "max_value": 300},
    {"key": "first_visit", "label": "初诊日期", "type": "date"},
    {"key": "tongue_color", "label": "舌色", "type": "single_select",
     "options": [{"value": "淡红"}, {"value": "红"}, {"value": "紫"}]},
    {"key": "tongue_coating", "label": "舌苔", "type": "multi_select",
     "options": [{"value": "齿痕"}, {"value": "厚腻"}, {"value": "剥落"}]},
    {"key": "pain", "label": "疼痛评分", "type": "scale", "min_value": 0, "max_value": 10},
    {"key": "smoker", "label": "吸烟", "type": "boolean"},
]
VALID = {"remark": "怕冷", "weight": 62.5, "first_visit": "2024-01-05", "tongue_color": "红",
         "tongue_coating": ["齿痕", "厚腻"], "pain": 7, "smoker": False}

INVALID = [
    ("remark", 123), ("remark", "十一个字十一个字十一个"), ("remark", ["怕冷"]),
    ("weight", "62"), ("weight", True), ("weight", -1), ("weight", 300.5), ("weight", {"kg": 60}),
    ("weight", 10**400),
    ("first_visit", "2024-02-30"), ("first_visit", "yesterday"), ("first_visit", 20240105),
    ("first_visit", "20240105"), ("first_visit", "2024-01-05T10:00:00"), ("first_visit", "1800-01-01"),
    ("tongue_color", "黑"), ("tongue_color", ["红"]), ("tongue_color", 1), ("tongue_color", ""),
    ("tongue_coating", "齿痕"), ("tongue_coating", ["齿痕", "未知"]), ("tongue_coating", [1]),
    ("tongue_coating", [["齿痕"]]), ("tongue_coating", {"齿痕": True}),
    ("pain", 7.5), ("pain", 11), ("pain", -1), ("pain", "7"), ("pain", True),
    ("smoker", "yes"), ("smoker", 1), ("smoker", "true"), ("smoker", 0),
]


async def define(kit, *definitions: dict) -> dict[str, dict]:
    out = {}
    for definition in definitions:
        r = await kit.post("/member-fields", definition)
        assert r.status_code == 201, r.text
        out[definition["key"]] = r.json()
    return out


@pytest.fixture
async def form(client):
    kit = await new_tenant(client)
    await define(kit, *DEFINITIONS)
    return kit


async def test_valid_values_of_every_type_are_stored_and_returned(form):
    member = await make_member(form, "张三", custom_fields={**VALID, "tongue_coating": ["齿痕", "厚腻", "齿痕"]})
    assert member["custom_fields"] == VALID
    assert (await form.get(f"/members/{member['id']}")).json()["custom_fields"] == VALID
    changed = {"remark": "怕热", "weight": 70, "first_visit": "2023-12-31", "tongue_color": "紫",
               "tongue_coating": [], "pain": 0, "smoker": True}
    r = await patch(form, f"/members/{member['id']}", {"custom_fields": changed})
    assert r.status_code == 200, r.text
    assert r.json()["custom_fields"] == changed
    # Writing null removes a value; fields not named keep theirs.
    r = await patch(form, f"/members/{member['id']}", {"custom_fields": {"remark": None, "pain": 10.0}})
    assert r.status_code == 200, r.text
    assert r.json()["custom_fields"] == {**{k: v for k, v in changed.items() if k != "remark"}, "pain": 10}
    assert isinstance(r.json()["custom_fields"]["pain"], int)


@pytest.mark.parametrize(("key", "value"), INVALID, ids=[f"{k}={v!r}"[:40] for k, v in INVALID])
async def test_invalid_values_are_refused_naming_the_field(form, key, value):
    phone = new_phone()
    r = await form.post("/members", {"name": "李四", "phone": phone, "custom_fields": {key: value}})
    body = assert_problem(r, 422, field=f"custom_fields.{key}")
    assert body["field"] == f"custom_fields.{key}" and f"custom_fields.{key}" in body["detail"]
    assert await search_ids(form, q=phone) == []

    member = await make_member(form, "王五", custom_fields=VALID)
    r = await patch(form, f"/members/{member['id']}", {"custom_fields": {key: value}, "notes": "不应写入"})
    assert_problem(r, 422, field=f"custom_fields.{key}")
    after = (await form.get(f"/members/{member['id']}")).json()
    assert after["custom_fields"] == VALID and after["notes"] is None


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_non_finite_numbers_are_refused(form, literal):
    for key in ("weight", "pain"):
        body = f'{{"name": "赵六", "phone": "{new_phone()}", "custom_fields": {{"{key}": {literal}}}}}'
        r = await form.client.post("/api/v1/members", content=body.encode(),
                                   headers={**form.auth(), "content-type": "application/json"})
        assert_problem(r, 422, field=f"custom_fields.{key}")


async def test_an_undefined_key_is_refused(form):
    r = await form.post("/members", {"name": "钱七", "phone": new_phone(), "custom_fields": {"shoe_size": 42}})
    assert_problem(r, 422, "invalid_custom_field", "custom_fields.shoe_size")
    member = await make_member(form, "钱七")
    r = await patch(form, f"/members/{member['id']}", {"custom_fields": {"pain": 3, "Pain": 3}})
    assert_problem(r, 422, "invalid_custom_field", "custom_fields.Pain")
    assert (await form.get(f"/members/{member['id']}")).json()["custom_fields"] == {}


async def test_required_fields_on_create_but_not_on_partial_update(client):
    kit = await new_tenant(client)
    old = await make_member(kit, "老会员")
    await define(kit, {"key": "complaint", "label": "主诉", "type": "text", "required": True},
                 {"key": "coating", "label": "舌苔", "type": "multi_select", "required": True,
                  "options": [{"value": "齿痕"}]})
    r = await kit.post("/members", {"name": "孙八", "phone": new_phone(), "custom_fields": {"coating": ["齿痕"]}})
    assert_problem(r, 422, "invalid_custom_field", "custom_fields.complaint")
    for empty in ("", "   "):
        r = await kit.post("/members", {"name": "孙八", "phone": new_phone(),
                                        "custom_fields": {"complaint": empty, "coating": ["齿痕"]}})
        assert_problem(r, 422, field="custom_fields.complaint")
    r = await kit.post("/members", {"name": "孙八", "phone": new_phone(),
                                    "custom_fields": {"complaint": "头痛", "coating": []}})
    assert_problem(r, 422, field="custom_fields.coating")
    member = await make_member(kit, "孙八", custom_fields={"complaint": "头痛", "coating": ["齿痕"]})

    # Partial updates need not repeat required fields, and members from before the field need not have them.
    for target in (member, old):
        r = await patch(kit, f"/members/{target['id']}", {"notes": "复诊"})
        assert r.status_code == 200, r.text
    r = await patch(kit, f"/members/{old['id']}", {"custom_fields": {"coating": ["齿痕"]}})
    assert r.status_code == 200 and r.json()["custom_fields"] == {"coating": ["齿痕"]}, r.text
    # …but a required value cannot be cleared.
    assert_problem(await patch(kit, f"/members/{member['id']}", {"custom_fields": {"complaint": None}}),
                   422, field="custom_fields.complaint")
    assert (await kit.get(f"/members/{member['id']}")).json()["custom_fields"]["complaint"] == "头痛"


async def test_retired_options_stay_valid_for_old_values_only(client):
    kit = await new_tenant(client)
    fields = await define(kit, DEFINITIONS[3], DEFINITIONS[4], DEFINITIONS[5])
    holder = await make_member(kit, "周九", custom_fields={"tongue_color": "紫", "tongue_coating": ["齿痕", "剥落"]})
    other = await make_member(kit, "吴十", custom_fields={"tongue_color": "红"})

    for key, retired in (("tongue_color", "紫"), ("tongue_coating", "剥落")):
        options = [{**o, "retired": o["value"] == retired} for o in fields[key]["options"]]
        r = await patch(kit, f"/member-fields/{fields[key]['id']}", {"options": options})
        assert r.status_code == 200, r.text
        assert {o["value"]: o["retired"] for o in r.json()["options"]}[retired] is True

    r = await kit.get(f"/members/{holder['id']}")
    assert r.json()["custom_fields"] == {"tongue_color": "紫", "tongue_coating": ["齿痕", "剥落"]}
    for change in ({"notes": "随访"}, {"custom_fields": {"pain": 4}},
                   {"custom_fields": {"tongue_color": "紫", "tongue_coating": ["剥落", "厚腻"]}}):
        r = await patch(kit, f"/members/{holder['id']}", change)
        assert r.status_code == 200, (change, r.text)
    assert r.json()["custom_fields"] == {"tongue_color": "紫", "tongue_coating": ["剥落", "厚腻"], "pain": 4}

    assert_problem(await kit.post("/members", {"name": "郑一", "phone": new_phone(),
                                               "custom_fields": {"tongue_color": "紫"}}),
                   422, field="custom_fields.tongue_color")
    assert_problem(await kit.post("/members", {"name": "郑一", "phone": new_phone(),
                                               "custom_fields": {"tongue_coating": ["剥落"]}}),
                   422, field="custom_fields.tongue_coating")
    assert_problem(await patch(kit, f"/members/{other['id']}", {"custom_fields": {"tongue_color": "紫"}}),
                   422, field="custom_fields.tongue_color")
    # Once a holder moves off a retired option, they cannot move back to it.
    assert (await patch(kit, f"/members/{holder['id']}", {"custom_fields": {"tongue_color": "红"}})).status_code == 200
    assert_problem(await patch(kit, f"/members/{holder['id']}", {"custom_fields": {"tongue_color": "紫"}}),
                   422, field="custom_fields.tongue_color")


async def test_removing_an_option_is_refused(client):
    kit = await new_tenant(client)
    field = (await define(kit, DEFINITIONS[3]))["tongue_color"]
    r = await patch(kit, f"/member-fields/{field['id']}", {"options": [{"value": "淡红"}, {"value": "红"}]})
    assert_problem(r, 409, "option_removed", "options")
    assert "紫" in r.json()["detail"]
    r = await patch(kit, f"/member-fields/{field['id']}",
                    {"options": [*field["options"], {"value": "青紫", "label": "青紫色"}]})
    assert r.status_code == 200, r.text
    assert [o["value"] for o in r.json()["options"]] == ["淡红", "红", "紫", "青紫"]
    assert_problem(await patch(kit, f"/member-fields/{field['id']}", {"options": []}), 409, "option_removed")
    member = await make_member(kit, "冯二", custom_fields={"tongue_color": "青紫"})
    assert member["custom_fields"] == {"tongue_color": "青紫"}


async def test_deactivated_fields_keep_values_but_refuse_writes(client):
    kit = await new_tenant(client)
    fields = await define(kit, DEFINITIONS[5], {"key": "diet", "label": "饮食", "type": "text", "required": True})
    member = await make_member(kit, "陈三", custom_fields={"pain": 6, "diet": "素食"})
    for key in ("pain", "diet"):
        r = await patch(kit, f"/member-fields/{fields[key]['id']}", {"active": False})
        assert r.status_code == 200 and r.json()["active"] is False, r.text

    assert (await kit.get(f"/members/{member['id']}")).json()["custom_fields"] == {}
    assert_problem(await patch(kit, f"/members/{member['id']}", {"custom_fields": {"pain": 2}}),
                   422, "invalid_custom_field", "custom_fields.pain")
    # An inactive required field is no longer required.
    assert (await make_member(kit, "褚四"))["custom_fields"] == {}
    exported = (await kit.get(f"/members/{member['id']}/export")).json()
    assert exported["member"]["custom_fields"] == {"pain": 6, "diet": "素食"}

    assert (await patch(kit, f"/member-fields/{fields['pain']['id']}", {"active": True})).status_code == 200
    assert (await kit.get(f"/members/{member['id']}")).json()["custom_fields"] == {"pain": 6}


async def test_labels_and_order_change_freely(client):
    kit = await new_tenant(client)
    fields = await define(kit, {**DEFINITIONS[0], "position": 1}, {**DEFINITIONS[6], "position": 2})
    member = await make_member(kit, "卫五", custom_fields={"remark": "怕冷", "smoker": True})
    r = await patch(kit, f"/member-fields/{fields['smoker']['id']}",
                    {"label": "是否吸烟", "position": 0, "help_text": "近一年内"})
    assert r.status_code == 200, r.text
    listed = (await kit.get("/member-fields")).json()
    assert [(d["key"], d["label"]) for d in listed] == [("smoker", "是否吸烟"), ("remark", "备注")]
    assert (await kit.get(f"/members/{member['id']}")).json()["custom_fields"] == {"remark": "怕冷", "smoker": True}
    assert_problem(await patch(kit, f"/member-fields/{fields['smoker']['id']}", {"type": "text"}),
                   422, "validation_error", "type")


@pytest.mark.parametrize(("definition", "field"), [
    ({"type": "single_select", "options": []}, "options"),
    ({"type": "multi_select"}, "options"),
    ({"type": "single_select", "options": [{"value": "a"}, {"value": "a"}]}, "options"),
    ({"type": "text", "options": [{"value": "a"}]}, "options"),
    ({"type": "scale"}, "min_value"),
    ({"type": "scale", "min_value": 0}, "min_value"),
    ({"type": "number", "min_value": 10, "max_value": 1}, "min_value"),
    ({"type": "boolean", "min_value": 0, "max_value": 1}, "min_value"),
    ({"type": "colour"}, "type"),
    ({"type": "text", "key": "Bad-Key"}, "key"),
    ({"type": "text", "label": ""}, "label"),
    ({"type": "text", "max_length": 0}, "max_length"),
    ({"type": "text", "unknown": 1}, "unknown"),
])
async def test_definition_validation(client, definition, field):
    kit = await new_tenant(client)
    body = {"key": "f1", "label": "字段", **definition}
    assert_problem(await kit.post("/member-fields", body), 422, field=field)
    assert (await kit.get("/member-fields")).json() == []


async def test_definition_updates_are_validated_too(client):
    kit = await new_tenant(client)
    fields = await define(kit, DEFINITIONS[1], DEFINITIONS[5])
    assert_problem(await patch(kit, f"/member-fields/{fields['weight']['id']}", {"min_value": 500}),
                   422, field="min_value")
    assert_problem(await patch(kit, f"/member-fields/{fields['pain']['id']}", {"max_value": None}),
                   422, field="min_value")
    assert_problem(await kit.post("/member-fields", DEFINITIONS[1]), 409, "field_exists", "key")
    listed = {d["key"]: d for d in (await kit.get("/member-fields")).json()}
    assert (listed["weight"]["min_value"], listed["pain"]["max_value"]) == (0, 10)
    other = await new_tenant(kit.client)
    assert_problem(await patch(other, f"/member-fields/{fields['weight']['id']}", {"label": "x"}), 404)


async def test_values_are_json_as_written(form):
    member = await make_member(form, "蒋六", custom_fields={"weight": 0, "pain": 0, "smoker": False, "remark": ""})
    raw = (await form.get(f"/members/{member['id']}")).text
    assert json.loads(raw)["custom_fields"] == {"weight": 0, "pain": 0, "smoker": False, "remark": ""}
