"""Import from the old system, the tenant's side: what the rows name (members, card templates, services, staff,
stores) and every row validated into a card, a points opening or a past visit.

Other contexts are read through their services only: members by phone or old-system number, services, staff
and stores by name. Card templates are this context's own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.ids import new_id
from app.domain.cards.import_layout import SheetPlan
from app.domain.cards.import_schemas import CardImportRowError, CardImportRowNote, SessionTotal
from app.domain.cards.models import CardImportRef, CardKind, CardTemplate, CardTemplateItem
from app.domain.catalog import service as catalog
from app.domain.iam import service as iam
from app.domain.members import service as members
from app.domain.members.import_columns import (
    CellError,
    cell_text,
    header_key,
    parse_date,
    parse_number,
    without_cjk_gaps,
)
from app.domain.tenancy import service as tenancy

MAX_REF = 64
MAX_FEN = 10_000_000_00  # ten million yuan: no prepaid card holds more
MAX_SESSIONS = 10_000
MAX_POINTS = 1_000_000_000
EARLIEST_VISIT = date(1990, 1, 1)
POOL_NAMES = {"通用", "通用次数", "共享", "共享次数", "任选", "任选次数", "pool"}
DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")
_MONEY = re.compile(r"^[¥$]?\s*(-?[\d,]+(?:\.\d+)?)\s*(元|rmb|cny)?$", re.IGNORECASE)
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?$")
POOL = "pool"  # the item key of a package's shared pool


# ---------------------------------------------------------------- cells


def parse_fen(value: Any) -> int:
    """Yuan as people write them ("1,280.50", "¥860", 860.5) → fen; at most two decimals, never negative."""
    if isinstance(value, bool):
        raise CellError("must be an amount in yuan")
    if isinstance(value, (int, float)):
        amount = Decimal(str(value))
    else:
        match = _MONEY.match((cell_text(value) or "").replace(" ", ""))
        if not match:
            raise CellError("must be an amount in yuan, e.g. 1280.50")
        try:
            amount = Decimal(match.group(1).replace(",", ""))
        except InvalidOperation as exc:
            raise CellError("must be an amount in yuan, e.g. 1280.50") from exc
    if amount < 0:
        raise CellError("must not be negative")
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise CellError("has more than two decimals (amounts are in yuan, to the fen)")
    if fen > MAX_FEN:
        raise CellError("is larger than any prepaid balance can be")
    return int(fen)


def parse_count(value: Any, *, maximum: int, what: str = "a whole number") -> int:
    number = parse_number(value)
    if not float(number).is_integer():
        raise CellError(f"must be {what}")
    if number < 0:
        raise CellError("must not be negative")
    if number > maximum:
        raise CellError(f"must be at most {maximum}")
    return int(number)


def parse_moment(value: Any) -> tuple[date, time | None]:
    """A visit's date, and its time when the cell has one ("2026-03-05 14:30", an Excel date-time)."""
    if isinstance(value, datetime):
        return value.date(), value.time() if value.time() != time() else None
    day = parse_date(value)
    text = cell_text(value) or ""
    match = _TIME.search(text) if not isinstance(value, (int, float)) else None
    if match:
        try:
            return day, time(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))
        except ValueError as exc:
            raise CellError("has a time that does not exist") from exc
    return day, None


def mask(field_name: str, text: str | None) -> str | None:
    if text is None:
        return None
    if field_name == "phone":
        return text[:3] + "*" * max(len(text) - 5, 1) + text[-2:] if len(text) > 5 else "*" * len(text)
    return text if len(text) <= 100 else text[:100] + "…"


def name_key(text: str) -> str:
    return header_key(text)


# ---------------------------------------------------------------- what the tenant already has


def _unique(pairs: list[tuple[str, UUID]]) -> dict[str, UUID | None]:
    found: dict[str, UUID | None] = {}
    for key, value in pairs:
        found[key] = value if found.get(key, value) == value else None
    return found


@dataclass
class Lookups:
    """Everything the rows may name, loaded once for the whole file."""

    templates: dict[str, UUID | None]
    template_rows: dict[UUID, CardTemplate]
    template_items: dict[UUID, list[CardTemplateItem]]
    services: dict[str, UUID | None]
    service_names: dict[UUID, str]
    staff: dict[str, UUID | None]
    stores: dict[str, UUID | None]
    zones: dict[UUID, ZoneInfo]
    default_store: UUID | None
    members_by_contact: dict[str, UUID | None] = field(default_factory=dict)
    members_by_ref: dict[str, UUID | None] = field(default_factory=dict)
    member_names: dict[UUID, str] = field(default_factory=dict)
    imported: dict[str, set[str]] = field(default_factory=dict)  # kind → references already imported

    def zone(self, store_id: UUID | None) -> ZoneInfo:
        return self.zones.get(store_id, DEFAULT_ZONE) if store_id else DEFAULT_ZONE


