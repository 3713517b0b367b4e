"""Subscribe-message consent from the mini-program (`patient` audience): the answers the user gave to
`wx.requestSubscribeMessage`, recorded per template; each `accept` allows one message of that template."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import current_actor, get_db
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.messaging import subscriptions
from app.domain.messaging.subscriptions import ConsentRecordOut, ConsentState, SubscribeResults, SubscribeResultsOut

router = APIRouter(tags=["patient"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
PATIENT = ("patient",)


@router.post("/patient/message-consents", response_model=SubscribeResultsOut,
             operation_id="patient_report_subscribe_results")
async def report_subscribe_results(body: SubscribeResults, session: AsyncSession = Depends(get_db),
                                   actor: Actor = current_actor(PATIENT)) -> SubscribeResultsOut:
    """Post what `wx.requestSubscribeMessage` answered (`{"results": {"<template id>": "accept", …}}`, its
    `errMsg` key left out): every answer is recorded with its time; each `accept` allows one more message of
    that template (messages without one are not sent: `skipped`, `no_subscription_consent`). A template id
    none of the clinic's subscribe templates uses is 422 naming `results.<id>`."""
    consents, recorded = await subscriptions.record_subscribe_results(session, actor, body)
    return SubscribeResultsOut(consents=[ConsentState.model_validate(c) for c in consents],
                               recorded=[ConsentRecordOut.model_validate(r) for r in recorded])


@router.get("/patient/message-consents", response_model=list[ConsentState],
            operation_id="patient_list_message_consents")
async def my_message_consents(session: AsyncSession = Depends(get_db),
                              actor: Actor = current_actor(PATIENT)) -> list[ConsentState]:
    """How many messages of each subscribe template you still allow."""
    return [ConsentState.model_validate(c) for c in await subscriptions.current_consents(session, actor)]


@router.get("/members/{member_id}/message-consent-records", response_model=Page[ConsentRecordOut],
            operation_id="list_message_consent_records")
async def message_consent_records(member_id: UUID, params: PageParams = Depends(page_params),
                                  session: AsyncSession = Depends(get_db),
                                  actor: Actor = current_actor(("staff", "integration", "patient"))
                                  ) -> Page[ConsentRecordOut]:
    """Every answer the member gave to a subscribe request (template, accept/reject/ban/filter, where, when),
    newest first: the evidence behind their subscribe messages. Staff with `members:read`; patients their own."""
    rows, cursor = await subscriptions.consent_records(session, actor, member_id, params)
    return Page(items=[ConsentRecordOut.model_validate(r) for r in rows], next_cursor=cursor)
