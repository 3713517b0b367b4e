"""Member import (.xlsx/.csv, dry run, modes, repeats, synonyms, hostile files) and export (.xlsx, masking,
formula injection, filters)."""

from __future__ import annotations

import csv
import io
import json
import struct
import tracemalloc
import zipfile
from datetime import datetime
from uuid import UUID, uuid4

import pytest
from openpyxl import Workbook, load_workbook

from app.core.actor import Actor
from app.core.db import session_scope
from app.core.errors import AppError
from app.domain.members import imports
from tests.factories import new_tenant, seal_audit

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER = ["姓名", "手机号", "性别", "生日", "身份证号", "标签", "门店", "顾问", "备注", "舌象"]
VALID_ID = "11010519491231002X"


def xlsx_bytes(rows: list[list]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def csv_bytes(rows: list[list], encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode(encoding)


async def upload(kit, data: bytes, filename: str = "members.xlsx", token: str | None = None, **form):
    fields = {k: (json.dumps(v, ensure_ascii=False) if k == "mapping" else str(v).lower() if isinstance(v, bool)
                  else v) for k, v in form.items()}
    fields.setdefault("dry_run", "true")
    content_type = XLSX if filename.endswith(".xlsx") else "text/csv"
    return await kit.client.post("/api/v1/member-imports", files={"file": (filename, data, content_type)},
                                 data=fields, headers=kit.auth(token))


async def all_members(kit, **params) -> list[dict]:
    members, cursor = [], None
    while True:
        query = {"limit": 200, **params, **({"cursor": cursor} if cursor else {})}
        r = await kit.get("/members", params=query)
        assert r.status_code == 200, r.text
        members += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return members


async def tenant_with_tongue_field(client):
    kit = await new_tenant(client)
    r = await kit.post("/member-fields", {"key": "tongue", "label": "舌象", "type": "single_select",
                                          "options": [{"value": "齿痕"}, {"value": "厚腻"}]})
    assert r.status_code == 201, r.text
    return kit


def by_row(errors: list[dict]) -> dict[int, set[str]]:
    rows: dict[int, set[str]] = {}
    for error in errors:
        rows.setdefault(error["row"], set()).add(error["field"])
    return rows


# ---------------------------------------------------------------- dry run and modes


async def test_dry_run_reports_every_bad_row_and_writes_nothing(client):
    kit = await tenant_with_tongue_field(client)
    await kit.store("静安店")
    r = await kit.post("/members", {"name": "老会员", "phone": "13900000000"})
    assert r.status_code == 201, r.text
    rows = [
        HEADER,
        ["张一", "12345", "男", "1990-01-01", "", "", "", "", "", ""],  # 2: bad phone
        ["张二", "13800000002", "女", "2024-13-45", "", "", "", "", "", ""],  # 3: bad date
        ["张三", "13800000003", "", "", "110101199003071234", "", "", "", "", ""],  # 4: bad ID check digit
        ["张四", "13800000004", "", "", "", "", "", "", "", "紫色"],  # 5: unknown option
        ["", "13800000005", "", "", "", "", "", "", "", ""],  # 6: name missing
        ["张六", "13800000006", "", "", "", "", "", "", "", ""],  # 7: good
        ["张七", "138-0000-0006", "", "", "", "", "", "", "", ""],  # 8: same phone as row 7
        ["张八", "13800000008", "未知", "", "", "", "", "", "", ""],  # 9: unknown gender
        ["张九", "13800000009", "", "", "", "", "不存在的店", "", "", ""],  # 10: unknown store
        ["张十", "13800000010", "", "1800-01-01", "", "", "", "", "", ""],  # 11: implausible birthday
        ["张十一", "", "", "", "", "", "", "", "", ""],  # 12: phone missing
        ["老会员", "139 0000 0000", "", "", "", "", "", "", "", ""],  # 13: phone already held
    ]
    before = len(await all_members(kit))
    r = await upload(kit, xlsx_bytes(rows))
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["status"] == "checked" and report["dry_run"] is True
    assert by_row(report["errors"]) == {2: {"phone"}, 3: {"birthday"}, 4: {"id_number"}, 5: {"custom.tongue"},
                                        6: {"name"}, 8: {"phone"}, 9: {"gender"}, 10: {"home_store"},
                                        11: {"birthday"}, 12: {"phone"}}
    assert report["total_rows"] == 12 and report["error_count"] == 10
    assert report["created_count"] == 1 and report["skipped_count"] == 1
    duplicate = next(e for e in report["errors"] if e["row"] == 8)
    assert "row 7" in duplicate["message"] and duplicate["column"] == "手机号"
    assert duplicate["value"] != "138-0000-0006" and "*" in duplicate["value"]  # phones are masked in reports
    option = next(e for e in report["errors"] if e["row"] == 5)
    assert option["value"] == "紫色" and "紫色" in option["message"]
    assert [(e["row"], e["action"]) for e in report["existing"]] == [(13, "skip")]
    assert len(await all_members(kit)) == before

    stored = await kit.get(f"/member-imports/{report['id']}")
    assert stored.status_code == 200 and stored.json()["errors"] == report["errors"]
    assert len(stored.json()["file_sha256"]) == 64

    real = await upload(kit, xlsx_bytes(rows), dry_run=False, mode="all_or_nothing")
    assert real.status_code == 422 and real.json()["code"] == "import_rejected"
    assert sorted(real.json()["errors_in_rows"]) == [2, 3, 4, 5, 6, 8, 9, 10, 11, 12]
    assert len(await all_members(kit)) == before


async def test_all_or_nothing_writes_nothing_and_per_row_writes_the_good_rows(client):
    kit = await new_tenant(client)
    rows = [["姓名", "手机"], ["甲", "13811110001"], ["乙", "not-a-phone"], ["丙", "13811110003"]]
    r = await upload(kit, csv_bytes(rows), "members.csv", dry_run=False, mode="all_or_nothing")
    assert r.status_code == 422 and r.json()["code"] == "import_rejected"
    assert r.json()["report"]["errors"][0]["row"] == 3
    assert await all_members(kit) == []

    r = await upload(kit, csv_bytes(rows), "members.csv", dry_run=False, mode="per_row")
    assert r.status_code == 201, r.text
    report = r.json()
    assert (report["created_count"], report["error_count"], report["status"]) == (2, 1, "partially_imported")
    assert by_row(report["errors"]) == {3: {"phone"}}
    assert sorted(m["name"] for m in await all_members(kit)) == ["丙", "甲"]

    await seal_audit()  # what the worker does every two seconds
    audit = await kit.get("/audit", params={"action": "member.import"})
    entries = audit.json()["items"]
    assert len(entries) == 1 and entries[0]["summary"]["created"] == 2 and entries[0]["summary"]["errors"] == 1


async def test_a_row_refused_while_writing_is_reported_and_its_batch_still_written(client):
    """Between the check and the write another desk registers one of the phones: the service refuses that
    row; per_row writes the rest of its batch and reports it, all_or_nothing writes nothing."""
    kit = await new_tenant(client)
    tenant_id = UUID(kit.tenant_id)
    for phone in ("13200000002", "13200000012"):
        assert (await kit.post("/members", {"name": "抢先登记", "phone": phone})).status_code == 201

    def plans(first_phone: int) -> list[imports.RowPlan]:
        return [imports.RowPlan(row=i + 2, values={"name": f"会员{i}", "phone": f"132000000{first_phone + i:02d}",
                                                   "tags": ["导入"]}) for i in range(4)]

    outcome = imports.Outcome()
    async with session_scope(tenant_id) as session:
        await imports.write_rows(session, Actor.system(tenant_id), plans(0), mode="per_row", on_existing="skip",
                                 import_id=uuid4(), outcome=outcome)
    assert outcome.created == 3 and [(e.row, e.field) for e in outcome.errors] == [(4, "phone")]
    assert len(await all_members(kit)) == 5 and len(await all_members(kit, tag="导入")) == 3
    await seal_audit()  # what the worker does every two seconds
    audit = await kit.get("/audit", params={"action": "member.create", "limit": 50})
    assert len(audit.json()["items"]) == 5  # the refused row left no audit entry behind

    with pytest.raises(AppError) as refused:
        async with session_scope(tenant_id) as session:
            await imports.write_rows(session, Actor.system(tenant_id), plans(10), mode="all_or_nothing",
                                     on_existing="skip", import_id=uuid4(), outcome=imports.Outcome())
    assert refused.value.code == "import_rejected" and refused.value.extra["errors_in_rows"] == [4]
    assert len(await all_members(kit)) == 5


async def test_good_xlsx_imports_and_a_repeat_creates_no_duplicates(client):
    kit = await tenant_with_tongue_field(client)
    store = await kit.store("静安店")
    consultant = await kit.staff(["consultant"], [store], username="wangli")
    for synonym in ("肩颈痛", "脖子疼", "落枕"):
        r = await kit.post("/tag-synonyms", {"synonym": synonym, "tag_name": "颈椎病"})
        assert r.status_code == 201, r.text
    rows = [
        ["2024年会员名单"],  # a title above the header, as Chinese sheets often have
        HEADER,
        ["王芳", 13812340001, "女", datetime(1985, 3, 2), VALID_ID, "肩颈痛、失眠", "静安店", "wangli", "老客户",
         "齿痕"],
        ["李雷", "+86 138-1234-0002", "男", "1990/7/8", "", "落枕,脖子疼；VIP", "", "", "", ""],
        ["韩梅", "13812340003", "female", 19920115, "", "", "", "", "", "厚腻"],
    ]
    r = await upload(kit, xlsx_bytes(rows), dry_run=False)
    assert r.status_code == 201, r.text
    report = r.json()
    assert (report["created_count"], report["skipped_count"], report["error_count"]) == (3, 0, 0), report
    assert report["status"] == "imported" and report["file_type"] == "xlsx"

    members = {m["name"]: m for m in await all_members(kit)}
    assert set(members) == {"王芳", "李雷", "韩梅"}
    wang = (await kit.get(f"/members/{members['王芳']['id']}")).json()
    assert wang["phone"] == "13812340001" and wang["gender"] == "female" and wang["birthday"] == "1985-03-02"
    assert wang["tags"] == sorted(["颈椎病", "失眠"]) and wang["home_store_id"] == store
    assert wang["owner_staff_id"] == consultant["id"] and wang["custom_fields"] == {"tongue": "齿痕"}
    assert wang["id_number"] == VALID_ID and wang["notes"] == "老客户"
    li = (await kit.get(f"/members/{members['李雷']['id']}")).json()
    assert li["phone"] == "13812340002" and li["birthday"] == "1990-07-08"
    assert li["tags"] == sorted(["颈椎病", "VIP"])  # synonyms merged into one standard tag; unknown kept
    assert members["韩梅"]["birthday"] == "1992-01-15"

    again = await upload(kit, xlsx_bytes(rows), dry_run=False)
    assert again.status_code == 201, again.text
    assert (again.json()["created_count"], again.json()["skipped_count"]) == (0, 3)
    assert len(await all_members(kit)) == 3

    rows[3] = ["李雷", "13812340002", "男", "1990/7/8", "", "新标签", "静安店", "", "改过的备注", ""]
    check = await upload(kit, xlsx_bytes(rows), on_existing="update")
    assert [(e["row"], e["action"]) for e in check.json()["existing"]] == [(3, "unchanged"), (4, "update"),
                                                                          (5, "unchanged")]
    updated = await upload(kit, xlsx_bytes(rows), dry_run=False, on_existing="update")
    assert updated.status_code == 201, updated.text
    counts = updated.json()
    assert (counts["updated_count"], counts["skipped_count"], counts["created_count"]) == (1, 2, 0)
    li = (await kit.get(f"/members/{members['李雷']['id']}")).json()
    assert li["notes"] == "改过的备注" and li["home_store_id"] == store
    assert li["tags"] == sorted(["颈椎病", "VIP", "新标签"])  # update adds tags, keeps the ones it had
    assert len(await all_members(kit)) == 3
    await seal_audit()  # what the worker does every two seconds
    updates = await kit.get("/audit", params={"action": "member.update", "limit": 50})
    assert [e["target_id"] for e in updates.json()["items"]] == [members["李雷"]["id"]]  # unchanged rows: no write


async def test_csv_in_utf8_with_bom_and_in_gb18030(client):
    kit = await new_tenant(client)
    gb_rows = [["姓名", "电话", "性别", "出生日期", "标签"], ["赵敏", "13700000001", "女", "1988.2.3", "失眠"],
               ["周芷若", "13700000002.0", "女", "1989年4月5日", ""]]  # a number saved as text by some tools
    data = csv_bytes(gb_rows, "gb18030")
    try:
        data.decode("utf-8")
        raise AssertionError("the GB18030 sample must not also be valid UTF-8")
    except UnicodeDecodeError:
        pass
    r = await upload(kit, data, "会员.csv", dry_run=False)
    assert r.status_code == 201, r.text
    assert r.json()["created_count"] == 2 and r.json()["file_type"] == "csv"

    bom = b"\xef\xbb\xbf" + csv_bytes([["姓名", "手机号"], ["张无忌", "13700000003"]])
    r = await upload(kit, bom, "members.csv", dry_run=False)
    assert r.status_code == 201 and r.json()["created_count"] == 1, r.text
    names = {m["name"]: m for m in await all_members(kit)}
    assert set(names) == {"赵敏", "周芷若", "张无忌"}
    assert names["赵敏"]["birthday"] == "1988-02-03" and names["周芷若"]["birthday"] == "1989-04-05"


async def test_mapping_names_columns_the_defaults_do_not_know(client):
    kit = await tenant_with_tongue_field(client)
    rows = [["客户", "联系方式", "舌苔", "备用电话"], ["孙悟空", "13600000001", "厚腻", "13600000009"]]
    no_mapping = await upload(kit, csv_bytes(rows), "m.csv")
    assert no_mapping.status_code == 422 and no_mapping.json()["code"] == "missing_column"
    mapping = {"客户": "name", "联系方式": "phone", "舌苔": "custom.tongue", "备用电话": None}
    r = await upload(kit, csv_bytes(rows), "m.csv", dry_run=False, mapping=mapping)
    assert r.status_code == 201, r.text
    assert r.json()["ignored_columns"] == ["备用电话"]
    member = (await all_members(kit))[0]
    assert (await kit.get(f"/members/{member['id']}")).json()["custom_fields"] == {"tongue": "厚腻"}
    bad = await upload(kit, csv_bytes(rows), "m.csv", mapping={"客户": "name", "联系方式": "custom.nope"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_mapping"
    bad = await upload(kit, csv_bytes(rows), "m.csv", mapping={"不存在的列": "name"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_mapping"


async def test_import_needs_members_write_and_health_columns_need_health_write(client):
    kit = await new_tenant(client)
    marketing = await kit.staff(["marketing"])
    front_desk = await kit.staff(["front_desk"])
    plain = csv_bytes([["姓名", "手机号"], ["甲", "13500000001"]])
    assert (await upload(kit, plain, "m.csv", token=marketing["token"])).status_code == 403
    health = csv_bytes([["姓名", "手机号", "过敏史"], ["甲", "13500000001", "青霉素"]])
    r = await upload(kit, health, "m.csv", token=front_desk["token"], dry_run=False)
    assert r.status_code == 403 and r.json()["code"] == "permission_denied"
    assert (await upload(kit, plain, "m.csv", token=front_desk["token"], dry_run=False)).status_code == 201


# ---------------------------------------------------------------- hostile files


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")


async def test_wrong_file_types_are_refused_with_415(client):
    kit = await new_tenant(client)
    docx_like = io.BytesIO()
    with zipfile.ZipFile(docx_like, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<document/>")
    text_as_xlsx = "姓名,手机号\n张三,13800138000\n".encode()
    cases = [(PNG, "photo.png"), (PNG, "members.xlsx"), (PNG, "members.csv"), (text_as_xlsx, "members.xlsx"),
             (docx_like.getvalue(), "members.xlsx"), (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "old.xls"),
             (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "old.xlsx"),
             (xlsx_bytes([["姓名", "手机号"]]), "members.csv"), (b"PK\x03\x04broken", "members.xlsx")]
    for data, name in cases:
        r = await upload(kit, data, name, dry_run=False)
        assert r.status_code == 415, (name, r.text)
        assert r.json()["code"] == "unsupported_file_type", name
    assert await all_members(kit) == []


async def test_oversized_file_is_refused_with_413(client):
    kit = await new_tenant(client)
    from app.core.settings import get_settings

    data = b"\xef\xbb\xbf" + b"a" * get_settings().import_max_bytes
    r = await upload(kit, data, "huge.csv")
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


async def test_too_many_rows_is_refused_with_422(client):
    kit = await new_tenant(client)
    from app.core.settings import get_settings

    limit = get_settings().import_max_rows
    lines = ["姓名,手机号"] + [f"会员{i},{13000000000 + i}" for i in range(limit + 1)]
    r = await upload(kit, "\n".join(lines).encode(), "many.csv")
    assert r.status_code == 422 and r.json()["code"] == "too_many_rows"
    assert await all_members(kit) == []


def _zip_with_sheet(sheet_chunks) -> bytes:
    """A real workbook whose first sheet is replaced by streamed XML (small when compressed)."""
    template = zipfile.ZipFile(io.BytesIO(xlsx_bytes([["姓名", "手机号"]])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for info in template.infolist():
            if info.filename == "xl/worksheets/sheet1.xml":
                part = zipfile.ZipInfo(info.filename)
                part.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(part, "w") as sheet:
                    for chunk in sheet_chunks:
                        sheet.write(chunk)
            else:
                archive.writestr(info, template.read(info.filename))
    return out.getvalue()


def _forge_declared_size(data: bytes, name: str, size: int) -> bytes:
    """Rewrite the uncompressed size a zip declares for one part (local header and central directory)."""
    buffer = bytearray(data)
    encoded = name.encode()
    for signature, size_offset, name_offset in ((b"PK\x01\x02", 24, 46), (b"PK\x03\x04", 22, 30)):
        start = 0
        while (start := buffer.find(signature, start)) != -1:
            if buffer[start + name_offset:start + name_offset + len(encoded)] == encoded:
                struct.pack_into("<I", buffer, start + size_offset, size)
            start += 4
    return bytes(buffer)


def _sheet_xml(rows: int, cell: bytes = b"x" * 40):
    yield (b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/'
           b'spreadsheetml/2006/main"><sheetData><row r="1"><c t="inlineStr"><is><t>\xe5\xa7\x93\xe5\x90\x8d</t>'
           b'</is></c><c t="inlineStr"><is><t>\xe6\x89\x8b\xe6\x9c\xba\xe5\x8f\xb7</t></is></c></row>')
    body = b"".join(b'<row><c t="inlineStr"><is><t>' + cell + b'</t></is></c></row>' for _ in range(1000))
    for _ in range(rows // 1000):
        yield body
    yield b"</sheetData></worksheet>"


async def test_zip_bomb_xlsx_is_refused_without_inflating_it(client):
    kit = await new_tenant(client)
    bomb = _zip_with_sheet(_sheet_xml(1_600_000))  # ~130 MB of XML in well under 1 MB
    assert len(bomb) < 1024 * 1024
    tracemalloc.start()
    try:
        r = await upload(kit, bomb, "bomb.xlsx")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413 and r.json()["code"] == "spreadsheet_too_large", r.text
    assert peak < 50 * 1024 * 1024

    # The same part declaring a harmless size: zipfile stops at the declared size, so it cannot inflate either.
    forged = _forge_declared_size(bomb, "xl/worksheets/sheet1.xml", 10_000)
    tracemalloc.start()
    try:
        r = await upload(kit, forged, "forged.xlsx")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code in (415, 422) and r.json()["code"] in ("unreadable_file", "unsupported_file_type"), r.text
    assert peak < 50 * 1024 * 1024

    # Under the size cap but over the row cap: streaming stops at the cap.
    many = _zip_with_sheet(_sheet_xml(30_000, cell=b"x"))
    r = await upload(kit, many, "many.xlsx")
    assert r.status_code == 422 and r.json()["code"] == "too_many_rows", r.text
    assert await all_members(kit) == []


async def test_template_has_default_headers_and_custom_fields(client):
    kit = await tenant_with_tongue_field(client)
    r = await kit.get("/member-imports/template.xlsx")
    assert r.status_code == 200 and r.headers["content-type"] == XLSX
    sheet = load_workbook(io.BytesIO(r.content)).worksheets[0]
    header = [c.value for c in next(sheet.iter_rows(max_row=1))]
    assert header[:4] == ["姓名", "手机号", "性别", "生日"] and "舌象" in header and "标签" in header
    # The template round-trips: filled in and uploaded, it is recognised without a mapping.
    filled = xlsx_bytes([header, ["钱七", "13300000001"] + [None] * (len(header) - 2)])
    assert (await upload(kit, filled)).json()["created_count"] == 1


# ---------------------------------------------------------------- export


async def test_export_neutralises_formulas_masks_phones_and_filters(client):
    kit = await new_tenant(client)
    store = await kit.store("徐汇店")
    hostile = ['=HYPERLINK("http://evil","x")', "+1+1", "@SUM(A1)", "-2+3"]
    for i, name in enumerate(hostile):
        r = await kit.post("/members", {"name": name, "phone": f"1370000000{i}", "tags": ["恶意"]})
        assert r.status_code == 201, r.text
    r = await kit.post("/members", {"name": "正常", "phone": "13700000009", "home_store_id": store,
                                    "tags": ["VIP"], "notes": "=cmd|' /C calc'!A0"})
    assert r.status_code == 201, r.text

    r = await kit.get("/members/export.xlsx")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == XLSX and "attachment" in r.headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(r.content)).worksheets[0]  # full mode: formulas would show as data_type "f"
    rows = list(sheet.iter_rows())
    header = [c.value for c in rows[0]]
    name_col, phone_col, notes_col = header.index("姓名"), header.index("手机号"), header.index("备注")
    cells = {row[phone_col].value: row for row in rows[1:]}
    assert set(cells) == {f"1370000000{i}" for i in range(4)} | {"13700000009"}
    for i, name in enumerate(hostile):
        cell = cells[f"1370000000{i}"][name_col]
        assert cell.data_type == "s" and cell.value == "'" + name
    assert cells["13700000009"][name_col].value == "正常"
    assert cells["13700000009"][notes_col].value.startswith("'=") and cells["13700000009"][notes_col].data_type == "s"
    assert cells["13700000009"][header.index("门店")].value == "徐汇店"

    r = await kit.post("/roles", {"name": "exporter", "permissions": ["members:read", "members:export"]})
    assert r.status_code == 201, r.text
    exporter = await kit.staff(["exporter"])
    r = await kit.get("/members/export.xlsx", token=exporter["token"])
    assert r.status_code == 200, r.text
    sheet = load_workbook(io.BytesIO(r.content)).worksheets[0]
    phones = [row[phone_col] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert len(phones) == 5 and all(p.startswith("137****") for p in phones)

    marketing = await kit.staff(["marketing"])
    assert (await kit.get("/members/export.xlsx", token=marketing["token"])).status_code == 403

    for params, expected in (({"tag": "VIP"}, {"正常"}), ({"store_id": store}, {"正常"}),
                             ({"q": "13700000001"}, {"+1+1"}), ({"tag": "恶意"}, set(hostile))):
        r = await kit.client.get("/api/v1/members/export.xlsx", params=params, headers=kit.auth())
        assert r.status_code == 200, r.text
        names = [row[name_col] for row in load_workbook(io.BytesIO(r.content)).worksheets[0]
                 .iter_rows(min_row=2, values_only=True)]
        assert {n.removeprefix("'") for n in names} == expected, params

    await seal_audit()  # what the worker does every two seconds
    audit = (await kit.get("/audit", params={"action": "member.export_list", "limit": 10})).json()["items"]
    assert len(audit) == 6
    assert audit[0]["summary"]["rows"] == 4 and audit[0]["summary"]["filter"]["tags"] == ["恶意"]


async def test_export_round_trips_through_import(client):
    kit = await new_tenant(client)
    for i, name in enumerate(["=1+1", "普通"]):
        assert (await kit.post("/members", {"name": name, "phone": f"1360000000{i}"})).status_code == 201
    exported = (await kit.get("/members/export.xlsx")).content
    other = await new_tenant(client)
    r = await upload(other, exported, "export.xlsx", dry_run=False)
    assert r.status_code == 201 and r.json()["created_count"] == 2, r.text
    assert sorted(m["name"] for m in await all_members(other)) == ["=1+1", "普通"]
