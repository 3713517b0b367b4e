from __future__ import annotations

from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import current_actor, get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.loyalty import service
from app.domain.loyalty.schemas import (
    CouponIssue,
    CouponOut,
    CouponTemplateCreate,
    CouponTemplateOut,
    LoyaltySettingsIn,
    LoyaltySettingsOut,
    PointsAdjust,
    PointsEntryOut,
    PointsOut,
    Reason,
)

router = APIRouter(tags=["loyalty"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
PATIENT_TOO = ("staff", "integration", "patient")


@router.get("/loyalty/settings", response_model=LoyaltySettingsOut, operation_id="get_loyalty_settings")
async def get_settings(session: AsyncSession = Depends(get_db),
                       actor: Actor = current_actor(PATIENT_TOO)) -> LoyaltySettingsOut:
    """Points rules: earn rate per yuan paid, what a point pays, the per-order cap. Defaults until saved."""
    return service.present_settings(await service.get_settings(session, actor.tenant_id))


@router.put("/loyalty/settings", response_model=LoyaltySettingsOut, operation_id="put_loyalty_settings")
async def put_settings(body: LoyaltySettingsIn, session: AsyncSession = Depends(get_db),
                       actor: Actor = require("loyalty:write")) -> LoyaltySettingsOut:
    return service.present_settings(await service.put_settings(session, actor, body))


@router.get("/members/{member_id}/points", response_model=PointsOut, operation_id="get_member_points")
async def member_points(member_id: UUID, params: PageParams = Depends(page_params),
                        session: AsyncSession = Depends(get_db),
                        actor: Actor = current_actor(PATIENT_TOO)) -> PointsOut:
    """The member's points balance and ledger, newest first (patients: their own)."""
    balance = await service.points_balance(session, actor, member_id)
    rows, cursor = await service.points_ledger(session, actor, member_id, params)
    return PointsOut(member_id=member_id, balance=balance, items=[PointsEntryOut.model_validate(r) for r in rows],
                     next_cursor=cursor)


@router.post("/members/{member_id}/points/adjust", status_code=201, response_model=PointsEntryOut,
             operation_id="adjust_member_points")
async def adjust_points(member_id: UUID, body: PointsAdjust, session: AsyncSession = Depends(get_db),
                        actor: Actor = require("loyalty:write")) -> PointsEntryOut:
    """Add or take away points with a reason; the balance never goes below zero (409 insufficient_points)."""
    entry = await service.adjust_points(session, actor, member_id, body.delta, body.reason)
    return PointsEntryOut.model_validate(entry)


@router.post("/coupon-templates", status_code=201, response_model=CouponTemplateOut,
             operation_id="create_coupon_template")
async def create_template(body: CouponTemplateCreate, session: AsyncSession = Depends(get_db),
                          actor: Actor = require("loyalty:write")) -> CouponTemplateOut:
    """A coupon product: fixed amount (立减), percent with an optional cap (折扣), or threshold (满减),
    optionally limited to some services/products. Its terms are frozen into every coupon issued."""
    return service.present_template(await service.create_template(session, actor, body))


@router.get("/coupon-templates", response_model=Page[CouponTemplateOut], operation_id="list_coupon_templates")
async def list_templates(active: bool | None = Query(True), params: PageParams = Depends(page_params),
                         session: AsyncSession = Depends(get_db),
                         actor: Actor = require("catalog:read")) -> Page[CouponTemplateOut]:
    rows, cursor = await service.list_templates(session, actor, params, active=active)
    return Page(items=[service.present_template(t) for t in rows], next_cursor=cursor)


@router.get("/coupon-templates/{coupon_template_id}", response_model=CouponTemplateOut,
            operation_id="get_coupon_template")
async def get_template(coupon_template_id: UUID, session: AsyncSession = Depends(get_db),
                       actor: Actor = require("catalog:read")) -> CouponTemplateOut:
    return service.present_template(await service.get_template(session, actor, coupon_template_id))


@router.post("/coupons", status_code=201, response_model=CouponOut, operation_id="issue_coupon")
async def issue_coupon(body: CouponIssue, session: AsyncSession = Depends(get_db),
                       actor: Actor = require("loyalty:write")) -> CouponOut:
    coupon = await service.issue_coupon(session, actor, template_id=body.template_id, member_id=body.member_id,
                                        reason=body.reason)
    return service.present_coupon(coupon)


@router.get("/members/{member_id}/coupons", response_model=Page[CouponOut], operation_id="list_member_coupons")
async def member_coupons(member_id: UUID, status: Literal["issued", "used", "expired", "revoked"] | None = Query(None),
                         params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                         actor: Actor = current_actor(PATIENT_TOO)) -> Page[CouponOut]:
    """The member's coupons, newest first (patients: their own; coupons are not shared with the family)."""
    rows, cursor = await service.member_coupons(session, actor, member_id, params, status=status)
    return Page(items=[service.present_coupon(c) for c in rows], next_cursor=cursor)


@router.post("/coupons/{coupon_id}/revoke", response_model=CouponOut, operation_id="revoke_coupon")
async def revoke_coupon(coupon_id: UUID, body: Reason, session: AsyncSession = Depends(get_db),
                        actor: Actor = require("loyalty:write")) -> CouponOut:
    """Withdraw an unused coupon (409 when it was used)."""
    return service.present_coupon(await service.revoke_coupon(session, actor, coupon_id, body.reason))
