from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from app.core.schemas import Fen, Name, Strict, Timestamp

Kind = Literal["stored_value", "count", "package", "period"]


class TemplateItemIn(Strict):
    service_id: UUID
    sessions: StrictInt = Field(0, ge=0, le=1000)
    gifted_sessions: StrictInt = Field(0, ge=0, le=1000, description="赠送次数: free sessions on top")


class CardTemplateCreate(Strict):
    name: Name = Field(min_length=1, max_length=60)
    kind: Kind
    price: Fen = Field(ge=0, le=10_000_000_00, description="Sale price, fen")
    items: list[TemplateItemIn] = Field(default_factory=list, max_length=50,
                                        description="count/package: sessions per service; period: services covered")
    face_value: Fen = Field(0, ge=0, le=10_000_000_00, description="stored_value: principal credited, fen")
    bonus: Fen = Field(0, ge=0, le=10_000_000_00, description="stored_value: bonus credited (充1000送200), fen")
    spend_order: Literal["principal_first", "bonus_first", "proportional"] = "principal_first"
    valid_days: StrictInt | None = Field(None, ge=1, le=3660)
    valid_until: date | None = None
    shared_pool_sessions: StrictInt | None = Field(None, ge=1, le=1000,
                                                   description="package: sessions usable for any listed service")
    daily_cap: StrictInt | None = Field(None, ge=1, le=20, description="period: uses per store-local day")
    usable_store_ids: list[UUID] = Field(default_factory=list, max_length=200, description="empty: every store")
    family_shareable: bool = False
    transferable: bool = True
    description: str | None = Field(None, max_length=500)


class CardTemplateOut(BaseModel):
    id: UUID
    name: str
    kind: str
    price: int
    face_value: int
    bonus: int
    spend_order: str
    valid_days: int | None
    valid_until: date | None
    shared_pool_sessions: int | None
    daily_cap: int | None
    usable_store_ids: list[UUID]
    family_shareable: bool
    transferable: bool
    active: bool
    items: list[dict[str, Any]]


class CardIssue(Strict):
    member_id: UUID
    template_id: UUID
    store_id: UUID
    reason: str = Field(min_length=2, max_length=300, description="Why a card is issued without an order")
    price_paid: Fen | None = Field(None, ge=0, description="Defaults to 0: a gift")


class CardItemOut(BaseModel):
    id: UUID
    service_id: UUID | None
    sessions_total: int
    gifted_sessions: int
    remaining: int
    unit_value: int


class CardOut(BaseModel):
    id: UUID
    template_id: UUID
    member_id: UUID
    name: str
    kind: str
    status: str
    price_paid: int
    balance: int = Field(description="Stored value: principal + bonus, fen")
    principal_balance: int
    bonus_balance: int
    starts_at: datetime | None
    expires_at: datetime | None
    family_shareable: bool
    items: list[CardItemOut]
    created_at: datetime | None


class LedgerEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    card_id: UUID
    kind: str
    card_item_id: UUID | None
    sessions_delta: int
    principal_delta: int
    bonus_delta: int
    member_id: UUID | None
    store_id: UUID | None
    actor_type: str
    actor_id: str | None
    reason: str | None
    ref_type: str | None
    ref_id: str | None
    reverses_id: UUID | None
    details: dict[str, Any]
    created_at: datetime | None


class Reason(Strict):
    reason: str = Field(min_length=2, max_length=300)


class CardTransfer(Reason):
    to_member_id: UUID


class CardExtend(Reason):
    days: StrictInt | None = Field(None, ge=1, le=3660)
    until: Timestamp | None = Field(None, description="New expiry (RFC 3339 with offset)")


class CardDeduct(Strict):
    service_id: UUID
    store_id: UUID
    member_id: UUID | None = Field(None, description="Who is served; a family member on a shared card")
    reason: str = Field(min_length=2, max_length=300)


class CardTemplateListing(Strict):
    """Whether patients can buy the template in the mini-program, and the text they read there."""

    published: StrictBool = Field(description="On sale in the mini-program when true (the front desk sells "
                                  "every active template)")
    description: str | None = Field(None, max_length=500, description="What the card is for, shown to patients")


class CardTemplateListingOut(BaseModel):
    template_id: UUID
    published: bool
    description: str | None
