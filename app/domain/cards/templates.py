"""Card templates: the card products a clinic sells (stored value, count, package, period) with their terms,
which are frozen into every card issued from them."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.domain.cards.models import CardKind, CardTemplate, CardTemplateItem
from app.domain.cards.schemas import (
    CardTemplateCreate,
    CardTemplateListing,
    CardTemplateListingOut,
    CardTemplateOut,
)
from app.domain.catalog import service as catalog
from app.domain.tenancy import service as tenancy

# The furthest ahead a card's end may be set: by a template's valid_until, or by one extension (CardExtend.days).
MAX_EXTENSION = timedelta(days=3660)


async def create_template(session: AsyncSession, actor: Actor, data: CardTemplateCreate) -> CardTemplate:
    actor.require("catalog:write")
    _check_template(data)
    service_ids = {i.service_id for i in data.items}
    if len(service_ids) != len(data.items):
        raise Unprocessable("items: each service may appear once", code="validation_error", field="items")
    services = await catalog.services_by_id(session, actor.tenant_id, service_ids)
    missing = service_ids - set(services)
    if missing:
        raise Unprocessable(f"items: no such service {sorted(map(str, missing))[0]}", code="validation_error",
                            field="items")
    await tenancy.require_stores_exist(session, actor.tenant_id, set(data.usable_store_ids))
    template = CardTemplate(tenant_id=actor.tenant_id, **data.model_dump(exclude={"items", "usable_store_ids"}),
                            usable_store_ids=[str(s) for s in data.usable_store_ids])
    session.add(template)
    await session.flush()
    session.add_all(CardTemplateItem(tenant_id=actor.tenant_id, template_id=template.id, **i.model_dump())
                    for i in data.items)
    await session.flush()
    audit.record(session, "card_template.create", "card_template", template.id, after=data.model_dump(mode="json"))
    return template


def _check_template(data: CardTemplateCreate) -> None:
    def bad(field: str, message: str) -> Unprocessable:
        return Unprocessable(f"{field}: {message}", code="validation_error", field=field)

    if data.kind == CardKind.STORED_VALUE:
        if data.items:
            raise bad("items", "a stored-value card holds money, not sessions")
        if data.face_value <= 0:
            raise bad("face_value", "a stored-value card needs a face value")
        if data.valid_days or data.valid_until:
            # 单用途商业预付卡管理办法: a card sold to a named member may not expire.
            raise bad("valid_days", "stored value sold to a named member cannot expire")
    else:
        if data.face_value or data.bonus:
            raise bad("face_value", f"a {data.kind} card holds sessions, not money")
        if not data.items:
            raise bad("items", f"a {data.kind} card needs at least one service")
        if data.kind == CardKind.COUNT and len(data.items) != 1:
            raise bad("items", "a count card covers exactly one service")
        if data.kind in (CardKind.COUNT, CardKind.PACKAGE) and any(i.sessions + i.gifted_sessions == 0
                                                                   for i in data.items) \
                and not data.shared_pool_sessions:
            raise bad("items", "every item needs sessions (or the package a shared pool)")
        if data.kind == CardKind.PERIOD and not (data.valid_days or data.valid_until):
            raise bad("valid_days", "a period card needs a validity")
    if data.shared_pool_sessions and data.kind != CardKind.PACKAGE:
        raise bad("shared_pool_sessions", "only package cards have a shared pool")
    if data.daily_cap and data.kind != CardKind.PERIOD:
        raise bad("daily_cap", "only period cards have a daily cap")
    if data.valid_days and data.valid_until:
        raise bad("valid_until", "give valid_days or valid_until, not both")
    # The same bound as an extension: a card that never really ends is not a fixed end date, and the
    # date arithmetic of freezes and extensions must stay within the calendar.
    if data.valid_until and not utcnow().date() <= data.valid_until <= utcnow().date() + MAX_EXTENSION:
        raise bad("valid_until", f"must be between today and {MAX_EXTENSION.days} days ahead")


async def template_items(session: AsyncSession, tenant_id: UUID, template_id: UUID) -> list[CardTemplateItem]:
    stmt = select(CardTemplateItem).where(CardTemplateItem.tenant_id == tenant_id,
                                          CardTemplateItem.template_id == template_id).order_by(CardTemplateItem.id)
    return list((await session.exec(stmt)).all())


async def present_template(session: AsyncSession, template: CardTemplate) -> CardTemplateOut:
    items = await template_items(session, template.tenant_id, template.id)
    return CardTemplateOut(
        **template.model_dump(exclude={"usable_store_ids", "tenant_id", "created_at", "description"}),
        usable_store_ids=[UUID(s) for s in template.usable_store_ids],
        items=[{"service_id": str(i.service_id), "sessions": i.sessions, "gifted_sessions": i.gifted_sessions}
               for i in items])


async def get_template(session: AsyncSession, actor: Actor, template_id: UUID) -> CardTemplate:
    """A template; a patient sees only those on sale in the mini-program (active and published)."""
    if actor.kind != "patient":
        actor.require("cards:read")
    template = await get_or_404(session, CardTemplate, actor.tenant_id, template_id, code="card_template_not_found")
    if actor.kind == "patient" and not (template.active and template.published):
        raise NotFound("card template not found", code="card_template_not_found")
    return template


async def list_templates(session: AsyncSession, actor: Actor, params: PageParams, *, active: bool | None = True):
    if actor.kind != "patient":
        actor.require("cards:read")
    stmt = select(CardTemplate).where(CardTemplate.tenant_id == actor.tenant_id)
    if actor.kind == "patient":  # what is on sale in the mini-program, never the internal catalogue
        stmt = stmt.where(CardTemplate.active, CardTemplate.published)
    elif active is not None:
        stmt = stmt.where(CardTemplate.active == active)
    return await paginate(session, stmt, CardTemplate.id, params)


# ---------------------------------------------------------------- the mini-program listing


def _listing_out(template: CardTemplate) -> CardTemplateListingOut:
    return CardTemplateListingOut(template_id=template.id, published=template.published,
                                  description=template.description)


async def get_template_listing(session: AsyncSession, actor: Actor, template_id: UUID) -> CardTemplateListingOut:
    return _listing_out(await get_template(session, actor, template_id))


async def set_template_listing(session: AsyncSession, actor: Actor, template_id: UUID,
                               data: CardTemplateListing) -> CardTemplateListingOut:
    """Put the template on sale in the mini-program (or take it off); a template no longer sold cannot be."""
    actor.require("catalog:write")
    template = await get_or_404(session, CardTemplate, actor.tenant_id, template_id, code="card_template_not_found",
                                lock=True)
    if data.published and not template.active:
        raise Conflict("a card template no longer sold cannot be published", code="card_template_inactive",
                       field="published")
    before = _listing_out(template).model_dump(mode="json", exclude={"template_id"})
    template.published, template.description = data.published, data.description
    session.add(template)
    await session.flush()
    audit.record(session, "card_template.listing", "card_template", template.id, before=before,
                 after=data.model_dump(mode="json"))
    return _listing_out(template)


def _sold_in(template: CardTemplate, store_id: UUID) -> bool:
    return not template.usable_store_ids or str(store_id) in template.usable_store_ids


async def on_sale_templates(session: AsyncSession, tenant_id: UUID, *,
                            store_id: UUID | None = None) -> list[CardTemplate]:
    """Templates patients may buy (active and published), by price; with `store_id`, those usable there. No
    permission check: what is on sale is public."""
    rows = (await session.exec(select(CardTemplate).where(
        CardTemplate.tenant_id == tenant_id, CardTemplate.active.is_(True), CardTemplate.published.is_(True))
        .order_by(CardTemplate.price, CardTemplate.name, CardTemplate.id))).all()
    return [t for t in rows if store_id is None or _sold_in(t, store_id)]


async def on_sale_template(session: AsyncSession, tenant_id: UUID, template_id: UUID) -> CardTemplate:
    """One template patients may buy; 404 `card_template_not_found` when unknown, unpublished or no longer sold
    (checkout refuses a patient's card line with this)."""
    template = await session.get(CardTemplate, (tenant_id, template_id))
    if template is None or not template.active or not template.published:
        raise NotFound("card template not found", code="card_template_not_found")
    return template


async def items_of_templates(session: AsyncSession, tenant_id: UUID,
                             template_ids: set[UUID]) -> dict[UUID, list[CardTemplateItem]]:
    """Each template's items (sessions per service), in one query."""
    out: dict[UUID, list[CardTemplateItem]] = {t: [] for t in template_ids}
    if template_ids:
        for item in (await session.exec(select(CardTemplateItem).where(
                CardTemplateItem.tenant_id == tenant_id, CardTemplateItem.template_id.in_(template_ids))
                .order_by(CardTemplateItem.id))).all():
            out[item.template_id].append(item)
    return out
