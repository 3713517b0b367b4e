"""A clinic's real-looking member export imports cleanly: titles above the header, header variants, full-width
digits and ideographic spaces, blank and totals rows (skipped and reported), landlines kept as the other phone."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from openpyxl import Workbook
from openpyxl.styles import Font

from app.domain.members.import_columns import clean_text, plan_columns, totals_label
from app.domain.members.normalize import normalize_other_phone
from tests.factories import new_tenant
from tests.members.test_import_export import all_members, upload


def messy_export() -> bytes:
    """What an old member system's "导出Excel" gives: a merged title, an export line, a numbered header with
    stray spaces, full-width digits, padded names, a blank row, pre-numbered empty rows and a totals row."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "会员资料"
    sheet.append(["康悦堂会员资料导出"])
    sheet.merge_cells("A1:I1")
    sheet["A1"].font = Font(bold=True, size=16)
    sheet.append(["导出时间：2026-11-30 18:00　　操作员：前台孙悦"])
    sheet.append(["序号", "会员姓名*", "手　机", "电话 ", "性别", "出生日期", "会员标签", "备注", "会员编号"])
    sheet.append([1, "王　芳", "１３８１２３４０００１", "021-6438 1234", "女", datetime(1985, 3, 2),
                  "颈椎病、失眠", "老客户\u200b", "V0001"])
    sheet.append([2, " 李雷 ", "138 1234 0002", None, "男 ", "1990年7月8日", "ＶＩＰ，落枕", None, "V0002"])
    sheet.append([None] * 9)  # row 6: blank
    sheet.append([3, "张奶奶", None, "（021）6438 5566", "女", "1948.10.1", "", "只有座机，子女代为联系", "V0003"])
    sheet.append([4, "赵敏", "021-62881234", "13812340004", "女", "1973/7/27", "颈椎病 失眠", "", "V0004"])
    sheet.append([5, None, None, None, None, None, None, None, None])  # row 9: a pre-numbered empty row
    sheet.append(["\u3000", None, "  "])  # row 10: only ideographic and plain spaces
    sheet.append([6, "Tom Lee", "+852 9123 4567", None, "男", None, "外籍", None, "V0006"])
    sheet.append(["合计：5人", None, None, None, None, None, None, None, None])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


async def test_a_messy_export_imports_cleanly_and_says_what_it_skipped(client):
    kit = await new_tenant(client)
    check = await upload(kit, messy_export(), "会员资料导出.xlsx")
    assert check.status_code == 200, check.text
    report = check.json()
    assert report["errors"] == [] and report["created_count"] == 5 and report["total_rows"] == 5, report
    skipped = {(s["row"], s["kind"]) for s in report["skipped_rows"]}
    assert skipped == {(1, "title"), (2, "title"), (6, "blank"), (9, "blank"), (10, "blank"), (12, "totals")}
    totals = next(s for s in report["skipped_rows"] if s["kind"] == "totals")
    assert "合计:5人" in totals["reason"]
    fields = {c["column"]: c["field"] for c in report["columns"]}
    assert fields["会员姓名*"] == "name" and fields["手 机"] == "phone" and fields["电话"] == "other_phone"
    assert fields["会员标签"] == "tags" and fields["出生日期"] == "birthday" and fields["会员编号"] == "external_ref"
    assert report["ignored_columns"] == ["序号"]

    real = await upload(kit, messy_export(), "会员资料导出.xlsx", dry_run=False)
    assert real.status_code == 201, real.text
    assert (real.json()["created_count"], real.json()["error_count"]) == (5, 0)
    assert len(real.json()["skipped_rows"]) == 6
    people = {m["name"]: m for m in await all_members(kit)}
    assert set(people) == {"王芳", "李雷", "张奶奶", "赵敏", "Tom Lee"}

    async def member(name: str) -> dict:
        r = await kit.get(f"/members/{people[name]['id']}")
        assert r.status_code == 200, r.text
        return r.json()

    wang = await member("王芳")
    assert (wang["phone"], wang["other_phone"]) == ("13812340001", "021-64381234")
    assert wang["tags"] == sorted(["颈椎病", "失眠"]) and wang["notes"] == "老客户"
    assert wang["birthday"] == "1985-03-02" and wang["gender"] == "female"
    li = await member("李雷")
    assert li["phone"] == "13812340002" and li["other_phone"] is None and li["gender"] == "male"
    assert li["tags"] == sorted(["VIP", "落枕"]) and li["birthday"] == "1990-07-08"
    grandma = await member("张奶奶")  # only a landline: kept as the other phone instead of refusing the row
    assert (grandma["phone"], grandma["other_phone"]) == (None, "021-64385566")
    assert grandma["birthday"] == "1948-10-01"
    assert grandma["notes"] == "只有座机，子女代为联系"  # prose keeps its Chinese punctuation
    zhao = await member("赵敏")  # the mobile in the 电话 column, the landline in 手机: each where it belongs
    assert (zhao["phone"], zhao["other_phone"]) == ("13812340004", "021-62881234")
    assert zhao["tags"] == sorted(["颈椎病", "失眠"])
    assert (await member("Tom Lee"))["phone"] == "+85291234567"

    again = await upload(kit, messy_export(), "会员资料导出.xlsx", dry_run=False)
    assert again.status_code == 201, again.text
    assert (again.json()["created_count"], again.json()["skipped_count"]) == (0, 5)  # the landline-only one too
    assert len(await all_members(kit)) == 5

    marketing = await kit.staff(["marketing"])  # phones are masked for roles without members.contact:read
    shown = (await kit.get(f"/members/{people['王芳']['id']}", token=marketing["token"])).json()
    assert shown["other_phone"] != "021-64381234" and "*" in shown["other_phone"]


