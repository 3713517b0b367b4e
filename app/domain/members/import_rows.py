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
    PROSE_FIELDS,
    REQUIRED_FIELDS,
    CellError,
    ColumnPlan,
    cell_text,
    custom_value,
    normalize_tags,
    parse_date,
    parse_gender,
    split_list,
    split_phones,
    without_cjk_gaps,
)
from app.domain.members.loading import definitions_of
from app.domain.members.models import CustomFieldDefinition, Member, MemberStatus, MemberTag, Tag
from app.domain.members.normalize import normalize_id_number, normalize_other_phone, normalize_phone
from app.domain.members.profiles import other_phone_index
from app.domain.members.schemas import ImportRowError, MemberCreate
from app.domain.members.tags import synonym_map
from app.domain.tenancy import service as tenancy

REPORT_VALUE_CHARS = 100
PERSONAL_ID_FIELDS = ("phone", "other_phone", "id_number")
PHONE_FIELDS = ("phone", "other_phone")
MAX_EXTERNAL_REF = 64
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
    # Members without a mobile, by (index of their other phone, name): a household's landline is shared, so
    # a row with only a landline is the same member only when the name matches too.
    existing_other: dict[tuple[str, str], ExistingMember] = field(default_factory=dict)

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
    return await _with_tags(session, tenant_id, members, key=lambda m: m.phone_index)


async def load_existing_without_mobile(session: AsyncSession, tenant_id: UUID, other_indexes: list[str], *,
                                       for_update: bool) -> dict[tuple[str, str], ExistingMember]:
    """Active members with no mobile whose other phone is one of the file's landlines, by (index, name)."""
    if not other_indexes:
        return {}
    members = (await session.exec(select(Member).where(
        Member.tenant_id == tenant_id, Member.phone_index.is_(None), Member.status == MemberStatus.ACTIVE,
        Member.other_phone_index == _any_of("others", other_indexes, Text)))).all()
    if not for_update:
        return {(m.other_phone_index, m.name): ExistingMember(m.id) for m in members}
    return await _with_tags(session, tenant_id, members, key=lambda m: (m.other_phone_index, m.name))


async def _with_tags(session: AsyncSession, tenant_id: UUID, members: Any, key: Any) -> dict[Any, ExistingMember]:
    links = (await session.exec(
        select(MemberTag.member_id, Tag.name)
        .join(Tag, (Tag.tenant_id == MemberTag.tenant_id) & (Tag.id == MemberTag.tag_id))
        .where(MemberTag.tenant_id == tenant_id,
               MemberTag.member_id == _any_of("members", [m.id for m in members], PgUUID(as_uuid=True))))).all()
    tags: dict[UUID, set[str]] = {}
    for member_id, name in links:
        tags.setdefault(member_id, set()).add(name)
    return {key(m): ExistingMember(m.id, m, tags.get(m.id, set())) for m in members}


# ---------------------------------------------------------------- validating rows


@dataclass
class RowPlan:
    row: int
    values: dict[str, Any] = field(default_factory=dict)  # MemberCreate fields
    cells: dict[str, Any] = field(default_factory=dict)  # field → raw cell, for the report
    errors: list[ImportRowError] = field(default_factory=list)
    phone_index: str | None = None
    # A row with only a landline: the landline's index with the name (see ImportContext.existing_other).
    other_key: tuple[str, str] | None = None
    external_ref: str | None = None  # the member's number in the old system (会员编号)
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


@dataclass
class Contacts:
    """The numbers a row's phone cells hold: the mobile (or +country number) as the phone, the next number
    (a landline, or a second mobile) as the other phone."""

    phone: str | None = None
    other: str | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)  # (member field, message)


def classify_contacts(cells: list[tuple[str, str]]) -> Contacts:
    """`cells` are (phone | other_phone, text) in column order; a landline in the phone column is kept as the
    other phone instead of refusing the row, and a mobile in the 座机 column becomes the phone."""
    contacts = Contacts()
    mobiles: list[str] = []
    others: list[str] = []
    for member_field, text in cells:
        for part in split_phones(text):
            mobile = normalize_phone(_TRAILING_ZEROES.sub("", part))
            other = None if mobile else normalize_other_phone(part)
            if mobile is None and other is None:
                contacts.errors.append((member_field, "is not a phone number (a mainland mobile, a landline such "
                                                      "as 021-64381234, or a +country number)"))
            elif mobile is not None and mobile not in mobiles:
                mobiles.append(mobile)
            elif other is not None and other not in others:
                others.append(other)
    rest = mobiles[1:] + others
    if len(rest) > 1:
        contacts.errors.append((cells[-1][0], "holds more than two phone numbers; keep the mobile and one other"))
    contacts.phone = mobiles[0] if mobiles else None
    contacts.other = rest[0] if rest else None
    return contacts


