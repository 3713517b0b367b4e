from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from app.core.schemas import Fen, Name, Strict, Timestamp

MAX_FEN = 10_000_000_00  # ten million yuan: beyond any clinic order, far inside bigint
MAX_POINTS = 1_000_000_000


class LoyaltySettingsIn(Strict):
    """The whole of the tenant's points rules (PUT replaces them)."""

    enabled: StrictBool
    earn_points_per_yuan: StrictInt = Field(ge=0, le=10000, description="Points per whole yuan paid (1: 1 point/yuan)")
    redeem_fen_per_point: StrictInt = Field(ge=1, le=10000,
                                            description="Fen one point pays (1: 100 points = 1 yuan)")
    max_redeem_percent: StrictInt = Field(ge=0, le=100, description="Most of an order's total points may pay, %")


class LoyaltySettingsOut(BaseModel):
    enabled: bool
    earn_points_per_yuan: int
    redeem_fen_per_point: int
    max_redeem_percent: int
    updated_at: datetime | None = None


class PointsAdjust(Strict):
    delta: StrictInt = Field(ge=-MAX_POINTS, le=MAX_POINTS, description="Points to add (negative: take away); not 0")
    reason: str = Field(min_length=2, max_length=300)


class PointsEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    member_id: UUID
    kind: str
    delta: int
    balance_after: int
    ref_type: str | None
    ref_id: str | None
    reverses_id: UUID | None
    by_ref_type: str | None
    by_ref_id: str | None
    actor_type: str
    actor_id: str | None
    reason: str | None
    created_at: datetime | None


class PointsOut(BaseModel):
    member_id: UUID
    balance: int
    items: list[PointsEntryOut] = Field(description="Ledger entries, newest first; balance is their sum")
    next_cursor: str | None = None


class CouponTemplateCreate(Strict):
    name: Name = Field(min_length=1, max_length=60)
    kind: Literal["fixed", "percent", "threshold"]
    value: Fen = Field(ge=1, le=MAX_FEN,
                       description="fixed/threshold: fen off; percent: percent off, 1–99 (8折 = 20)")
    cap_fen: Fen | None = Field(None, ge=1, le=MAX_FEN, description="percent: the most fen it takes off")
    threshold_fen: Fen | None = Field(None, ge=1, le=MAX_FEN,
                                      description="Least the applicable lines must sum to (满减: required)")
    item_service_ids: list[UUID] = Field(default_factory=list, max_length=200,
                                         description="Only these services' lines count (with item_product_ids)")
    item_product_ids: list[UUID] = Field(default_factory=list, max_length=200,
                                         description="Only these products' lines count (with item_service_ids)")
    valid_days: StrictInt | None = Field(None, ge=1, le=3660, description="Days from issue")
    valid_from: Timestamp | None = None
    valid_until: Timestamp | None = None
    description: str | None = Field(None, max_length=500)


class CouponTemplateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    name: str
    kind: str
    value: int
    cap_fen: int | None
    threshold_fen: int | None
    item_service_ids: list[UUID]
    item_product_ids: list[UUID]
    valid_days: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    description: str | None
    active: bool


class CouponIssue(Strict):
    template_id: UUID
    member_id: UUID
    reason: str | None = Field(None, min_length=2, max_length=300)


class CouponOut(BaseModel):
    id: UUID
    template_id: UUID
    member_id: UUID
    code: str
    name: str
    kind: str
    value: int
    cap_fen: int | None
    threshold_fen: int | None
    item_service_ids: list[UUID]
    item_product_ids: list[UUID]
    status: str = Field(description="issued, used, expired (also an issued coupon past valid_until), revoked")
    valid_from: datetime
    valid_until: datetime | None
    used_at: datetime | None
    used_ref_type: str | None
    used_ref_id: str | None
    discount_fen: int | None
    created_at: datetime | None


class Reason(Strict):
    reason: str = Field(min_length=2, max_length=300)


class CouponEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    coupon_id: UUID
    kind: str
    delta: int
    member_id: UUID | None
    ref_type: str | None
    ref_id: str | None
    discount_fen: int | None
    reason: str | None
    details: dict[str, Any]
    created_at: datetime | None
