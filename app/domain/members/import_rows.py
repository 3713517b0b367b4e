"""Member import, the tenant's side: what it already has (fields, synonyms, stores, staff, members holding the
file's phones), and every data row validated into member fields."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy import Text, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import crypto
from app.core.errors import AppError
from app.domain.iam import service as iam
from app.domain.members import custom_fields as fields
from app.domain.members.import_columns import (
    REQUIRED_FIELDS,
    CellError,
    ColumnPlan,
    cell_text,
    custom_value,
    normalize_tags,
    parse_date,
    parse_gender,
    split_list,
)
from app.domain.members.loading import definitions_of
from app.domain.members.models import CustomFieldDefinition, Member, MemberTag, Tag
from app.domain.members.normalize import normalize_id_number, normalize_phone
from app.domain.members.schemas import ImportRowError, MemberCreate
from app.domain.members.tags import synonym_map
from app.domain.tenancy import service as tenancy

REPORT_VALUE_CHARS = 100
PERSONAL_ID_FIELDS = ("phone", "id_number")
# A number cell saved as text by some tools: "13812345678.0".
_TRAILING_ZEROES = re.compile(r"(?<=\d)\.0+$")


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
    definitions = await definitions_of(session, tenant_id)
    stores = (await tenancy.store_names(session, tenant_id)).items()
    staff = await iam.staff_names(session, tenant_id)
    # Usernames are unique and win over display names; ids are accepted too.
    staff_lookup = _unique_lookup([(name, sid) for sid, _, name in staff])
    staff_lookup.update({username: sid for sid, username, _ in staff})
    staff_lookup.update({str(sid): sid for sid, _, _ in staff})
    store_lookup = _unique_lookup([(name, sid) for sid, name in stores])
    store_lookup.update({str(sid): sid for sid, _ in stores})
    return ImportContext(definitions=definitions, synonyms=await synonym_map(session, tenant_id),
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
