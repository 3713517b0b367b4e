"""What the clinic publishes to the mini-program (staff): each store's, service's, staff member's and card
template's `listing`. Nothing is shown to patients until its listing says `published: true`.

`PUT` replaces the whole listing (send what `GET` answered, changed); the item's own fields (name, price,
address…) stay with its usual endpoint.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.domain.cards import templates as card_templates
from app.domain.cards.schemas import CardTemplateListing, CardTemplateListingOut
from app.domain.catalog import service as catalog
from app.domain.catalog.schemas import ServiceListing, ServiceListingOut
from app.domain.iam import service as iam
from app.domain.iam.schemas import StaffListing, StaffListingOut
from app.domain.tenancy import service as tenancy
from app.domain.tenancy.schemas import StoreListing, StoreListingOut

router = APIRouter(tags=["listings"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)

INACTIVE = {409: {"description": "Publishing something closed, deactivated or no longer sold (named `published`)"}}


@router.get("/stores/{store_id}/listing", response_model=StoreListingOut, operation_id="get_store_listing")
async def get_store_listing(store_id: UUID, session: AsyncSession = Depends(get_db),
                            actor: Actor = require("stores:read")) -> StoreListingOut:
    return await tenancy.get_store_listing(session, actor, store_id)


@router.put("/stores/{store_id}/listing", response_model=StoreListingOut, operation_id="set_store_listing",
            responses=INACTIVE)
async def set_store_listing(store_id: UUID, body: StoreListing, session: AsyncSession = Depends(get_db),
                            actor: Actor = require("stores:write")) -> StoreListingOut:
    """Publish the store to the mini-program with its introduction, photos and map position (GCJ-02), or
    take it off (`published: false`)."""
    return await tenancy.set_store_listing(session, actor, store_id, body)


@router.get("/services/{service_id}/listing", response_model=ServiceListingOut, operation_id="get_service_listing")
async def get_service_listing(service_id: UUID, session: AsyncSession = Depends(get_db),
                              actor: Actor = require("catalog:read")) -> ServiceListingOut:
    return await catalog.get_service_listing(session, actor, service_id)


@router.put("/services/{service_id}/listing", response_model=ServiceListingOut, operation_id="set_service_listing",
            responses=INACTIVE)
async def set_service_listing(service_id: UUID, body: ServiceListing, session: AsyncSession = Depends(get_db),
                              actor: Actor = require("catalog:write")) -> ServiceListingOut:
    """Put the service on sale in the mini-program (in the stores whose staff perform it) with its aftercare
    note and photo, or take it off."""
    return await catalog.set_service_listing(session, actor, service_id, body)


@router.get("/staff/{staff_id}/listing", response_model=StaffListingOut, operation_id="get_staff_listing")
async def get_staff_listing(staff_id: UUID, session: AsyncSession = Depends(get_db),
                            actor: Actor = require("staff:read")) -> StaffListingOut:
    return await iam.get_staff_listing(session, actor, staff_id)


@router.put("/staff/{staff_id}/listing", response_model=StaffListingOut, operation_id="set_staff_listing",
            responses=INACTIVE)
async def set_staff_listing(staff_id: UUID, body: StaffListing, session: AsyncSession = Depends(get_db),
                            actor: Actor = require("staff:write")) -> StaffListingOut:
    """Show the staff member to patients (title, bio, photo; their stores and skills follow), or hide them."""
    return await iam.set_staff_listing(session, actor, staff_id, body)


@router.get("/card-templates/{template_id}/listing", response_model=CardTemplateListingOut,
            operation_id="get_card_template_listing")
async def get_template_listing(template_id: UUID, session: AsyncSession = Depends(get_db),
                               actor: Actor = require("cards:read")) -> CardTemplateListingOut:
    return await card_templates.get_template_listing(session, actor, template_id)


@router.put("/card-templates/{template_id}/listing", response_model=CardTemplateListingOut,
            operation_id="set_card_template_listing", responses=INACTIVE)
async def set_template_listing(template_id: UUID, body: CardTemplateListing, session: AsyncSession = Depends(get_db),
                               actor: Actor = require("catalog:write")) -> CardTemplateListingOut:
    """Put the card template on sale in the mini-program (with the text patients read), or take it off."""
    return await card_templates.set_template_listing(session, actor, template_id, body)
