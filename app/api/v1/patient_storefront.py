"""The mini-program's storefront (patient tokens): published stores, services, therapists, card templates.

Under `/patient/…`, apart from the staff endpoints (`/stores`, `/services`, …), which stay closed to patients:
these answer only what the clinic published, without internal fields, and 404 for anything else.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.errors import Unprocessable
from app.domain.portal import service as portal
from app.domain.portal.schemas import (
    CardTemplateList,
    CardTemplateOnSaleOut,
    PublishedStoreOut,
    ServiceDetailOut,
    ServiceList,
    StoreList,
    TherapistList,
    TherapistOut,
)

router = APIRouter(prefix="/patient", tags=["patient"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)

PATIENT = ("patient",)
LATITUDE = Query(None, ge=-90, le=90, allow_inf_nan=False,
                 description="Where the patient is (GCJ-02, as wx.getLocation({type: 'gcj02'}) gives it); with "
                             "longitude, stores come nearest first with their distance")
LONGITUDE = Query(None, ge=-180, le=180, allow_inf_nan=False, description="GCJ-02; with latitude")


def _location(latitude: float | None, longitude: float | None) -> dict[str, float | None]:
    if (latitude is None) != (longitude is None):
        missing = "longitude" if longitude is None else "latitude"
        raise Unprocessable(f"{missing}: latitude and longitude come together", code="validation_error",
                            title="Invalid request", field=missing,
                            errors=[{"field": missing, "message": "latitude and longitude come together",
                                     "type": "missing"}])
    return {"latitude": latitude, "longitude": longitude}


@router.get("/stores", response_model=StoreList, operation_id="patient_list_stores")
async def list_stores(latitude: float | None = LATITUDE, longitude: float | None = LONGITUDE,
                      session: AsyncSession = Depends(get_db),
                      actor: Actor = require(audiences=PATIENT)) -> StoreList:
    """The published stores with address, phone, opening hours and photos; nearest first when the patient's
    location is sent (`distance_m`), else by name. All of them in one answer (a chain's stores are few)."""
    return await portal.list_stores(session, actor.tenant_id, **_location(latitude, longitude))


@router.get("/stores/{store_id}", response_model=PublishedStoreOut, operation_id="patient_get_store",
            responses={404: {"description": "No such store, or it is closed or not published (`store_not_found`)"}})
async def get_store(store_id: UUID, latitude: float | None = LATITUDE, longitude: float | None = LONGITUDE,
                    session: AsyncSession = Depends(get_db),
                    actor: Actor = require(audiences=PATIENT)) -> PublishedStoreOut:
    return await portal.get_store(session, actor.tenant_id, store_id, **_location(latitude, longitude))


@router.get("/stores/{store_id}/services", response_model=ServiceList, operation_id="patient_list_store_services",
            responses={404: {"description": "No such published store (`store_not_found`)"}})
async def store_services(store_id: UUID, session: AsyncSession = Depends(get_db),
                         actor: Actor = require(audiences=PATIENT)) -> ServiceList:
    """The services on sale at the store: published, offered, and performed by someone who works there; with
    price (fen), duration, description and aftercare note."""
    return await portal.store_services(session, actor.tenant_id, store_id)


@router.get("/stores/{store_id}/therapists", response_model=TherapistList,
            operation_id="patient_list_store_therapists",
            responses={404: {"description": "No such published store (`store_not_found`)"}})
async def store_therapists(store_id: UUID, session: AsyncSession = Depends(get_db),
                           actor: Actor = require(audiences=PATIENT)) -> TherapistList:
    """The store's published staff: name, title, bio, photo and the services on sale they perform."""
    return await portal.store_therapists(session, actor.tenant_id, store_id)


@router.get("/services/{service_id}", response_model=ServiceDetailOut, operation_id="patient_get_service",
            responses={404: {"description": "No such service on sale (`service_not_found`)"}})
async def get_service(service_id: UUID, session: AsyncSession = Depends(get_db),
                      actor: Actor = require(audiences=PATIENT)) -> ServiceDetailOut:
    """A service on sale, with the published stores where it can be booked."""
    return await portal.get_service(session, actor.tenant_id, service_id)


@router.get("/therapists/{staff_id}", response_model=TherapistOut, operation_id="patient_get_therapist",
            responses={404: {"description": "No such published staff member (`therapist_not_found`)"}})
async def get_therapist(staff_id: UUID, session: AsyncSession = Depends(get_db),
                        actor: Actor = require(audiences=PATIENT)) -> TherapistOut:
    return await portal.get_therapist(session, actor.tenant_id, staff_id)


@router.get("/card-templates", response_model=CardTemplateList, operation_id="patient_list_card_templates",
            responses={404: {"description": "`store_id` names no published store (`store_not_found`)"}})
async def card_templates(store_id: UUID | None = Query(None, description="Only those usable in this store"),
                         session: AsyncSession = Depends(get_db),
                         actor: Actor = require(audiences=PATIENT)) -> CardTemplateList:
    """The cards on sale (stored value, count, package, period) with their terms and the services they
    cover, cheapest first."""
    return await portal.card_templates_on_sale(session, actor.tenant_id, store_id=store_id)


@router.get("/card-templates/{template_id}", response_model=CardTemplateOnSaleOut,
            operation_id="patient_get_card_template",
            responses={404: {"description": "No such card on sale (`card_template_not_found`)"}})
async def get_card_template(template_id: UUID, session: AsyncSession = Depends(get_db),
                            actor: Actor = require(audiences=PATIENT)) -> CardTemplateOnSaleOut:
    return await portal.get_card_template(session, actor.tenant_id, template_id)
