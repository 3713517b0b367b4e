from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
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
                      actor: Actor = require("stores:read")) -> Page[StoreOut]:
    rows, cursor = await service.list_stores(session, actor, params)
    return Page(items=[StoreOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/{store_id}", response_model=StoreOut, operation_id="get_store")
async def get_store(store_id: UUID, session: AsyncSession = Depends(get_db),
                    actor: Actor = require("stores:read")) -> StoreOut:
    return StoreOut.model_validate(await service.get_store(session, actor, store_id))


@router.patch("/{store_id}", response_model=StoreOut, operation_id="update_store")
async def update_store(store_id: UUID, body: StoreUpdate, session: AsyncSession = Depends(get_db),
                       actor: Actor = require("stores:write")) -> StoreOut:
    return StoreOut.model_validate(await service.update_store(session, actor, store_id, body))
