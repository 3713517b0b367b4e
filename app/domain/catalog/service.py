"""Catalog use cases: consumables, retail products and services with their recipe and commission rule.

Other contexts call the functions under "for other contexts" at the end: inventory reads recipes and
stock items, booking reads durations and resource requirements, visits computes commissions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import and_, func
from sqlmodel import delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, Unprocessable
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404, read_or_404
from app.domain.catalog.models import Consumable, Product, Service, ServiceConsumable
from app.domain.catalog.schemas import (
    ConsumableCreate,
    ConsumableUpdate,
    ProductCreate,
    ProductUpdate,
    RecipeLine,
    RecipeLineOut,
    ResourceRequirement,
    ServiceCreate,
    ServiceListing,
    ServiceListingOut,
    ServiceOut,
    ServiceUpdate,
)


def invalid(field: str, message: str, *, type_: str = "value_error") -> Unprocessable:
    """A 422 shaped like request validation's, naming the field, for checks that need the database."""
    return Unprocessable(f"{field}: {message}", code="validation_error", title="Invalid request",
                         errors=[{"field": field, "message": message, "type": type_}])


def _name_filter(column: Any, q: str | None) -> Any:
    # strpos, not LIKE: a search for "100%" or "_" means those characters, and catalogs are small.
    return func.strpos(func.lower(column), q.lower()) > 0 if q else None


# ---------------------------------------------------------------- consumables


async def create_consumable(session: AsyncSession, actor: Actor, data: ConsumableCreate) -> Consumable:
    actor.require("catalog:write")
    consumable = Consumable(tenant_id=actor.tenant_id, updated_at=utcnow(), **data.model_dump())
    session.add(consumable)
    await session.flush()
    audit.record(session, "consumable.create", "consumable", consumable.id, after=data.model_dump())
    return consumable


async def get_consumable(session: AsyncSession, actor: Actor, consumable_id: UUID, *,
                         for_update: bool = False) -> Consumable:
    actor.require("catalog:read")
    return await get_or_404(session, Consumable, actor.tenant_id, consumable_id, code="consumable_not_found",
                            lock=for_update)


async def list_consumables(session: AsyncSession, actor: Actor, params: PageParams, *, active: bool | None = None,
                           q: str | None = None, category: str | None = None):
    actor.require("catalog:read")
    stmt = select(Consumable).where(Consumable.tenant_id == actor.tenant_id)
    if active is not None:
        stmt = stmt.where(Consumable.active == active)
    if category:
        stmt = stmt.where(Consumable.category == category)
    if q:
        stmt = stmt.where(_name_filter(Consumable.name, q))
    return await paginate(session, stmt, Consumable.id, params)


async def update_consumable(session: AsyncSession, actor: Actor, consumable_id: UUID,
                            data: ConsumableUpdate) -> Consumable:
    actor.require("catalog:write")
    consumable = await get_consumable(session, actor, consumable_id, for_update=True)
    changes = data.model_dump(exclude_unset=True)
    before = audit.snapshot(consumable, fields=list(changes))
    for column, value in changes.items():
        setattr(consumable, column, value)
    consumable.updated_at = utcnow()
    session.add(consumable)
    await session.flush()
    audit.record(session, "consumable.update", "consumable", consumable.id, before=before, after=changes)
    return consumable


# ---------------------------------------------------------------- products


async def _require_free_sku(session: AsyncSession, tenant_id: UUID, sku: str | None, product_id: UUID | None) -> None:
    if sku is None:
        return
    stmt = select(Product.id).where(Product.tenant_id == tenant_id, Product.sku == sku)
    existing = (await session.exec(stmt)).first()
    if existing is not None and existing != product_id:
        raise Conflict(f"SKU {sku!r} already belongs to another product", code="product_sku_exists", field="sku",
                       existing_product_id=str(existing))


async def create_product(session: AsyncSession, actor: Actor, data: ProductCreate) -> Product:
    actor.require("catalog:write")
    await _require_free_sku(session, actor.tenant_id, data.sku, None)
    product = Product(tenant_id=actor.tenant_id, updated_at=utcnow(), **data.model_dump())
    session.add(product)
    await session.flush()
    audit.record(session, "product.create", "product", product.id, after=data.model_dump())
    return product


async def get_product(session: AsyncSession, actor: Actor, product_id: UUID, *, for_update: bool = False) -> Product:
    actor.require("catalog:read")
    return await get_or_404(session, Product, actor.tenant_id, product_id, code="product_not_found", lock=for_update)


