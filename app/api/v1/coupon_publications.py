"""Coupons published for claiming (领券中心): marketing publishes a coupon template (`loyalty:write`); patients
list what is open and claim coupons themselves."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import current_actor, get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.loyalty import publications
from app.domain.loyalty.publications import ClaimableOut, PublicationCreate, PublicationOut
from app.domain.loyalty.schemas import CouponOut

router = APIRouter(tags=["loyalty"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
PATIENT = ("patient",)


@router.post("/coupon-publications", status_code=201, response_model=PublicationOut,
             operation_id="create_coupon_publication")
async def create_publication(body: PublicationCreate, session: AsyncSession = Depends(get_db),
                             actor: Actor = require("loyalty:write")) -> PublicationOut:
    """Publish a coupon template for patients to claim in the mini-program, from `starts_at` (default now)
    until `ends_at`, `total_quantity` in all (default unlimited) and `per_member_limit` each (default 1)."""
    return publications.present_publication(await publications.publish(session, actor, body))


@router.get("/coupon-publications", response_model=Page[PublicationOut], operation_id="list_coupon_publications")
async def list_publications(active: bool | None = Query(None), params: PageParams = Depends(page_params),
                            session: AsyncSession = Depends(get_db),
                            actor: Actor = require("catalog:read")) -> Page[PublicationOut]:
    """Every publication, newest first, with how many coupons were claimed."""
    rows, cursor = await publications.list_publications(session, actor, params, active=active)
    return Page(items=[publications.present_publication(r) for r in rows], next_cursor=cursor)


@router.post("/coupon-publications/{publication_id}/close", response_model=PublicationOut,
             operation_id="close_coupon_publication")
async def close_publication(publication_id: UUID, session: AsyncSession = Depends(get_db),
                            actor: Actor = require("loyalty:write")) -> PublicationOut:
    """Stop a publication; coupons already claimed stay valid."""
    return publications.present_publication(await publications.close(session, actor, publication_id))


@router.get("/patient/coupon-publications", response_model=list[ClaimableOut],
            operation_id="patient_list_claimable_coupons")
async def claimable_coupons(session: AsyncSession = Depends(get_db),
                            actor: Actor = current_actor(PATIENT)) -> list[ClaimableOut]:
    """The patient's 领券中心: coupons open for claiming now, with what each gives, how many are left, how many
    you have claimed and whether you may claim again."""
    return await publications.claimable(session, actor)


@router.post("/coupon-publications/{publication_id}/claim", status_code=201, response_model=CouponOut,
             operation_id="patient_claim_coupon",
             responses={409: {"description": "`publication_ended`, `publication_sold_out` or `claim_limit_reached`"}})
async def claim_coupon(publication_id: UUID, session: AsyncSession = Depends(get_db),
                       actor: Actor = current_actor(PATIENT)) -> CouponOut:
    """Claim one coupon for yourself; it is then in `GET /members/{id}/coupons` and pays as a `coupon` tender.
    An unknown, closed or not yet open publication is 404."""
    return publications.present_claimed(await publications.claim(session, actor, publication_id))
