"""Prepaid cards, points and visit history from the old system (.xlsx): the dry run's totals, the import, and the
same totals read back from the API; re-runs, bad rows, permissions and a race between two runs."""

from __future__ import annotations

import asyncio
import io
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from openpyxl import Workbook, load_workbook

from app.core.actor import Actor
from app.core.errors import AppError
from app.domain.cards import imports
from tests.cards.helpers import consistency, in_tenant, make_service, owner_sql
from tests.factories import TenantKit, new_tenant, seal_audit
from tests.members.test_import_export import upload as upload_members

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TODAY = date.today()
EXPIRES = date(TODAY.year + 1, 6, 30)
OPENED = TODAY - timedelta(days=200)
PHONES = {"王芳": "13816620001", "李雷": "13916620002", "赵敏": "15216620007", "马丽娟": "13716620013"}
GRANDMA_LANDLINE = "021-64385566"


def workbook(sheets: dict[str, list[list[Any]]]) -> bytes:
    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


async def upload(kit: TenantKit, data: bytes, token: str | None = None, **form: Any):
    fields = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in form.items()}
    fields.setdefault("dry_run", "true")
    return await kit.client.post("/api/v1/card-imports", files={"file": ("旧系统导出.xlsx", data, XLSX)},
                                 data=fields, headers=kit.auth(token))


class Clinic:
    """A tenant set up as the clinic was before moving: stores, therapists, services, the card products it
    sells, and its members (imported from the old system's member list, with their 会员编号)."""

    kit: TenantKit
    stores: dict[str, str]
    staff: dict[str, dict]
    services: dict[str, str]
    templates: dict[str, str]
    members: dict[str, str]


async def make_clinic(client) -> Clinic:
    clinic = Clinic()
    kit = clinic.kit = await new_tenant(client)
    clinic.stores = {"静安店": await kit.store("静安店"), "徐汇店": await kit.store("徐汇店")}
    r = await kit.post("/staff", {"username": "chen", "password": "correct-horse-battery", "display_name": "陈晓明",
                                  "roles": ["therapist"], "store_ids": [clinic.stores["静安店"]]})
    assert r.status_code == 201, r.text
    clinic.staff = {"陈晓明": {"id": r.json()["id"]}}
    r = await kit.post("/staff", {"username": "liu", "password": "correct-horse-battery", "display_name": "刘芳",
                                  "roles": ["therapist"], "store_ids": [clinic.stores["徐汇店"]]})
    clinic.staff["刘芳"] = {"id": r.json()["id"]}
    clinic.services = {name: await make_service(kit, name, price)
                       for name, price in (("推拿", 19800), ("艾灸", 16800), ("拔罐", 12800))}
    s = clinic.services
    templates = [
        {"name": "储值卡 充1000送200", "kind": "stored_value", "price": 100000, "face_value": 100000, "bonus": 20000},
        {"name": "推拿10次卡", "kind": "count", "price": 158000, "valid_days": 365,
         "items": [{"service_id": s["推拿"], "sessions": 10}]},
        {"name": "肩颈调理疗程卡", "kind": "package", "price": 368000, "valid_days": 365,
         "items": [{"service_id": s["推拿"], "sessions": 10}, {"service_id": s["艾灸"], "sessions": 5},
                   {"service_id": s["拔罐"], "sessions": 3, "gifted_sessions": 2}]},
        {"name": "艾灸月卡", "kind": "period", "price": 128000, "valid_days": 30,
         "items": [{"service_id": s["艾灸"]}]},
    ]
    clinic.templates = {}
    for body in templates:
        r = await kit.post("/card-templates", body)
        assert r.status_code == 201, r.text
        clinic.templates[body["name"]] = r.json()["id"]
    member_rows = [["会员编号", "姓名", "手机", "电话"]] + [
        [f"V{i:04d}", name, phone, None] for i, (name, phone) in enumerate(PHONES.items(), start=1)] + [
        ["V0009", "张奶奶", None, GRANDMA_LANDLINE]]
    r = await upload_members(kit, workbook({"会员": member_rows}), "members.xlsx", dry_run=False)
    assert r.status_code == 201 and r.json()["created_count"] == 5, r.text
    listed = (await kit.get("/members", params={"limit": 50})).json()["items"]
    clinic.members = {m["name"]: m["id"] for m in listed}
    return clinic


