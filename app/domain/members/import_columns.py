"""Member import, the file's side: which column holds which member field, and turning cells into values."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from app.core.errors import Unprocessable
from app.domain.members.models import CustomFieldDefinition
from app.domain.members.spreadsheets import undo_neutralize

PROFILE_FIELDS = ("name", "phone", "gender", "birthday", "id_number", "address", "source_channel", "notes", "tags",
                  "home_store", "owner_staff", "other_phone", "external_ref")
HEALTH_FIELDS = ("allergy_history", "past_history", "family_history", "constitution", "health_summary")

# Headers recognised without a mapping. The first of each is the template's header.
DEFAULT_HEADERS: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "名字", "会员姓名", "客户姓名", "顾客姓名", "患者姓名", "会员名称", "客户名称", "name"),
    "phone": ("手机号", "手机", "手机号码", "移动电话", "会员手机", "客户手机", "电话", "联系电话", "电话号码", "phone",
              "mobile"),
    "gender": ("性别", "会员性别", "gender", "sex"),
    "birthday": ("生日", "出生日期", "出生年月日", "会员生日", "客户生日", "birthday", "birth_date"),
    "id_number": ("身份证号", "身份证", "身份证号码", "证件号码", "id_number"),
    "address": ("地址", "住址", "联系地址", "家庭住址", "家庭地址", "address"),
    "source_channel": ("来源渠道", "来源", "渠道", "客户来源", "会员来源", "获客渠道", "source_channel", "source"),
    "notes": ("备注", "备注信息", "会员备注", "客户备注", "notes", "note", "remark"),
    "tags": ("标签", "会员标签", "客户标签", "顾客标签", "标签名称", "tags"),
    "home_store": ("门店", "所属门店", "归属门店", "注册门店", "home_store", "store"),
    "owner_staff": ("顾问", "所属顾问", "专属顾问", "归属顾问", "客户经理", "owner_staff", "consultant"),
    # A second number: a landline (座机) or any number that is not the member's mobile.
    "other_phone": ("其他电话", "座机", "固话", "固定电话", "家庭电话", "办公电话", "备用电话", "其它电话", "电话2",
                    "other_phone"),
    # The member's number in the old system, kept so later imports (cards, history) can find them by it.
    "external_ref": ("会员编号", "会员号", "客户编号", "顾客编号", "档案号", "external_ref", "member_no"),
    "health.allergy_history": ("过敏史", "allergy_history"),
    "health.past_history": ("既往史", "past_history"),
    "health.family_history": ("家族史", "family_history"),
    "health.constitution": ("体质", "constitution"),
    "health.health_summary": ("健康摘要", "health_summary"),
}
TEMPLATE_FIELDS = PROFILE_FIELDS
REQUIRED_FIELDS = ("name", "phone")
# Free text, whose full-width punctuation is the writing's own (see clean_text).
PROSE_FIELDS = ("notes", "address", *(f"health.{f}" for f in HEALTH_FIELDS if f != "constitution"))
# Rows above the header (a title such as "2024年会员名单") are tolerated this far down.
HEADER_SEARCH_ROWS = 10
LIST_SEPARATORS = re.compile(r"[,，、;；|\n]+")
# One phone cell holding two numbers: "13812345678 / 021-64381234".
PHONE_SEPARATORS = re.compile(r"[,，、;；|/\n]+|或")
MAX_MAPPING_ENTRIES = 200

_GENDERS = {"男": "male", "男性": "male", "m": "male", "male": "male", "先生": "male",
            "女": "female", "女性": "female", "f": "female", "female": "female", "女士": "female",
            "其他": "other", "other": "other"}
_BOOLEANS = {"是": True, "否": False, "true": True, "false": False, "yes": True, "no": False, "y": True, "n": False,
             "1": True, "0": False, "√": True, "×": False, "有": True, "无": False}
_YMD = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
_COMPACT_YMD = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_EXCEL_EPOCH = date(1899, 12, 30)
_INVISIBLE = re.compile("[\u200b-\u200d\u2060\ufeff\u00ad]")
_SPACES = re.compile(r"[^\S\n]+")
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_GAP = re.compile(f"(?<=[{_CJK}]) +(?=[{_CJK}])")
# A row summing up the ones above it, as exports end: "合计：8人", "总计", "小计 3", "共8人", "Total".
_TOTALS = re.compile(r"^(?:合计|总计|小计|共计|汇总|总数|累计|总人数|grand ?total|sub ?total|total|sum)(?![a-z])"
                     r"|^共\d+[人名位条张行个项]", re.IGNORECASE)
TOTALS_LABEL_CHARS = 30


def clean_text(text: str, *, prose: bool = False) -> str:
    """Text as the person meant it: full-width letters, digits and punctuation as their ordinary forms (NFKC:
    １３８ → 138, ：→ :), ideographic and non-breaking spaces as spaces, invisible characters (zero-width
    space, BOM) gone, runs of spaces collapsed and every line trimmed. `prose` (notes, an address) keeps its
    characters: Chinese sentences are written with full-width punctuation (，。；), which NFKC would turn into
    ASCII; only its spaces and invisible characters are cleaned."""
    text = text if prose else unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub(" ", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def without_cjk_gaps(text: str) -> str:
    """A Chinese name padded to line up in a column ("王　芳") as written ("王芳"); Latin names keep their spaces."""
    return _CJK_GAP.sub("", text)


def totals_label(values: list[Any]) -> str | None:
    """The label when the row is a totals row (its first or second filled cell starts with 合计, 总计, 共8人…)."""
    filled = [t for t in (cell_text(v) for v in values) if t is not None][:2]
    for text in filled:
        compact = text.replace(" ", "")
        if len(compact) <= TOTALS_LABEL_CHARS and _TOTALS.match(compact):
            return text
    return None


# ---------------------------------------------------------------- columns and mapping


def _header_key(text: str) -> str:
    cleaned = re.sub(r"[\s*]|\(必填\)|[:]$", "", clean_text(text or ""))
    return cleaned.lower()


def header_key(text: str) -> str:
    """A header as compared with the known ones: normalised, without spaces, `*` or "(必填)", lower case."""
    return _header_key(text)


def _cell_header(value: Any) -> str:
    return "" if value is None else clean_text(str(value))


@dataclass
class Column:
    index: int
    header: str
    field: str  # name, phone, …, health.<field>, custom.<key>


@dataclass
class ColumnPlan:
    header_row: int
    columns: list[Column]
    ignored: list[str]

    def header_of(self, member_field: str) -> str | None:
        return next((c.header for c in self.columns if c.field == member_field), None)


def _custom_aliases(definitions: list[CustomFieldDefinition]) -> dict[str, tuple[str, ...]]:
    return {f"custom.{d.key}": (d.label, d.key, f"{d.label}({d.key})") for d in definitions if d.active}


def _default_lookup(definitions: list[CustomFieldDefinition]) -> dict[str, str]:
    """Normalised header → field; the profile's own names win over a custom field's label."""
    lookup: dict[str, str] = {}
    for target, aliases in [*_custom_aliases(definitions).items(), *DEFAULT_HEADERS.items()]:
        for alias in aliases:
            lookup[_header_key(alias)] = target
    return lookup


def _invalid_mapping(detail: str) -> Unprocessable:
    return Unprocessable(detail, code="invalid_mapping", field="mapping")


def _check_target(target: str, definitions: dict[str, CustomFieldDefinition], header: str) -> None:
    if target in PROFILE_FIELDS:
        return
    kind, _, name = target.partition(".")
    if kind == "health" and name in HEALTH_FIELDS:
        return
    if kind == "custom":
        definition = definitions.get(name)
        if definition is None:
            raise _invalid_mapping(f"column {header!r}: {name!r} is not a defined member field")
        if not definition.active:
            raise _invalid_mapping(f"column {header!r}: member field {name!r} is no longer in use")
        return
    raise _invalid_mapping(f"column {header!r}: unknown field {target!r}; use one of {', '.join(PROFILE_FIELDS)}, "
                           "health.<field> or custom.<key>")


def parse_mapping(raw: str | None) -> dict[str, str | None] | None:
    """The `mapping` form field: a JSON object of file column header → member field (null ignores a column)."""
    if raw is None or not raw.strip():
        return None
    try:
        mapping = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _invalid_mapping(f"mapping is not valid JSON: {exc.msg}") from exc
    if not isinstance(mapping, dict) or len(mapping) > MAX_MAPPING_ENTRIES:
        raise _invalid_mapping(f"mapping must be a JSON object of at most {MAX_MAPPING_ENTRIES} columns")
    for header, target in mapping.items():
        if target is not None and not isinstance(target, str):
            raise _invalid_mapping(f"column {header!r}: the field must be a string or null")
    return {str(h).strip(): (t.strip() or None) if isinstance(t, str) else None for h, t in mapping.items()}


def _find_header(rows: list[tuple[int, list[Any]]], is_header: Callable[[list[str]], bool]) -> int:
    """Index (in `rows`) of the header: the first row naming a known column, else the first row."""
    for position, (_, values) in enumerate(rows[:HEADER_SEARCH_ROWS]):
        if is_header([_cell_header(v) for v in values]):
            return position
    return 0


def _assign_columns(header_cells: list[str], explicit: dict[str, str | None], lookup: dict[str, str]) -> list[Column]:
    """The mapping's columns first, then recognised headers for fields still free; the first column of a
    field wins, but a second phone column (手机 and 电话) holds the other phone when none is named."""
    columns: list[Column] = []
    taken: dict[str, str] = {}
    for index, header in enumerate(header_cells):
        target = explicit.get(_header_key(header)) if header else None
        if target is None:
            continue
        if target in taken:
            raise _invalid_mapping(f"columns {taken[target]!r} and {header!r} both map to {target}")
        taken[target] = header
        columns.append(Column(index, header, target))
    for index, header in enumerate(header_cells):
        key = _header_key(header)
        target = lookup.get(key) if header and key not in explicit else None
        if target == "phone" and "phone" in taken:
            target = "other_phone"
        if target is not None and target not in taken:
            taken[target] = header
            columns.append(Column(index, header, target))
    return sorted(columns, key=lambda c: c.index)


def plan_columns(rows: list[tuple[int, list[Any]]], mapping: dict[str, str | None] | None,
                 definitions: list[CustomFieldDefinition]) -> tuple[ColumnPlan, int]:
    """Which column holds which field; returns the plan and the position of the header in `rows`."""
    by_key = {d.key: d for d in definitions}
    lookup = _default_lookup(definitions)
    explicit = {_header_key(h): t for h, t in (mapping or {}).items()}
    for header, target in (mapping or {}).items():
        if target is not None:
            _check_target(target, by_key, header)

    def is_header(cells: list[str]) -> bool:
        keys = {_header_key(c) for c in cells}
        return bool(keys & set(explicit)) or any(lookup.get(k) in REQUIRED_FIELDS for k in keys)

    position = _find_header(rows, is_header)
    header_row, header_cells = rows[position][0], [_cell_header(v) for v in rows[position][1]]
    present = {_header_key(h) for h in header_cells}
    missing = [h for h in (mapping or {}) if _header_key(h) not in present]
    if missing:
        raise _invalid_mapping(f"column {missing[0]!r} of the mapping is not in the file's header (row {header_row})")
    columns = _assign_columns(header_cells, explicit, lookup)
    taken = {c.field for c in columns}
    ignored = [h for i, h in enumerate(header_cells) if h and all(c.index != i for c in columns)]
    for required in REQUIRED_FIELDS:
        if required not in taken:
            raise Unprocessable(f"no column for {required} (expected a header such as "
                                f"{DEFAULT_HEADERS[required][0]!r}, or map one in `mapping`)",
                                code="missing_column", field=required, header_row=header_row)
    return ColumnPlan(header_row, columns, ignored), position


# ---------------------------------------------------------------- turning cells into values


class CellError(ValueError):
    """A cell that cannot become a value of its field; the message is shown to the user."""


def cell_text(value: Any, *, prose: bool = False) -> str | None:
    """The cell as text, as a person would read it (normalised by `clean_text`); None when empty."""
    if isinstance(value, str):  # by far the most common: check it first
        text = clean_text(value, prose=prose)
        return undo_neutralize(text) if text else None
    if value is None:
        return None
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    text = str(value).strip()
    return text or None


def parse_date(value: Any) -> date:
    """2024-03-05, 2024/3/5, 2024.3.5, 2024年3月5日, 20240305, or an Excel date cell (or serial number)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 19000101 <= value <= 22001231 and float(value).is_integer():
            return parse_date(str(int(value)))
        if 1 <= value < 100_000:  # an Excel serial day number whose cell lost its date format
            return _EXCEL_EPOCH + timedelta(days=int(value))
        raise CellError("is not a date")
    text = cell_text(value) or ""
    text = re.split(r"[ T]", text, maxsplit=1)[0] if re.match(r"^\d{4}-\d{2}-\d{2}[ T]", text) else text
    match = _YMD.match(text) or _COMPACT_YMD.match(text)
    if not match:
        raise CellError("is not a date (use 2024-03-05, 2024/3/5 or 20240305)")
    try:
        return date(*(int(part) for part in match.groups()))
    except ValueError as exc:
        raise CellError("is not a real calendar date") from exc


