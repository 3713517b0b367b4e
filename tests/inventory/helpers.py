"""A tenant with stores, consumables, a product and a service, built through the services (no HTTP), for
tests that call inventory's functions directly as the completion and checkout flows will."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import text

from app.core.actor import Actor
from app.core.db import session_scope
from app.domain.catalog import service as catalog
from app.domain.catalog.schemas import ConsumableCreate, ProductCreate, RecipeLine, ServiceCreate
from app.domain.inventory import service as inventory
from app.domain.inventory.models import StockBalance, StockMovement
from app.domain.inventory.schemas import MovementCreate
from app.domain.tenancy import service as tenancy
from app.domain.tenancy.schemas import StoreCreate
from app.seed import create_tenant_with_owner
from tests.factories import PASSWORD


@dataclass
class World:
    tenant_id: UUID
    actor: Actor
    store_a: UUID
    store_b: UUID
    oil: UUID  # 按摩精油, ml
    sheet: UUID  # 一次性床单, 张
    tea: UUID  # 养生茶 (product)
    massage: UUID  # 推拿: 精油 10 ml + 床单 1


async def make_world(*, oil_threshold: int = 0) -> World:
    tenant = await create_tenant_with_owner(code=f"inv{uuid.uuid4().hex[:10]}", name="库存测试",
                                            owner_username="owner", owner_password=PASSWORD)
    actor = Actor.system(tenant.id)
    async with session_scope(tenant.id) as session:
        store_a = await tenancy.create_store(session, actor, StoreCreate(name="静安店"))
        store_b = await tenancy.create_store(session, actor, StoreCreate(name="徐汇店"))
        oil = await catalog.create_consumable(session, actor, ConsumableCreate(
            name="按摩精油", unit="ml", low_stock_threshold=oil_threshold))
        sheet = await catalog.create_consumable(session, actor, ConsumableCreate(name="一次性床单", unit="张"))
        tea = await catalog.create_product(session, actor, ProductCreate(name="养生茶", unit="罐", price=8800))
        massage = await catalog.create_service(session, actor, ServiceCreate(
            name="推拿", duration_minutes=60, price=19800,
            consumables=[RecipeLine(consumable_id=oil.id, quantity=10),
                         RecipeLine(consumable_id=sheet.id, quantity=1)]))
    return World(tenant.id, actor, store_a.id, store_b.id, oil.id, sheet.id, tea.id, massage.id)


async def receive(world: World, store_id: UUID, quantity: int, *, consumable_id: UUID | None = None,
                  product_id: UUID | None = None) -> None:
    async with session_scope(world.tenant_id) as session:
        await inventory.record_movement(session, world.actor, MovementCreate(
            store_id=store_id, kind="receive", quantity=quantity, consumable_id=consumable_id,
            product_id=product_id))


async def balance(world: World, store_id: UUID, item_id: UUID) -> int:
    async with session_scope(world.tenant_id) as session:
        return (await inventory.stock_levels(session, world.actor, store_id, [item_id]))[item_id]


async def ledger(world: World, store_id: UUID | None = None, item_id: UUID | None = None) -> list[StockMovement]:
    from sqlmodel import select

    async with session_scope(world.tenant_id) as session:
        stmt = select(StockMovement).where(StockMovement.tenant_id == world.tenant_id)
        if store_id is not None:
            stmt = stmt.where(StockMovement.store_id == store_id)
        if item_id is not None:
            stmt = stmt.where(StockMovement.item_id == item_id)
        return list((await session.exec(stmt.order_by(StockMovement.seq))).all())


async def assert_ledger_consistent(world: World) -> None:
    """Every balance equals the sum of its ledger, and each row's balance_after is the running sum."""
    from sqlmodel import select

    async with session_scope(world.tenant_id) as session:
        balances = (await session.exec(select(StockBalance).where(StockBalance.tenant_id == world.tenant_id))).all()
    movements = await ledger(world)
    running: dict[tuple[UUID, UUID], int] = {}
    for m in movements:
        key = (m.store_id, m.item_id)
        running[key] = running.get(key, 0) + m.quantity
        assert m.balance_after == running[key], f"balance_after of movement {m.seq} is not the running sum"
    for b in balances:
        assert b.quantity == running.get((b.store_id, b.item_id), 0), f"balance of {b.item_id} != sum(ledger)"


async def allow_negative_stock(tenant_id: UUID, allowed: bool = True) -> None:
    async with session_scope(system=True) as session:
        await session.execute(text(
            "UPDATE tenants SET settings = settings || jsonb_build_object('allow_negative_stock', CAST(:a AS boolean)) "
            "WHERE id = :t"), {"a": allowed, "t": tenant_id})