def legacy_export() -> bytes:
    """The old system's export: a title row, cards (a package card over three rows), a blank row and a totals
    row; points with last visits; visit history with and without 单号, amounts in yuan as typed."""
    cards = [
        ["康悦堂旧系统 卡项余额 导出"],
        ["卡号", "会员编号", "手机号", "姓名", "卡名称", "项目", "剩余次数", "本金余额(元)", "赠送余额（元）",
         "到期日期", "开卡日期", "实付金额(元)", "门店"],
        ["K0001", "V0001", None, "王芳", "储值卡 充1000送200", None, None, "860.50", "172", None, OPENED,
         "1,000.00", "静安店"],
        ["K0002", None, PHONES["李雷"], "李 雷", "推拿10次卡", "推拿", 4, None, None, EXPIRES, OPENED, 1580,
         "静安店"],
        ["K0003", "V0003", None, "赵敏", "肩颈调理疗程卡", "推拿", 6, None, None, EXPIRES, OPENED, 3680, "徐汇店"],
        ["K0003", "V0003", None, "赵敏", "肩颈调理疗程卡", "艾灸", "3", None, None, None, None, None, None],
        ["K0003", "V0003", None, "赵敏", "肩颈调理疗程卡", "拔罐", 0, None, None, None, None, None, None],
        [None],
        ["K0004", None, "（021）6438 5566", "张奶奶", "艾灸月卡", None, None, None, None, TODAY + timedelta(days=20),
         None, "1280", "静安店"],
        ["K0005", "V0004", None, "马丽娟", "储值卡 充1000送200", None, None, "¥2,000", "400.00", None, None, None,
         "徐汇店"],
        ["合计", None, None, None, None, None, 13, "2860.50", "572.00"],
    ]
    points = [
        ["会员编号", "手机号", "姓名", "积分", "最后到店日期"],
        ["V0001", None, "王芳", 1280, TODAY - timedelta(days=10)],
        [None, PHONES["李雷"], "李雷", "420", TODAY - timedelta(days=5)],
        ["V0009", None, "张奶奶", 0, TODAY - timedelta(days=60)],
        ["V0004", None, "马丽娟", 3560, None],
        ["总计", None, None, 5260],
    ]
    visits = [
        ["单号", "手机号", "会员编号", "日期", "项目", "技师", "门店", "备注"],
        ["X1001", PHONES["王芳"], None, datetime.combine(TODAY - timedelta(days=10), datetime.min.time()).replace(
            hour=14, minute=30), "推拿", "陈晓明", "静安店", "肩颈僵硬，力度适中"],
        ["X1002", PHONES["李雷"], None, (TODAY - timedelta(days=5)).isoformat(), "推拿", "chen", "静安店", None],
        [None, None, "V0003", (TODAY - timedelta(days=30)).strftime("%Y/%m/%d"), "艾灸", "刘芳", "徐汇店", None],
        [None, None, "V0003", (TODAY - timedelta(days=30)).strftime("%Y/%m/%d"), "艾灸", "刘芳", "徐汇店", None],
    ]
    return workbook({"卡项": cards, "会员积分": points, "消费记录": visits, "说明": [["本文件由旧系统导出"]]})


EXPECTED = {
    "cards": 5, "cards_by_kind": {"stored_value": 2, "count": 1, "package": 1, "period": 1},
    "stored_value_principal": 86050 + 200000, "stored_value_bonus": 17200 + 40000,
    "sessions": 13, "points": 1280 + 420 + 3560, "members_with_points": 3, "visits": 4, "last_visits": 3,
}


