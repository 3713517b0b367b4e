from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import current_actor, get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.errors import Unprocessable
from app.core.pagination import Page, PageParams, page_params
from app.domain.visits import service
from app.domain.visits.presenters import present_record
from app.domain.visits.schemas import (
    CommissionOut,
    CommissionStatement,
    CommissionTotal,
    CompletionOut,
    ReversalRequest,
    ServiceCompletion,
    ServiceRecordOut,
)

router = APIRouter(tags=["visits"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
MAX_PERIOD_DAYS = 400


def completion_out(actor: Actor, record, remaining: int | None, commission: int) -> CompletionOut:
    return CompletionOut(**present_record(actor, record).model_dump(), service_record_id=record.id,
                         card_remaining=remaining, commission=commission)


def _period(since: datetime | None, until: datetime | None, *, required: bool = False) -> None:
    if required and (since is None or until is None):
        raise Unprocessable("from and to are required", code="validation_error", field="from")
    if since is not None and until is not None:
        if until <= since:
            raise Unprocessable("to must be after from", code="validation_error", field="to")
        if (until - since).days > MAX_PERIOD_DAYS:
            raise Unprocessable(f"a period spans at most {MAX_PERIOD_DAYS} days", code="validation_error",
                                field="to")


@router.post("/service-records", status_code=201, response_model=CompletionOut, operation_id="complete_service")
async def complete_service(body: ServiceCompletion, session: AsyncSession = Depends(get_db),
                           actor: Actor = require("visits:complete")) -> CompletionOut:
    """完成服务 for a walk-in: in one transaction deduct a card session (or leave it for checkout), deduct
    the consumables, write the commission and the service record. 409 when the card has no session of
    this service left, is frozen or expired, or stock is short; then nothing is changed."""
    return completion_out(actor, *await service.complete_service(session, actor, body))


@router.get("/service-records", response_model=Page[ServiceRecordOut], operation_id="list_service_records")
async def list_records(member_id: UUID | None = Query(None), store_id: UUID | None = Query(None),
                       staff_id: UUID | None = Query(None),
                       unsettled: bool | None = Query(None, description="Only services still to be paid at checkout"),
                       params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                       actor: Actor = require("appointments:read")) -> Page[ServiceRecordOut]:
    rows, cursor = await service.list_records(session, actor, params, member_id=member_id, store_id=store_id,
                                              staff_id=staff_id, unsettled=unsettled)
    return Page(items=[present_record(actor, r) for r in rows], next_cursor=cursor)


@router.get("/service-records/{record_id}", response_model=ServiceRecordOut, operation_id="get_service_record")
async def get_record(record_id: UUID, session: AsyncSession = Depends(get_db),
                     actor: Actor = current_actor()) -> ServiceRecordOut:
    """One service record; patients (their own or their family's) get it without the therapist's notes."""
    return present_record(actor, await service.get_record(session, actor, record_id))


@router.post("/service-records/{record_id}/reverse", response_model=ServiceRecordOut,
             operation_id="reverse_service_record")
async def reverse_record(record_id: UUID, body: ReversalRequest, session: AsyncSession = Depends(get_db),
                         actor: Actor = require("visits:reverse")) -> ServiceRecordOut:
    """Undo a completion (wrong card, wrong therapist): the session, the stock and the commission are
    restored by compensating entries; the record stays, marked reversed."""
    return present_record(actor, await service.reverse_service(session, actor, record_id, body.reason))


@router.get("/commissions", response_model=Page[CommissionOut], operation_id="list_commissions")
async def list_commissions(staff_id: UUID | None = Query(None), store_id: UUID | None = Query(None),
                           since: AwareDatetime | None = Query(None, alias="from"),
                           until: AwareDatetime | None = Query(None, alias="to"),
                           params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                           actor: Actor = require("commissions:read")) -> Page[CommissionOut]:
    """Commission lines (a reversal is a negative line). Therapists see their own."""
    _period(since, until)
    rows, cursor = await service.list_commissions(session, actor, params, staff_id=staff_id, store_id=store_id,
                                                  since=since, until=until)
    return Page(items=[CommissionOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/commissions/totals", response_model=list[CommissionTotal], operation_id="commission_totals")
async def commission_totals(since: AwareDatetime = Query(alias="from"), until: AwareDatetime = Query(alias="to"),
                            store_id: UUID | None = Query(None), session: AsyncSession = Depends(get_db),
                            actor: Actor = require("commissions:read")) -> list[CommissionTotal]:
    _period(since, until, required=True)
    return await service.commission_totals(session, actor, store_id=store_id, since=since, until=until)


@router.get("/commissions/statement", response_model=CommissionStatement, operation_id="commission_statement")
async def commission_statement(staff_id: UUID, since: AwareDatetime = Query(alias="from"),
                               until: AwareDatetime = Query(alias="to"), session: AsyncSession = Depends(get_db),
                               actor: Actor = require("commissions:read")) -> CommissionStatement:
    """One therapist's lines and total for a period (业绩单)."""
    _period(since, until, required=True)
    return await service.commission_statement(session, actor, staff_id=staff_id, since=since, until=until)
