"""Import from the old system: prepaid cards, points balances, last visits and visit history from an .xlsx.

Shaped like the member import: upload → dry run (the default) → import. The dry run reads every sheet
(`import_layout` says which sheet holds what), validates every row against the tenant's members, card
templates, services, staff and stores (`import_rows`) and answers the totals to reconcile against the old
system's books before anything is written — outstanding stored value (principal and bonus apart), sessions
left per service, points, visits — with every row it cannot use, by sheet and row number.

A real run writes all or nothing: a row with an error refuses the whole import (422 `import_rejected`, the
report in the answer) unless the caller asks to skip bad rows; a failure while writing rolls everything back.
What it writes goes through the owners' use cases: cards here (`opening`: `migration` ledger entries), points
through loyalty (a `migration` entry), visits through visits (service records settled `migration`), last visits
through members. Every old-system reference written — a card number, a member's points, a visit — is claimed
first in `card_import_refs`, whose primary key makes a second run of the same file write nothing (its rows are
reported as already imported), also when two runs race (the later one is refused with 409 and can run again).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, func
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.errors import Conflict, PayloadTooLarge, Unprocessable
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.core.settings import get_settings
from app.domain.cards import opening
from app.domain.cards.import_layout import MEMBER_HEADERS, MEMBER_KEYS, REQUIRED, SHEET_HEADERS, SheetPlan, plan_sheet
from app.domain.cards.import_rows import (
    NOON,
    POOL,
    Lookups,
    PlannedCard,
    PlannedPoints,
    PlannedVisit,
    RowReader,
    card_totals,
    load_lookups,
    load_members_and_refs,
    points_ref,
    read_cards,
    read_points,
    read_visits,
    session_totals,
)
from app.domain.cards.import_schemas import (
    AlreadyImported,
    CardImportReconciliation,
    CardImportReport,
    CardImportRowError,
    CardImportRowNote,
    CardImportSheet,
    CardImportTotals,
)
from app.domain.cards.models import Card, CardImport, CardImportRef, CardItem, CardLedgerEntry
from app.domain.catalog import service as catalog
from app.domain.loyalty import service as loyalty
from app.domain.members import service as members
from app.domain.members.import_columns import cell_text, totals_label
from app.domain.members.spreadsheets import Table, read_workbook
from app.domain.tenancy import service as tenancy
from app.domain.visits import service as visits

POINTS_REASON = "旧系统迁入：迁移当日的积分余额"


# ---------------------------------------------------------------- the use case


def _safe_filename(filename: str | None) -> str:
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or "upload"


class _Plan:
    """Everything a run would write, and what it could not use."""

    def __init__(self) -> None:
        self.cards: list[PlannedCard] = []
        self.points: list[PlannedPoints] = []
        self.visits: list[PlannedVisit] = []
        self.already = AlreadyImported()
        self.sheets: list[CardImportSheet] = []
        self.errors: list[CardImportRowError] = []
        self.notes: list[CardImportRowNote] = []

    @property
    def bad_rows(self) -> int:
        return len({(e.sheet, e.row) for e in self.errors})


async def import_cards(session: AsyncSession, actor: Actor, *, data: bytes, filename: str | None,
                       dry_run: bool = True, skip_bad_rows: bool = False,
                       store_id: UUID | None = None) -> CardImportReport:
    """Check (dry run) or import a workbook from the old system; the run is kept and audited once."""
    actor.require("cards:import")
    settings = get_settings()
    if len(data) > settings.import_max_bytes:
        raise PayloadTooLarge(f"the file is larger than {settings.import_max_bytes} bytes", code="file_too_large")
    if store_id is not None:
        if await tenancy.store_row(session, actor.tenant_id, store_id) is None:
            raise Unprocessable("store_id: no such store", code="validation_error", field="store_id")
        actor.require_store(store_id)
    sheets = read_workbook(data, filename or "", max_rows=settings.import_max_rows)
    lookups = await load_lookups(session, actor, store_id)
    plan = await _plan(session, actor, sheets, lookups)
    totals = _totals(plan, lookups)
    record = CardImport(tenant_id=actor.tenant_id, filename=_safe_filename(filename),
                        file_sha256=hashlib.sha256(data).hexdigest(), dry_run=dry_run, skip_bad_rows=skip_bad_rows,
                        status="checked" if dry_run else "partially_imported" if plan.errors else "imported",
                        error_count=plan.bad_rows, totals=totals.model_dump(mode="json"),
                        report=_report(plan, sheets[0][1].file_type if sheets else ""),
                        created_by=actor.id if actor.kind == "staff" else None)
    if not dry_run and plan.errors and not skip_bad_rows:
        raise Unprocessable(f"{plan.bad_rows} row(s) have errors; nothing was imported (fix them, or import with "
                            "skip_bad_rows to leave them out)", code="import_rejected", error_count=plan.bad_rows,
                            report={"errors": [e.model_dump(mode="json") for e in plan.errors],
                                    "totals": record.totals})
    session.add(record)
    await session.flush()
    if not dry_run:
        await _write(session, actor, plan, record.id, lookups)
    audit.record(session, "card.import_check" if dry_run else "card.import", "card_import", record.id,
                 filename=record.filename, file_sha256=record.file_sha256, status=record.status,
                 errors=record.error_count, cards=totals.cards, principal=totals.stored_value_principal,
                 bonus=totals.stored_value_bonus, sessions=totals.sessions, points=totals.points,
                 visits=totals.visits, already_imported=plan.already.model_dump())
    return report_of(record)


async def _plan(session: AsyncSession, actor: Actor, sheets: list[tuple[str, Table]], lookups: Lookups) -> _Plan:
    plan = _Plan()
    readable: list[tuple[SheetPlan, list[tuple[int, list[Any]]]]] = []
    points_seen: dict[UUID, str] = {}
    for title, table in sheets:
        sheet = plan_sheet(title, table.rows)
        if sheet is None:
            if table.rows:
                plan.sheets.append(CardImportSheet(sheet=title, kind="ignored", header_row=None, rows=0, columns=[],
                                                   ignored_columns=[]))
            continue
        _require_columns(sheet)
        rows, skipped = _data_rows(sheet, table)
        plan.notes += skipped
        readable.append((sheet, rows))
        plan.sheets.append(CardImportSheet(sheet=title, kind=sheet.kind, header_row=sheet.header_row, rows=len(rows),
                                           columns=sheet.columns_out(), ignored_columns=sheet.ignored))
    if not readable:
        raise Unprocessable("no sheet holds cards, points or visits: expected headers such as 卡号 and 卡名称, 积分, "
                            "or 日期, 项目 and 技师 (download the template)", code="missing_column", field="file")
    await load_members_and_refs(session, actor, lookups, readable)
    for sheet, rows in readable:
        reader = RowReader(sheet, lookups, actor)
        if sheet.kind == "cards":
            cards, already = read_cards(reader, rows)
            plan.cards += _once(reader, plan.cards, cards)
            plan.already.cards += already
        elif sheet.kind == "points":
            points, already = read_points(reader, rows, points_seen)
            plan.points += points
            plan.already.points += already
        else:
            found, already = read_visits(reader, rows)
            plan.visits += found
            plan.already.visits += already
        plan.errors += reader.errors
        plan.notes += reader.notes
    plan.errors.sort(key=lambda e: (e.sheet, e.row))
    return plan


def _require_columns(sheet: SheetPlan) -> None:
    for required in REQUIRED[sheet.kind]:
        if required not in sheet.columns:
            raise Unprocessable(f"sheet {sheet.title!r} has no column for {required} (expected a header such as "
                                f"{SHEET_HEADERS[sheet.kind][required][0]!r})", code="missing_column",
                                field=required, sheet=sheet.title, header_row=sheet.header_row)
    if not any(key in sheet.columns for key in MEMBER_KEYS):
        raise Unprocessable(f"sheet {sheet.title!r} names no member: add a column {MEMBER_HEADERS['phone'][0]!r} or "
                            f"{MEMBER_HEADERS['member_ref'][0]!r}", code="missing_column", field="phone",
                            sheet=sheet.title, header_row=sheet.header_row)


def _data_rows(sheet: SheetPlan, table: Table) -> tuple[list[tuple[int, list[Any]]], list[CardImportRowNote]]:
    """The rows under the header that hold data, and the others with why (as the member import does)."""
    notes = [CardImportRowNote(sheet=sheet.title, row=n, kind="title", message="above the header row: a title")
             for n, _ in table.rows[:sheet.header_position]]
    rows: list[tuple[int, list[Any]]] = []
    previous = sheet.header_row
    imported = [index for index, _ in sheet.columns.values()]

    def blank(first: int, last: int, message: str | None = None) -> None:
        notes.append(CardImportRowNote(sheet=sheet.title, row=first, last_row=last, kind="blank", message=message or (
            "a blank row" if first == last else f"blank rows {first}–{last}")))

    for number, values in table.rows[sheet.header_position + 1:]:
        if number > previous + 1:
            blank(previous + 1, number - 1)
        previous = number
        if (label := totals_label(values)) is not None:
            notes.append(CardImportRowNote(sheet=sheet.title, row=number, kind="totals",
                                           message=f"a totals row ({label})"))
        elif all(cell_text(v) is None for v in values):
            blank(number, number)
        elif all(i >= len(values) or cell_text(values[i]) is None for i in imported):
            blank(number, number, "nothing in the imported columns")
        else:
            rows.append((number, values))
    return rows, notes


def _once(reader: RowReader, earlier: list[PlannedCard], cards: list[PlannedCard]) -> list[PlannedCard]:
    """A card number in two cards sheets is one card twice: the later sheet's rows are refused."""
    seen = {c.ref for c in earlier}
    kept = []
    for card in cards:
        if card.ref in seen:
            for row in card.rows:
                reader.error(row, "card_ref", f"card {card.ref} is already in another sheet of this file")
        else:
            kept.append(card)
    return kept


