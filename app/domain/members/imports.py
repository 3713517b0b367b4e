"""Member import from .xlsx and .csv: map columns to member fields, validate every row, then write.

A dry run validates and reports without writing members (the run itself is kept as a `checked`
import record). A real run is `all_or_nothing` (any bad row: nothing is written, 422 with the report)
or `per_row` (good rows are written, bad rows reported). A row whose phone already belongs to a member
is skipped or updates that member (`on_existing`), so importing the same file twice creates nobody twice.
Every write goes through the member service — new members in batches (`create_members_bulk`, the
checks of `create_member` with one query per lookup per batch), updates through `update_member` and
`change_tags` — so an imported member is validated, audited and announced like any other; the import
adds one audit entry of its own with the counts. Existing phones are looked up once for the whole file.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Text, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.errors import AppError, NotFound, PayloadTooLarge, Unprocessable
from app.core.settings import get_settings
from app.domain.members import custom_fields as fields
from app.domain.members import service
from app.domain.members.models import CustomFieldDefinition, Member, MemberImport, MemberTag, Tag
from app.domain.members.normalize import normalize_id_number, normalize_phone
from app.domain.members.schemas import MemberCreate, MemberUpdate, TagChange
from app.domain.members.spreadsheets import Table, read_table, undo_neutralize

ImportMode = Literal["all_or_nothing", "per_row"]
OnExisting = Literal["skip", "update"]

PROFILE_FIELDS = ("name", "phone", "gender", "birthday", "id_number", "address", "source_channel", "notes", "tags",
                  "home_store", "owner_staff")
HEALTH_FIELDS = ("allergy_history", "past_history", "family_history", "constitution", "health_summary")

# Headers recognised without a mapping. The first of each is the template's header.
DEFAULT_HEADERS: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "名字", "会员姓名", "客户姓名", "name"),
    "phone": ("手机号", "手机", "手机号码", "电话", "联系电话", "电话号码", "phone", "mobile"),
    "gender": ("性别", "gender", "sex"),
    "birthday": ("生日", "出生日期", "出生年月日", "birthday", "birth_date"),
    "id_number": ("身份证号", "身份证", "身份证号码", "id_number"),
    "address": ("地址", "住址", "联系地址", "address"),
    "source_channel": ("来源渠道", "来源", "渠道", "客户来源", "source_channel", "source"),
    "notes": ("备注", "notes", "note", "remark"),
    "tags": ("标签", "tags"),
    "home_store": ("门店", "所属门店", "归属门店", "home_store", "store"),
    "owner_staff": ("顾问", "所属顾问", "专属顾问", "owner_staff", "consultant"),
    "health.allergy_history": ("过敏史", "allergy_history"),
    "health.past_history": ("既往史", "past_history"),
    "health.family_history": ("家族史", "family_history"),
    "health.constitution": ("体质", "constitution"),
    "health.health_summary": ("健康摘要", "health_summary"),
}
TEMPLATE_FIELDS = PROFILE_FIELDS
REQUIRED_FIELDS = ("name", "phone")
# Rows above the header (a title such as "2024年会员名单") are tolerated this far down.
HEADER_SEARCH_ROWS = 10
LIST_SEPARATORS = re.compile(r"[,，、;；|\n]+")
REPORT_VALUE_CHARS = 100
MAX_MAPPING_ENTRIES = 200
# New members are written this many at a time; a refused batch is retried row by row to find the bad row.
CREATE_BATCH = 500
PERSONAL_ID_FIELDS = ("phone", "id_number")

_GENDERS = {"男": "male", "男性": "male", "m": "male", "male": "male", "先生": "male",
            "女": "female", "女性": "female", "f": "female", "female": "female", "女士": "female",
            "其他": "other", "other": "other"}
_BOOLEANS = {"是": True, "否": False, "true": True, "false": False, "yes": True, "no": False, "y": True, "n": False,
             "1": True, "0": False, "√": True, "×": False, "有": True, "无": False}
_YMD = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
_COMPACT_YMD = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_EXCEL_EPOCH = date(1899, 12, 30)
# A number cell saved as text by some tools: "13812345678.0".
_TRAILING_ZEROES = re.compile(r"(?<=\d)\.0+$")


# ---------------------------------------------------------------- the report


class ImportRowError(BaseModel):
    row: int = Field(description="1-based row number in the file, as a spreadsheet program shows it")
    field: str = Field(description="Member field, e.g. `phone`, `birthday`, `custom.tongue`, `health.constitution`")
    column: str | None = Field(None, description="The file's column header")
    message: str
    value: str | None = Field(None, description="The cell as read (phone and ID numbers masked, long text cut)")


class ImportRowExisting(ImportRowError):
    member_id: UUID
    action: Literal["skip", "update", "unchanged"]


class ImportColumn(BaseModel):
    column: str
    field: str


class ImportReport(BaseModel):
    id: UUID
    filename: str
    file_sha256: str
    file_type: str
    dry_run: bool
    mode: str
    on_existing: str
    status: str = Field(description="checked (dry run) | imported | partially_imported | rejected")
    total_rows: int = Field(description="Data rows in the file (blank rows not counted)")
    created_count: int = Field(description="Members created (a dry run: that would be created)")
    updated_count: int
    skipped_count: int = Field(description="Rows whose phone belongs to an existing member, left as they were")
    error_count: int = Field(description="Rows with at least one error (not written)")
    columns: list[ImportColumn]
    ignored_columns: list[str]
    errors: list[ImportRowError]
    existing: list[ImportRowExisting] = Field(description="Rows matching an existing member by phone")
    created_at: datetime | None
    created_by: UUID | None


# ---------------------------------------------------------------- columns and mapping


def _header_key(text: str) -> str:
    cleaned = re.sub(r"[\s*＊]|[(（]必填[)）]", "", text or "")
    return cleaned.lower()


def _cell_header(value: Any) -> str:
    return "" if value is None else str(value).strip().lstrip("\ufeff")


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
    field wins (a sheet with both 手机 and 电话 imports 手机 and ignores 电话)."""
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