async def test_bad_phones_in_a_messy_file_are_reported_by_file_row(client):
    kit = await new_tenant(client)
    rows = [["2026年会员名单"], ["客户姓名", "手机号码", "联系电话"],
            ["钱一", "1381234567", None],  # row 3: a mobile missing a digit is no landline
            ["钱二", "13812345678", "13912345678 / 021-64381234"],  # row 4: three numbers in all
            ["钱三", "12345", None],  # row 5
            ["钱四", "13712345678", "64381234转802"],  # row 6: fine, a local number with an extension
            ["共4人"]]
    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    r = await upload(kit, buffer.getvalue(), "m.xlsx")
    assert r.status_code == 200, r.text
    errors = {(e["row"], e["field"]) for e in r.json()["errors"]}
    assert errors == {(3, "phone"), (4, "other_phone"), (5, "phone")}
    assert all("*" in e["value"] for e in r.json()["errors"] if e["value"])  # phones masked in the report
    assert {(s["row"], s["kind"]) for s in r.json()["skipped_rows"]} == {(1, "title"), (7, "totals")}
    real = await upload(kit, buffer.getvalue(), "m.xlsx", dry_run=False)
    assert real.status_code == 422 and real.json()["code"] == "import_rejected"
    assert await all_members(kit) == []


@pytest.mark.parametrize(("header", "field"), [
    ("会员标签", "tags"), ("客户标签", "tags"), ("标签", "tags"), ("手机", "phone"), ("手机号", "phone"),
    ("手机号码", "phone"), ("电话", "phone"), ("电话号码", "phone"), ("联系电话", "phone"), ("姓名", "name"),
    ("客户姓名", "name"), ("会员姓名", "name"), ("生日", "birthday"), ("出生日期", "birthday"), ("性别", "gender"),
    ("备注", "notes"), ("座机", "other_phone"), ("会员编号", "external_ref"), ("手机号码（必填）", "phone"),
    ("＊客户姓名", "name"), ("会员　标签", "tags"), ("ＴＡＧＳ", "tags"), ("备注：", "notes"),
])
def test_header_variants_are_recognised(header, field):
    required = {"name": "姓名", "phone": "手机号"}
    required[field if field in required else "extra"] = header
    columns, _ = plan_columns([(1, list(required.values()))], None, [])
    assert {c.header: c.field for c in columns.columns}[clean_text(header)] == field


def test_cleaning_and_totals_and_landlines():
    assert clean_text("  王\u3000芳\u200b ") == "王 芳" and clean_text("１３８　１２３４") == "138 1234"
    assert clean_text("第一行  \r\n  第二行\u00a0") == "第一行\n第二行"
    for label in ("合计：8人", "合计", "总计 12", "小计", "共8人", "Total", "合 计"):
        assert totals_label([label, None]) is not None, label
    assert totals_label([1, "合计"]) is not None  # after a serial number
    for cell in ("王合计", "合作社", "共享", "13812345678", "Totally"):
        assert totals_label([cell, "13812345678"]) is None, cell
    assert normalize_other_phone("（０２１）６４３８－１２３４") == "021-64381234"
    assert normalize_other_phone("0571 8765 4321 转 12") == "0571-87654321-12"
    assert normalize_other_phone("400-820-1234") == "4008201234"
    assert normalize_other_phone("1381234567") is None and normalize_other_phone("12345") is None


async def test_other_phone_through_the_member_api(client):
    kit = await new_tenant(client)
    r = await kit.post("/members", {"name": "周伯", "phone": "13600001111", "other_phone": "０２１－６４３８ ５５６６"})
    assert r.status_code == 201, r.text
    member_id = r.json()["id"]
    assert (await kit.get(f"/members/{member_id}")).json()["other_phone"] == "021-64385566"
    bad = await kit.client.patch(f"/api/v1/members/{member_id}", json={"other_phone": "12345"}, headers=kit.auth())
    assert bad.status_code == 422 and bad.json()["field"] == "other_phone", bad.text
    cleared = await kit.client.patch(f"/api/v1/members/{member_id}", json={"other_phone": None}, headers=kit.auth())
    assert cleared.status_code == 200 and cleared.json()["other_phone"] is None, cleared.text
