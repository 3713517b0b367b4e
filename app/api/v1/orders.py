from __future__ import annotations

from datetime import date
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import current_actor, get_db
from app.api.errors import PROBLEM_RESPONSES, problem_responses
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.db import session_scope
from app.core.pagination import Page, PageParams, page_params
from app.core.schemas import Strict
from app.domain.checkout import orders as service
from app.domain.checkout import receipts, tier_discounts, wechat_payments
from app.domain.checkout.schemas import OrderCancel, OrderCreate, OrderOut, OrderStatus, OrderSummary, Receipt

router = APIRouter(tags=["orders"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
# WeChat Pay posts its notification without a bearer token: the platform signature is the credential,
# and the tenant is found from out_trade_no. Each step opens its own transaction.
notify_router = APIRouter(tags=["orders"])


class TierDiscountSet(Strict):
    tag_name: str = Field(min_length=1, max_length=40, description="Members with this tag, e.g. 金卡会员")
    percent_off: int = Field(strict=True, ge=1, le=90, description="10 = 9折")
    line_types: list[Literal["service", "product", "card", "top_up"]] = Field(
        default_factory=lambda: ["service", "product"], min_length=1, max_length=4)
    active: bool = True


class TierDiscountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    tag_name: str
    percent_off: int
    line_types: list[str]
    active: bool
PATIENT_TOO = ("staff", "integration", "patient")


@router.post("/orders", status_code=201, response_model=OrderOut, operation_id="create_order")
async def create_order(body: OrderCreate, session: AsyncSession = Depends(get_db),
                       actor: Actor = current_actor(PATIENT_TOO)) -> OrderOut:
    """Open and pay an order (开单): services (optionally settled with card sessions, or charging a
    completed service), products, card purchases and top-ups; paid by any mix of cash (with change),
    stored value, points, one coupon and WeChat Pay. The tenders must sum to the total (422
    `payment_mismatch` with `gap`). Without WeChat Pay the order is `paid` at once; with it the order is
    `pending` and `wechat_pay.mini_program_params` go to `wx.requestPayment`. Staff need `orders:write`;
    patients may buy cards and top-ups for themselves, paying with WeChat Pay."""
    result = await service.create_order(session, actor, body)
    return await service.present(session, result.order, result.wechat_pay)


@router.get("/orders", response_model=Page[OrderSummary], operation_id="list_orders")
async def list_orders(store_id: UUID | None = Query(None), member_id: UUID | None = Query(None),
                      status: OrderStatus | None = Query(None),
                      date_from: date | None = Query(None, alias="from", description="Store-local YYYY-MM-DD"),
                      date_to: date | None = Query(None, alias="to", description="Store-local YYYY-MM-DD, inclusive"),
                      params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                      actor: Actor = current_actor(PATIENT_TOO)) -> Page[OrderSummary]:
    """Orders newest first; patients see their own."""
    rows, cursor = await service.list_orders(session, actor, params, store_id=store_id, member_id=member_id,
                                             status=status, date_from=date_from, date_to=date_to)
    return Page(items=[OrderSummary.model_validate(o) for o in rows], next_cursor=cursor)


@router.get("/orders/{order_id}", response_model=OrderOut, operation_id="get_order")
async def get_order(order_id: UUID, session: AsyncSession = Depends(get_db),
                    actor: Actor = current_actor(PATIENT_TOO)) -> OrderOut:
    return await service.present(session, await service.get_order(session, actor, order_id))


@router.post("/orders/{order_id}/cancel", response_model=OrderOut, operation_id="cancel_order")
async def cancel_order(order_id: UUID, body: OrderCancel, session: AsyncSession = Depends(get_db),
                       actor: Actor = current_actor(PATIENT_TOO)) -> OrderOut:
    """Cancel a pending (or draft) order: its WeChat order is closed and every held tender given back
    (stored value, points, coupon, card sessions, stock). A paid order is refunded instead."""
    order = await service.cancel_order(session, actor, order_id, body.reason)
    return await service.present(session, order)


@router.get("/orders/{order_id}/receipt", response_model=Receipt, operation_id="get_order_receipt")
async def receipt(order_id: UUID, session: AsyncSession = Depends(get_db),
                  actor: Actor = current_actor(PATIENT_TOO)) -> Receipt:
    return await receipts.receipt(session, actor, order_id)


@router.get("/orders/{order_id}/receipt.html", response_class=HTMLResponse, operation_id="get_order_receipt_html",
            responses={200: {"description": "A printable receipt (小票)", "content": {"text/html": {}}}})
async def receipt_html(order_id: UUID, session: AsyncSession = Depends(get_db),
                       actor: Actor = current_actor(PATIENT_TOO)) -> HTMLResponse:
    return HTMLResponse(receipts.receipt_html(await receipts.receipt(session, actor, order_id)))


class WeChatNotificationResource(BaseModel):
    model_config = ConfigDict(extra="allow")

    algorithm: str = Field(description="AEAD_AES_256_GCM")
    ciphertext: str
    nonce: str
    associated_data: str | None = None
    original_type: str | None = None


class WeChatNotification(BaseModel):
    """WeChat Pay's notification envelope (read as raw bytes: the signature covers them exactly)."""

    model_config = ConfigDict(extra="allow")

    id: str
    create_time: str | None = None
    event_type: str = Field(description="TRANSACTION.SUCCESS")
    resource_type: str | None = None
    summary: str | None = None
    resource: WeChatNotificationResource


class WeChatAnswer(BaseModel):
    code: str = Field(description="FAIL")
    message: str


def _inline(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with nested models written out: the notify route reads raw bytes, so it
    documents its body through openapi_extra, where a $ref to a component FastAPI never saw would dangle."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


WECHAT_FAIL = {"content": {"application/json": {"schema": _inline(WeChatAnswer)}}}


@notify_router.post(
    "/payments/wechat/notify", status_code=204, operation_id="wechat_pay_notify", response_class=Response,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": _inline(WeChatNotification)}}}},
    responses={204: {"description": "Received (also for a repeat: WeChat stops resending)"},
               400: {"description": "Malformed, undecryptable, or not matching the order", **WECHAT_FAIL},
               401: {"description": "Signature missing or wrong, unknown platform key, or stale", **WECHAT_FAIL},
               404: {"description": "Unknown out_trade_no, or WeChat Pay not configured", **WECHAT_FAIL},
               413: {"description": "Body over the size limit"},
               **problem_responses({422: "The body holds text nothing can store (a NUL or a lone surrogate)"})})
async def wechat_pay_notify(request: Request) -> Response:
    """WeChat Pay's payment notification (no bearer token; WeChat's signature is verified over the raw
    body, the resource decrypted with the APIv3 key). Marks the payment paid exactly once and completes
    the order; a repeat is answered 204 and changes nothing. Refused notifications are answered in
    WeChat's format `{"code": "FAIL", "message": …}` and change nothing."""
    answer = await wechat_payments.receive_wechat_notification(session_scope, dict(request.headers),
                                                               await request.body())
    if answer.status < 300:
        return Response(status_code=204)
    return JSONResponse({"code": "FAIL", "message": answer.message or "rejected"}, status_code=answer.status)


@router.get("/tier-discounts", response_model=list[TierDiscountOut], operation_id="list_tier_discounts")
async def list_tier_discounts(session: AsyncSession = Depends(get_db),
                              actor: Actor = current_actor(("staff", "integration"))) -> list[TierDiscountOut]:
    """Member-tier discounts applied when an order is priced."""
    return [TierDiscountOut.model_validate(t) for t in await tier_discounts.list_tier_discounts(session, actor)]


@router.put("/tier-discounts", response_model=TierDiscountOut, operation_id="set_tier_discount")
async def set_tier_discount(body: TierDiscountSet, session: AsyncSession = Depends(get_db),
                            actor: Actor = current_actor(("staff", "integration"))) -> TierDiscountOut:
    """Create or change the discount for one tag (members tagged 金卡会员 get 10% off services and
    products, say); `active: false` switches it off. Needs catalog:write."""
    row = await tier_discounts.set_tier_discount(session, actor, tag_name=body.tag_name,
                                                 percent_off=body.percent_off, line_types=list(body.line_types),
                                                 active=body.active)
    return TierDiscountOut.model_validate(row)