def cell_text(value: Any) -> str | None:
    """The cell as text, as a person would read it; None when empty."""
    if isinstance(value, str):  # by far the most common: check it first
        text = value.strip().strip("\ufeff\u200b")
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


def normalize_tags(text: str, synonyms: dict[str, str]) -> list[str]:
    """Split a tag cell and map every synonym to its standard tag (落枕 → 颈椎病); unknown tags stay as written."""
    folded = {k.casefold(): v for k, v in synonyms.items()}
    tags: list[str] = []
    for raw in split_list(text):
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


# ---------------------------------------------------------------- what the tenant already has


@dataclass
class ExistingMember:
    id: UUID
    row: Member | None = None  # loaded when the import may update the member
    tags: set[str] = field(default_factory=set)


@dataclass
class ImportContext:
    definitions: list[CustomFieldDefinition]
    synonyms: dict[str, str]
    stores: dict[str, UUID | None]  # name or id → id; None when two stores share the name
    staff: dict[str, UUID | None]  # username, display name or id → id; None when ambiguous
    existing: dict[str, ExistingMember] = field(default_factory=dict)  # phone index → member

    @property
    def active_definitions(self) -> dict[str, CustomFieldDefinition]:
        return {d.key: d for d in self.definitions if d.active}


def _unique_lookup(pairs: list[tuple[str, UUID]]) -> dict[str, UUID | None]:
    lookup: dict[str, UUID | None] = {}
    for key, value in pairs:
        lookup[key] = value if lookup.get(key, value) == value else None
    return lookup


async def load_context(session: AsyncSession, tenant_id: UUID) -> ImportContext:
    from app.domain.iam.models import Staff
    from app.domain.tenancy.models import Store

    definitions = list((await session.exec(
        select(CustomFieldDefinition).where(CustomFieldDefinition.tenant_id == tenant_id)
        .order_by(CustomFieldDefinition.position, CustomFieldDefinition.key))).all())
    stores = (await session.exec(select(Store.id, Store.name).where(Store.tenant_id == tenant_id))).all()
    staff = (await session.exec(select(Staff.id, Staff.username, Staff.display_name)
                                .where(Staff.tenant_id == tenant_id))).all()
    # Usernames are unique and win over display names; ids are accepted too.
    staff_lookup = _unique_lookup([(name, sid) for sid, _, name in staff])
    staff_lookup.update({username: sid for sid, username, _ in staff})
    staff_lookup.update({str(sid): sid for sid, _, _ in staff})
    store_lookup = _unique_lookup([(name, sid) for sid, name in stores])
    store_lookup.update({str(sid): sid for sid, _ in stores})
    return ImportContext(definitions=definitions, synonyms=await service.synonym_map(session, tenant_id),
                         stores=store_lookup, staff=staff_lookup)


