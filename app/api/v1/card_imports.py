"""Cards, points and visit history from the old system: the template, the upload (dry run or import), the stored
report and its reconciliation against the ledgers."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES, problem_responses
from app.api.routing import TransactionalRoute
from app.api.spreadsheets import XLSX_RESPONSE, read_upload, xlsx_response
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.cards import imports
from app.domain.cards.import_layout import template_workbook
from app.domain.cards.import_schemas import CardImportReconciliation, CardImportReport

router = APIRouter(tags=["cards"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)

IMPORT_PROBLEMS = problem_responses({
    409: "Another import wrote some of the same references meanwhile (`import_conflict`): nothing was written; "
         "run it again",
    413: "The file is over the size limit (`payload_too_large`, `file_too_large`), or the workbook expands "
         "too far when unpacked (`spreadsheet_too_large`)",
    415: "Not an .xlsx workbook or CSV text, or a name that does not match the content (`unsupported_file_type`)",
    422: "`missing_column` (naming the sheet and field), `too_many_rows`, `unreadable_file`, `validation_error` "
         "(`store_id`), or `import_rejected` (rows with errors and no `skip_bad_rows`: nothing written; "
         "`report.errors` lists them by sheet and row)",
})


@router.get("/card-imports/template.xlsx", operation_id="card_import_template", response_class=Response,
            responses=XLSX_RESPONSE)
async def import_template(actor: Actor = require("cards:import")) -> Response:
    """A workbook with the sheets and headers the import recognises (卡项, 会员积分, 消费记录) and a sheet of hints."""
    return xlsx_response(template_workbook(), "card-import-template.xlsx")


@router.post("/card-imports", status_code=201, response_model=CardImportReport, operation_id="import_cards",
             responses={200: {"description": "Dry run: the totals and every row's problems; nothing written",
                              "model": CardImportReport}, **IMPORT_PROBLEMS})
async def import_cards(
    response: Response,
    file: UploadFile = File(description=".xlsx with a cards sheet (卡号, 手机号, 卡名称, 项目, 剩余次数, 本金余额, "
                                        "赠送余额, 到期日期), a points sheet (手机号, 积分, 最后到店日期) and a visits "
                                        "sheet (手机号, 日期, 项目, 技师, 单号), any of them; GET "
                                        "/card-imports/template.xlsx"),
    dry_run: bool = Form(True, description="Check and total only; nothing is written"),
    skip_bad_rows: bool = Form(False, description="Import the good rows and leave out the bad ones (reported); "
                                                  "without it one bad row refuses the whole import"),
    store_id: UUID | None = Form(None, description="The store of rows that name none (needed when the tenant has "
                                                   "several stores and the sheet no 门店 column)"),
    session: AsyncSession = Depends(get_db),
    actor: Actor = require("cards:import"),
) -> CardImportReport:
    """Bring prepaid cards (every kind, as they stand), points balances, last visits and visit history over from
    the old system. A dry run (the default) answers 200 with the totals to reconcile — stored value principal and
    bonus, sessions per service, points, visits — and every row it cannot use, by sheet and row number; a real
    run answers 201 with what it wrote. Opening entries are `migration` entries in the ledgers. Importing the
    same file again writes nothing (each card number, member's points and visit is imported once)."""
    report = await imports.import_cards(session, actor, data=await read_upload(file), filename=file.filename,
                                        dry_run=dry_run, skip_bad_rows=skip_bad_rows, store_id=store_id)
    if dry_run:
        response.status_code = 200
    return report


@router.get("/card-imports", response_model=Page[CardImportReport], operation_id="list_card_imports")
async def list_card_imports(params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                            actor: Actor = require("cards:import")) -> Page[CardImportReport]:
    """The runs of the import (dry and real), newest first."""
    items, cursor = await imports.list_imports(session, actor, params)
    return Page(items=items, next_cursor=cursor)


@router.get("/card-imports/{import_id}", response_model=CardImportReport, operation_id="get_card_import")
async def get_card_import(import_id: UUID, session: AsyncSession = Depends(get_db),
                          actor: Actor = require("cards:import")) -> CardImportReport:
    """The stored report of an import (dry or real)."""
    return await imports.get_import(session, actor, import_id)


@router.get("/card-imports/{import_id}/reconciliation", response_model=CardImportReconciliation,
            operation_id="reconcile_card_import")
async def reconcile_card_import(import_id: UUID, session: AsyncSession = Depends(get_db),
                                actor: Actor = require("cards:import")) -> CardImportReconciliation:
    """The totals the import reported beside the same totals summed from the opening entries it wrote in the
    card and points ledgers and the visit history; `matches` when they agree."""
    return await imports.reconcile(session, actor, import_id)
