"""Demo data for the import from the old system: a small legacy export, made here as the clinic's previous
software would have written it (a title row, a package card over several rows, amounts in yuan, a totals row),
imported through the real import, so the demo tenant shows migrated cards with their `migration` entries, points
carried over and visit history. Called by app/seed.py after catalog, members, cards and loyalty are seeded."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta
from typing import Any

from openpyxl import Workbook
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.domain.cards import imports
from app.domain.members import service as members

# Members of the demo who held cards on paper and in the old till software before the clinic moved.
LEGACY_MEMBERS = ("徐丽", "孙浩", "马丽娟", "杨帆", "陈静")


def _legacy_workbook(phones: dict[str, str], today: date) -> bytes:
    opened = today - timedelta(days=240)
    expires = today + timedelta(days=125)
    cards = [
        ["康悦堂旧收银系统 · 会员卡余额导出（截至迁移日）"],
        ["卡号", "手机号", "姓名", "卡名称", "项目", "剩余次数", "本金余额(元)", "赠送余额(元)", "到期日期", "开卡日期",
         "实付金额(元)", "门店"],
        ["KYT-2025-0031", phones["徐丽"], "徐丽", "储值卡 充1000送200", None, None, "1,268.00", "253.60", None,
         opened, "2000.00", "康悦堂·静安旗舰店"],
        ["KYT-2025-0047", phones["马丽娟"], "马丽娟", "肩颈调理疗程卡", "推拿", 7, None, None, expires, opened,
         "3680", "康悦堂·静安旗舰店"],
        ["KYT-2025-0047", phones["马丽娟"], "马丽娟", "肩颈调理疗程卡", "艾灸", 4, None, None, None, None, None, None],
        ["KYT-2025-0047", phones["马丽娟"], "马丽娟", "肩颈调理疗程卡", "拔罐", 2, None, None, None, None, None, None],
        ["KYT-2025-0052", phones["孙浩"], "孙浩", "推拿10次卡", "推拿", 3, None, None, expires, opened, "1580",
         "康悦堂·徐汇店"],
        ["KYT-2025-0060", phones["杨帆"], "杨帆", "艾灸养生月卡", None, None, None, None, today + timedelta(days=18),
         today - timedelta(days=12), "1280", "康悦堂·徐汇店"],
        [None],
        ["合计：4张", None, None, None, None, 12, "1268.00", "253.60"],
    ]
    points = [
        ["手机号", "姓名", "积分余额", "最后到店日期"],
        [phones["徐丽"], "徐丽", 2680, today - timedelta(days=9)],
        [phones["马丽娟"], "马丽娟", 5360, today - timedelta(days=4)],
        [phones["孙浩"], "孙浩", 860, today - timedelta(days=21)],
        [phones["陈静"], "陈静", 300, None],
    ]
    moment = datetime.combine(today - timedelta(days=4), datetime.min.time()).replace(hour=15)
    visits = [
        ["单号", "手机号", "姓名", "消费日期", "项目", "技师", "门店", "备注"],
        ["XS20251102001", phones["马丽娟"], "马丽娟", moment, "推拿", "陈晓明", "康悦堂·静安旗舰店",
         "腰背酸痛，力度偏轻"],
        ["XS20251102002", phones["马丽娟"], "马丽娟", moment + timedelta(hours=1), "艾灸", "刘芳", "康悦堂·静安旗舰店",
         None],
        ["XS20251026007", phones["徐丽"], "徐丽", today - timedelta(days=9), "推拿", "陈晓明", "康悦堂·静安旗舰店",
         None],
        ["XS20251015003", phones["孙浩"], "孙浩", today - timedelta(days=21), "推拿", "黄志强", "康悦堂·徐汇店", None],
    ]
    book = Workbook()
    book.remove(book.active)
    for title, rows in (("卡项余额", cards), ("会员积分", points), ("消费记录", visits)):
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


async def seed_card_import(session: AsyncSession, actor: Actor, today: date) -> list[str]:
    """Import the legacy export (dry run first, as a clinic would); returns summary lines for the seed."""
    people = await members.member_ids_by_name(session, actor.tenant_id, set(LEGACY_MEMBERS))
    phones = {}
    for name in LEGACY_MEMBERS:
        if name not in people or (phone := await members.member_phone(session, actor.tenant_id, people[name])) is None:
            return []  # the demo's members changed: nothing to carry over
        phones[name] = phone
    data = _legacy_workbook(phones, today)
    check = await imports.import_cards(session, actor, data=data, filename="旧系统导出.xlsx", dry_run=True)
    done = await imports.import_cards(session, actor, data=data, filename="旧系统导出.xlsx", dry_run=False)
    totals: Any = done.totals
    return [f"dry run: {check.totals.cards} cards, {check.error_count} bad rows",
            f"imported: {totals.cards} cards, stored value ¥{totals.stored_value_principal / 100:.2f} "
            f"+ bonus ¥{totals.stored_value_bonus / 100:.2f}, {totals.sessions} sessions, {totals.points} points, "
            f"{totals.visits} visits"]