def _totals(plan: _Plan, lookups: Lookups) -> CardImportTotals:
    opened = [p for p in plan.points if p.write_points]
    return CardImportTotals(**card_totals(plan.cards, lookups.service_names),
                            points=sum(p.points for p in opened), members_with_points=len(opened),
                            visits=len(plan.visits), last_visits=sum(1 for p in plan.points if p.last_visit))


def _report(plan: _Plan, file_type: str) -> dict[str, Any]:
    return {"file_type": file_type, "already_imported": plan.already.model_dump(),
            "sheets": [s.model_dump(mode="json") for s in plan.sheets],
            "errors": [e.model_dump(mode="json") for e in plan.errors],
            "notes": [n.model_dump(mode="json") for n in plan.notes]}


# ---------------------------------------------------------------- writing


async def _write(session: AsyncSession, actor: Actor, plan: _Plan, import_id: UUID, lookups: Lookups) -> None:
    await _claim_refs(session, actor, plan, import_id)
    await opening.open_cards(session, actor, plan.cards, import_id=import_id, lookups=lookups)
    for item in plan.points:
        if item.write_points:
            await loyalty.open_points_balance(session, actor, item.member_id, item.points, ref_type=opening.REF_TYPE,
                                              ref_id=import_id, reason=POINTS_REASON)
        if item.last_visit is not None:
            at = datetime.combine(item.last_visit, NOON, lookups.zone(lookups.default_store))
            await members.touch_last_visit(session, actor.tenant_id, item.member_id, at)
    await visits.record_past_visits(session, actor, [visits.PastVisit(
        id=v.id, member_id=v.member_id, store_id=v.store_id, service_id=v.service_id, staff_id=v.staff_id,
        performed_at=v.performed_at, notes=v.notes) for v in plan.visits])


