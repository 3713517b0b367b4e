"""Request and response models of the catalog.

Amounts are integer fen and quantities integers in the item's unit; both are strict: `19800` is a
price, `198.0` and `"19800"` are refused (422 naming the field), because a float that happens to be
whole today is a rounding bug tomorrow.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, ValidationInfo, field_validator

from app.core.schemas import ImageUrl, Name, Strict

MAX_PRICE = 100_000_000  # fen: ¥1,000,000
MAX_QUANTITY = 1_000_000  # in the item's unit
MAX_PERCENT = 100

Fen = Annotated[int, Field(strict=True, ge=0, le=MAX_PRICE, description="Amount in fen (1 yuan = 100 fen)")]
RecipeQuantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY,
                                      description="Integer amount in the consumable's unit, at least 1")]
Threshold = Annotated[int, Field(strict=True, ge=0, le=MAX_QUANTITY,
                                 description="Stock at or below this raises `inventory.low_stock`")]
Minutes = Annotated[int, Field(strict=True, ge=1, le=1440)]
BufferMinutes = Annotated[int, Field(strict=True, ge=0, le=240)]
LevelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=30)]


def _not_null(value: Any) -> Any:
    """PATCH: leaving a field out keeps it; sending null for a required column is an error."""
    if value is None:
        raise ValueError("may not be null; leave the field out to keep its value")
    return value


# ---------------------------------------------------------------- consumables


class ConsumableCreate(Strict):
    name: Name = Field(min_length=1, max_length=100, description="e.g. 艾条, 按摩精油")
    unit: str = Field(min_length=1, max_length=16, description="e.g. 根, ml, 片, g, 张; fixed once created")
    category: str | None = Field(None, max_length=50)
    description: str | None = Field(None, max_length=1000)
    low_stock_threshold: Threshold = 0


class ConsumableUpdate(Strict):
    name: Name | None = Field(None, min_length=1, max_length=100)
    category: str | None = Field(None, max_length=50)
    description: str | None = Field(None, max_length=1000)
    low_stock_threshold: Threshold | None = None
    active: bool | None = Field(None, description="false deactivates (consumables are never deleted)")

    _required = field_validator("name", "low_stock_threshold", "active")(_not_null)


class ConsumableOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    name: str
    unit: str
    category: str | None
    description: str | None
    low_stock_threshold: int
    active: bool
    created_at: datetime | None
    updated_at: datetime | None


# ---------------------------------------------------------------- products


class ProductCreate(Strict):
    name: Name = Field(min_length=1, max_length=100, description="e.g. 养生茶, 艾草足浴包")
    sku: str | None = Field(None, min_length=1, max_length=64, description="Unique within the tenant")
    category: str | None = Field(None, max_length=50)
    unit: str = Field(min_length=1, max_length=16, description="e.g. 罐, 盒, 片; fixed once created")
    price: Fen
    description: str | None = Field(None, max_length=1000)
    low_stock_threshold: Threshold = 0


class ProductUpdate(Strict):
    name: Name | None = Field(None, min_length=1, max_length=100)
    sku: str | None = Field(None, min_length=1, max_length=64)
    category: str | None = Field(None, max_length=50)
    price: Fen | None = None
    description: str | None = Field(None, max_length=1000)
    low_stock_threshold: Threshold | None = None
    active: bool | None = Field(None, description="false deactivates (products are never deleted)")

    _required = field_validator("name", "price", "low_stock_threshold", "active")(_not_null)


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    name: str
    sku: str | None
    category: str | None
    unit: str
    price: int
    description: str | None
    low_stock_threshold: int
    active: bool
    created_at: datetime | None
    updated_at: datetime | None


# ---------------------------------------------------------------- services


class ResourceRequirement(Strict):
    """One resource the service occupies: any free one of `resource_ids`, else of `pool`, else of `kind`."""

    kind: Literal["room", "bed", "device"]
    pool: str | None = Field(None, min_length=1, max_length=50, description="Name of a resource pool")
    resource_ids: list[UUID] | None = Field(None, max_length=50)


class CommissionRule(Strict):
    """`fixed`: `value` fen per service; `percent`: `value` whole percent (0–100) of the price (for a card
    session, of that session's share of the card price). `levels` overrides `value` per staff level."""

    type: Literal["fixed", "percent"]
    value: int = Field(strict=True, ge=0, le=MAX_PRICE)
    levels: dict[LevelName, Annotated[int, Field(strict=True, ge=0, le=MAX_PRICE)]] | None = Field(
        None, max_length=20, description='e.g. {"senior": 4000}')

    @field_validator("value")
    @classmethod
    def _percent_value(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("type") == "percent" and value > MAX_PERCENT:
            raise ValueError("a percent commission is at most 100")
        return value

    @field_validator("levels")
    @classmethod
    def _percent_levels(cls, levels: dict[str, int] | None, info: ValidationInfo) -> dict[str, int] | None:
        if levels and info.data.get("type") == "percent" and any(v > MAX_PERCENT for v in levels.values()):
            raise ValueError("a percent commission is at most 100")
        return levels


class RecipeLine(Strict):
    consumable_id: UUID
    quantity: RecipeQuantity


def _unique_recipe(lines: list[RecipeLine] | None) -> list[RecipeLine] | None:
    if lines is not None:
        seen = set()
        for line in lines:
            if line.consumable_id in seen:
                raise ValueError(f"consumable {line.consumable_id} appears twice; give one line per consumable")
            seen.add(line.consumable_id)
    return lines


class ServiceCreate(Strict):
    name: Name = Field(min_length=1, max_length=100, description="e.g. 推拿, 艾灸")
    category: str | None = Field(None, max_length=50)
    description: str | None = Field(None, max_length=2000)
    duration_minutes: Minutes
    price: Fen
    resource_requirements: list[ResourceRequirement] = Field(default_factory=list, max_length=10)
    buffer_minutes: BufferMinutes = 0
    consumables: list[RecipeLine] = Field(default_factory=list, max_length=50,
                                          description="Deducted from the store's stock each time it is performed")
    commission: CommissionRule | None = None
    active: bool = True

    _recipe = field_validator("consumables")(_unique_recipe)


class ServiceUpdate(Strict):
    name: Name | None = Field(None, min_length=1, max_length=100)
    category: str | None = Field(None, max_length=50)
    description: str | None = Field(None, max_length=2000)
    duration_minutes: Minutes | None = None
    price: Fen | None = None
    resource_requirements: list[ResourceRequirement] | None = Field(None, max_length=10)
    buffer_minutes: BufferMinutes | None = None
    consumables: list[RecipeLine] | None = Field(None, max_length=50, description="Replaces the recipe")
    commission: CommissionRule | None = Field(None, description="null removes the commission rule")
    active: bool | None = Field(None, description="false deactivates (services are never deleted)")

    _required = field_validator("name", "duration_minutes", "price", "resource_requirements", "buffer_minutes",
                                "consumables", "active")(_not_null)
    _recipe = field_validator("consumables")(_unique_recipe)


class RecipeLineOut(BaseModel):
    consumable_id: UUID
    quantity: int
    name: str
    unit: str


class ServiceOut(BaseModel):
    id: UUID
    name: str
    category: str | None
    description: str | None
    duration_minutes: int
    price: int
    resource_requirements: list[dict[str, Any]]
    buffer_minutes: int
    consumables: list[RecipeLineOut]
    commission: dict[str, Any] | None
    active: bool
    created_at: datetime | None
    updated_at: datetime | None


class ServiceListing(Strict):
    """How the service shows in the mini-program (replaces the whole listing). Name, price, duration and
    description are the service's own (PATCH /services/{id})."""

    published: StrictBool = Field(description="On sale to patients (in the stores with staff skilled for it)")
    aftercare_note: str | None = Field(None, max_length=1000, description="What to do after the treatment, "
                                       "shown with the patient's visits (e.g. 4 小时内不要洗澡, 注意保暖)")
    photo_url: ImageUrl | None = None


class ServiceListingOut(BaseModel):
    service_id: UUID
    published: bool
    aftercare_note: str | None
    photo_url: str | None
