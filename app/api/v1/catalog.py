from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.catalog import service
from app.domain.catalog.schemas import (
    ConsumableCreate,
    ConsumableOut,
    ConsumableUpdate,
    ProductCreate,
    ProductOut,
    ProductUpdate,
    ServiceCreate,
    ServiceOut,
    ServiceUpdate,
)

router = APIRouter(tags=["catalog"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)

ACTIVE = Query(None, description="true: only active; false: only deactivated; absent: both")
NAME_QUERY = Query(None, min_length=1, max_length=50, description="Part of the name")
CATEGORY = Query(None, min_length=1, max_length=50)


# ---------------------------------------------------------------- consumables


@router.post("/consumables", status_code=201, response_model=ConsumableOut, operation_id="create_consumable")
async def create_consumable(body: ConsumableCreate, session: AsyncSession = Depends(get_db),
                            actor: Actor = require("catalog:write")) -> ConsumableOut:
    """A material services use up (艾条 in 根, 按摩精油 in ml). Its unit is fixed once created."""
    return ConsumableOut.model_validate(await service.create_consumable(session, actor, body))


@router.get("/consumables", response_model=Page[ConsumableOut], operation_id="list_consumables")
async def list_consumables(active: bool | None = ACTIVE, q: str | None = NAME_QUERY, category: str | None = CATEGORY,
                           params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                           actor: Actor = require("catalog:read")) -> Page[ConsumableOut]:
    rows, cursor = await service.list_consumables(session, actor, params, active=active, q=q, category=category)
    return Page(items=[ConsumableOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/consumables/{consumable_id}", response_model=ConsumableOut, operation_id="get_consumable")
async def get_consumable(consumable_id: UUID, session: AsyncSession = Depends(get_db),
                         actor: Actor = require("catalog:read")) -> ConsumableOut:
    return ConsumableOut.model_validate(await service.get_consumable(session, actor, consumable_id))


@router.patch("/consumables/{consumable_id}", response_model=ConsumableOut, operation_id="update_consumable")
async def update_consumable(consumable_id: UUID, body: ConsumableUpdate, session: AsyncSession = Depends(get_db),
                            actor: Actor = require("catalog:write")) -> ConsumableOut:
    """Rename, recategorise, change the default low-stock threshold, or deactivate (`active: false`)."""
    return ConsumableOut.model_validate(await service.update_consumable(session, actor, consumable_id, body))


# ---------------------------------------------------------------- products


@router.post("/products", status_code=201, response_model=ProductOut, operation_id="create_product",
             responses={409: {"description": "The SKU belongs to another product (`product_sku_exists`)"}})
async def create_product(body: ProductCreate, session: AsyncSession = Depends(get_db),
                         actor: Actor = require("catalog:write")) -> ProductOut:
    """A retail product sold at checkout; `price` in integer fen."""
    return ProductOut.model_validate(await service.create_product(session, actor, body))


@router.get("/products", response_model=Page[ProductOut], operation_id="list_products")
async def list_products(active: bool | None = ACTIVE, q: str | None = NAME_QUERY, category: str | None = CATEGORY,
                        sku: str | None = Query(None, min_length=1, max_length=64),
                        params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                        actor: Actor = require("catalog:read")) -> Page[ProductOut]:
    rows, cursor = await service.list_products(session, actor, params, active=active, q=q, category=category, sku=sku)
    return Page(items=[ProductOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/products/{product_id}", response_model=ProductOut, operation_id="get_product")
async def get_product(product_id: UUID, session: AsyncSession = Depends(get_db),
                      actor: Actor = require("catalog:read")) -> ProductOut:
    return ProductOut.model_validate(await service.get_product(session, actor, product_id))


@router.patch("/products/{product_id}", response_model=ProductOut, operation_id="update_product",
              responses={409: {"description": "The SKU belongs to another product (`product_sku_exists`)"}})
async def update_product(product_id: UUID, body: ProductUpdate, session: AsyncSession = Depends(get_db),
                         actor: Actor = require("catalog:write")) -> ProductOut:
    return ProductOut.model_validate(await service.update_product(session, actor, product_id, body))


# ---------------------------------------------------------------- services


@router.post("/services", status_code=201, response_model=ServiceOut, operation_id="create_service")
async def create_service(body: ServiceCreate, session: AsyncSession = Depends(get_db),
                         actor: Actor = require("catalog:write")) -> ServiceOut:
    """A bookable service: `price` in integer fen, the resources it occupies, the consumables one performance
    uses (deducted from the store's stock on completion) and the therapist's commission rule."""
    created = await service.create_service(session, actor, body)
    return await service.get_service(session, actor, created.id)


@router.get("/services", response_model=Page[ServiceOut], operation_id="list_services")
async def list_services(active: bool | None = ACTIVE, q: str | None = NAME_QUERY, category: str | None = CATEGORY,
                        params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                        actor: Actor = require("catalog:read")) -> Page[ServiceOut]:
    items, cursor = await service.list_services(session, actor, params, active=active, q=q, category=category)
    return Page(items=items, next_cursor=cursor)


@router.get("/services/{service_id}", response_model=ServiceOut, operation_id="get_service")
async def get_service(service_id: UUID, session: AsyncSession = Depends(get_db),
                      actor: Actor = require("catalog:read")) -> ServiceOut:
    return await service.get_service(session, actor, service_id)


@router.patch("/services/{service_id}", response_model=ServiceOut, operation_id="update_service")
async def update_service(service_id: UUID, body: ServiceUpdate, session: AsyncSession = Depends(get_db),
                         actor: Actor = require("catalog:write")) -> ServiceOut:
    """Change any field; `consumables` replaces the whole recipe, `commission: null` removes the rule,
    `active: false` deactivates. Past visits keep what they deducted and earned."""
    updated = await service.update_service(session, actor, service_id, body)
    return await service.get_service(session, actor, updated.id)
