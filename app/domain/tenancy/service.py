"""Tenants and stores."""

from __future__ import annotations

from uuid import UUID

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.db import set_tenant
from app.core.errors import Conflict, NotFound
from app.core.pagination import PageParams, paginate
from app.domain.tenancy.models import Store, Tenant
from app.domain.tenancy.schemas import StoreCreate, StoreUpdate


async def get_tenant_by_code(session: AsyncSession, code: str) -> Tenant | None:
    return (await session.exec(select(Tenant).where(Tenant.code == code))).first()


async def create_tenant(session: AsyncSession, *, code: str, name: str) -> Tenant:
    """Create the tenant row (system transaction) and scope the rest of the transaction to it."""
    if await get_tenant_by_code(session, code):
        raise Conflict(f"tenant code {code!r} already exists", code="tenant_exists")
    tenant = Tenant(code=code, name=name)
    session.add(tenant)
    await session.flush()
    await set_tenant(session, tenant.id)
    audit.record(session, "tenant.create", "tenant", tenant.id, after={"code": code, "name": name})
    return tenant


async def create_store(session: AsyncSession, actor: Actor, data: StoreCreate) -> Store:
    actor.require("stores:write")
    store = Store(tenant_id=actor.tenant_id, **data.model_dump())
    session.add(store)
    await session.flush()
    audit.record(session, "store.create", "store", store.id, after=data.model_dump())
    return store


async def get_store(session: AsyncSession, actor: Actor, store_id: UUID) -> Store:
    actor.require("stores:read")
    store = await session.get(Store, (actor.tenant_id, store_id))
    if store is None:
        raise NotFound("store not found", code="store_not_found")
    return store


async def require_stores_exist(session: AsyncSession, tenant_id: UUID, store_ids: set[UUID]) -> None:
    if not store_ids:
        return
    found = set(
        (await session.exec(select(Store.id).where(Store.tenant_id == tenant_id, Store.id.in_(store_ids)))).all()
    )
    missing = store_ids - found
    if missing:
        raise NotFound(f"unknown store {sorted(map(str, missing))[0]}", code="store_not_found")


async def list_stores(session: AsyncSession, actor: Actor, params: PageParams):
    actor.require("stores:read")
    stmt = select(Store).where(Store.tenant_id == actor.tenant_id)
    return await paginate(session, stmt, Store.id, params)


async def update_store(session: AsyncSession, actor: Actor, store_id: UUID, data: StoreUpdate) -> Store:
    actor.require("stores:write")
    store = await get_store(session, actor, store_id)
    actor.require_store(store.id)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    before = audit.snapshot(store, fields=list(changes))
    for field, value in changes.items():
        setattr(store, field, value)
    session.add(store)
    await session.flush()
    audit.record(session, "store.update", "store", store.id, before=before, after=changes)
    return store
