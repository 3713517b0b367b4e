"""Reports: the daily close (日结) of a store, as JSON and as an .xlsx."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.domain.checkout import daily_close
from app.domain.checkout.refund_schemas import DailyCloseIn, DailyCloseOut
from app.domain.members.spreadsheets import XLSX_MEDIA_TYPE

router = APIRouter(tags=["reports"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)

XLSX_RESPONSE = {200: {"description": "An .xlsx workbook", "content": {XLSX_MEDIA_TYPE: {
    "schema": {"type": "string", "format": "binary"}}}}}
DAY = Query(alias="date", description="Store-local YYYY-MM-DD")


@router.get("/reports/daily-close", response_model=DailyCloseOut, operation_id="get_daily_close")
async def get_daily_close(store_id: UUID, day: date = DAY, session: AsyncSession = Depends(get_db),
                          actor: Actor = require("reports:read")) -> DailyCloseOut:
    """The store's day: tenders received and refunded, cash expected in the drawer, orders, and the
    deferred-revenue movement (card sales vs card consumption). A closed day answers its frozen figures."""
    return await daily_close.report(session, actor, store_id, day)


@router.post("/reports/daily-close", status_code=201, response_model=DailyCloseOut, operation_id="close_day")
async def close_day(body: DailyCloseIn, session: AsyncSession = Depends(get_db),
                    actor: Actor = require(daily_close.CLOSE_PERMISSION)) -> DailyCloseOut:
    """Close the day (日结): its figures are frozen. 409 `day_closed` when it is closed already."""
    return await daily_close.close_day(session, actor, body.store_id, body.day)


@router.get("/reports/daily-close.xlsx", operation_id="export_daily_close_xlsx", response_class=Response,
            responses=XLSX_RESPONSE)
async def export_daily_close(store_id: UUID, day: date = DAY, session: AsyncSession = Depends(get_db),
                             actor: Actor = require("reports:read")) -> Response:
    """The daily close as an .xlsx with Chinese headers (amounts in yuan)."""
    content, filename = await daily_close.export(session, actor, store_id, day)
    return Response(content=content, media_type=XLSX_MEDIA_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "no-store"})