def _any_of(name: str, values: list[Any], item_type: Any) -> Any:
    """One array parameter (`= ANY(:values)`) instead of one bind parameter per value."""
    return any_(bindparam(name, value=values, type_=ARRAY(item_type)))


async def load_existing(session: AsyncSession, tenant_id: UUID, phone_indexes: list[str], *,
                        for_update: bool) -> dict[str, ExistingMember]:
    """Members already holding any of the file's phones, in one query for the whole file (with their
    profile and tags when they may be updated, to write only what changes)."""
    if not phone_indexes:
        return {}
    holds_phone = (Member.tenant_id == tenant_id, Member.phone_index == _any_of("phones", phone_indexes, Text))
    if not for_update:
        rows = (await session.exec(select(Member.phone_index, Member.id).where(*holds_phone))).all()
        return {index: ExistingMember(member_id) for index, member_id in rows}
    members = (await session.exec(select(Member).where(*holds_phone))).all()
    links = (await session.exec(
        select(MemberTag.member_id, Tag.name)
        .join(Tag, (Tag.tenant_id == MemberTag.tenant_id) & (Tag.id == MemberTag.tag_id))
        .where(MemberTag.tenant_id == tenant_id,
               MemberTag.member_id == _any_of("members", [m.id for m in members], PgUUID(as_uuid=True))))).all()
    tags: dict[UUID, set[str]] = {}
    for member_id, name in links:
        tags.setdefault(member_id, set()).add(name)
    return {m.phone_index: ExistingMember(m.id, m, tags.get(m.id, set())) for m in members}


# ---------------------------------------------------------------- validating rows


@dataclass
class RowPlan:
    row: int
    values: dict[str, Any] = field(default_factory=dict)  # MemberCreate fields
    cells: dict[str, Any] = field(default_factory=dict)  # field → raw cell, for the report
    errors: list[ImportRowError] = field(default_factory=list)
    phone_index: str | None = None
    existing: ExistingMember | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def existing_id(self) -> UUID | None:
        return self.existing.id if self.existing else None


def report_value(member_field: str, raw: Any) -> str | None:
    """What the report repeats of a cell: personal identifiers masked, health text left out, long text cut."""
    text = cell_text(raw)
    if text is None or member_field.startswith("health."):
        return None
    if member_field in PERSONAL_ID_FIELDS:
        keep = 3 if len(text) >= 8 else 0
        return text[:keep] + "*" * max(len(text) - keep - 2, 1) + text[-2:] if len(text) > 2 else "*" * len(text)
    return text if len(text) <= REPORT_VALUE_CHARS else text[:REPORT_VALUE_CHARS] + "…"