async def list_products(session: AsyncSession, actor: Actor, params: PageParams, *, active: bool | None = None,
                        q: str | None = None, category: str | None = None, sku: str | None = None):
    actor.require("catalog:read")
    stmt = select(Product).where(Product.tenant_id == actor.tenant_id)
    if active is not None:
        stmt = stmt.where(Product.active == active)
    if category:
        stmt = stmt.where(Product.category == category)
    if sku:
        stmt = stmt.where(Product.sku == sku)
    if q:
        stmt = stmt.where(_name_filter(Product.name, q))
    return await paginate(session, stmt, Product.id, params)


async def update_product(session: AsyncSession, actor: Actor, product_id: UUID, data: ProductUpdate) -> Product:
    actor.require("catalog:write")
    product = await get_product(session, actor, product_id, for_update=True)
    changes = data.model_dump(exclude_unset=True)
    if "sku" in changes:
        await _require_free_sku(session, actor.tenant_id, changes["sku"], product.id)
    before = audit.snapshot(product, fields=list(changes))
    for column, value in changes.items():
        setattr(product, column, value)
    product.updated_at = utcnow()
    session.add(product)
    await session.flush()
    audit.record(session, "product.update", "product", product.id, before=before, after=changes)
    return product


# ---------------------------------------------------------------- services


async def _check_recipe(session: AsyncSession, tenant_id: UUID, lines: list[RecipeLine]) -> None:
    wanted = {line.consumable_id for line in lines}
    if not wanted:
        return
    rows = (await session.exec(select(Consumable.id, Consumable.active).where(
        Consumable.tenant_id == tenant_id, Consumable.id.in_(wanted)))).all()
    found = dict(rows)
    for index, line in enumerate(lines):
        if line.consumable_id not in found:
            raise invalid(f"consumables.{index}.consumable_id", "no such consumable", type_="not_found")
        if not found[line.consumable_id]:
            raise invalid(f"consumables.{index}.consumable_id", "this consumable is deactivated", type_="inactive")


async def _set_recipe(session: AsyncSession, tenant_id: UUID, service_id: UUID, lines: list[RecipeLine]) -> None:
    # The recipe is configuration, not a ledger: what a service used on a given day is in the stock ledger.
    await session.execute(delete(ServiceConsumable).where(ServiceConsumable.tenant_id == tenant_id,
                                                          ServiceConsumable.service_id == service_id))
    session.add_all(ServiceConsumable(tenant_id=tenant_id, service_id=service_id, consumable_id=line.consumable_id,
                                      quantity=line.quantity) for line in lines)
    await session.flush()


def _requirements(requirements: list[ResourceRequirement]) -> list[dict[str, Any]]:
    # Stored as given ({"kind": "bed"}), without null keys, for the booking capability to read.
    return [r.model_dump(mode="json", exclude_none=True) for r in requirements]


def _recipe_summary(lines: list[RecipeLine]) -> list[dict[str, Any]]:
    return [{"consumable_id": str(line.consumable_id), "quantity": line.quantity} for line in lines]


async def create_service(session: AsyncSession, actor: Actor, data: ServiceCreate) -> Service:
    actor.require("catalog:write")
    await _check_recipe(session, actor.tenant_id, data.consumables)
    fields = data.model_dump(mode="json", exclude={"consumables"})
    fields["resource_requirements"] = _requirements(data.resource_requirements)
    service = Service(tenant_id=actor.tenant_id, updated_at=utcnow(), **fields)
    session.add(service)
    await session.flush()
    await _set_recipe(session, actor.tenant_id, service.id, data.consumables)
    audit.record(session, "service.create", "service", service.id,
                 after=fields | {"consumables": _recipe_summary(data.consumables)})
    return service


async def get_service_row(session: AsyncSession, actor: Actor, service_id: UUID, *,
                          for_update: bool = False, snapshot: bool = False) -> Service:
    """For other contexts (booking, visits, cards): the service row, or 404. Needs catalog:read only of staff;
    a context acting for a patient checks its own rules first. A `snapshot` for a caller that only reads it
    (one prepared statement; changes to it are not saved)."""
    if actor.kind != "patient":
        actor.require("catalog:read")
    if snapshot and not for_update:
        return await read_or_404(session, Service, actor.tenant_id, service_id, code="service_not_found")
    return await get_or_404(session, Service, actor.tenant_id, service_id, code="service_not_found", lock=for_update)