async def load_lookups(session: AsyncSession, actor: Actor, default_store: UUID | None) -> Lookups:
    tenant_id = actor.tenant_id
    templates = (await session.exec(select(CardTemplate).where(CardTemplate.tenant_id == tenant_id))).all()
    items = (await session.exec(select(CardTemplateItem).where(CardTemplateItem.tenant_id == tenant_id)
                                .order_by(CardTemplateItem.id))).all()
    template_items: dict[UUID, list[CardTemplateItem]] = {t.id: [] for t in templates}
    for item in items:
        template_items.setdefault(item.template_id, []).append(item)
    service_names = await catalog.service_names(session, tenant_id)
    staff = await iam.staff_names(session, tenant_id)
    stores = await tenancy.store_names(session, tenant_id)
    staff_lookup = _unique([(name_key(name), sid) for sid, _, name in staff])
    staff_lookup |= {name_key(username): sid for sid, username, _ in staff} | {str(sid): sid for sid, _, _ in staff}
    zones = {}
    for store_id in stores:
        row = await tenancy.store_row(session, tenant_id, store_id)
        zones[store_id] = tenancy.store_zone(row)
    if default_store is None and len(stores) == 1:
        default_store = next(iter(stores))
    return Lookups(
        templates=_unique([(name_key(t.name), t.id) for t in templates]) | {str(t.id): t.id for t in templates},
        template_rows={t.id: t for t in templates}, template_items=template_items,
        services=_unique([(name_key(n), sid) for sid, n in service_names.items()]) | {
            str(sid): sid for sid in service_names},
        service_names=service_names, staff=staff_lookup,
        stores=_unique([(name_key(n), sid) for sid, n in stores.items()]) | {str(sid): sid for sid in stores},
        zones=zones, default_store=default_store)


async def load_members_and_refs(session: AsyncSession, actor: Actor, lookups: Lookups,
                                sheets: list[tuple[SheetPlan, list[tuple[int, list[Any]]]]]) -> None:
    """Every member the rows name, in two queries for the whole file, and the references imported before."""
    contacts, refs = set(), set()
    for plan, rows in sheets:
        for _, values in rows:
            if (phone := cell_text(plan.cell(values, "phone"))) is not None:
                contacts.add(phone)
            if (ref := cell_text(plan.cell(values, "member_ref"))) is not None:
                refs.add(ref)
    lookups.members_by_contact = await members.member_ids_by_contact(session, actor.tenant_id, contacts)
    lookups.members_by_ref = await members.member_ids_by_external_ref(session, actor.tenant_id, refs)
    ids = {m for m in [*lookups.members_by_contact.values(), *lookups.members_by_ref.values()] if m}
    lookups.member_names = await members.member_names(session, actor.tenant_id, ids)
    rows = (await session.exec(select(CardImportRef.kind, CardImportRef.external_ref)
                               .where(CardImportRef.tenant_id == actor.tenant_id))).all()
    for kind, ref in rows:
        lookups.imported.setdefault(kind, set()).add(ref)


# ---------------------------------------------------------------- reading one row