class RowValidator:
    """Turns one file row into MemberCreate fields, collecting every problem instead of stopping at the first."""

    def __init__(self, columns: ColumnPlan, context: ImportContext) -> None:
        self.columns = columns
        self.context = context
        self.definitions = context.active_definitions

    def error(self, plan: RowPlan, member_field: str, message: str) -> None:
        plan.errors.append(ImportRowError(
            row=plan.row, field=member_field, column=self.columns.header_of(member_field), message=message,
            value=report_value(member_field, plan.cells.get(member_field))))

    def plan_row(self, number: int, values: list[Any]) -> RowPlan:
        plan = RowPlan(row=number)
        custom: dict[str, Any] = {}
        health: dict[str, Any] = {}
        for column in self.columns.columns:
            raw = values[column.index] if column.index < len(values) else None
            plan.cells[column.field] = raw
            text = cell_text(raw)
            if text is None:
                continue
            try:
                self._convert(plan, column.field, raw, text, custom, health)
            except CellError as exc:
                self.error(plan, column.field, str(exc))
        for required in REQUIRED_FIELDS:
            if required not in plan.values and not any(e.field == required for e in plan.errors):
                self.error(plan, required, "is required")
        existing = self.context.existing.get(plan.phone_index or "")
        self._validate_custom(plan, custom, existing.row.custom_fields if existing and existing.row else None,
                              creating=existing is None)
        if health:
            plan.values["health"] = health
        self._validate_schema(plan)
        return plan

    def _convert(self, plan: RowPlan, member_field: str, raw: Any, text: str, custom: dict[str, Any],
                 health: dict[str, Any]) -> None:
        kind, _, name = member_field.partition(".")
        if kind == "custom":
            custom[name] = custom_value(self.definitions[name], raw)
        elif kind == "health":
            health[name] = split_list(text) if name == "constitution" else text
        elif member_field == "phone":
            phone = normalize_phone(_TRAILING_ZEROES.sub("", text))
            if phone is None:
                raise CellError("is not a valid phone number (a mainland mobile, or +country number)")
            plan.values["phone"] = phone
            plan.phone_index = crypto.blind_index(phone, purpose="phone")
        elif member_field == "id_number":
            if normalize_id_number(text) is None:
                raise CellError("is not a valid 18-character resident ID (birth date or check digit wrong)")
            plan.values["id_number"] = text
        elif member_field == "gender":
            plan.values["gender"] = parse_gender(text)
        elif member_field == "birthday":
            plan.values["birthday"] = parse_date(raw)
        elif member_field == "tags":
            plan.values["tags"] = normalize_tags(text, self.context.synonyms)
        elif member_field == "home_store":
            plan.values["home_store_id"] = self._reference(self.context.stores, text, "store")
        elif member_field == "owner_staff":
            plan.values["owner_staff_id"] = self._reference(self.context.staff, text, "staff member")
        else:
            plan.values[member_field] = text

    @staticmethod
    def _reference(lookup: dict[str, UUID | None], text: str, what: str) -> UUID:
        if text not in lookup:
            raise CellError(f"no {what} named {text!r}")
        found = lookup[text]
        if found is None:
            raise CellError(f"more than one {what} is named {text!r}; use the id")
        return found

    def _validate_custom(self, plan: RowPlan, custom: dict[str, Any], current: dict[str, Any] | None, *,
                         creating: bool) -> None:
        """As the form engine will: an update may keep a retired option the member already has, and only a
        member about to be created must have every required field."""
        previous = current or {}
        cleaned: dict[str, Any] = {}
        for key, value in custom.items():
            try:
                cleaned[key] = fields.validate_value(self.definitions[key], value, previous=previous.get(key))
            except AppError as exc:
                self.error(plan, f"custom.{key}", exc.detail.split(": ", 1)[-1])
        failed = {e.field for e in plan.errors}
        for definition in self.definitions.values():
            key = f"custom.{definition.key}"
            if creating and definition.required and definition.key not in custom and key not in failed:
                self.error(plan, key, "is required")
        if cleaned:
            plan.values["custom_fields"] = cleaned

    def _validate_schema(self, plan: RowPlan) -> None:
        """The API's own rules (lengths, birthday range, tag sizes) through the same schema the API uses."""
        candidate = {k: v for k, v in plan.values.items() if k not in ("custom_fields",)}
        candidate.setdefault("name", "?")
        candidate.setdefault("phone", "00000")
        try:
            MemberCreate.model_validate(candidate)
        except ValidationError as exc:
            failed = {e.field for e in plan.errors}
            for problem in exc.errors():
                member_field = _schema_field(problem["loc"])
                if member_field not in failed:
                    failed.add(member_field)
                    self.error(plan, member_field, problem["msg"].removeprefix("Value error, "))


def _schema_field(loc: tuple[Any, ...]) -> str:
    head = str(loc[0]) if loc else "row"
    if head == "health" and len(loc) > 1:
        return f"health.{loc[1]}"
    return {"home_store_id": "home_store", "owner_staff_id": "owner_staff"}.get(head, head)


def phone_indexes(rows: list[tuple[int, list[Any]]], columns: ColumnPlan) -> list[str]:
    """The blind index of every valid phone in the file, to look them all up at once."""
    column = next(c for c in columns.columns if c.field == "phone")
    indexes = set()
    for _, values in rows:
        phone = normalize_phone(cell_text(values[column.index]) or "") if column.index < len(values) else None
        if phone is not None:
            indexes.add(crypto.blind_index(phone, purpose="phone"))
    return sorted(indexes)