async def _claim_refs(session: AsyncSession, actor: Actor, plan: _Plan, import_id: UUID) -> None:
    """Every reference this run writes, first: a second run, even a concurrent one, cannot write them again."""
    refs = [("card", c.ref, c.id) for c in plan.cards]
    refs += [("points", points_ref(p.member_id), p.member_id) for p in plan.points if p.write_points]
    refs += [("visit", v.ref, v.id) for v in plan.visits]
    if not refs:
        return
    try:
        async with session.begin_nested():
            session.add_all(CardImportRef(tenant_id=actor.tenant_id, kind=kind, external_ref=ref, target_id=target,
                                          import_id=import_id) for kind, ref, target in refs)
            await session.flush()
    except IntegrityError as exc:
        raise Conflict("another import wrote some of these cards, points or visits meanwhile; nothing was imported. "
                       "Run the import again: what is imported by then is skipped", code="import_conflict") from exc


# ---------------------------------------------------------------- reading


def report_of(record: CardImport) -> CardImportReport:
    report = record.report or {}
    return CardImportReport(
        id=record.id, filename=record.filename, file_sha256=record.file_sha256, dry_run=record.dry_run,
        skip_bad_rows=record.skip_bad_rows, status=record.status, totals=CardImportTotals(**record.totals),
        already_imported=AlreadyImported(**report.get("already_imported", {})), error_count=record.error_count,
        sheets=report.get("sheets", []), errors=report.get("errors", []), notes=report.get("notes", []),
        created_at=record.created_at, created_by=record.created_by)