class RowReader:
    """One sheet's rows as values, collecting every problem of a row instead of stopping at the first."""

    def __init__(self, plan: SheetPlan, lookups: Lookups, actor: Actor) -> None:
        self.plan = plan
        self.lookups = lookups
        self.actor = actor
        self.errors: list[CardImportRowError] = []
        self.notes: list[CardImportRowNote] = []

    def error(self, row: int, field_name: str, message: str, values: list[Any] | None = None) -> None:
        raw = cell_text(self.plan.cell(values, field_name)) if values is not None else None
        self.errors.append(CardImportRowError(sheet=self.plan.title, row=row, field=field_name,
                                              column=self.plan.header_of(field_name), message=message,
                                              value=mask(field_name, raw)))

    def note(self, row: int, kind: Any, message: str) -> None:
        self.notes.append(CardImportRowNote(sheet=self.plan.title, row=row, kind=kind, message=message))

    def bad(self, row: int) -> bool:
        return any(e.row == row and e.sheet == self.plan.title for e in self.errors)

    def value(self, row: int, values: list[Any], field_name: str, parse: Any, *, required: bool = False) -> Any:
        raw = self.plan.cell(values, field_name)
        if cell_text(raw) is None:
            if required:
                self.error(row, field_name, "is required", values)
            return None
        try:
            return parse(raw)
        except CellError as exc:
            self.error(row, field_name, str(exc), values)
            return None

    def text(self, row: int, values: list[Any], field_name: str, *, required: bool = False,
             max_length: int = MAX_REF, prose: bool = False) -> str | None:
        def parse(raw: Any) -> str:
            text = cell_text(raw, prose=prose) or ""
            if len(text) > max_length:
                raise CellError(f"is longer than {max_length} characters")
            return text
        return self.value(row, values, field_name, parse, required=required)

    def member(self, row: int, values: list[Any]) -> UUID | None:
        """The member by 会员编号 and/or phone (both must agree); a different name in the file is a warning."""
        phone = cell_text(self.plan.cell(values, "phone"))
        ref = cell_text(self.plan.cell(values, "member_ref"))
        if phone is None and ref is None:
            self.error(row, "phone", "is required (the member's phone, or their 会员编号)", values)
            return None
        by_ref = by_phone = None
        if ref is not None:
            if ref not in self.lookups.members_by_ref:
                self.error(row, "member_ref", "no member has this number (import the members first)", values)
                return None
            by_ref = self.lookups.members_by_ref[ref]
            if by_ref is None:
                self.error(row, "member_ref", "more than one member has this number", values)
                return None
        if phone is not None:
            if members.normalize_contact(phone) is None:
                self.error(row, "phone", "is not a phone number", values)
                return None
            if phone not in self.lookups.members_by_contact:
                if by_ref is None:
                    self.error(row, "phone", "no member has this phone number (import the members first)", values)
                    return None
            else:
                by_phone = self.lookups.members_by_contact[phone]
                if by_phone is None and by_ref is None:
                    self.error(row, "phone", "several members share this landline; give the 会员编号", values)
                    return None
        if by_ref is not None and by_phone is not None and by_ref != by_phone:
            self.error(row, "phone", "belongs to another member than the 会员编号", values)
            return None
        member_id = by_ref or by_phone
        assert member_id is not None
        name = cell_text(self.plan.cell(values, "member_name"))
        known = self.lookups.member_names.get(member_id)
        if name is not None and known is not None and without_cjk_gaps(name) != known:
            self.note(row, "warning", f"the name in the file ({name}) is not the member's ({known}); check the phone")
        return member_id

    def reference(self, row: int, values: list[Any], field_name: str, lookup: dict[str, UUID | None],
                  what: str, *, required: bool) -> UUID | None:
        text = cell_text(self.plan.cell(values, field_name))
        if text is None:
            if required:
                self.error(row, field_name, "is required", values)
            return None
        key = text if text in lookup else name_key(text)
        if key not in lookup:
            self.error(row, field_name, f"no {what} named {text!r}", values)
            return None
        if lookup[key] is None:
            self.error(row, field_name, f"more than one {what} is named {text!r}; use the id", values)
            return None
        return lookup[key]

    def store(self, row: int, values: list[Any], *, required: bool, default: bool = True) -> UUID | None:
        store_id = self.reference(row, values, "store", self.lookups.stores, "store", required=False)
        if store_id is None and not self.bad(row) and default:
            store_id = self.lookups.default_store
        if store_id is None:
            if required and not self.bad(row):
                self.error(row, "store", "is required (this tenant has several stores: name one, or give "
                                         "store_id for the whole file)", values)
            return None
        if not self.actor.can_act_in_store(store_id):
            self.error(row, "store", "you are not assigned to this store", values)
            return None
        return store_id


# ---------------------------------------------------------------- cards


@dataclass
class PlannedCard:
    ref: str
    rows: list[int]
    member_id: UUID
    template: CardTemplate
    store_id: UUID | None
    price_paid: int | None = None
    opened: date | None = None
    expires: date | None = None
    sessions: dict[UUID | str, int] = field(default_factory=dict)  # service id, or POOL → sessions left
    principal: int = 0
    bonus: int = 0
    id: UUID = field(default_factory=new_id)