async def _recipes_out(session: AsyncSession, tenant_id: UUID,
                       service_ids: list[UUID]) -> dict[UUID, list[RecipeLineOut]]:
    out: dict[UUID, list[RecipeLineOut]] = {s: [] for s in service_ids}
    if not service_ids:
        return out
    rows = (await session.execute(
        select(ServiceConsumable.service_id, ServiceConsumable.consumable_id, ServiceConsumable.quantity,
               Consumable.name, Consumable.unit)
        .join(Consumable, and_(Consumable.tenant_id == ServiceConsumable.tenant_id,
                               Consumable.id == ServiceConsumable.consumable_id))
        .where(ServiceConsumable.tenant_id == tenant_id, ServiceConsumable.service_id.in_(service_ids))
        .order_by(ServiceConsumable.service_id, Consumable.name, ServiceConsumable.consumable_id)
    )).all()
    for service_id, consumable_id, quantity, name, unit in rows:
        out[service_id].append(RecipeLineOut(consumable_id=consumable_id, quantity=quantity, name=name, unit=unit))
    return out


def _service_out(service: Service, recipe: list[RecipeLineOut]) -> ServiceOut:
    return ServiceOut(
        id=service.id, name=service.name, category=service.category, description=service.description,
        duration_minutes=service.duration_minutes, price=service.price,
        resource_requirements=service.resource_requirements, buffer_minutes=service.buffer_minutes,
        consumables=recipe, commission=service.commission, active=service.active,
        created_at=service.created_at, updated_at=service.updated_at)


async def present_services(session: AsyncSession, actor: Actor, services: list[Service]) -> list[ServiceOut]:
    recipes = await _recipes_out(session, actor.tenant_id, [s.id for s in services])
    return [_service_out(s, recipes[s.id]) for s in services]


async def get_service(session: AsyncSession, actor: Actor, service_id: UUID) -> ServiceOut:
    service = await get_service_row(session, actor, service_id)
    return (await present_services(session, actor, [service]))[0]


async def list_services(session: AsyncSession, actor: Actor, params: PageParams, *, active: bool | None = None,
                        q: str | None = None, category: str | None = None) -> tuple[list[ServiceOut], str | None]:
    actor.require("catalog:read")
    stmt = select(Service).where(Service.tenant_id == actor.tenant_id)
    if active is not None:
        stmt = stmt.where(Service.active == active)
    if category:
        stmt = stmt.where(Service.category == category)
    if q:
        stmt = stmt.where(_name_filter(Service.name, q))
    rows, cursor = await paginate(session, stmt, Service.id, params)
    return await present_services(session, actor, list(rows)), cursor


async def update_service(session: AsyncSession, actor: Actor, service_id: UUID, data: ServiceUpdate) -> Service:
    actor.require("catalog:write")
    service = await get_service_row(session, actor, service_id, for_update=True)
    changes = data.model_dump(mode="json", exclude_unset=True, exclude={"consumables"})
    if data.resource_requirements is not None:
        changes["resource_requirements"] = _requirements(data.resource_requirements)
    before = audit.snapshot(service, fields=list(changes))
    for column, value in changes.items():
        setattr(service, column, value)
    service.updated_at = utcnow()
    session.add(service)
    await session.flush()
    if data.consumables is not None:
        await _check_recipe(session, actor.tenant_id, data.consumables)
        before["consumables"] = [{"consumable_id": str(line.consumable_id), "quantity": line.quantity}
                                 for line in await recipe_of(session, actor.tenant_id, service.id)]
        await _set_recipe(session, actor.tenant_id, service.id, data.consumables)
        changes["consumables"] = _recipe_summary(data.consumables)
    audit.record(session, "service.update", "service", service.id, before=before, after=changes)
    return service


# ---------------------------------------------------------------- for other contexts


@dataclass(frozen=True)
class StockItem:
    """A stockable catalog item as inventory sees it: a consumable or a product."""

    id: UUID
    kind: str  # consumable | product
    name: str
    unit: str
    low_stock_threshold: int
    active: bool


async def recipe_of(session: AsyncSession, tenant_id: UUID, service_id: UUID) -> list[ServiceConsumable]:
    """The consumables one performance of the service uses (empty when it has no recipe); 404 for no service."""
    await get_or_404(session, Service, tenant_id, service_id, code="service_not_found")
    stmt = select(ServiceConsumable).where(ServiceConsumable.tenant_id == tenant_id,
                                           ServiceConsumable.service_id == service_id)
    return list((await session.exec(stmt.order_by(ServiceConsumable.consumable_id))).all())


