"""Members in and out as spreadsheets: import (.xlsx/.csv, with a dry run), the import template, and export.

Included before the members router: `/members/export.xlsx` must not be taken for `/members/{member_id}`.
"""

from __future__ import annotations

from datetime import date
from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES, problem_responses
from app.api.routing import TransactionalRoute
from app.api.spreadsheets import XLSX_RESPONSE, read_upload, xlsx_response
from app.api.v1.members import member_filter
from app.core.actor import Actor
from app.domain.members import exports, imports
from app.domain.members.import_columns import parse_mapping
from app.domain.members.schemas import ImportReport
from app.domain.members.search import MemberFilter

router = APIRouter(tags=["members"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)

IMPORT_PROBLEMS = problem_responses({
    413: "The file is over the size limit (`payload_too_large`, `file_too_large`), or the workbook expands "
         "too far when unpacked (`spreadsheet_too_large`)",
    415: "Not an .xlsx workbook or CSV text, or a name that does not match the content (`unsupported_file_type`)",
    422: "`too_many_rows`, `missing_column`, `invalid_mapping`, `unreadable_file`, `empty_file`, or "
         "`import_rejected` (all_or_nothing with bad rows: nothing written; `report.errors` lists them)",
})


@router.get("/members/export.xlsx", operation_id="export_members_xlsx", response_class=Response,
            responses=XLSX_RESPONSE)
async def export_members(
    filters: MemberFilter = Depends(member_filter),
    session: AsyncSession = Depends(get_db),
    actor: Actor = require("members:export", audiences=("staff",)),
) -> Response:
    """The members `GET /members` would list with the same filters, as an .xlsx (at most 100,000 rows).
    Phones and ID numbers are masked without members.contact:read; health data is not exported. Audited."""
    content, _ = await exports.export_members(session, actor, filters)
    return xlsx_response(content, f"members-{date.today():%Y%m%d}.xlsx")


@router.get("/member-imports/template.xlsx", operation_id="member_import_template", response_class=Response,
            responses=XLSX_RESPONSE)
async def import_template(session: AsyncSession = Depends(get_db),
                          actor: Actor = require("members:write")) -> Response:
    """An empty sheet with the column headers an import recognises, the tenant's custom fields included."""
    return xlsx_response(await exports.import_template(session, actor), "member-import-template.xlsx")


@router.post("/member-imports", status_code=201, response_model=ImportReport, operation_id="import_members",
             responses={200: {"description": "Dry run: what a real run would do; no member written",
                              "model": ImportReport}, **IMPORT_PROBLEMS})
async def import_members(
    response: Response,
    file: UploadFile = File(description=".xlsx or .csv (UTF-8 or GB18030); the first row with known headers "
                                        "is the header"),
    mapping: str | None = Form(None, description='JSON object, file column → member field, e.g. {"联系方式": '
                                                 '"phone", "舌象": "custom.tongue", "备用电话": null}. Fields: name, '
                                                 "phone, gender, birthday, id_number, address, source_channel, "
                                                 "notes, tags, home_store, owner_staff, health.<field>, "
                                                 "custom.<key>. Unmapped columns with known headers (姓名, 手机号, "
                                                 "…) are recognised."),
    dry_run: bool = Form(True, description="Validate and report only"),
    mode: Literal["all_or_nothing", "per_row"] = Form("all_or_nothing"),
    on_existing: Literal["skip", "update"] = Form("skip", description="A row whose phone belongs to a member"),
    session: AsyncSession = Depends(get_db),
    actor: Actor = require("members:write"),
) -> ImportReport:
    """Import members from a spreadsheet. A dry run (the default) answers 200 with every row's problems;
    a real run answers 201 with what it did. Repeating an import creates nobody twice."""
    report = await imports.import_members(
        session, actor, data=await read_upload(file), filename=file.filename,
        mapping=parse_mapping(mapping), dry_run=dry_run, mode=mode, on_existing=on_existing)
    if dry_run:
        response.status_code = 200
    return report


@router.get("/member-imports/{import_id}", response_model=ImportReport, operation_id="get_member_import")
async def get_member_import(import_id: UUID, session: AsyncSession = Depends(get_db),
                            actor: Actor = require("members:write")) -> ImportReport:
    """The stored report of an import (dry or real)."""
    return await imports.get_import(session, actor, import_id)
