"""The patient's own account in the mini-program (patient tokens): registration, profile and family, cards,
points, coupons, orders and visits, under `/patient/…`.

`member_id` (cards, orders, visits) reads a member of the family the patient heads; left out, the patient
themself. Anyone else's id is 404, as if it did not exist.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import client_ip, get_db, get_redis, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.checkout.schemas import OrderSummary
from app.domain.loyalty.schemas import CouponOut, PointsOut
from app.domain.members.schemas import ChildCreate, OwnProfileUpdate
from app.domain.portal import service as portal
from app.domain.portal.schemas import ChildAdded, OwnProfileOut, PatientCardLedger, PatientCardList, VisitsOut
from app.domain.wechat_links import registration
from app.domain.wechat_links.registration import MiniProgramRegistration, PatientRegistrationOut

router = APIRouter(prefix="/patient", tags=["patient"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)

PATIENT = ("patient",)
FAMILY_MEMBER = Query(None, description="A member of the family the patient heads (default: the patient)")


@router.post("/registrations", status_code=201, response_model=PatientRegistrationOut,
             operation_id="patient_register",
             responses={200: {"description": "The phone already had a member: signed in as them, nothing created",
                              "model": PatientRegistrationOut},
                        404: {"description": "Unknown tenant (`tenant_not_found`)"},
                        401: {"description": "The WeChat code is invalid, expired or used"},
                        422: {"description": "Missing phone proof (`phone_code`), or a bad privacy-policy version, "
                                             "scene, channel or referrer id (each named)"},
                        502: {"description": "WeChat could not be reached or refused the call"}})
async def register(body: MiniProgramRegistration, request: Request, response: Response,
                   session: AsyncSession = Depends(get_db),
                   redis: Redis = Depends(get_redis)) -> PatientRegistrationOut:
    """Sign-up from the mini-program: the `wx.login()` code, proof of the phone (`phone_code`), the privacy
    policy version the user accepted, and where they came from (`scene`, and a share link's `channel` and
    `referrer_id`). A phone no member has becomes a member (201); a known one signs that member in (200).
    Two sign-ups with one phone at once make one member. Answers a patient token as the sign-in does."""
    out = await registration.register(session, redis, body, ip=client_ip(request))
    if not out.registered:
        response.status_code = 200
    return out


@router.get("/me", response_model=OwnProfileOut, operation_id="patient_get_profile")
async def get_profile(session: AsyncSession = Depends(get_db),
                      actor: Actor = require(audiences=PATIENT)) -> OwnProfileOut:
    """The patient's profile, their family (when they have one) and the privacy policy versions accepted."""
    return await portal.profile(session, actor)


@router.patch("/me", response_model=OwnProfileOut, operation_id="patient_update_profile")
async def update_profile(body: OwnProfileUpdate, session: AsyncSession = Depends(get_db),
                         actor: Actor = require(audiences=PATIENT)) -> OwnProfileOut:
    """Change their own name, gender, birthday or address (fields left out stay; `address: null` clears it).
    The phone number is changed at the front desk: it is what their WeChat sign-in is proven with."""
    return await portal.update_profile(session, actor, body)


@router.post("/me/children", status_code=201, response_model=ChildAdded, operation_id="patient_add_child",
             responses={403: {"description": "The patient is in a family they do not head (`not_family_head`)"},
                        409: {"description": "The same child (name and birthday) is already in the family "
                                             "(`child_exists`), or the family is full (`family_full`)"}})
async def add_child(body: ChildCreate, session: AsyncSession = Depends(get_db),
                    actor: Actor = require(audiences=PATIENT)) -> ChildAdded:
    """Add a child (under 18) to the family the patient heads (one is made when they have none); the child is a
    member without a phone the parent books and pays for."""
    return await portal.add_child(session, actor, body)


@router.get("/me/cards", response_model=PatientCardList, operation_id="patient_list_cards")
async def my_cards(member_id: UUID | None = FAMILY_MEMBER, session: AsyncSession = Depends(get_db),
                   actor: Actor = require(audiences=PATIENT)) -> PatientCardList:
    """Cards and the family cards shared with the member: sessions left per service, balance, expiry."""
    return await portal.member_cards(session, actor, member_id)


@router.get("/me/cards/{card_id}/ledger", response_model=PatientCardLedger, operation_id="patient_card_ledger",
            responses={404: {"description": "No such card of the patient or their family (`card_not_found`)"}})
async def my_card_ledger(card_id: UUID, params: PageParams = Depends(page_params),
                         session: AsyncSession = Depends(get_db),
                         actor: Actor = require(audiences=PATIENT)) -> PatientCardLedger:
    """Every change to the card, newest first: sessions used, money charged, top-ups, refunds."""
    return await portal.card_ledger(session, actor, card_id, params)


@router.get("/me/points", response_model=PointsOut, operation_id="patient_points")
async def my_points(params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                    actor: Actor = require(audiences=PATIENT)) -> PointsOut:
    """The patient's points balance and ledger, newest first."""
    return await portal.points(session, actor, params)


@router.get("/me/coupons", response_model=Page[CouponOut], operation_id="patient_coupons")
async def my_coupons(status: Literal["issued", "used", "expired", "revoked"] | None = Query(None),
                     params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                     actor: Actor = require(audiences=PATIENT)) -> Page[CouponOut]:
    """The patient's coupons, newest first (`issued` are the usable ones)."""
    return await portal.coupons(session, actor, params, status=status)


@router.get("/me/orders", response_model=Page[OrderSummary], operation_id="patient_orders")
async def my_orders(member_id: UUID | None = FAMILY_MEMBER, params: PageParams = Depends(page_params),
                    session: AsyncSession = Depends(get_db),
                    actor: Actor = require(audiences=PATIENT)) -> Page[OrderSummary]:
    """The member's orders, newest first (details and receipts at /orders/{id} and /orders/{id}/receipt)."""
    return await portal.member_orders(session, actor, params, member_id=member_id)


@router.get("/me/visits", response_model=VisitsOut, operation_id="patient_visits")
async def my_visits(member_id: UUID | None = FAMILY_MEMBER, params: PageParams = Depends(page_params),
                    session: AsyncSession = Depends(get_db),
                    actor: Actor = require(audiences=PATIENT)) -> VisitsOut:
    """Upcoming appointments (on the first page) and past visits (performed services, paged), each with the
    store, the therapist and the service's aftercare note."""
    return await portal.member_visits(session, actor, params, member_id=member_id)