def check_duplicates_and_existing(plans: list[RowPlan], context: ImportContext, columns: ColumnPlan) -> None:
    """A phone twice in the file is an error on the later rows; a phone held by a member is noted."""
    first_row: dict[str, int] = {}
    for plan in plans:
        if plan.phone_index is None:
            continue
        if plan.phone_index in first_row:
            plan.errors.append(ImportRowError(
                row=plan.row, field="phone", column=columns.header_of("phone"),
                message=f"the same phone number is already in row {first_row[plan.phone_index]} of this file",
                value=report_value("phone", plan.cells.get("phone"))))
            continue
        first_row[plan.phone_index] = plan.row
        plan.existing = context.existing.get(plan.phone_index)


# ---------------------------------------------------------------- writing


@dataclass
class Outcome:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: list[ImportRowError] = field(default_factory=list)
    existing: list[ImportRowExisting] = field(default_factory=list)


def _differs(member: Member, key: str, value: Any) -> Any:
    """The part of `value` the member does not have yet (None when nothing differs)."""
    if key == "custom_fields":
        return {k: v for k, v in value.items() if member.custom_fields.get(k) != v} or None
    if key == "health":
        return {k: v for k, v in value.items() if getattr(member, k) != v} or None
    if key == "id_number":
        index = crypto.blind_index(normalize_id_number(value), purpose="id_number")
        return value if index != member.id_number_index else None
    return value if getattr(member, key) != value else None


def _update_data(plan: RowPlan) -> tuple[MemberUpdate | None, list[str]]:
    """What the file says and the member does not have: empty cells leave values alone, tags are added
    (never removed), and a row that changes nothing writes nothing (no update, no audit entry)."""
    # Rows matching a member are planned with the member loaded when on_existing=update (load_existing).
    assert plan.existing is not None and plan.existing.row is not None
    changes = {}
    for key, value in plan.values.items():
        if key not in ("phone", "tags") and (changed := _differs(plan.existing.row, key, value)) is not None:
            changes[key] = changed
    new_tags = [t for t in plan.values.get("tags", []) if t not in plan.existing.tags]
    return (MemberUpdate.model_validate(changes) if changes else None), new_tags


def planned_action(plan: RowPlan, on_existing: OnExisting) -> str:
    """created | updated | skipped (on_existing=skip, or nothing to change) for a valid row."""
    if plan.existing is None:
        return "created"
    if on_existing == "skip":
        return "skipped"
    update, new_tags = _update_data(plan)
    return "updated" if update is not None or new_tags else "skipped"


async def _write_row(session: AsyncSession, actor: Actor, plan: RowPlan, external_ref: str) -> str:
    """One row through the member service: a new member, or (on_existing=update) the member with its phone."""
    if plan.existing_id is None:
        await service.create_member(session, actor, MemberCreate.model_validate(plan.values), tag_source="import",
                                    external_ref=external_ref)
        return "created"
    update, tags = _update_data(plan)
    if update is not None:
        await service.update_member(session, actor, plan.existing_id, update)
    if tags:
        await service.change_tags(session, actor, plan.existing_id, TagChange(add=tags), source="import")
    return "updated"


def _failure_message(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, AppError):
        return str(exc.extra.get("field") or "row"), exc.detail
    return "row", "the database refused this row (it conflicts with a change made meanwhile)"


async def _in_savepoint(session: AsyncSession, write: Callable[[], Awaitable[Any]]) -> Any:
    """Run `write` in a savepoint: a refusal undoes only its own part (and voids the audit entries it queued),
    and comes back as the exception instead of breaking the transaction."""
    mark = len(session.info.setdefault("audit_pending", []))
    try:
        async with session.begin_nested():
            return await write()
    except (AppError, IntegrityError, DataError) as exc:
        del session.info.setdefault("audit_pending", [])[mark:]
        return exc


def _external_ref(import_id: UUID, plan: RowPlan) -> str:
    return f"import:{import_id}:{plan.row}"


async def _create_batch(session: AsyncSession, actor: Actor, plans: list[RowPlan], import_id: UUID) -> bool:
    items = [(MemberCreate.model_validate(p.values), _external_ref(import_id, p)) for p in plans]
    result = await _in_savepoint(session, lambda: service.create_members_bulk(session, actor, items,
                                                                               tag_source="import"))
    return not isinstance(result, Exception)