@dataclass
class _CardLine:
    row: int
    ref: str
    member_id: UUID
    template_id: UUID
    service: str | None
    sessions: int | None
    principal: int | None
    bonus: int | None
    expires: date | None
    opened: date | None
    price_paid: int | None
    store_id: UUID | None


_CARD_FIELDS = ("member_id", "template_id", "expires", "opened", "price_paid", "store_id")


def read_cards(reader: RowReader, rows: list[tuple[int, list[Any]]]) -> tuple[list[PlannedCard], int]:
    """The sheet's cards (a card's rows grouped by 卡号), and how many were imported before."""
    lines: list[_CardLine] = []
    for number, values in rows:
        line = _read_card_line(reader, number, values)
        if line is not None and not reader.bad(number):
            lines.append(line)
    by_ref: dict[str, list[_CardLine]] = {}
    for line in lines:
        by_ref.setdefault(line.ref, []).append(line)
    bad_rows = {cell_text(reader.plan.cell(v, "card_ref")): n for n, v in reversed(rows) if reader.bad(n)}
    planned, already = [], 0
    for ref, group in by_ref.items():
        if ref in bad_rows:
            _refuse(reader, ref, group, bad_rows[ref])
            continue
        if ref in reader.lookups.imported.get("card", set()):
            already += 1
            for line in group:
                reader.note(line.row, "already_imported", f"card {ref} was imported before; left as it is")
            continue
        card = _card_of(reader, ref, group)
        if card is not None:
            planned.append(card)
    return planned, already


def _refuse(reader: RowReader, ref: str, group: list[_CardLine], bad_row: int) -> None:
    """A card is imported whole or not at all: its good rows say which row kept it out."""
    for line in group:
        if not reader.bad(line.row):
            reader.error(line.row, "card_ref", f"card {ref} is not imported: row {bad_row} of it has errors")


def _read_card_line(reader: RowReader, number: int, values: list[Any]) -> _CardLine | None:
    ref = reader.text(number, values, "card_ref", required=True)
    member_id = reader.member(number, values)
    template_id = reader.reference(number, values, "template", reader.lookups.templates, "card template",
                                   required=True)
    line = _CardLine(
        row=number, ref=ref or "", member_id=member_id, template_id=template_id,  # type: ignore[arg-type]
        service=cell_text(reader.plan.cell(values, "service")),
        sessions=reader.value(number, values, "sessions", lambda v: parse_count(v, maximum=MAX_SESSIONS)),
        principal=reader.value(number, values, "principal", parse_fen),
        bonus=reader.value(number, values, "bonus", parse_fen),
        expires=reader.value(number, values, "expires", parse_date),
        opened=reader.value(number, values, "opened", parse_date),
        price_paid=reader.value(number, values, "price_paid", parse_fen),
        store_id=reader.store(number, values, required=False, default=False))
    if line.opened is not None and line.opened > utcnow().date():
        reader.error(number, "opened", "is in the future", values)
    return None if ref is None or member_id is None or template_id is None else line


def _card_of(reader: RowReader, ref: str, group: list[_CardLine]) -> PlannedCard | None:
    """One card from its rows: the rows agree on the card's own fields, and hold what its kind holds."""
    first = group[0]
    for line in group[1:]:
        for name in _CARD_FIELDS:
            mine, theirs = getattr(line, name), getattr(first, name)
            if mine is not None and theirs is not None and mine != theirs:
                field_name = {"member_id": "phone", "template_id": "template", "store_id": "store"}.get(name, name)
                reader.error(line.row, field_name, f"differs from row {first.row} of the same card {ref}")
    if (bad := next((line.row for line in group if reader.bad(line.row)), None)) is not None:
        _refuse(reader, ref, group, bad)
        return None

    def shared(name: str) -> Any:
        return next((getattr(line, name) for line in group if getattr(line, name) is not None), None)

    template = reader.lookups.template_rows[first.template_id]
    card = PlannedCard(ref=ref, rows=[line.row for line in group], member_id=first.member_id, template=template,
                       store_id=shared("store_id") or reader.lookups.default_store, price_paid=shared("price_paid"),
                       opened=shared("opened"), expires=shared("expires"))
    if card.store_id is None and reader.actor.store_ids is not None:
        # Staff bound to their stores import only their stores' cards, so the card must say which.
        reader.error(first.row, "store", "is required (name the card's store, or give store_id for the file)")
    elif card.store_id is not None and not reader.actor.can_act_in_store(card.store_id):
        reader.error(first.row, "store", "you are not assigned to this store")
    if template.kind == CardKind.STORED_VALUE:
        _stored_value(reader, card, group)
    else:
        _session_card(reader, card, group)
    if (bad := next((line.row for line in group if reader.bad(line.row)), None)) is not None:
        _refuse(reader, ref, group, bad)
        return None
    if card.expires is not None and card.expires < utcnow().date():
        reader.note(first.row, "warning", f"card {ref} expired on {card.expires.isoformat()}: it is imported as it "
                                          "stands and the expiry job writes off what it holds")
    return card