async def _record(session: AsyncSession, actor: Actor, import_id: UUID) -> CardImport:
    actor.require("cards:import")
    return await get_or_404(session, CardImport, actor.tenant_id, import_id, code="card_import_not_found",
                            detail="import not found")


async def get_import(session: AsyncSession, actor: Actor, import_id: UUID) -> CardImportReport:
    return report_of(await _record(session, actor, import_id))


async def list_imports(session: AsyncSession, actor: Actor, params: PageParams) -> tuple[list[CardImportReport],
                                                                                        str | None]:
    """The tenant's runs, newest first."""
    actor.require("cards:import")
    rows, cursor = await paginate(session, select(CardImport).where(CardImport.tenant_id == actor.tenant_id),
                                  CardImport.id, params, descending=True)
    return [report_of(r) for r in rows], cursor


async def reconcile(session: AsyncSession, actor: Actor, import_id: UUID) -> CardImportReconciliation:
    """The totals a run reported against the same totals summed from what it wrote in the ledgers."""
    record = await _record(session, actor, import_id)
    expected = CardImportTotals(**record.totals)
    found = CardImportTotals(last_visits=expected.last_visits)
    if not record.dry_run:
        found = await _ledger_totals(session, actor.tenant_id, record.id, expected.last_visits)
    compared = {"last_visits"}
    return CardImportReconciliation(import_id=record.id, expected=expected, in_ledgers=found,
                                    matches=expected.model_dump(exclude=compared) == found.model_dump(exclude=compared))


async def _ledger_totals(session: AsyncSession, tenant_id: UUID, import_id: UUID, last_visits: int) -> CardImportTotals:
    opening_entries = and_(CardLedgerEntry.tenant_id == tenant_id, CardLedgerEntry.kind == opening.MIGRATION,
                           CardLedgerEntry.ref_type == opening.REF_TYPE, CardLedgerEntry.ref_id == str(import_id))
    money = (await session.execute(
        sa_select(func.coalesce(func.sum(CardLedgerEntry.principal_delta), 0),
                  func.coalesce(func.sum(CardLedgerEntry.bonus_delta), 0)).where(opening_entries))).one()
    kinds = (await session.execute(
        sa_select(Card.kind, func.count(func.distinct(Card.id))).join(
            CardLedgerEntry, and_(CardLedgerEntry.tenant_id == Card.tenant_id, CardLedgerEntry.card_id == Card.id))
        .where(opening_entries).group_by(Card.kind))).all()
    sessions = (await session.execute(
        sa_select(CardItem.service_id, func.sum(CardLedgerEntry.sessions_delta)).join(
            CardLedgerEntry, and_(CardLedgerEntry.tenant_id == CardItem.tenant_id,
                                  CardLedgerEntry.card_item_id == CardItem.id))
        .where(opening_entries).group_by(CardItem.service_id))).all()
    by_service = {POOL if service_id is None else service_id: int(count) for service_id, count in sessions if count}
    points, holders = await loyalty.migrated_points(session, tenant_id, opening.REF_TYPE, import_id)
    visit_ids = list((await session.exec(select(CardImportRef.target_id).where(
        CardImportRef.tenant_id == tenant_id, CardImportRef.import_id == import_id,
        CardImportRef.kind == "visit"))).all())
    return CardImportTotals(
        cards=sum(n for _, n in kinds), cards_by_kind={kind: n for kind, n in kinds},
        stored_value_principal=int(money[0]), stored_value_bonus=int(money[1]),
        sessions=sum(by_service.values()),
        sessions_by_service=session_totals(by_service, await catalog.service_names(session, tenant_id)),
        points=points, members_with_points=holders, visits=await visits.migrated_visit_count(session, tenant_id,
                                                                                            visit_ids),
        last_visits=last_visits)

