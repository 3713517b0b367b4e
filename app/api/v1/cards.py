from __future__ import annotations

from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import current_actor, get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.cards import service, templates
from app.domain.cards.schemas import (
    CardExtend,
    CardIssue,
    CardOut,
    CardTemplateCreate,
    CardTemplateOut,
    CardTransfer,
    LedgerEntryOut,
    Reason,
)

router = APIRouter(tags=["cards"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
PATIENT_TOO = ("staff", "integration", "patient")


@router.post("/card-templates", status_code=201, response_model=CardTemplateOut, operation_id="create_card_template")
async def create_template(body: CardTemplateCreate, session: AsyncSession = Depends(get_db),
                          actor: Actor = require("catalog:write")) -> CardTemplateOut:
    """A card product: stored value (face value + bonus), count, package (several services, optional
    shared pool) or period (unlimited within validity). Its terms are frozen into every card sold."""
    return await templates.present_template(session, await templates.create_template(session, actor, body))


@router.get("/card-templates", response_model=Page[CardTemplateOut], operation_id="list_card_templates")
async def list_templates(active: bool | None = Query(True), params: PageParams = Depends(page_params),
                         session: AsyncSession = Depends(get_db),
                         actor: Actor = current_actor(PATIENT_TOO)) -> Page[CardTemplateOut]:
    rows, cursor = await templates.list_templates(session, actor, params, active=active)
    return Page(items=[await templates.present_template(session, t) for t in rows], next_cursor=cursor)


@router.get("/card-templates/{template_id}", response_model=CardTemplateOut, operation_id="get_card_template")
async def get_template(template_id: UUID, session: AsyncSession = Depends(get_db),
                       actor: Actor = current_actor(PATIENT_TOO)) -> CardTemplateOut:
    return await templates.present_template(session, await templates.get_template(session, actor, template_id))


@router.post("/cards", status_code=201, response_model=CardOut, operation_id="issue_card")
async def issue_card(body: CardIssue, session: AsyncSession = Depends(get_db),
                     actor: Actor = require("cards:issue")) -> CardOut:
    """Issue a card without an order (a gift, a migration from paper records), with a reason.
    Cards sold at checkout are issued by the order."""
    card = await service.issue_card(session, actor, member_id=body.member_id, template_id=body.template_id,
                                    store_id=body.store_id, price_paid=body.price_paid, reason=body.reason)
    return await service.present(session, card)


@router.get("/members/{member_id}/cards", response_model=Page[CardOut], operation_id="list_member_cards")
async def member_cards(member_id: UUID,
                       status: Literal["active", "frozen", "exhausted", "expired", "closed"] | None = Query(None),
                       session: AsyncSession = Depends(get_db),
                       actor: Actor = current_actor(PATIENT_TOO)) -> Page[CardOut]:
    """The member's cards and family cards shared with them: kind, status, expiry, stored-value balance
    and remaining sessions per service."""
    return Page(items=await service.member_cards(session, actor, member_id, status=status), next_cursor=None)


@router.get("/cards/{card_id}", response_model=CardOut, operation_id="get_card")
async def get_card(card_id: UUID, session: AsyncSession = Depends(get_db),
                   actor: Actor = current_actor(PATIENT_TOO)) -> CardOut:
    return await service.present(session, await service.get_card(session, actor, card_id))


@router.get("/cards/{card_id}/ledger", response_model=Page[LedgerEntryOut], operation_id="card_ledger")
async def card_ledger(card_id: UUID, params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                      actor: Actor = current_actor(PATIENT_TOO)) -> Page[LedgerEntryOut]:
    """Every change to the card, newest first; remaining sessions and balances equal the sums of these rows."""
    rows, cursor = await service.ledger(session, actor, card_id, params)
    return Page(items=[LedgerEntryOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.post("/cards/{card_id}/freeze", response_model=CardOut, operation_id="freeze_card")
async def freeze(card_id: UUID, body: Reason, session: AsyncSession = Depends(get_db),
                 actor: Actor = require("cards:adjust")) -> CardOut:
    """Pause the card (illness, travel); unfreezing extends its expiry by the time it was frozen."""
    return await service.present(session, await service.freeze(session, actor, card_id, body.reason))


@router.post("/cards/{card_id}/unfreeze", response_model=CardOut, operation_id="unfreeze_card")
async def unfreeze(card_id: UUID, body: Reason, session: AsyncSession = Depends(get_db),
                   actor: Actor = require("cards:adjust")) -> CardOut:
    return await service.present(session, await service.unfreeze(session, actor, card_id, body.reason))


@router.post("/cards/{card_id}/transfer", response_model=CardOut, operation_id="transfer_card")
async def transfer(card_id: UUID, body: CardTransfer, session: AsyncSession = Depends(get_db),
                   actor: Actor = require("cards:adjust")) -> CardOut:
    card = await service.transfer(session, actor, card_id, body.to_member_id, body.reason)
    return await service.present(session, card)


@router.post("/cards/{card_id}/extend", response_model=CardOut, operation_id="extend_card")
async def extend(card_id: UUID, body: CardExtend, session: AsyncSession = Depends(get_db),
                 actor: Actor = require("cards:adjust")) -> CardOut:
    """Move the expiry out by `days` or to `until`; an expired card comes back with its sessions."""
    card = await service.extend(session, actor, card_id, days=body.days, until=body.until, reason=body.reason)
    return await service.present(session, card)
