"""Refunds with approval, checkout settings, and WeChat Pay's refund notification.

The rules (allocation order, approval levels, what goods come back) are documented in
app/domain/checkout/refunds.py and wechat_refunds.py.
"""

from __future__ import annotations

import logging
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES, problem_responses
from app.api.routing import TransactionalRoute
from app.api.v1.orders import WECHAT_FAIL, WeChatNotification, _inline  # one envelope for both notify routes
from app.core.actor import Actor
from app.core.db import session_scope
from app.core.errors import AppError
from app.core.pagination import Page, PageParams, page_params
from app.domain.checkout import refunds, settings_service, wechat_refunds
from app.domain.checkout.refund_schemas import (
    CheckoutSettingsIn,
    CheckoutSettingsOut,
    RefundCreate,
    RefundDecision,
    RefundOut,
    RefundStatus,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["refunds"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
# WeChat calls this one without a bearer token; the handler opens its own transactions once the
# notification is verified (and looks the tenant up by out_refund_no).
notify_router = APIRouter(tags=["refunds"])


@router.post("/orders/{order_id}/refunds", status_code=201, response_model=RefundOut, operation_id="request_refund")
async def request_refund(order_id: UUID, body: RefundCreate, session: AsyncSession = Depends(get_db),
                         actor: Actor = require("refunds:write")) -> RefundOut:
    """Refund `amount` fen of a paid order back to its original tenders (WeChat Pay, stored value, cash,
    then points, then a coupon — restored whole only). `lines[]` names lines whose goods return (stock,
    a card's unused sessions or value). At or below the tenant's threshold it executes at once
    (`completed`, or `processing` while WeChat refunds); above it, it waits for approval
    (`pending_approval`). 422 `refund_exceeds_refundable` past what is left to refund."""
    refund = await refunds.request_refund(session, actor, order_id, body)
    return await refunds.present(session, refund)


@router.get("/refunds", response_model=Page[RefundOut], operation_id="list_refunds")
async def list_refunds(status: RefundStatus | None = Query(None), store_id: UUID | None = Query(None),
                       order_id: UUID | None = Query(None), params: PageParams = Depends(page_params),
                       session: AsyncSession = Depends(get_db),
                       actor: Actor = require()) -> Page[RefundOut]:
    """Refunds in the stores you act in, newest first (`status=pending_approval` is the approver's queue)."""
    items, cursor = await refunds.list_refunds(session, actor, params, status=status, store_id=store_id,
                                               order_id=order_id)
    return Page(items=items, next_cursor=cursor)


@router.get("/refunds/{refund_id}", response_model=RefundOut, operation_id="get_refund")
async def get_refund(refund_id: UUID, session: AsyncSession = Depends(get_db),
                     actor: Actor = require()) -> RefundOut:
    """The refund with its allocations to tenders and its approval decisions."""
    return await refunds.get_refund(session, actor, refund_id)


@router.post("/refunds/{refund_id}/approve", response_model=RefundOut, operation_id="approve_refund")
async def approve_refund(refund_id: UUID, body: RefundDecision, session: AsyncSession = Depends(get_db),
                         actor: Actor = require("refunds:approve")) -> RefundOut:
    """Approve the current level. Needs one of that level's roles; not the requester, and not someone who
    decided another level. The last level's approval executes the refund."""
    refund = await refunds.decide(session, actor, refund_id, "approve", body)
    return await refunds.present(session, refund)


@router.post("/refunds/{refund_id}/reject", response_model=RefundOut, operation_id="reject_refund")
async def reject_refund(refund_id: UUID, body: RefundDecision, session: AsyncSession = Depends(get_db),
                        actor: Actor = require("refunds:approve")) -> RefundOut:
    """Reject at the current level: the refund ends (`rejected`) and its amount is free again."""
    refund = await refunds.decide(session, actor, refund_id, "reject", body)
    return await refunds.present(session, refund)


@router.get("/checkout/settings", response_model=CheckoutSettingsOut, operation_id="get_checkout_settings")
async def get_settings(session: AsyncSession = Depends(get_db),
                       actor: Actor = require("orders:read")) -> CheckoutSettingsOut:
    return await settings_service.get_settings(session, actor)


@router.put("/checkout/settings", response_model=CheckoutSettingsOut, operation_id="put_checkout_settings")
async def put_settings(body: CheckoutSettingsIn, session: AsyncSession = Depends(get_db),
                       actor: Actor = require("roles:write", "refunds:approve")) -> CheckoutSettingsOut:
    """The refund approval threshold (fen) and levels (role names, each holding refunds:approve).
    Owner-level: needs roles:write and refunds:approve."""
    return await settings_service.put_settings(session, actor, body)


@notify_router.post(
    "/payments/wechat/refund-notify", status_code=204, response_class=Response, operation_id="wechat_refund_notify",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": _inline(WeChatNotification)}}}},
    responses={204: {"description": "Received (also for a repeat: WeChat stops resending)"},
               400: {"description": "Malformed, undecryptable, unknown out_refund_no, or not matching our refund",
                     **WECHAT_FAIL},
               401: {"description": "Signature missing or wrong, unknown platform key, or stale", **WECHAT_FAIL},
               404: {"description": "WeChat Pay not configured", **WECHAT_FAIL},
               413: {"description": "Body over the size limit"},
               **problem_responses({422: "The body holds text nothing can store (a NUL or a lone surrogate)"})})
async def wechat_refund_notify(request: Request) -> Response:
    """WeChat Pay's refund notification (no bearer token: WeChat's signature over the raw body proves the
    origin). REFUND.SUCCESS settles the allocation once, however often it is delivered, and completes the
    refund when it was the last; ABNORMAL/CLOSED fails it. A forged, tampered, stale or unknown
    notification is refused in WeChat's format `{"code": "FAIL", "message": …}` and changes nothing."""
    try:
        await wechat_refunds.handle_refund_notification(session_scope, dict(request.headers), await request.body())
    except AppError as exc:  # WeChat reads its own failure format, and resends later
        log.warning("wechat refund notification refused: %s (%s)", exc.code, exc.detail)
        return JSONResponse({"code": "FAIL", "message": exc.detail}, status_code=exc.status)
    return Response(status_code=204)


# The Pay client registers `notify_url + "/refund"` with WeChat (PayConfig.refund_notify_url), i.e. this
# path when notify_url is the payment route; served too so either configuration reaches the handler.
notify_router.add_api_route("/payments/wechat/notify/refund", wechat_refund_notify, methods=["POST"],
                            status_code=204, response_class=Response, include_in_schema=False)