async def totals_from_the_api(clinic: Clinic) -> dict[str, Any]:
    """The same totals, read the way any client reads them: each member's cards, points and service records."""
    kit = clinic.kit
    out: dict[str, Any] = {"cards": 0, "cards_by_kind": {}, "stored_value_principal": 0, "stored_value_bonus": 0,
                           "sessions": 0, "sessions_by_service": {}, "points": 0, "members_with_points": 0,
                           "visits": 0}
    for member_id in clinic.members.values():
        cards = (await kit.get(f"/members/{member_id}/cards")).json()["items"]
        for card in cards:
            out["cards"] += 1
            out["cards_by_kind"][card["kind"]] = out["cards_by_kind"].get(card["kind"], 0) + 1
            out["stored_value_principal"] += card["principal_balance"]
            out["stored_value_bonus"] += card["bonus_balance"]
            for item in card["items"]:
                out["sessions"] += item["remaining"]
                if item["remaining"]:
                    key = item["service_id"]
                    out["sessions_by_service"][key] = out["sessions_by_service"].get(key, 0) + item["remaining"]
        points = (await kit.get(f"/members/{member_id}/points")).json()["balance"]
        out["points"] += points
        out["members_with_points"] += 1 if points else 0
        records = (await kit.get("/service-records", params={"member_id": member_id, "limit": 100})).json()["items"]
        out["visits"] += sum(1 for r in records if r["settlement"] == "migration")
    return out


def report_totals(totals: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in totals.items() if k not in ("last_visits", "sessions_by_service")}
    out["sessions_by_service"] = {s["service_id"]: s["sessions"] for s in totals["sessions_by_service"]}
    return out


# ---------------------------------------------------------------- the journey


async def test_dry_run_totals_then_import_then_the_same_totals_from_the_api(client):
    clinic = await make_clinic(client)
    kit, s = clinic.kit, clinic.services
    data = legacy_export()
    before = await totals_from_the_api(clinic)

    check = await upload(kit, data)
    assert check.status_code == 200, check.text
    report = check.json()
    assert report["status"] == "checked" and report["errors"] == [], report["errors"]
    totals = report["totals"]
    assert {k: totals[k] for k in EXPECTED} == EXPECTED
    assert {t["service_id"]: t["sessions"] for t in totals["sessions_by_service"]} == {s["推拿"]: 10, s["艾灸"]: 3}
    assert {t["service_name"] for t in totals["sessions_by_service"]} == {"推拿", "艾灸"}
    assert {(n["sheet"], n["row"], n["kind"]) for n in report["notes"] if n["kind"] != "warning"} == {
        ("卡项", 1, "title"), ("卡项", 8, "blank"), ("卡项", 11, "totals"), ("会员积分", 6, "totals")}
    assert {(x["sheet"], x["kind"]) for x in report["sheets"]} == {("卡项", "cards"), ("会员积分", "points"),
                                                                   ("消费记录", "visits"), ("说明", "ignored")}
    assert await totals_from_the_api(clinic) == before  # a dry run writes nothing

    real = await upload(kit, data, dry_run=False)
    assert real.status_code == 201, real.text
    assert real.json()["status"] == "imported" and real.json()["totals"] == totals

    after = await totals_from_the_api(clinic)
    assert after == report_totals(totals)

    import_id = real.json()["id"]
    reconciliation = (await kit.get(f"/card-imports/{import_id}/reconciliation")).json()
    assert reconciliation["matches"] is True and reconciliation["in_ledgers"] == totals
    assert (await kit.get(f"/card-imports/{import_id}")).json()["totals"] == totals

    # The opening entries are `migration` entries that name the import; balances equal their ledgers.
    zhao_cards = (await kit.get(f"/members/{clinic.members['赵敏']}/cards")).json()["items"]
    package = next(c for c in zhao_cards if c["kind"] == "package")
    assert {i["service_id"]: i["remaining"] for i in package["items"]} == {s["推拿"]: 6, s["艾灸"]: 3, s["拔罐"]: 0}
    assert package["expires_at"].startswith(EXPIRES.isoformat()) and package["price_paid"] == 368000
    ledger = (await kit.get(f"/cards/{package['id']}/ledger")).json()["items"]
    assert {e["kind"] for e in ledger} == {"migration"} and {e["ref_id"] for e in ledger} == {import_id}
    assert sorted(e["sessions_delta"] for e in ledger) == [3, 6]
    grandma = (await kit.get(f"/members/{clinic.members['张奶奶']}/cards")).json()["items"]
    assert [c["kind"] for c in grandma] == ["period"]  # found by her landline
    for member_id in clinic.members.values():
        for card in (await kit.get(f"/members/{member_id}/cards")).json()["items"]:
            assert await consistency(UUID(kit.tenant_id), card["id"]) == []
    wang_points = (await kit.get(f"/members/{clinic.members['王芳']}/points")).json()
    assert [(e["kind"], e["delta"]) for e in wang_points["items"]] == [("migration", 1280)]
    wang = (await kit.get(f"/members/{clinic.members['王芳']}")).json()
    assert wang["last_visit_at"].startswith((TODAY - timedelta(days=10)).isoformat())
    assert wang["last_visit_at"].endswith("+00:00") or "T06:30" in wang["last_visit_at"]
    visit = (await kit.get("/service-records", params={"member_id": clinic.members["王芳"]})).json()["items"][0]
    assert visit["settlement"] == "migration" and visit["earned_amount"] == 0
    assert visit["staff_id"] == clinic.staff["陈晓明"]["id"] and visit["notes"] == "肩颈僵硬，力度适中"
    assert (await kit.get("/commissions", params={"staff_id": clinic.staff["陈晓明"]["id"]})).json()["items"] == []

    # The same file again changes nothing: every reference is imported already (the primary key says so).
    again = await upload(kit, data, dry_run=False)
    assert again.status_code == 201, again.text
    assert again.json()["already_imported"] == {"cards": 5, "points": 3, "visits": 4}
    assert again.json()["totals"]["cards"] == 0 and again.json()["totals"]["points"] == 0
    assert again.json()["totals"]["visits"] == 0
    assert await totals_from_the_api(clinic) == after

    # A migrated session card is used like any other: one 推拿 from 李雷's count card.
    li_card = (await kit.get(f"/members/{clinic.members['李雷']}/cards")).json()["items"][0]
    therapist = await kit.staff(["therapist"], [clinic.stores["静安店"]])
    r = await kit.post("/service-records", {"member_id": clinic.members["李雷"], "store_id": clinic.stores["静安店"],
                                            "service_id": s["推拿"], "staff_id": therapist["id"],
                                            "card_id": li_card["id"]}, token=therapist["token"])
    assert r.status_code == 201, r.text
    assert r.json()["card_remaining"] == 3 and r.json()["earned_amount"] == 15800  # 1580 yuan / 10 sessions

    await seal_audit()
    entries = (await kit.get("/audit", params={"action": "card.import"})).json()["items"]
    assert len(entries) == 2 and entries[-1]["summary"]["cards"] == 5


