from __future__ import annotations

from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.inventory import service
from app.domain.inventory.schemas import (
    MovementCreate,
    MovementList,
    MovementOut,
    ReverseRequest,
    StockItemOut,
    ThresholdSet,
    TransferCreate,
    TransferOut,
)

router = APIRouter(prefix="/inventory", tags=["inventory"], route_class=TransactionalRoute,
                   responses=PROBLEM_RESPONSES)

INSUFFICIENT = {409: {"description": "Not enough stock at the store (`insufficient_stock`, naming the item)"}}
MovementKindName = Literal["receive", "adjust", "transfer_out", "transfer_in", "consume", "sale", "reversal"]


@router.post("/movements", status_code=201, response_model=MovementOut, operation_id="record_stock_movement",
             responses=INSUFFICIENT)
async def record_movement(body: MovementCreate, session: AsyncSession = Depends(get_db),
                          actor: Actor = require("inventory:write")) -> MovementOut:
    """Receive stock (`kind: receive`, positive `quantity`) or correct it (`kind: adjust`, signed `quantity`,
    `reason` required) at a store, for a consumable (`consumable_id`) or a product (`product_id`)."""
    return service.movement_out(await service.record_movement(session, actor, body))


@router.get("/movements", response_model=Page[MovementOut], operation_id="list_stock_movements")
async def list_movements(store_id: UUID | None = Query(None), item_id: UUID | None = Query(
                             None, description="A consumable's or product's id"),
                         kind: MovementKindName | None = Query(None),
                         ref_type: str | None = Query(None, min_length=1, max_length=50),
                         ref_id: str | None = Query(None, min_length=1, max_length=100),
                         params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                         actor: Actor = require("inventory:read")) -> Page[MovementOut]:
    """The stock ledger, newest first; without `store_id`, every store the caller may see."""
    rows, cursor = await service.list_movements(session, actor, params, store_id=store_id, item_id=item_id,
                                                kind=kind, ref_type=ref_type, ref_id=ref_id)
    return Page(items=[service.movement_out(m) for m in rows], next_cursor=cursor)


@router.post("/movements/{movement_id}/reverse", status_code=201, response_model=MovementList,
             operation_id="reverse_stock_movement", responses=INSUFFICIENT)
async def reverse_movement(movement_id: UUID, body: ReverseRequest, session: AsyncSession = Depends(get_db),
                           actor: Actor = require("inventory:write")) -> MovementList:
    """Undo a movement with a compensating `reversal` pointing at it (a transfer is undone whole).
    409 when it was reversed already, is itself a reversal, or undoing it would overdraw the stock."""
    reversals = await service.reverse_movement(session, actor, movement_id, body.reason)
    return MovementList(items=[service.movement_out(m) for m in reversals])


@router.post("/transfers", status_code=201, response_model=TransferOut, operation_id="transfer_stock",
             responses=INSUFFICIENT)
async def transfer_stock(body: TransferCreate, session: AsyncSession = Depends(get_db),
                         actor: Actor = require("inventory:write")) -> TransferOut:
    """Move stock from one store to another: all lines or none."""
    transfer_id, movements = await service.transfer(session, actor, body)
    return TransferOut(transfer_id=transfer_id, from_store_id=body.from_store_id, to_store_id=body.to_store_id,
                       movements=[service.movement_out(m) for m in movements])


@router.get("/stock", response_model=Page[StockItemOut], operation_id="list_stock")
async def list_stock(store_id: UUID | None = Query(None, description="One store; absent: every store you may see"),
                     item_kind: Literal["consumable", "product"] | None = Query(None),
                     item_id: UUID | None = Query(None, description="One consumable or product (e.g. across stores)"),
                     params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                     actor: Actor = require("inventory:read")) -> Page[StockItemOut]:
    """Stock of every consumable and product a store has held, with its low-stock threshold."""
    items, cursor = await service.list_stock(session, actor, params, store_id, item_kind=item_kind,
                                             item_id=item_id)
    return Page(items=items, next_cursor=cursor)


@router.put("/thresholds", response_model=StockItemOut, operation_id="set_stock_threshold")
async def set_threshold(body: ThresholdSet, session: AsyncSession = Depends(get_db),
                        actor: Actor = require("inventory:write")) -> StockItemOut:
    """Set one store's low-stock threshold for an item (null: use the item's own)."""
    return await service.set_threshold(session, actor, body)