def parse_gender(text: str) -> str:
    gender = _GENDERS.get(text.strip().lower())
    if gender is None:
        raise CellError("must be 男 or 女 (male/female)")
    return gender


def parse_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    parsed = _BOOLEANS.get((cell_text(value) or "").lower())
    if parsed is None:
        raise CellError("must be 是 or 否")
    return parsed


def parse_number(value: Any) -> float | int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        try:
            number = float((cell_text(value) or "").replace(",", ""))
        except ValueError as exc:
            raise CellError("must be a number") from exc
    if not math.isfinite(number):
        raise CellError("must be a number")
    return int(number) if number.is_integer() else number


def split_list(text: str) -> list[str]:
    return [part.strip() for part in LIST_SEPARATORS.split(text) if part.strip()]


def split_phones(text: str) -> list[str]:
    """The numbers in one phone cell ("13812345678/021-64381234"); spaces inside a number stay with it."""
    return [part.strip() for part in PHONE_SEPARATORS.split(text) if part.strip()]


def normalize_tags(text: str, synonyms: dict[str, str]) -> list[str]:
    """Split a tag cell and map every synonym to its standard tag (落枕 → 颈椎病); unknown tags stay as written.
    Chinese tags separated only by a space ("颈椎病 失眠") are two tags."""
    folded = {k.casefold(): v for k, v in synonyms.items()}
    tags: list[str] = []
    for raw in (part for chunk in split_list(text) for part in _CJK_GAP.split(chunk)):
        tag = synonyms.get(raw) or folded.get(raw.casefold()) or raw
        if tag not in tags:
            tags.append(tag)
    return tags