def _stored_value(reader: RowReader, card: PlannedCard, group: list[_CardLine]) -> None:
    first = group[0]
    if len(group) > 1:
        for line in group[1:]:
            reader.error(line.row, "card_ref",
                         f"a stored-value card has one row; card {card.ref} is in row {first.row}")
        return
    if first.service is not None or first.sessions is not None:
        reader.error(first.row, "sessions", "a stored-value card holds money, not sessions")
    card.principal, card.bonus = first.principal or 0, first.bonus or 0
    if card.expires is not None:
        # 单用途商业预付卡管理办法: stored value sold to a named member does not expire, whatever the old system said.
        reader.note(first.row, "warning", f"card {card.ref}: stored value does not expire; the date "
                                          f"{card.expires.isoformat()} is not kept")
        card.expires = None


def _session_card(reader: RowReader, card: PlannedCard, group: list[_CardLine]) -> None:
    template = card.template
    items = reader.lookups.template_items.get(template.id, [])
    own = {i.service_id for i in items}
    for line in group:
        if line.principal or line.bonus:
            reader.error(line.row, "principal", f"a {template.kind} card holds sessions, not money")
    if template.kind == CardKind.PERIOD:
        for line in group:
            if line.sessions is not None:
                reader.error(line.row, "sessions", "a period card has no sessions: it is used until it ends")
    else:
        for line in group:
            key = _item_key(reader, line, template, items, own)
            if key is None:
                continue
            if key in card.sessions:
                reader.error(line.row, "service", f"card {card.ref} lists this service twice")
            elif line.sessions is None:
                reader.error(line.row, "sessions", "is required (the sessions left of this service)")
            else:
                card.sessions[key] = line.sessions
    if card.expires is None:
        if template.valid_until is not None:
            card.expires = template.valid_until
        elif template.valid_days and card.opened is not None:
            card.expires = card.opened + timedelta(days=template.valid_days)
        elif template.valid_days or template.kind == CardKind.PERIOD:
            reader.error(group[0].row, "expires", f"is required: the {template.name} card ends some day (give "
                                                  "到期日期, or 开卡日期 to count its valid days from)")


def _item_key(reader: RowReader, line: _CardLine, template: CardTemplate, items: list[CardTemplateItem],
              own: set[UUID]) -> UUID | str | None:
    """Which item of the card a row fills: a service of the template, or a package's shared pool."""
    pool_ok = bool(template.shared_pool_sessions)
    if line.service is None:
        if len(items) == 1 and not pool_ok:
            return items[0].service_id
        reader.error(line.row, "service", f"is required: {template.name} covers several services")
        return None
    if name_key(line.service) in POOL_NAMES and pool_ok:
        return POOL
    service_id = reader.lookups.services.get(line.service) or reader.lookups.services.get(name_key(line.service))
    if service_id is None:
        reader.error(line.row, "service", f"no service named {line.service!r}")
        return None
    if service_id not in own:
        reader.error(line.row, "service", f"{line.service} is not on the {template.name} card template")
        return None
    return service_id


def card_totals(cards: list[PlannedCard], service_names: dict[UUID, str]) -> dict[str, Any]:
    by_kind: dict[str, int] = {}
    sessions: dict[UUID | str, int] = {}
    for card in cards:
        by_kind[card.template.kind] = by_kind.get(card.template.kind, 0) + 1
        for key, count in card.sessions.items():
            sessions[key] = sessions.get(key, 0) + count
    return {
        "cards": len(cards), "cards_by_kind": by_kind,
        "stored_value_principal": sum(c.principal for c in cards), "stored_value_bonus": sum(c.bonus for c in cards),
        "sessions": sum(sessions.values()),
        "sessions_by_service": session_totals(sessions, service_names),
    }


def session_totals(sessions: dict[Any, int], service_names: dict[UUID, str]) -> list[SessionTotal]:
    out = [SessionTotal(service_id=None if key == POOL else key,
                        service_name="通用次数" if key == POOL else service_names.get(key, str(key)), sessions=count)
           for key, count in sessions.items() if count]
    return sorted(out, key=lambda s: (s.service_id is None, s.service_name, str(s.service_id)))


