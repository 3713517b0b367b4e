"""Request and response models of orders (开单), their lines, tenders and receipts.

Amounts are integer fen (`Fen`): a float or a string amount is a 422, never rounded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from app.core.schemas import Fen, Strict

MAX_FEN = 10_000_000_00  # ten million yuan: beyond any clinic order, far inside bigint
MAX_POINTS = 1_000_000_000

OrderStatus = Literal["draft", "pending", "paid", "partially_refunded", "refunded", "cancelled"]


class _LineIn(Strict):
    line_discount: Fen = Field(0, ge=0, le=MAX_FEN, description="Fen off this line (改价/让利), before tier discounts")


class ServiceLineIn(_LineIn):
    type: Literal["service"]
    service_id: UUID
    quantity: StrictInt = Field(1, ge=1, le=99)
    card_id: UUID | None = Field(None, description="Settle with sessions of this card (the line then costs 0)")
    service_record_id: UUID | None = Field(None, description="A completed service waiting for payment (结账)")


class ProductLineIn(_LineIn):
    type: Literal["product"]
    product_id: UUID
    quantity: StrictInt = Field(ge=1, le=9999)


class CardLineIn(_LineIn):
    type: Literal["card"]
    card_template_id: UUID


class TopUpLineIn(_LineIn):
    type: Literal["top_up"]
    card_id: UUID
    amount: Fen = Field(ge=1, le=MAX_FEN, description="Principal credited, fen; the bonus follows the card's "
                                                      "template (each full face value earns its bonus)")


OrderLineIn = Annotated[ServiceLineIn | ProductLineIn | CardLineIn | TopUpLineIn, Field(discriminator="type")]


class CashTender(Strict):
    method: Literal["cash"]
    amount: Fen = Field(ge=1, le=MAX_FEN)
    cash_received: Fen | None = Field(None, ge=1, le=MAX_FEN, description="Handed over; change = received - amount")


class StoredValueTender(Strict):
    method: Literal["stored_value"]
    amount: Fen = Field(ge=1, le=MAX_FEN)
    card_id: UUID


class PointsTender(Strict):
    method: Literal["points"]
    points: StrictInt = Field(ge=1, le=MAX_POINTS, description="Points spent; their fen value pays")


class CouponTender(Strict):
    method: Literal["coupon"]
    coupon_id: UUID
    amount: Fen | None = Field(None, ge=1, le=MAX_FEN,
                               description="The discount as the client computed it; must equal the quote")


class WeChatPayTender(Strict):
    method: Literal["wechat_pay"]
    amount: Fen = Field(ge=1, le=MAX_FEN)
    payer_openid: str | None = Field(None, min_length=6, max_length=128, pattern=r"^[0-9A-Za-z_\-]+$",
                                     description="The payer's openid under the mini-program (JSAPI needs it)")


TenderIn = Annotated[CashTender | StoredValueTender | PointsTender | CouponTender | WeChatPayTender,
                     Field(discriminator="method")]


class OrderCreate(Strict):
    member_id: UUID
    store_id: UUID
    lines: list[OrderLineIn] = Field(min_length=1, max_length=100)
    payments: list[TenderIn] = Field(default_factory=list, max_length=10,
                                     description="Tenders; their sum must equal the total")
    order_discount: Fen = Field(0, ge=0, le=MAX_FEN, description="Fen off the whole order, split over the lines")
    appointment_id: UUID | None = None
    note: str | None = Field(None, max_length=200)


class OrderCancel(Strict):
    reason: str | None = Field(None, max_length=200)


class OrderLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    line_no: int
    type: str
    name: str
    service_id: UUID | None
    product_id: UUID | None
    card_template_id: UUID | None
    card_id: UUID | None
    service_record_id: UUID | None
    quantity: int
    unit_price: int
    list_amount: int
    line_discount: int
    tier_discount: int
    order_discount_share: int
    amount: int
    settled_by_card: bool
    issued_card_id: UUID | None
    top_up_principal: int
    top_up_bonus: int
    refunded_amount: int


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    method: str
    amount: int
    status: str
    refunded_amount: int
    card_id: UUID | None
    principal_used: int
    bonus_used: int
    coupon_id: UUID | None
    points: int | None
    cash_received: int | None
    change_given: int | None
    out_trade_no: str | None
    transaction_id: str | None
    succeeded_at: datetime | None


class WeChatPayParams(BaseModel):
    prepay_id: str
    mini_program_params: dict[str, str] = Field(description="Pass to wx.requestPayment: appId, timeStamp, nonceStr, "
                                                            "package, signType, paySign")


class OrderOut(BaseModel):
    id: UUID
    order_no: str
    status: str
    member_id: UUID
    store_id: UUID
    subtotal: int = Field(description="Sum of the lines' list amounts, fen")
    discount_total: int
    total: int = Field(description="What the tenders cover, fen")
    paid_total: int
    refunded_total: int
    order_discount: int
    change_given: int = Field(description="Cash change handed back, fen")
    points_earned: int
    issued_cards: list[UUID] = Field(description="Cards issued by this order's card lines (once paid)")
    note: str | None
    appointment_id: UUID | None
    lines: list[OrderLineOut]
    payments: list[PaymentOut]
    wechat_pay: WeChatPayParams | None = Field(None, description="While pending: what the mini-program pays with")
    expires_at: datetime | None
    paid_at: datetime | None
    cancelled_at: datetime | None
    created_at: datetime | None


class OrderSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    order_no: str
    status: str
    member_id: UUID
    store_id: UUID
    total: int
    paid_total: int
    refunded_total: int
    created_at: datetime | None
    paid_at: datetime | None


class ReceiptLine(BaseModel):
    name: str
    type: str
    quantity: int
    unit_price: int
    list_amount: int
    discount: int
    amount: int
    settled_by_card: bool
    note: str | None = None


class ReceiptTender(BaseModel):
    method: str
    label: str
    amount: int
    detail: str | None = None


class Receipt(BaseModel):
    order_id: UUID
    order_no: str
    status: str
    store_name: str
    store_address: str | None
    member_name: str
    member_phone: str | None = Field(description="Masked (138****0001)")
    opened_at: str = Field(description="Store-local time, YYYY-MM-DD HH:MM")
    paid_at: str | None
    lines: list[ReceiptLine]
    subtotal: int
    discount_total: int
    total: int
    tenders: list[ReceiptTender]
    change_given: int
    points_earned: int
    extra: dict[str, Any] = Field(default_factory=dict)