async def test_bad_rows_are_reported_by_sheet_and_row_and_refuse_the_import_unless_skipped(client):
    clinic = await make_clinic(client)
    kit = clinic.kit
    cards = [
        ["卡号", "手机号", "卡名称", "项目", "剩余次数", "本金余额", "赠送余额", "到期日期", "门店"],
        ["B01", PHONES["王芳"], "储值卡 充1000送200", None, None, 500, 100, None, "静安店"],  # 2: good
        ["B02", "13000000000", "推拿10次卡", "推拿", 3, None, None, EXPIRES, "静安店"],  # 3: nobody has this phone
        ["B03", PHONES["李雷"], "黄金卡", "推拿", 3, None, None, EXPIRES, "静安店"],  # 4: no such template
        ["B04", PHONES["李雷"], "储值卡 充1000送200", "推拿", 3, 100, None, None, "静安店"],  # 5: money card, sessions
        ["B05", PHONES["李雷"], "推拿10次卡", "艾灸", 3, None, None, EXPIRES, "静安店"],  # 6: not on the template
        ["B06", PHONES["李雷"], "储值卡 充1000送200", None, None, "100.005", None, None, "静安店"],  # 7: 3 decimals
        ["B07", PHONES["李雷"], "艾灸月卡", None, None, None, None, None, "静安店"],  # 8: a period card never ending
        ["B08", PHONES["赵敏"], "肩颈调理疗程卡", "推拿", 2, None, None, EXPIRES, "徐汇店"],  # 9
        ["B08", PHONES["李雷"], "肩颈调理疗程卡", "艾灸", 1, None, None, EXPIRES, "徐汇店"],  # 10: another member
        ["B09", PHONES["赵敏"], "推拿10次卡", "推拿", -1, None, None, EXPIRES, "火星店"],  # 11: negative, no store
    ]
    visits = [
        ["手机号", "日期", "项目", "技师"],
        [PHONES["王芳"], TODAY - timedelta(days=3), "推拿", "陈晓明"],  # 2: good (the only store?: no, two)
        [PHONES["王芳"], TODAY + timedelta(days=3), "推拿", "王师傅"],  # 3: future date, unknown staff
    ]
    data = workbook({"卡项": cards, "消费记录": visits})
    check = await upload(kit, data, store_id=clinic.stores["静安店"])
    assert check.status_code == 200, check.text
    errors: dict[tuple[str, int], set[str]] = {}
    for e in check.json()["errors"]:
        errors.setdefault((e["sheet"], e["row"]), set()).add(e["field"])
    assert errors == {
        ("卡项", 3): {"phone"}, ("卡项", 4): {"template"}, ("卡项", 5): {"sessions"}, ("卡项", 6): {"service"},
        ("卡项", 7): {"principal"}, ("卡项", 8): {"expires"}, ("卡项", 9): {"card_ref"}, ("卡项", 10): {"phone"},
        ("卡项", 11): {"sessions", "store"}, ("消费记录", 3): {"visit_date", "staff"}}, check.json()["errors"]
    unknown = next(e for e in check.json()["errors"] if e["row"] == 3 and e["sheet"] == "卡项")
    assert unknown["column"] == "手机号" and unknown["value"] != "13000000000" and "*" in unknown["value"]
    assert check.json()["error_count"] == 10
    assert check.json()["totals"]["cards"] == 1 and check.json()["totals"]["visits"] == 1

    refused = await upload(kit, data, dry_run=False, store_id=clinic.stores["静安店"])
    assert refused.status_code == 422 and refused.json()["code"] == "import_rejected", refused.text
    assert len(refused.json()["report"]["errors"]) >= 10
    assert (await kit.get(f"/members/{clinic.members['王芳']}/cards")).json()["items"] == []
    rows = await owner_sql("SELECT count(*) FROM card_imports WHERE tenant_id = :t", t=UUID(kit.tenant_id))
    assert rows[0][0] == 1  # only the dry run's record: the refused run left nothing

    skipped = await upload(kit, data, dry_run=False, skip_bad_rows=True, store_id=clinic.stores["静安店"])
    assert skipped.status_code == 201, skipped.text
    assert skipped.json()["status"] == "partially_imported" and skipped.json()["error_count"] == 10
    wang_cards = (await kit.get(f"/members/{clinic.members['王芳']}/cards")).json()["items"]
    assert [(c["principal_balance"], c["bonus_balance"]) for c in wang_cards] == [(50000, 10000)]
    assert (await kit.get(f"/members/{clinic.members['赵敏']}/cards")).json()["items"] == []  # B08 as a whole


