"""Tenants and stores."""

from __future__ import annotations

from datetime import date
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import DEFAULT_TIMEZONE, utcnow
from app.core.db import set_tenant
from app.core.errors import Conflict, NotFound
from app.core.pagination import PageParams, fetch_page
from app.core.rows import get_or_404, read_or_404
from app.domain.tenancy.models import Store, Tenant
from app.domain.tenancy.schemas import (
    StoreCreate,
    StoreListing,
    StoreListingOut,
    StoreOut,
    StoreUpdate,
    TenantSettings,
)


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
    return await get_or_404(session, Store, actor.tenant_id, store_id, code="store_not_found")


async def require_stores_exist(session: AsyncSession, tenant_id: UUID, store_ids: set[UUID]) -> None:
    if not store_ids:
        return
    found = set(
        (await session.exec(select(Store.id).where(Store.tenant_id == tenant_id, Store.id.in_(store_ids)))).all()
    )
    missing = store_ids - found
    if missing:
        raise NotFound(f"unknown store {sorted(map(str, missing))[0]}", code="store_not_found")


_STORES = "SELECT id, name, timezone, address, phone, active, created_at FROM stores WHERE tenant_id = $1"


async def list_stores(session: AsyncSession, actor: Actor, params: PageParams) -> tuple[list[StoreOut], str | None]:
    actor.require("stores:read")
    rows, cursor = await fetch_page(session, _STORES, [actor.tenant_id], params)
    return [StoreOut.model_validate(row) for row in rows], cursor


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


# ---------------------------------------------------------------- read API (for other contexts)
# Other contexts read tenants and stores only through these functions (never tenancy's models).


async def store_names(session: AsyncSession, tenant_id: UUID) -> dict[UUID, str]:
    """Every store's name by id (open or closed), to match store names in a file to stores."""
    rows = (await session.exec(select(Store.id, Store.name).where(Store.tenant_id == tenant_id))).all()
    return dict(rows)


async def store_row(session: AsyncSession, tenant_id: UUID, store_id: UUID) -> Store | None:
    """The store, or None; no permission check (the caller has made its own)."""
    return await session.get(Store, (tenant_id, store_id))


async def stores_by_id(session: AsyncSession, tenant_id: UUID, store_ids: set[UUID]) -> dict[UUID, Store]:
    if not store_ids:
        return {}
    rows = (await session.exec(select(Store).where(Store.tenant_id == tenant_id, Store.id.in_(store_ids)))).all()
    return {store.id: store for store in rows}


async def active_store(
    session: AsyncSession, actor: Actor, store_id: UUID, *, field: str | None = "store_id",
    inactive_detail: str = "this store is closed", scoped: bool = False,
) -> Store:
    """The store a write happens in: 404 `store_not_found` (naming `field`) when it does not exist,
    409 `store_inactive` when it is closed; with `scoped`, 403 unless the actor works in it. A snapshot
    (`read_or_404`): the write happens in the store, it does not change it."""
    extra = {"field": field} if field else {}
    store = await read_or_404(session, Store, actor.tenant_id, store_id, code="store_not_found", **extra)
    if scoped:
        actor.require_store(store.id)
    if not store.active:
        raise Conflict(inactive_detail, code="store_inactive", **extra)
    return store


async def scoped_store(session: AsyncSession, actor: Actor, store_id: UUID) -> Store:
    """The store, 404 when it does not exist, 403 unless the actor works in it (open or closed)."""
    store = await get_or_404(session, Store, actor.tenant_id, store_id, code="store_not_found")
    actor.require_store(store.id)
    return store


def store_zone(store: Store | None) -> ZoneInfo:
    return ZoneInfo(store.timezone if store is not None and store.timezone else DEFAULT_TIMEZONE)


def store_today(store: Store) -> date:
    """The store's local date now."""
    return utcnow().astimezone(store_zone(store)).date()


async def tenant_row(session: AsyncSession, tenant_id: UUID) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def tenant_ids(session: AsyncSession) -> list[UUID]:
    """Every tenant's id (for the worker's per-tenant housekeeping; needs a system session)."""
    return list((await session.exec(select(Tenant.id).order_by(Tenant.id))).all())


async def tenant_settings(session: AsyncSession, tenant_id: UUID) -> TenantSettings:
    """The tenant's switches, typed; defaults for what was never set (or is unreadable)."""
    raw = (await session.exec(select(Tenant.settings).where(Tenant.id == tenant_id))).first()
    try:
        return TenantSettings.model_validate(raw or {})
    except ValidationError:
        return TenantSettings()


async def tenant_by_code(session: AsyncSession, code: str) -> Tenant | None:
    """The tenant with this code (active or not), or None: a tenant named in a URL or a setting."""
    return await get_tenant_by_code(session, code)


# ---------------------------------------------------------------- the mini-program listing


def _listing_out(store: Store) -> StoreListingOut:
    return StoreListingOut(store_id=store.id, published=store.published, description=store.description,
                           latitude=store.latitude, longitude=store.longitude, photos=list(store.photos))


async def get_store_listing(session: AsyncSession, actor: Actor, store_id: UUID) -> StoreListingOut:
    return _listing_out(await get_store(session, actor, store_id))


async def set_store_listing(session: AsyncSession, actor: Actor, store_id: UUID,
                            data: StoreListing) -> StoreListingOut:
    """Replace how the store shows in the mini-program; a closed store cannot be published."""
    actor.require("stores:write")
    store = await get_or_404(session, Store, actor.tenant_id, store_id, code="store_not_found", lock=True)
    actor.require_store(store.id)
    if data.published and not store.active:
        raise Conflict("a closed store cannot be published", code="store_inactive", field="published")
    before = _listing_out(store).model_dump(mode="json", exclude={"store_id"})
    for field, value in data.model_dump().items():
        setattr(store, field, value)
    session.add(store)
    await session.flush()
    audit.record(session, "store.listing", "store", store.id, before=before, after=data.model_dump(mode="json"))
    return _listing_out(store)


async def published_stores(session: AsyncSession, tenant_id: UUID) -> list[Store]:
    """The stores patients may see: open and published, by name; no permission check (they are public)."""
    return list((await session.exec(select(Store).where(
        Store.tenant_id == tenant_id, Store.active.is_(True), Store.published.is_(True))
        .order_by(Store.name, Store.id))).all())


async def published_store(session: AsyncSession, tenant_id: UUID, store_id: UUID) -> Store:
    """One store patients may see; 404 `store_not_found` when there is none, or it is closed or unpublished."""
    store = await session.get(Store, (tenant_id, store_id))
    if store is None or not store.active or not store.published:
        raise NotFound("store not found", code="store_not_found")
    return store
