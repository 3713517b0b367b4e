"""Request and response models for refunds, their approvals, checkout settings and the daily close."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StrictInt

from app.core.schemas import Fen, Strict

MAX_REFUND_FEN = 10_000_000_00  # 1000万元: far above any single order; keeps arithmetic in bigint


class RefundLineIn(Strict):
    line_id: UUID
    amount: Fen | None = Field(None, ge=1, le=MAX_REFUND_FEN,
                               description="Part of the refund for this line, fen; default: what is left of it")


class RefundCreate(Strict):
    amount: Fen = Field(ge=1, le=MAX_REFUND_FEN, description="Money back, fen (≤ paid_total − refunded_total)")
    reason: str = Field(min_length=2, max_length=300)
    lines: list[RefundLineIn] = Field(
        default_factory=list, max_length=100,
        description="Lines whose goods go back: a product line's stock returns, a card line's card is closed "
                    "(its unused sessions or value reversed), a top-up's value leaves the card. The line "
                    "amounts must not exceed `amount`; the rest is a refund not tied to goods.")


class RefundDecision(Strict):
    note: str | None = Field(None, max_length=300)
    level: StrictInt | None = Field(None, ge=1, le=10,
                                    description="The level you decide on; 409 when the refund has moved past it "
                                                "(protects against two approvers deciding the same level)")


class RefundAllocationOut(BaseModel):
    id: UUID
    payment_id: UUID
    method: str
    amount: int
    status: str
    out_refund_no: str | None
    succeeded_at: datetime | None


class RefundApprovalOut(BaseModel):
    id: UUID
    level: int
    decision: str
    decided_by_id: UUID
    role: str
    note: str | None
    created_at: datetime


class RefundOut(BaseModel):
    id: UUID
    refund_no: str
    order_id: UUID
    store_id: UUID
    amount: int
    reason: str
    status: str
    lines: list[dict[str, Any]]
    levels_required: int
    levels_approved: int
    requested_by_id: UUID | None
    created_at: datetime
    completed_at: datetime | None
    allocations: list[RefundAllocationOut] = []
    approvals: list[RefundApprovalOut] = []


RefundStatus = Literal["pending_approval", "approved", "processing", "completed", "rejected", "failed"]


class CheckoutSettingsIn(Strict):
    refund_approval_threshold: Fen = Field(ge=0, le=MAX_REFUND_FEN,
                                           description="Refunds above this many fen need approval")
    approval_levels: list[list[str]] = Field(
        max_length=5, description='Levels in order, each the role names any of which may decide, '
                                  'e.g. [["store_manager"], ["finance"]]; [] turns approval off')


class CheckoutSettingsOut(BaseModel):
    refund_approval_threshold: int
    approval_levels: list[list[str]]
    updated_at: datetime | None


class DailyCloseIn(Strict):
    store_id: UUID
    day: date = Field(alias="date", description="Store-local YYYY-MM-DD")


class TenderFigures(BaseModel):
    method: str
    received: int  # succeeded payments that day
    payments: int  # how many
    refunded: int  # refund allocations that succeeded that day
    net: int


class DailyCloseOut(BaseModel):
    store_id: UUID
    date: date
    timezone: str
    starts_at: datetime
    ends_at: datetime
    tenders: list[TenderFigures]
    received_total: int
    refunded_total: int
    net_total: int
    cash: dict[str, int]  # received, change, refunded, expected_in_drawer
    orders: dict[str, int]  # paid, refunds_completed
    deferred_revenue: dict[str, int]
    closed: bool
    closed_at: datetime | None = None
    closed_by_id: UUID | None = None
