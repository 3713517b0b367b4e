from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute, model_response
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.booking import readiness
from app.domain.booking.schedule import READ as SCHEDULE_READ
from app.domain.booking.schedule_schemas import StoreReadinessOut
from app.domain.tenancy import service
from app.domain.tenancy.schemas import StoreCreate, StoreOut, StoreUpdate

router = APIRouter(prefix="/stores", tags=["stores"], route_class=TransactionalRoute,
                   responses=PROBLEM_RESPONSES)


@router.post("", status_code=201, response_model=StoreOut, operation_id="create_store")
async def create_store(body: StoreCreate, session: AsyncSession = Depends(get_db),
                       actor: Actor = require("stores:write")) -> StoreOut:
    return StoreOut.model_validate(await service.create_store(session, actor, body))


@router.get("", response_model=Page[StoreOut], operation_id="list_stores")
async def list_stores(params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                      actor: Actor = require("stores:read")) -> Response:
    rows, cursor = await service.list_stores(session, actor, params)
    return model_response(Page[StoreOut](items=rows, next_cursor=cursor))


@router.get("/{store_id}", response_model=StoreOut, operation_id="get_store")
async def get_store(store_id: UUID, session: AsyncSession = Depends(get_db),
                    actor: Actor = require("stores:read")) -> StoreOut:
    return StoreOut.model_validate(await service.get_store(session, actor, store_id))


@router.patch("/{store_id}", response_model=StoreOut, operation_id="update_store")
async def update_store(store_id: UUID, body: StoreUpdate, session: AsyncSession = Depends(get_db),
                       actor: Actor = require("stores:write")) -> StoreOut:
    return StoreOut.model_validate(await service.update_store(session, actor, store_id, body))


@router.get("/{store_id}/readiness", response_model=StoreReadinessOut, operation_id="get_store_readiness",
            responses={403: {"description": "Without appointments:read (reading the store's schedule), or not "
                                            "working in this store (`store_forbidden`)"},
                       404: {"description": "No such store in this tenant (`store_not_found`)"}})
async def get_store_readiness(store_id: UUID, session: AsyncSession = Depends(get_db),
                              actor: Actor = require(SCHEDULE_READ)) -> StoreReadinessOut:
    """What still keeps the store from being offered slots: the store takes bookings, has opening hours,
    has active staff skilled for an offered service, has them on shift in the coming days, and has every
    room, bed or device those services require. Each check has `ok` and a message; `ready` when all pass."""
    return await readiness.store_readiness(session, actor, store_id)
