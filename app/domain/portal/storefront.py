"""The published storefront: what a patient browses in the mini-program before booking or buying.

Published data is public within the tenant (no permission check), and only what the clinic published shows:
open, published stores; offered, published services that someone in the store may perform; active, published
staff; active, published card templates. Anything else is 404, as if it did not exist. Each piece is read
through the context that owns it (tenancy, catalog, iam, booking, cards).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.errors import NotFound
from app.domain.booking import service as booking
from app.domain.cards import templates as card_templates
from app.domain.catalog import service as catalog
from app.domain.iam import service as iam
from app.domain.portal.schemas import (
    CardTemplateList,
    CardTemplateOnSaleOut,
    PublishedStoreOut,
    ServiceDetailOut,
    ServiceList,
    ServiceOnSaleOut,
    SkillOut,
    StoreList,
    TemplateItemOnSale,
    TherapistList,
    TherapistOut,
)
from app.domain.tenancy import service as tenancy

if TYPE_CHECKING:
    from app.domain.cards.models import CardTemplate
    from app.domain.catalog.models import Service
    from app.domain.iam.models import Staff
    from app.domain.tenancy.models import Store

EARTH_RADIUS_M = 6_371_008.8  # the mean radius: a few metres off over a city, which is what a list needs


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> int:
    """Great-circle distance in whole metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a))))


def _store_out(store: Store, hours: list, origin: tuple[float, float] | None) -> PublishedStoreOut:
    distance = None
    if origin is not None and store.latitude is not None and store.longitude is not None:
        distance = distance_m(origin[0], origin[1], store.latitude, store.longitude)
    return PublishedStoreOut(id=store.id, name=store.name, address=store.address, phone=store.phone,
                             timezone=store.timezone, description=store.description, latitude=store.latitude,
                             longitude=store.longitude, photos=list(store.photos), hours=hours, distance_m=distance)


async def list_stores(session: AsyncSession, tenant_id: UUID, *, latitude: float | None = None,
                      longitude: float | None = None) -> StoreList:
    """Every published store; nearest first when the patient sent where they are (the rest by name)."""
    stores = await tenancy.published_stores(session, tenant_id)
    hours = await booking.opening_hours_of(session, tenant_id, {s.id for s in stores})
    origin = (latitude, longitude) if latitude is not None and longitude is not None else None
    items = [_store_out(s, hours[s.id], origin) for s in stores]
    if origin is not None:
        items.sort(key=lambda s: (s.distance_m is None, s.distance_m or 0, s.name, str(s.id)))
    return StoreList(items=items)


async def get_store(session: AsyncSession, tenant_id: UUID, store_id: UUID, *, latitude: float | None = None,
                    longitude: float | None = None) -> PublishedStoreOut:
    store = await tenancy.published_store(session, tenant_id, store_id)
    hours = await booking.opening_hours_of(session, tenant_id, {store.id})
    origin = (latitude, longitude) if latitude is not None and longitude is not None else None
    return _store_out(store, hours[store.id], origin)


def _service_out(service: Service) -> ServiceOnSaleOut:
    return ServiceOnSaleOut(id=service.id, name=service.name, category=service.category,
                            description=service.description, duration_minutes=service.duration_minutes,
                            price=service.price, aftercare_note=service.aftercare_note, photo_url=service.photo_url)


async def _bookable_service_ids(session: AsyncSession, tenant_id: UUID, store_id: UUID) -> set[UUID]:
    """The services someone active in the store may perform (as availability would offer them)."""
    staff = await iam.active_staff_of_store(session, tenant_id, store_id)
    skills = await booking.skills_of(session, tenant_id, {s.id for s in staff})
    return set().union(*skills.values())


async def store_services(session: AsyncSession, tenant_id: UUID, store_id: UUID) -> ServiceList:
    """The services on sale at a published store: published, offered, and performed by its active staff."""
    store = await tenancy.published_store(session, tenant_id, store_id)
    services = await catalog.published_services(session, tenant_id,
                                                await _bookable_service_ids(session, tenant_id, store.id))
    return ServiceList(items=[_service_out(s) for s in services])


async def _published_store_ids(session: AsyncSession, tenant_id: UUID) -> set[UUID]:
    return {s.id for s in await tenancy.published_stores(session, tenant_id)}