async def test_file_level_problems_name_the_sheet_and_field(client):
    clinic = await make_clinic(client)
    kit = clinic.kit
    no_member = workbook({"卡项": [["卡号", "卡名称", "本金余额"], ["C1", "储值卡 充1000送200", 100]]})
    r = await upload(kit, no_member)
    assert r.status_code == 422 and r.json()["code"] == "missing_column" and r.json()["sheet"] == "卡项", r.text
    nothing = workbook({"Sheet1": [["姓名", "手机号"], ["王芳", PHONES["王芳"]]]})
    r = await upload(kit, nothing)
    assert r.status_code == 422 and r.json()["code"] == "missing_column", r.text
    no_staff = workbook({"消费记录": [["手机号", "日期", "项目"], [PHONES["王芳"], TODAY, "推拿"]]})
    r = await upload(kit, no_staff)
    assert r.status_code == 422 and r.json()["field"] == "staff", r.text
    r = await upload(kit, legacy_export(), store_id="not-a-uuid")
    assert r.status_code == 422, r.text
    r = await upload(kit, legacy_export(), store_id="00000000-0000-0000-0000-000000000000")
    assert r.status_code == 422 and r.json()["field"] == "store_id", r.text
    r = await kit.client.post("/api/v1/card-imports", files={"file": ("x.png", b"\x89PNG\r\n\x1a\n", "image/png")},
                              headers=kit.auth())
    assert r.status_code == 415 and r.json()["code"] == "unsupported_file_type"
    assert (await kit.get("/card-imports/00000000-0000-0000-0000-000000000000")).status_code == 404


