"""Import from the old system, the file's side: which sheet holds what and which column holds which field.

A workbook may carry up to three kinds of sheet, each recognised by its headers (its title does not matter):

- cards (卡项): one row per card, or per service of a session card (a package card spans several rows sharing
  its 卡号); 卡号, the member (手机号 or 会员编号), 卡名称 (a card template), and as the kind needs: 项目 with
  剩余次数, 本金余额 and 赠送余额, 到期日期; optionally 开卡日期, 实付金额, 门店;
- points (会员积分): the member, 积分 and/or 最后到店日期;
- visits (消费记录): the member, 日期, 项目, 技师; optionally 单号, 门店, 备注.

Headers are compared normalised (full-width forms, spaces, a unit such as "(元)" dropped). Amounts are in yuan
as people type them ("1,280.50", "¥860"); they become fen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.domain.cards.import_schemas import ImportColumnOut, SheetKind
from app.domain.members.import_columns import HEADER_SEARCH_ROWS, header_key
from app.domain.members.spreadsheets import Sheet, build_workbook

MEMBER_HEADERS: dict[str, tuple[str, ...]] = {
    "phone": ("手机号", "手机", "手机号码", "会员手机", "客户手机", "移动电话", "电话", "联系电话", "电话号码",
              "phone"),
    "member_ref": ("会员编号", "会员号", "客户编号", "顾客编号", "档案号", "member_ref", "member_no"),
    "member_name": ("姓名", "会员姓名", "客户姓名", "顾客姓名", "name"),
}
SERVICE_HEADERS = ("项目", "服务项目", "项目名称", "服务名称", "服务", "service")
STORE_HEADERS = ("门店", "所属门店", "开卡门店", "消费门店", "服务门店", "store")
SHEET_HEADERS: dict[SheetKind, dict[str, tuple[str, ...]]] = {
    "cards": {
        "card_ref": ("卡号", "会员卡号", "卡编号", "卡片编号", "card_ref", "card_no"),
        "template": ("卡名称", "卡项", "卡项名称", "卡种", "卡名", "卡类型", "套餐名称", "card_template", "template"),
        "service": SERVICE_HEADERS,
        "sessions": ("剩余次数", "剩余", "余次", "剩余数量", "sessions"),
        "principal": ("本金余额", "剩余本金", "本金", "储值余额", "余额", "principal"),
        "bonus": ("赠送余额", "赠金余额", "赠金", "赠送金额", "bonus"),
        "expires": ("到期日期", "有效期至", "到期日", "截止日期", "有效期", "expires"),
        "opened": ("开卡日期", "办卡日期", "购卡日期", "开卡时间", "opened"),
        "price_paid": ("实付金额", "购卡金额", "开卡金额", "实收金额", "售价", "price_paid"),
        "store": STORE_HEADERS,
    },
    "points": {
        "points": ("积分", "积分余额", "剩余积分", "可用积分", "points"),
        "last_visit": ("最后到店", "最后到店日期", "最近到店", "最近到店日期", "最后消费日期", "最近消费日期",
                       "last_visit"),
    },
    "visits": {
        "visit_date": ("日期", "消费日期", "到店日期", "服务日期", "就诊日期", "消费时间", "服务时间", "visit_date"),
        "service": SERVICE_HEADERS,
        "staff": ("技师", "服务技师", "服务人员", "理疗师", "医生", "员工", "服务员工", "staff"),
        "visit_ref": ("单号", "流水号", "记录编号", "消费单号", "订单号", "visit_ref"),
        "store": STORE_HEADERS,
        "notes": ("备注", "notes"),
    },
}
# What makes a sheet one kind (checked in this order: a cards sheet may carry a date column too).
DEFINING: list[tuple[SheetKind, tuple[str, ...], bool]] = [
    ("cards", ("card_ref",), True),
    ("visits", ("visit_date", "service"), True),
    ("points", ("points", "last_visit"), False),  # either one
]
REQUIRED: dict[SheetKind, tuple[str, ...]] = {
    "cards": ("card_ref", "template"), "points": (), "visits": ("visit_date", "service", "staff")}
MEMBER_KEYS = ("phone", "member_ref")
_UNIT = re.compile(r"\((元|人民币|rmb|次|分|积分|天)\)$")


def _key(text: str) -> str:
    return _UNIT.sub("", header_key(text))


def _lookup(kind: SheetKind) -> dict[str, str]:
    lookup = {}
    for target, aliases in [*MEMBER_HEADERS.items(), *SHEET_HEADERS[kind].items()]:
        for alias in aliases:
            lookup.setdefault(_key(alias), target)
    return lookup


@dataclass
class SheetPlan:
    title: str
    kind: SheetKind
    header_position: int  # index in the sheet's rows
    header_row: int  # the row number a spreadsheet shows
    columns: dict[str, tuple[int, str]]  # field → (column index, header)
    ignored: list[str]

    def header_of(self, field: str) -> str | None:
        found = self.columns.get(field)
        return found[1] if found else None

    def cell(self, values: list[Any], field: str) -> Any:
        found = self.columns.get(field)
        return values[found[0]] if found and found[0] < len(values) else None

    def columns_out(self) -> list[ImportColumnOut]:
        return [ImportColumnOut(column=header, field=field)
                for field, (_, header) in sorted(self.columns.items(), key=lambda c: c[1][0])]


def _kind_of(keys: set[str]) -> SheetKind | None:
    for kind, defining, every in DEFINING:
        lookup = _lookup(kind)
        found = {lookup[k] for k in keys if k in lookup}
        if (all if every else any)(field in found for field in defining):
            return kind
    return None


def plan_sheet(title: str, rows: list[tuple[int, list[Any]]]) -> SheetPlan | None:
    """The sheet's kind and columns from the first row (of the first few) naming a kind's headers; None for a
    sheet that is none of them (a notes sheet, a chart)."""
    for position, (number, values) in enumerate(rows[:HEADER_SEARCH_ROWS]):
        headers = ["" if v is None else str(v) for v in values]
        kind = _kind_of({_key(h) for h in headers if h.strip()})
        if kind is None:
            continue
        lookup = _lookup(kind)
        columns: dict[str, tuple[int, str]] = {}
        ignored = []
        for index, header in enumerate(headers):
            field = lookup.get(_key(header)) if header.strip() else None
            if field is not None and field not in columns:
                columns[field] = (index, header.strip())
            elif header.strip():
                ignored.append(header.strip())
        return SheetPlan(title, kind, position, number, columns, ignored)
    return None


# ---------------------------------------------------------------- the template


def _hint(field: str) -> str:
    return {
        "card_ref": "必填；旧系统的卡号，再次导入时按卡号跳过已导入的卡",
        "phone": "会员手机号（或填会员编号）",
        "member_ref": "会员编号（会员导入时的“会员编号”列）",
        "member_name": "可选；与系统中会员姓名不一致时提示",
        "template": "必填；系统中卡项（卡模板）的名称",
        "service": "次卡/疗程卡：项目名称；一张疗程卡每个项目一行，卡号相同",
        "sessions": "次卡/疗程卡：该项目剩余次数",
        "principal": "储值卡：剩余本金（元）",
        "bonus": "储值卡：剩余赠送金额（元）",
        "expires": "到期日期；期限卡必填（或填开卡日期按卡项有效天数推算）",
        "opened": "开卡日期",
        "price_paid": "实付金额（元）；不填按卡项售价",
        "store": "门店名称；不填用导入时指定的门店",
        "points": "积分余额",
        "last_visit": "最后到店日期",
        "visit_date": "必填；到店日期（可带时间）",
        "staff": "必填；技师登录名或姓名（已离职员工请先建为停用账号）",
        "visit_ref": "旧系统单号；不填按内容生成",
        "notes": "备注",
    }.get(field, "")


TEMPLATE_SHEETS: list[tuple[str, SheetKind, list[str]]] = [
    ("卡项", "cards", ["card_ref", "phone", "member_name", "template", "service", "sessions", "principal", "bonus",
                      "expires", "opened", "price_paid", "store"]),
    ("会员积分", "points", ["phone", "member_name", "points", "last_visit"]),
    ("消费记录", "visits", ["visit_ref", "phone", "member_name", "visit_date", "service", "staff", "store", "notes"]),
]


def _header(kind: SheetKind, field: str) -> str:
    aliases = MEMBER_HEADERS.get(field) or SHEET_HEADERS[kind][field]
    return aliases[0] + ("(元)" if field in ("principal", "bonus", "price_paid") else "")


def template_workbook() -> bytes:
    """An empty workbook with one sheet per kind and the headers the import recognises, and a sheet of hints."""
    sheets = [Sheet(title, [_header(kind, f) for f in fields], []) for title, kind, fields in TEMPLATE_SHEETS]
    hints = [[title, _header(kind, f), _hint(f)] for title, kind, fields in TEMPLATE_SHEETS for f in fields]
    return build_workbook([*sheets, Sheet("填写说明", ["工作表", "列", "说明"], hints, column_width=40)])
