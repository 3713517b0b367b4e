"""What the import from the old system answers: the totals to reconcile, and every row it could not use."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

SheetKind = Literal["cards", "points", "visits"]


class SessionTotal(BaseModel):
    service_id: UUID | None = Field(description="null: a package card's shared pool (any of its services)")
    service_name: str
    sessions: int


class CardImportTotals(BaseModel):
    """What a run writes (a dry run: would write), to reconcile against the old system before anything is
    written. Amounts in fen."""

    cards: int = 0
    cards_by_kind: dict[str, int] = Field(default_factory=dict, description="stored_value, count, package, period")
    stored_value_principal: int = Field(0, description="Outstanding stored value paid for (本金), fen")
    stored_value_bonus: int = Field(0, description="Outstanding bonus value (赠送金额), fen")
    sessions: int = Field(0, description="Sessions left on session cards, all services")
    sessions_by_service: list[SessionTotal] = Field(default_factory=list)
    points: int = 0
    members_with_points: int = 0
    visits: int = Field(0, description="Visit history rows (service records settled `migration`)")
    last_visits: int = Field(0, description="Members whose last visit date is carried over")


class AlreadyImported(BaseModel):
    """Rows whose old-system reference an earlier run imported: left as they are."""

    cards: int = 0
    points: int = 0
    visits: int = 0


class CardImportRowError(BaseModel):
    sheet: str
    row: int = Field(description="1-based row number in the sheet, as a spreadsheet program shows it")
    field: str = Field(description="e.g. `card_ref`, `phone`, `template`, `service`, `sessions`, `principal`")
    column: str | None = Field(None, description="The sheet's column header")
    message: str
    value: str | None = Field(None, description="The cell as read (phone numbers masked)")


class CardImportRowNote(BaseModel):
    """A row not imported that is no error (a title, a blank or totals row, a reference imported before), or a
    warning about a row that is imported."""

    sheet: str
    row: int
    last_row: int | None = None
    kind: Literal["title", "blank", "totals", "already_imported", "nothing_to_import", "warning"]
    message: str


class ImportColumnOut(BaseModel):
    column: str
    field: str


class CardImportSheet(BaseModel):
    sheet: str
    kind: SheetKind | Literal["ignored"]
    header_row: int | None
    rows: int = Field(description="Data rows read (titles, blank and totals rows not counted)")
    columns: list[ImportColumnOut]
    ignored_columns: list[str]


class CardImportReport(BaseModel):
    id: UUID
    filename: str
    file_sha256: str
    dry_run: bool
    skip_bad_rows: bool
    status: str = Field(description="checked (dry run) | imported | partially_imported (bad rows skipped)")
    totals: CardImportTotals
    already_imported: AlreadyImported
    error_count: int = Field(description="Rows with at least one error (not imported)")
    sheets: list[CardImportSheet]
    errors: list[CardImportRowError]
    notes: list[CardImportRowNote]
    created_at: datetime | None
    created_by: UUID | None


class CardImportReconciliation(BaseModel):
    import_id: UUID
    expected: CardImportTotals = Field(description="The totals the run reported")
    in_ledgers: CardImportTotals = Field(description="The same totals summed from the opening entries the run "
                                         "wrote in the card and points ledgers and the visit history "
                                         "(last visits are not recounted: they are not ledger entries)")
    matches: bool