async def stock_items(session: AsyncSession, tenant_id: UUID, *, consumable_ids: Iterable[UUID] = (),
                      product_ids: Iterable[UUID] = ()) -> dict[UUID, StockItem]:
    """The consumables and products with these ids that exist in the tenant, by id (missing ones left out)."""
    found: dict[UUID, StockItem] = {}
    consumable_ids, product_ids = set(consumable_ids), set(product_ids)
    if consumable_ids:
        for c in (await session.exec(select(Consumable).where(Consumable.tenant_id == tenant_id,
                                                              Consumable.id.in_(consumable_ids)))).all():
            found[c.id] = StockItem(c.id, "consumable", c.name, c.unit, c.low_stock_threshold, c.active)
    if product_ids:
        for p in (await session.exec(select(Product).where(Product.tenant_id == tenant_id,
                                                           Product.id.in_(product_ids)))).all():
            found[p.id] = StockItem(p.id, "product", p.name, p.unit, p.low_stock_threshold, p.active)
    return found


def compute_commission(rule: dict[str, Any] | None, base_amount: int, staff_level: str | None = None) -> int:
    """Commission in fen for one performance under a service's rule.

    `base_amount` is what the service earned in fen: its price, or for a card session that session's share
    of the card price. `fixed` pays the rule's value (or the staff level's), `percent` that many percent of
    `base_amount`, rounded half up to the fen. No rule: 0.
    """
    if not rule:
        return 0
    if isinstance(base_amount, bool) or not isinstance(base_amount, int) or base_amount < 0:
        raise ValueError("base_amount must be a non-negative integer amount in fen")
    levels = rule.get("levels") or {}
    value = int(levels.get(staff_level, rule["value"]) if staff_level is not None else rule["value"])
    if rule["type"] == "fixed":
        return value
    return (base_amount * value + 50) // 100


# ---------------------------------------------------------------- read API (for other contexts)
# Other contexts read this one only through the functions below (never its models, never raw SQL on its tables).


async def service_row(session: AsyncSession, tenant_id: UUID, service_id: UUID) -> Service | None:
    """The service (offered or not), or None; no permission check (the caller has made its own)."""
    return await session.get(Service, (tenant_id, service_id))


async def services_by_id(session: AsyncSession, tenant_id: UUID, service_ids: set[UUID]) -> dict[UUID, Service]:
    """The services among these ids that exist (offered or not), by id."""
    if not service_ids:
        return {}
    rows = (await session.exec(select(Service).where(Service.tenant_id == tenant_id,
                                                     Service.id.in_(service_ids)))).all()
    return {service.id: service for service in rows}


async def service_names(session: AsyncSession, tenant_id: UUID) -> dict[UUID, str]:
    """Every service's name by id (offered or not), to match names in a file to services; no permission check."""
    rows = (await session.exec(select(Service.id, Service.name).where(Service.tenant_id == tenant_id))).all()
    return dict(rows)


# ---------------------------------------------------------------- the mini-program listing


def _listing_out(service: Service) -> ServiceListingOut:
    return ServiceListingOut(service_id=service.id, published=service.published,
                             aftercare_note=service.aftercare_note, photo_url=service.photo_url)


async def get_service_listing(session: AsyncSession, actor: Actor, service_id: UUID) -> ServiceListingOut:
    return _listing_out(await get_service_row(session, actor, service_id))


async def set_service_listing(session: AsyncSession, actor: Actor, service_id: UUID,
                              data: ServiceListing) -> ServiceListingOut:
    """Replace how the service shows in the mini-program; a service no longer offered cannot be published."""
    actor.require("catalog:write")
    service = await get_service_row(session, actor, service_id, for_update=True)
    if data.published and not service.active:
        raise Conflict("a service that is no longer offered cannot be published", code="service_inactive",
                       field="published")
    before = _listing_out(service).model_dump(mode="json", exclude={"service_id"})
    for column, value in data.model_dump().items():
        setattr(service, column, value)
    service.updated_at = utcnow()
    session.add(service)
    await session.flush()
    audit.record(session, "service.listing", "service", service.id, before=before, after=data.model_dump(mode="json"))
    return _listing_out(service)


async def published_services(session: AsyncSession, tenant_id: UUID,
                             service_ids: set[UUID] | None = None) -> list[Service]:
    """Services on sale to patients (offered and published), by category and name; only those among
    `service_ids` when given. No permission check: what is published is public."""
    if service_ids is not None and not service_ids:
        return []
    stmt = select(Service).where(Service.tenant_id == tenant_id, Service.active.is_(True),
                                 Service.published.is_(True))
    if service_ids is not None:
        stmt = stmt.where(Service.id.in_(service_ids))
    return list((await session.exec(stmt.order_by(Service.category.nulls_last(), Service.name, Service.id))).all())