def _option_value(definition: CustomFieldDefinition, text: str) -> str:
    """A select option by its value, or by its label when people typed what they see."""
    values = {o["value"] for o in definition.options}
    if text in values:
        return text
    by_label = [o["value"] for o in definition.options if o.get("label") == text]
    return by_label[0] if len(by_label) == 1 else text


def custom_value(definition: CustomFieldDefinition, value: Any) -> Any:
    """The Python value for a custom field from a cell, before the form engine validates it."""
    kind = definition.type
    if kind in ("number", "scale"):
        return parse_number(value)
    if kind == "boolean":
        return parse_boolean(value)
    if kind == "date":
        return parse_date(value).isoformat()
    text = cell_text(value) or ""
    if kind == "single_select":
        return _option_value(definition, text)
    if kind == "multi_select":
        return [_option_value(definition, part) for part in split_list(text)]
    return text


def template_headers(definitions: list[CustomFieldDefinition]) -> list[tuple[str, str]]:
    """(header, field) for the import template: the default Chinese headers, then the active custom fields."""
    headers = [(DEFAULT_HEADERS[f][0], f) for f in TEMPLATE_FIELDS]
    active = [d for d in definitions if d.active]
    labels = [d.label for d in active]
    taken = {h for h, _ in headers}
    for definition in active:
        label = definition.label
        header = label if labels.count(label) == 1 and label not in taken else f"{label}({definition.key})"
        headers.append((header, f"custom.{definition.key}"))
    return headers