async def get_service(session: AsyncSession, tenant_id: UUID, service_id: UUID) -> ServiceDetailOut:
    """A published service and the published stores where someone active may perform it."""
    found = await catalog.published_services(session, tenant_id, {service_id})
    if not found:
        raise NotFound("service not found", code="service_not_found")
    staff_ids = await iam.active_staff_ids(session, tenant_id,
                                           await booking.staff_skilled_for(session, tenant_id, service_id))
    stores = await iam.stores_of_staff(session, tenant_id, staff_ids)
    offered_in = set().union(*stores.values()) & await _published_store_ids(session, tenant_id)
    return ServiceDetailOut(**_service_out(found[0]).model_dump(), store_ids=sorted(offered_in, key=str))


async def _therapists(session: AsyncSession, tenant_id: UUID, staff: list[Staff]) -> list[TherapistOut]:
    ids = {s.id for s in staff}
    skills = await booking.skills_of(session, tenant_id, ids)
    services = {s.id: s for s in await catalog.published_services(session, tenant_id, set().union(*skills.values()))}
    stores = await iam.stores_of_staff(session, tenant_id, ids)
    published = await _published_store_ids(session, tenant_id)
    return [TherapistOut(id=s.id, name=s.display_name, title=s.title, bio=s.bio, photo_url=s.photo_url,
                         skills=[SkillOut(service_id=v.id, name=v.name) for v in services.values()
                                 if v.id in skills[s.id]],
                         store_ids=sorted(stores[s.id] & published, key=str)) for s in staff]


async def store_therapists(session: AsyncSession, tenant_id: UUID, store_id: UUID) -> TherapistList:
    """The published staff of a published store, with the services on sale they perform."""
    store = await tenancy.published_store(session, tenant_id, store_id)
    staff = (await iam.published_staff_of_stores(session, tenant_id, {store.id}))[store.id]
    return TherapistList(items=await _therapists(session, tenant_id, staff))


async def get_therapist(session: AsyncSession, tenant_id: UUID, staff_id: UUID) -> TherapistOut:
    """A published staff member who works in a published store; 404 `therapist_not_found` otherwise."""
    staff = await iam.published_staff_row(session, tenant_id, staff_id)
    found = await _therapists(session, tenant_id, [staff]) if staff is not None else []
    if not found or not found[0].store_ids:
        raise NotFound("therapist not found", code="therapist_not_found")
    return found[0]


def _usable_in(template: CardTemplate, published: set[UUID]) -> list[UUID] | None:
    """The published stores the template is usable in (empty: every store); None when it is limited to stores
    of which none is published (nowhere a patient could use it, so it is not offered)."""
    if not template.usable_store_ids:
        return []
    usable = sorted((UUID(s) for s in template.usable_store_ids if UUID(s) in published), key=str)
    return usable or None


async def _templates_out(session: AsyncSession, tenant_id: UUID,
                         templates: Iterable[CardTemplate]) -> list[CardTemplateOnSaleOut]:
    templates = list(templates)
    published = await _published_store_ids(session, tenant_id)
    items = await card_templates.items_of_templates(session, tenant_id, {t.id for t in templates})
    names = {s.id: s.name for s in (await catalog.services_by_id(
        session, tenant_id, {i.service_id for rows in items.values() for i in rows})).values()}
    out = []
    for t in templates:
        usable = _usable_in(t, published)
        if usable is None:
            continue
        out.append(CardTemplateOnSaleOut(
            id=t.id, name=t.name, kind=t.kind, price=t.price, face_value=t.face_value, bonus=t.bonus,
            valid_days=t.valid_days, valid_until=t.valid_until, shared_pool_sessions=t.shared_pool_sessions,
            family_shareable=t.family_shareable, description=t.description, usable_store_ids=usable,
            items=[TemplateItemOnSale(service_id=i.service_id, service_name=names.get(i.service_id, ""),
                                      sessions=i.sessions, gifted_sessions=i.gifted_sessions) for i in items[t.id]]))
    return out


async def card_templates_on_sale(session: AsyncSession, tenant_id: UUID, *,
                                 store_id: UUID | None = None) -> CardTemplateList:
    """The card templates patients may buy; with `store_id` (a published store), those usable there."""
    if store_id is not None:
        await tenancy.published_store(session, tenant_id, store_id)
    templates = await card_templates.on_sale_templates(session, tenant_id, store_id=store_id)
    return CardTemplateList(items=await _templates_out(session, tenant_id, templates))


async def get_card_template(session: AsyncSession, tenant_id: UUID, template_id: UUID) -> CardTemplateOnSaleOut:
    found = await _templates_out(session, tenant_id,
                                 [await card_templates.on_sale_template(session, tenant_id, template_id)])
    if not found:
        raise NotFound("card template not found", code="card_template_not_found")
    return found[0]
