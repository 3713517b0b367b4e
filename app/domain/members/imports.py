"""Member import from .xlsx and .csv: map columns to member fields, validate every row, then write.

A dry run validates and reports without writing members (the run itself is kept as a `checked`
import record). A real run is `all_or_nothing` (any bad row: nothing is written, 422 with the report)
or `per_row` (good rows are written, bad rows reported). A row whose phone already belongs to a member
is skipped or updates that member (`on_existing`), so importing the same file twice creates nobody twice.
Every write goes through the member use cases — new members in batches (`add_members`, the checks of
`create_member` with one query per lookup per batch), updates through `apply_member_update` and
`apply_tag_change` — so an imported member is validated, audited and announced like any other; the import
adds one audit entry of its own with the counts. Existing phones are looked up once for the whole file.

Exports as clinics make them are messy: every cell and header is normalised (full-width characters, ideographic
spaces), a title above the header, blank rows and totals rows (合计：8人) are skipped and listed in the report
(`skipped_rows`) rather than read as members, and a landline is kept as the member's other phone.

The work is split by side: `import_columns` (the file: headers, mapping, cells), `import_rows` (the tenant's
fields, stores, staff and members, and row validation), `import_writing` (the writes); this module runs them.
members:write is checked once here for the whole file (and members.health:write when it has health columns).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.errors import PayloadTooLarge, Unprocessable
from app.core.rows import get_or_404
from app.core.settings import get_settings
from app.domain.members.import_columns import ColumnPlan, cell_text, plan_columns, totals_label
from app.domain.members.import_rows import (
    ImportContext,
    RowPlan,
    RowValidator,
    check_duplicates_and_existing,
    load_context,
    load_existing,
    load_existing_without_mobile,
    phone_indexes,
    report_value,
)
from app.domain.members.import_writing import (
    ImportMode,
    OnExisting,
    Outcome,
    planned_action,
    rejected,
    write_rows,
)
from app.domain.members.models import MemberImport
from app.domain.members.schemas import ImportReport, ImportRowExisting, ImportRowSkipped
from app.domain.members.spreadsheets import Table, read_table

# ---------------------------------------------------------------- the use case


def _safe_filename(filename: str | None) -> str:
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or "upload"


def _require_health_write(actor: Actor, columns: ColumnPlan, context: ImportContext) -> None:
    """A file with health columns needs members.health:write, checked once here for every row it writes."""
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
                                         message=_EXISTING_MESSAGES[action] if plan.phone_index else
                                         _EXISTING_MESSAGES[action].replace("this phone", "this name and landline"),
                                         member_id=plan.existing.id,
                                         value=report_value("phone", plan.cells.get("phone")), action=action))
    return entries


def member_rows(table: Table, header_position: int,
                columns: ColumnPlan) -> tuple[list[tuple[int, list[Any]]], list[ImportRowSkipped]]:
    """The rows below the header that hold members, and the rows that do not, with why: titles above the
    header, blank rows (also those the reader left out, and rows filled only in columns not imported), and
    totals rows."""
    skipped = [ImportRowSkipped(row=number, kind="title", reason="above the header row: a title, not a member")
               for number, _ in table.rows[:header_position]]
    header_row = table.rows[header_position][0]
    data: list[tuple[int, list[Any]]] = []
    previous = header_row
    imported = [c.index for c in columns.columns]
    for number, values in table.rows[header_position + 1:]:
        if number > previous + 1:
            skipped.append(_blank(previous + 1, number - 1))
        previous = number
        if (label := totals_label(values)) is not None:
            skipped.append(ImportRowSkipped(row=number, kind="totals", reason=f"a totals row ({label}), not a member"))
        elif all(cell_text(v) is None for v in values):
            skipped.append(_blank(number, number))
        elif all(i >= len(values) or cell_text(values[i]) is None for i in imported):
            skipped.append(ImportRowSkipped(row=number, kind="blank", last_row=number,
                                            reason="nothing in the imported columns (only a serial number or "
                                                   "columns that are not imported)"))
        else:
            data.append((number, values))
    return data, skipped


def _blank(first: int, last: int) -> ImportRowSkipped:
    reason = "a blank row" if first == last else f"blank rows {first}–{last}"
    return ImportRowSkipped(row=first, last_row=last, kind="blank", reason=reason)


async def plan_file(session: AsyncSession, actor: Actor, table: Table, mapping: dict[str, str | None] | None,
                    on_existing: OnExisting) -> tuple[ColumnPlan, list[RowPlan], list[ImportRowSkipped]]:
    """Columns found, every member row validated against the tenant's fields and existing members, and the
    rows skipped as not being members."""
    if not table.rows:
        raise Unprocessable("the file has no rows; the first row must be the column headers", code="empty_file")
    context = await load_context(session, actor.tenant_id)
    columns, header_position = plan_columns(table.rows, mapping, context.definitions)
    _require_health_write(actor, columns, context)
    data_rows, skipped = member_rows(table, header_position, columns)
    mobiles, landlines = phone_indexes(data_rows, columns)
    context.existing = await load_existing(session, actor.tenant_id, mobiles, for_update=on_existing == "update")
    context.existing_other = await load_existing_without_mobile(session, actor.tenant_id, landlines,
                                                                for_update=on_existing == "update")
    validator = RowValidator(columns, context)
    plans = [validator.plan_row(number, values) for number, values in data_rows]
    check_duplicates_and_existing(plans, context, columns)
    return columns, plans, skipped


async def import_members(session: AsyncSession, actor: Actor, *, data: bytes, filename: str | None,
                         mapping: dict[str, str | None] | None = None, dry_run: bool = True,
                         mode: ImportMode = "all_or_nothing", on_existing: OnExisting = "skip") -> ImportReport:
    """Check (dry run) or import a members file; the run is kept as a member_imports record and audited once."""
    actor.require("members:write")
    settings = get_settings()
    if len(data) > settings.import_max_bytes:
        raise PayloadTooLarge(f"the file is larger than {settings.import_max_bytes} bytes", code="file_too_large")
    table = read_table(data, filename or "", max_rows=settings.import_max_rows)
    columns, plans, skipped = await plan_file(session, actor, table, mapping, on_existing)
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
            raise rejected(f"{bad_rows} row(s) have errors; nothing was imported", outcome)
        await write_rows(session, actor, plans, mode=mode, on_existing=on_existing, import_id=record.id,
                         outcome=outcome)
    outcome.errors = sorted((e for p in plans for e in p.errors), key=lambda e: e.row)
    _finish_record(record, table.file_type, columns, len(plans), on_existing, outcome)
    record.report["skipped_rows"] = [s.model_dump(mode="json") for s in skipped]
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
        skipped_rows=report.get("skipped_rows", []),
        created_at=record.created_at, created_by=record.created_by)


async def get_import(session: AsyncSession, actor: Actor, import_id: UUID) -> ImportReport:
    actor.require("members:write")
    record = await get_or_404(session, MemberImport, actor.tenant_id, import_id, code="member_import_not_found",
                              detail="import not found")
    return report_of(record)