async def _write_one(session: AsyncSession, actor: Actor, plan: RowPlan, *, mode: ImportMode, import_id: UUID,
                     outcome: Outcome) -> None:
    async def write() -> str:
        return await _write_row(session, actor, plan, _external_ref(import_id, plan))

    if mode == "per_row":
        result = await _in_savepoint(session, write)
    else:
        try:
            result = await write()
        except AppError as exc:
            result = exc
    if isinstance(result, Exception):
        member_field, message = _failure_message(result)
        plan.errors.append(ImportRowError(row=plan.row, field=member_field, column=None, message=message))
        outcome.errors.extend(plan.errors)
        if mode == "all_or_nothing":
            raise _rejected(f"row {plan.row} could not be imported: {message}; nothing was imported", outcome)
        return
    setattr(outcome, result, getattr(outcome, result) + 1)


async def write_rows(session: AsyncSession, actor: Actor, plans: list[RowPlan], *, mode: ImportMode,
                     on_existing: OnExisting, import_id: UUID, outcome: Outcome) -> None:
    """New members in batches (a few queries per batch rather than per row); rows for existing members, and
    any batch the service refused (to find the refused row), one by one."""
    actions = {p.row: planned_action(p, on_existing) for p in plans if p.ok}
    new = [p for p in plans if actions.get(p.row) == "created"]
    one_by_one = [p for p in plans if actions.get(p.row) == "updated"]
    outcome.skipped += sum(1 for action in actions.values() if action == "skipped")
    for start in range(0, len(new), CREATE_BATCH):
        batch = new[start:start + CREATE_BATCH]
        if await _create_batch(session, actor, batch, import_id):
            outcome.created += len(batch)
        else:
            one_by_one.extend(batch)
    for plan in sorted(one_by_one, key=lambda p: p.row):
        await _write_one(session, actor, plan, mode=mode, import_id=import_id, outcome=outcome)


def _rejected(detail: str, outcome: Outcome) -> Unprocessable:
    return Unprocessable(detail, code="import_rejected", errors_in_rows=sorted({e.row for e in outcome.errors}),
                         report={"errors": [e.model_dump(mode="json") for e in outcome.errors]})


# ---------------------------------------------------------------- the use case


def _safe_filename(filename: str | None) -> str:
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or "upload"


def _require_permissions(actor: Actor, columns: ColumnPlan, context: ImportContext) -> None:
    actor.require("members:write")
    health_custom = {f"custom.{d.key}" for d in context.definitions if d.health}
    if any(c.field.startswith("health.") or c.field in health_custom for c in columns.columns):
        actor.require("members.health:write")


_EXISTING_MESSAGES = {
    "skip": "this phone belongs to an existing member, who is left as they are (on_existing=skip)",
    "update": "this phone belongs to an existing member, who is updated with this row",
    "unchanged": "this phone belongs to an existing member, who already has this row's values",
}


def _existing_entries(plans: list[RowPlan], on_existing: OnExisting, columns: ColumnPlan) -> list[ImportRowExisting]:
    entries = []
    for plan in plans:
        if not plan.ok or plan.existing is None:
            continue
        action = "skip" if on_existing == "skip" else (
            "update" if planned_action(plan, on_existing) == "updated" else "unchanged")
        entries.append(ImportRowExisting(row=plan.row, field="phone", column=columns.header_of("phone"),
                                         message=_EXISTING_MESSAGES[action], member_id=plan.existing.id,
                                         value=report_value("phone", plan.cells.get("phone")), action=action))
    return entries


async def plan_file(session: AsyncSession, actor: Actor, table: Table, mapping: dict[str, str | None] | None,
                    on_existing: OnExisting) -> tuple[ColumnPlan, list[RowPlan]]:
    """Columns found, and every data row validated against the tenant's fields and existing members."""
    if not table.rows:
        raise Unprocessable("the file has no rows; the first row must be the column headers", code="empty_file")
    context = await load_context(session, actor.tenant_id)
    columns, header_position = plan_columns(table.rows, mapping, context.definitions)
    _require_permissions(actor, columns, context)
    data_rows = table.rows[header_position + 1:]
    context.existing = await load_existing(session, actor.tenant_id, phone_indexes(data_rows, columns),
                                           for_update=on_existing == "update")
    validator = RowValidator(columns, context)
    plans = [validator.plan_row(number, values) for number, values in data_rows]
    check_duplicates_and_existing(plans, context, columns)
    return columns, plans