async def test_who_may_import_and_a_store_manager_only_for_their_store(client):
    clinic = await make_clinic(client)
    kit = clinic.kit
    therapist = await kit.staff(["therapist"], [clinic.stores["静安店"]])
    r = await upload(kit, legacy_export(), token=therapist["token"])
    assert r.status_code == 403 and r.json()["missing_permissions"] == ["cards:import"]
    finance = await kit.staff(["finance"])
    r = await upload(kit, legacy_export(), token=finance["token"])
    assert r.status_code == 200 and r.json()["errors"] == [], r.text
    manager = await kit.staff(["store_manager"], [clinic.stores["静安店"]])
    r = await upload(kit, legacy_export(), token=manager["token"])
    assert r.status_code == 200, r.text
    errors = {(e["sheet"], e["row"], e["field"]) for e in r.json()["errors"]}
    assert errors == {("卡项", 5, "store"), ("卡项", 6, "card_ref"), ("卡项", 7, "card_ref"), ("卡项", 10, "store"),
                      ("消费记录", 4, "store"), ("消费记录", 5, "store")}  # 徐汇店's rows; K0003 spans three
    template = await kit.get("/card-imports/template.xlsx", token=manager["token"])
    assert template.status_code == 200 and template.headers["content-type"] == XLSX
    book = load_workbook(io.BytesIO(template.content))
    assert book.sheetnames[:3] == ["卡项", "会员积分", "消费记录"]
    header = [c.value for c in next(book["卡项"].iter_rows(max_row=1))]
    assert header[:4] == ["卡号", "手机号", "姓名", "卡名称"]
    # The template, filled in, is recognised as it is.
    filled = workbook({"卡项": [header, ["T1", PHONES["王芳"], "王芳", "储值卡 充1000送200", None, None, 100, 0]]})
    r = await upload(kit, filled, store_id=clinic.stores["静安店"])
    assert r.status_code == 200 and r.json()["errors"] == [] and r.json()["totals"]["cards"] == 1, r.text


async def test_two_runs_of_the_same_file_at_once_import_it_once(client):
    """The second run waits on the first one's references (primary key) and is refused when it commits;
    run again, it finds everything imported."""
    clinic = await make_clinic(client)
    tenant_id = UUID(clinic.kit.tenant_id)
    data = legacy_export()
    first_wrote = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with in_tenant(tenant_id) as session:
            await imports.import_cards(session, Actor.system(tenant_id), data=data, filename="a.xlsx", dry_run=False)
            first_wrote.set()
            await release.wait()  # commit only once the second run is under way

    async def second() -> Any:
        await first_wrote.wait()
        async with in_tenant(tenant_id) as session:
            return await imports.import_cards(session, Actor.system(tenant_id), data=data, filename="b.xlsx",
                                              dry_run=False)

    first_task, second_task = asyncio.create_task(first()), asyncio.create_task(second())
    await first_wrote.wait()
    await asyncio.sleep(0.5)  # the second run plans (nothing imported yet, as far as it can see) and then waits
    release.set()
    await first_task
    with pytest.raises(AppError) as refused:
        await second_task
    assert refused.value.code == "import_conflict" and refused.value.status == 409
    cards = await owner_sql("SELECT count(*) FROM cards WHERE tenant_id = :t", t=tenant_id)
    assert cards[0][0] == 5
    again = await upload(clinic.kit, data, dry_run=False)
    assert again.json()["already_imported"] == {"cards": 5, "points": 3, "visits": 4}