# ---------------------------------------------------------------- points and last visits


@dataclass
class PlannedPoints:
    row: int
    member_id: UUID
    points: int
    last_visit: date | None
    write_points: bool  # False: imported before (or none to open); the last visit is still carried over


def points_ref(member_id: UUID) -> str:
    """A member's points are opened once, whatever the file calls them."""
    return f"member:{member_id}"


def read_points(reader: RowReader, rows: list[tuple[int, list[Any]]],
                seen: dict[UUID, str]) -> tuple[list[PlannedPoints], int]:
    """Points and last visits; one row per member in the whole file (`seen`: member → where first met)."""
    planned: list[PlannedPoints] = []
    already = 0
    for number, values in rows:
        member_id = reader.member(number, values)
        points = reader.value(number, values, "points", lambda v: parse_count(v, maximum=MAX_POINTS))
        last_visit = reader.value(number, values, "last_visit", parse_date)
        if last_visit is not None and not EARLIEST_VISIT <= last_visit <= utcnow().date():
            reader.error(number, "last_visit", f"must be between {EARLIEST_VISIT.isoformat()} and today", values)
        if member_id is None or reader.bad(number):
            continue
        if member_id in seen:
            reader.error(number, "phone", f"the same member is already in {seen[member_id]}", values)
            continue
        seen[member_id] = f"row {number} of sheet {reader.plan.title}"
        if not points and last_visit is None:
            reader.note(number, "nothing_to_import", "no points and no last visit date")
            continue
        write = bool(points)
        if write and points_ref(member_id) in reader.lookups.imported.get("points", set()):
            already += 1
            write = False
            reader.note(number, "already_imported", "this member's points were imported before; left as they are")
        planned.append(PlannedPoints(number, member_id, points or 0, last_visit, write))
    return planned, already


# ---------------------------------------------------------------- visits


@dataclass
class PlannedVisit:
    row: int
    ref: str
    member_id: UUID
    service_id: UUID
    staff_id: UUID
    store_id: UUID
    performed_at: datetime
    notes: str | None
    id: UUID = field(default_factory=new_id)


NOON = time(12)


def read_visits(reader: RowReader, rows: list[tuple[int, list[Any]]]) -> tuple[list[PlannedVisit], int]:
    """Visits; a row without a 单号 gets a reference made of what it says (and its place among identical rows),
    so the same file imported again finds it imported."""
    planned: list[PlannedVisit] = []
    first_row: dict[str, int] = {}
    seen: dict[str, int] = {}
    already = 0
    today = utcnow().date()
    for number, values in rows:
        ref = reader.text(number, values, "visit_ref")
        member_id = reader.member(number, values)
        moment = reader.value(number, values, "visit_date", parse_moment, required=True)
        service_id = reader.reference(number, values, "service", reader.lookups.services, "service", required=True)
        staff_id = reader.reference(number, values, "staff", reader.lookups.staff, "staff member", required=True)
        store_id = reader.store(number, values, required=True)
        notes = reader.text(number, values, "notes", max_length=2000, prose=True)
        if moment is not None and not EARLIEST_VISIT <= moment[0] <= today:
            reader.error(number, "visit_date", f"must be between {EARLIEST_VISIT.isoformat()} and today", values)
        if reader.bad(number) or None in (member_id, moment, service_id, staff_id, store_id):
            continue
        day, at = moment
        performed_at = datetime.combine(day, at or NOON, reader.lookups.zone(store_id))
        if ref is None:
            content = "|".join(map(str, (member_id, performed_at.isoformat(), service_id, staff_id, store_id)))
            seen[content] = seen.get(content, 0) + 1
            ref = "auto:" + hashlib.sha256(f"{content}|{seen[content]}".encode()).hexdigest()[:32]
        if ref in first_row:
            reader.error(number, "visit_ref", f"the same 单号 is already in row {first_row[ref]} of this sheet", values)
            continue
        first_row[ref] = number
        if ref in reader.lookups.imported.get("visit", set()):
            already += 1
            reader.note(number, "already_imported", "this visit was imported before; left as it is")
            continue
        planned.append(PlannedVisit(number, ref, member_id, service_id, staff_id, store_id,  # type: ignore[arg-type]
                                    performed_at, notes))
    return planned, already
