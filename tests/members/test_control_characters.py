"""Control characters: refused in names at input (422 naming the field), and never the reason a spreadsheet
export fails — rows stored before the rule may still hold them."""

from __future__ import annotations

import io
from uuid import UUID

from openpyxl import load_workbook

from app.domain.members.spreadsheets import Sheet, build_workbook, cell_value
from tests.factories import PASSWORD, new_tenant
from tests.members.helpers import assert_problem, execute_as_owner, make_member, new_phone, patch
from tests.members.test_import_export import csv_bytes, upload

# C0 controls (tab and newline included: a name is one line), DEL and C1 controls.
CONTROLS = ["\u0007", "\u001d", "\t", "\n", "\u007f", "\u0085", "\u009b"]


def test_cells_lose_what_xlsx_cannot_hold_and_keep_the_rest():
    assert cell_value("控\u0007制") == "控制"
    assert cell_value("a\u001db\u000bc\u000cd\ufffe") == "abcd"
    assert cell_value("第一行\n第二行\t制表") == "第一行\n第二行\t制表"
    assert cell_value("\u0001=1+1") == "'=1+1", "stripped first, then neutralised"
    assert cell_value(12) == 12 and cell_value(None) is None
    book = load_workbook(io.BytesIO(build_workbook([Sheet("表\u0007", ["列\u0002", "数"], [["值\u0003", 1]])])))
    sheet = book.worksheets[0]
    assert sheet.title == "表"
    assert list(sheet.iter_rows(values_only=True)) == [("列", "数"), ("值", 1)]


async def test_names_with_control_characters_are_refused_naming_the_field(client):
    kit = await new_tenant(client)
    member = await make_member(kit, "正常")
    for control in CONTROLS:
        bad = f"控{control}制"
        assert_problem(await kit.post("/members", {"name": bad, "phone": new_phone()}), 422, "validation_error", "name")
        assert_problem(await patch(kit, f"/members/{member['id']}", {"name": bad}), 422, "validation_error", "name")
        assert_problem(await kit.post("/members", {"name": "张三", "phone": new_phone(), "tags": [bad]}), 422,
                       "validation_error", "tags")
        assert_problem(await kit.post(f"/members/{member['id']}/tags", {"add": [bad]}), 422, "validation_error", "add")
        assert_problem(await kit.post("/tags", {"name": bad}), 422, "validation_error", "name")
        assert_problem(await kit.post("/tag-groups", {"name": bad}), 422, "validation_error", "name")
        assert_problem(await kit.post("/families", {"name": bad, "head_member_id": member["id"]}), 422,
                       "validation_error", "name")
    # An import row is checked by the same rule: that row is reported, naming the field.
    rows = [["姓名", "手机号", "备注"], ["控\u0007制", new_phone(), "肩颈" * 60], ["正常二", new_phone(), "腰" * 60]]
    r = await upload(kit, csv_bytes(rows), "members.csv")
    assert r.status_code == 200, r.text
    assert [(e["row"], e["field"]) for e in r.json()["errors"]] == [(2, "name")]
    # Multi-line text where it is legitimate, and Unicode format characters, are still accepted.
    r = await patch(kit, f"/members/{member['id']}", {"notes": "第一行\n第二行", "name": "\u202e张\u200d三"})
    assert r.status_code == 200, r.text

    store = await kit.store()
    bad = "静安\u001d店"
    assert_problem(await kit.post("/stores", {"name": bad}), 422, "validation_error", "name")
    assert_problem(await patch(kit, f"/stores/{store}", {"name": bad}), 422, "validation_error", "name")
    assert_problem(await kit.post("/staff", {"username": "ctrl1", "password": PASSWORD, "display_name": "陈\u0007明",
                                             "roles": ["therapist"], "store_ids": [store]}),
                   422, "validation_error", "display_name")
    staff = await kit.staff(["therapist"], [store])
    assert_problem(await patch(kit, f"/staff/{staff['id']}", {"display_name": "陈\u0085明"}), 422, "validation_error",
                   "display_name")
    assert_problem(await kit.post("/services", {"name": "推\u0007拿", "duration_minutes": 60, "price": 19800}), 422,
                   "validation_error", "name")
    assert_problem(await kit.post("/products", {"name": "养\u007f生茶", "unit": "罐", "price": 9800}), 422,
                   "validation_error", "name")
    assert_problem(await kit.post("/consumables", {"name": "艾\u0001条", "unit": "根"}), 422,
                   "validation_error", "name")
    service = await kit.post("/services", {"name": "推拿", "duration_minutes": 60, "price": 19800})
    assert service.status_code == 201, service.text
    assert_problem(await kit.post("/card-templates", {"name": "十次\u0002卡", "kind": "count", "price": 150000,
                                                      "items": [{"service_id": service.json()["id"], "sessions": 10}]}),
                   422, "validation_error", "name")


async def test_export_and_template_work_for_old_rows_holding_control_characters(client):
    kit = await new_tenant(client)
    store = await kit.store()
    member = await make_member(kit, "控制", home_store_id=store, tags=["标签"], notes="备注")
    await kit.post("/member-fields", {"key": "skin", "label": "肤质", "type": "text"})
    await patch(kit, f"/members/{member['id']}", {"custom_fields": {"skin": "干性"}})
    # Written before input was checked: straight into the tables, as their owner.
    await execute_as_owner("UPDATE members SET name = :n, notes = :notes, custom_fields = :c WHERE id = :id",
                           n="控\u0007制", notes="备\u001b注\ufffe", c='{"skin": "干\\u0008性"}', id=UUID(member["id"]))
    await execute_as_owner("UPDATE stores SET name = :n WHERE id = :id", n="静安\u001d店", id=UUID(store))
    await execute_as_owner("UPDATE tags SET name = :n WHERE tenant_id = :t", n="标\u0004签", t=UUID(kit.tenant_id))
    await execute_as_owner("UPDATE member_field_definitions SET label = :n WHERE tenant_id = :t", n="肤\u0005质",
                           t=UUID(kit.tenant_id))

    r = await kit.get("/members/export.xlsx")
    assert r.status_code == 200, r.text
    rows = list(load_workbook(io.BytesIO(r.content)).worksheets[0].iter_rows(values_only=True))
    header = list(rows[0])
    assert header[-1] == "肤质"
    row = dict(zip(header, rows[1], strict=True))
    assert (row["姓名"], row["备注"], row["标签"], row["门店"], row["肤质"]) == (
        "控制", "备注", "标签", "静安店", "干性")

    r = await kit.get("/member-imports/template.xlsx")
    assert r.status_code == 200, r.text
    assert "肤质" in next(load_workbook(io.BytesIO(r.content)).worksheets[0].iter_rows(values_only=True))