def _row_contacts(columns: ColumnPlan, values: list[Any]) -> Contacts:
    cells = []
    for column in columns.columns:
        if column.field in PHONE_FIELDS and column.index < len(values):
            text = cell_text(values[column.index])
            if text is not None:
                cells.append((column.field, text))
    return _ordered(cells)


def _ordered(cells: list[tuple[str, str]]) -> Contacts:
    """The phone column first, whatever the order of the columns in the file."""
    return classify_contacts(sorted(cells, key=lambda cell: cell[0] != "phone"))


def _row_name(columns: ColumnPlan, values: list[Any]) -> str | None:
    column = next((c for c in columns.columns if c.field == "name"), None)
    if column is None or column.index >= len(values):
        return None
    text = cell_text(values[column.index])
    return without_cjk_gaps(text) if text else None


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
        phones: list[tuple[str, str]] = []
        for column in self.columns.columns:
            raw = values[column.index] if column.index < len(values) else None
            plan.cells[column.field] = raw
            text = cell_text(raw, prose=column.field in PROSE_FIELDS)
            if text is None:
                continue
            if column.field in PHONE_FIELDS:
                phones.append((column.field, text))
                continue
            try:
                self._convert(plan, column.field, raw, text, custom, health)
            except CellError as exc:
                self.error(plan, column.field, str(exc))
        self._contacts(plan, phones)
        for required in REQUIRED_FIELDS:
            fields = PHONE_FIELDS if required == "phone" else (required,)
            if not any(f in plan.values for f in fields) and not any(e.field in fields for e in plan.errors):
                self.error(plan, required, "is required")
        existing = self.context.existing.get(plan.phone_index or "") if plan.phone_index else \
            self.context.existing_other.get(plan.other_key) if plan.other_key else None
        self._validate_custom(plan, custom, existing.row.custom_fields if existing and existing.row else None,
                              creating=existing is None)
        if health:
            plan.values["health"] = health
        self._validate_schema(plan)
        return plan

    def _contacts(self, plan: RowPlan, phones: list[tuple[str, str]]) -> None:
        contacts = _ordered(phones)
        for member_field, message in contacts.errors:
            self.error(plan, member_field, message)
        if contacts.errors:
            return
        if contacts.phone is not None:
            plan.values["phone"] = contacts.phone
            plan.phone_index = crypto.blind_index(contacts.phone, purpose="phone")
        if contacts.other is not None:
            plan.values["other_phone"] = contacts.other
            if contacts.phone is None and plan.values.get("name"):
                plan.other_key = (other_phone_index(contacts.other), plan.values["name"])

    def _convert(self, plan: RowPlan, member_field: str, raw: Any, text: str, custom: dict[str, Any],
                 health: dict[str, Any]) -> None:
        kind, _, name = member_field.partition(".")
        if kind == "custom":
            custom[name] = custom_value(self.definitions[name], raw)
        elif kind == "health":
            health[name] = split_list(text) if name == "constitution" else text
        elif member_field == "name":
            plan.values["name"] = without_cjk_gaps(text)
        elif member_field == "external_ref":
            if len(text) > MAX_EXTERNAL_REF:
                raise CellError(f"is longer than {MAX_EXTERNAL_REF} characters")
            plan.external_ref = text
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


def phone_indexes(rows: list[tuple[int, list[Any]]], columns: ColumnPlan) -> tuple[list[str], list[str]]:
    """The blind indexes of the file's mobiles, and of the landlines of rows without a mobile, to look them
    all up at once."""
    indexes, others = set(), set()
    for _, values in rows:
        contacts = _row_contacts(columns, values)
        if contacts.phone is not None:
            indexes.add(crypto.blind_index(contacts.phone, purpose="phone"))
        elif contacts.other is not None and _row_name(columns, values):
            others.add(other_phone_index(contacts.other))
    return sorted(indexes), sorted(others)


def check_duplicates_and_existing(plans: list[RowPlan], context: ImportContext, columns: ColumnPlan) -> None:
    """A phone twice in the file is an error on the later rows (a landline only with the same name too); a
    phone held by a member is noted."""
    first_row: dict[Any, int] = {}
    for plan in plans:
        key: Any = plan.phone_index or plan.other_key
        if key is None:
            continue
        if key in first_row:
            member_field = "other_phone" if plan.other_key and columns.header_of("other_phone") else "phone"
            plan.errors.append(ImportRowError(
                row=plan.row, field=member_field, column=columns.header_of(member_field),
                message=f"the same phone number is already in row {first_row[key]} of this file",
                value=report_value(member_field, plan.cells.get(member_field))))
            continue
        first_row[key] = plan.row
        plan.existing = context.existing.get(plan.phone_index) if plan.phone_index else \
            context.existing_other.get(plan.other_key)
