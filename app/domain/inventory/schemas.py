"""Request and response models of inventory. Quantities are strict integers in the item's unit."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.core.schemas import Strict
from app.domain.catalog.schemas import MAX_QUANTITY, Threshold

PositiveQuantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY,
                                        description="Integer amount in the item's unit, at least 1")]


class ItemRef(Strict):
    """Exactly one of `consumable_id` and `product_id`."""

    product_id: UUID | None = Field(None, description="A retail product (instead of consumable_id)")
    consumable_id: UUID | None = Field(None, validate_default=True,
                                       description="A consumable (or give product_id instead)")

    @field_validator("consumable_id")
    @classmethod
    def _exactly_one_item(cls, consumable_id: UUID | None, info: ValidationInfo) -> UUID | None:
        product_id = info.data.get("product_id")
        if consumable_id is None and product_id is None:
            raise ValueError("give consumable_id (or product_id)")
        if consumable_id is not None and product_id is not None:
            raise ValueError("give consumable_id or product_id, not both")
        return consumable_id

    @property
    def item_id(self) -> UUID:
        return self.consumable_id or self.product_id  # type: ignore[return-value]

    @property
    def item_kind(self) -> str:
        return "consumable" if self.consumable_id is not None else "product"


class MovementCreate(ItemRef):
    store_id: UUID
    kind: Literal["receive", "adjust"]
    quantity: int = Field(strict=True, ge=-MAX_QUANTITY, le=MAX_QUANTITY,
                          description="receive: positive; adjust: the signed correction (−3 writes off three)")
    reason: str | None = Field(None, max_length=500, validate_default=True,
                               description="Required for adjust (stock-take, breakage, expiry…)")
    ref_type: str | None = Field(None, min_length=1, max_length=50, description="e.g. delivery_note")
    ref_id: str | None = Field(None, min_length=1, max_length=100)

    @field_validator("quantity")
    @classmethod
    def _sign(cls, quantity: int, info: ValidationInfo) -> int:
        if info.data.get("kind") == "receive" and quantity <= 0:
            raise ValueError("a receive quantity must be positive")
        if quantity == 0:
            raise ValueError("an adjustment of zero changes nothing")
        return quantity

    @field_validator("reason")
    @classmethod
    def _reason_for_adjust(cls, reason: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("kind") == "adjust" and not reason:
            raise ValueError("an adjustment needs a reason")
        return reason or None


class TransferLine(ItemRef):
    quantity: PositiveQuantity


class TransferCreate(Strict):
    from_store_id: UUID
    to_store_id: UUID
    lines: list[TransferLine] = Field(min_length=1, max_length=100)
    reason: str | None = Field(None, max_length=500)

    @field_validator("to_store_id")
    @classmethod
    def _two_stores(cls, to_store_id: UUID, info: ValidationInfo) -> UUID:
        if info.data.get("from_store_id") == to_store_id:
            raise ValueError("a transfer goes to another store")
        return to_store_id


class ThresholdSet(ItemRef):
    store_id: UUID
    low_stock_threshold: Threshold | None = Field(description="This store's threshold; null: the item's own")


class ReverseRequest(Strict):
    reason: str = Field(min_length=1, max_length=500)


class MovementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    seq: int = Field(description="Ledger order")
    store_id: UUID
    item_kind: Literal["consumable", "product"]
    item_id: UUID
    consumable_id: UUID | None
    product_id: UUID | None
    kind: str = Field(description="receive, adjust, transfer_out, transfer_in, consume, sale or reversal")
    quantity: int = Field(description="Signed change in the item's unit")
    balance_after: int
    reason: str | None
    ref_type: str | None
    ref_id: str | None
    reverses_id: UUID | None
    transfer_id: UUID | None
    counterpart_store_id: UUID | None
    actor_type: str
    actor_id: UUID | None
    created_at: datetime | None


class MovementList(BaseModel):
    items: list[MovementOut]


class TransferOut(BaseModel):
    transfer_id: UUID
    from_store_id: UUID
    to_store_id: UUID
    movements: list[MovementOut]


class StockItemOut(BaseModel):
    store_id: UUID
    item_kind: Literal["consumable", "product"]
    item_id: UUID
    consumable_id: UUID | None
    product_id: UUID | None
    name: str
    unit: str
    quantity: int
    low_stock_threshold: int = Field(description="The store's threshold, else the item's")
    low_stock: bool = Field(description="quantity <= low_stock_threshold")
    updated_at: datetime | None