async def import_members(session: AsyncSession, actor: Actor, *, data: bytes, filename: str | None,
                         mapping: dict[str, str | None] | None = None, dry_run: bool = True,
                         mode: ImportMode = "all_or_nothing", on_existing: OnExisting = "skip") -> ImportReport:
    """Check (dry run) or import a members file; the run is kept as a member_imports record and audited once."""
    actor.require("members:write")
    settings = get_settings()
    if len(data) > settings.import_max_bytes:
        raise PayloadTooLarge(f"the file is larger than {settings.import_max_bytes} bytes", code="file_too_large")
    table = read_table(data, filename or "", max_rows=settings.import_max_rows)
    columns, plans = await plan_file(session, actor, table, mapping, on_existing)
    record = MemberImport(tenant_id=actor.tenant_id, filename=_safe_filename(filename),
                          file_sha256=hashlib.sha256(data).hexdigest(), dry_run=dry_run, mode=mode, status="checked",
                          created_by=actor.id if actor.kind == "staff" else None)
    outcome = Outcome(existing=_existing_entries(plans, on_existing, columns))
    if dry_run:
        _count_planned(plans, on_existing, outcome)
    else:
        outcome.errors = [e for p in plans for e in p.errors]
        if mode == "all_or_nothing" and outcome.errors:
            bad_rows = len({e.row for e in outcome.errors})
            raise _rejected(f"{bad_rows} row(s) have errors; nothing was imported", outcome)
        await write_rows(session, actor, plans, mode=mode, on_existing=on_existing, import_id=record.id,
                         outcome=outcome)
    outcome.errors = sorted((e for p in plans for e in p.errors), key=lambda e: e.row)
    _finish_record(record, table.file_type, columns, len(plans), on_existing, outcome)
    session.add(record)
    await session.flush()
    audit.record(session, "member.import_check" if dry_run else "member.import", "member_import", record.id,
                 filename=record.filename, file_sha256=record.file_sha256, mode=mode, on_existing=on_existing,
                 rows=record.total_rows, created=record.created_count, updated=record.updated_count,
                 skipped=record.skipped_count, errors=record.error_count, status=record.status)
    return report_of(record)


def _count_planned(plans: list[RowPlan], on_existing: OnExisting, outcome: Outcome) -> None:
    for plan in plans:
        if plan.ok:
            action = planned_action(plan, on_existing)
            setattr(outcome, action, getattr(outcome, action) + 1)


def _finish_record(record: MemberImport, file_type: str, columns: ColumnPlan, total_rows: int,
                   on_existing: OnExisting, outcome: Outcome) -> None:
    bad_rows = len({e.row for e in outcome.errors})
    written = outcome.created + outcome.updated
    if record.dry_run:
        record.status = "checked"
    elif bad_rows == 0:
        record.status = "imported"
    else:
        record.status = "partially_imported" if written or outcome.skipped else "rejected"
    record.total_rows = total_rows
    record.created_count, record.updated_count = outcome.created, outcome.updated
    record.skipped_count, record.error_count = outcome.skipped, bad_rows
    existing = [e for e in outcome.existing if not any(err.row == e.row for err in outcome.errors)]
    record.report = {
        "file_type": file_type,
        "on_existing": on_existing,
        "header_row": columns.header_row,
        "columns": [{"column": c.header, "field": c.field} for c in columns.columns],
        "ignored_columns": columns.ignored,
        "errors": [e.model_dump(mode="json") for e in outcome.errors],
        "existing": [e.model_dump(mode="json") for e in existing],
    }


def report_of(record: MemberImport) -> ImportReport:
    report = record.report or {}
    return ImportReport(
        id=record.id, filename=record.filename, file_sha256=record.file_sha256,
        file_type=report.get("file_type", ""), dry_run=record.dry_run, mode=record.mode,
        on_existing=report.get("on_existing", "skip"), status=record.status, total_rows=record.total_rows,
        created_count=record.created_count, updated_count=record.updated_count,
        skipped_count=record.skipped_count, error_count=record.error_count,
        columns=report.get("columns", []), ignored_columns=report.get("ignored_columns", []),
        errors=report.get("errors", []), existing=report.get("existing", []),
        created_at=record.created_at, created_by=record.created_by)


async def get_import(session: AsyncSession, actor: Actor, import_id: UUID) -> ImportReport:
    actor.require("members:write")
    record = await session.get(MemberImport, (actor.tenant_id, import_id))
    if record is None:
        raise NotFound("import not found", code="member_import_not_found")
    return report_of(record)


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
