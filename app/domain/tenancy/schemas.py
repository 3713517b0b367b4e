from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, field_validator

from app.core.clock import DEFAULT_TIMEZONE, valid_timezone
from app.core.schemas import ImageUrl, Name, Strict

TENANT_CODE_PATTERN = r"^[a-z0-9][a-z0-9-]{1,31}$"


def _check_timezone(value: str) -> str:
    if not valid_timezone(value):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)")
    return value


class StoreCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name = Field(min_length=1, max_length=100)
    timezone: str = Field(DEFAULT_TIMEZONE, max_length=64)
    address: str | None = Field(None, max_length=300)
    phone: str | None = Field(None, max_length=30)

    _tz = field_validator("timezone")(_check_timezone)


class StoreUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name | None = Field(None, min_length=1, max_length=100)
    timezone: str | None = Field(None, max_length=64)
    address: str | None = Field(None, max_length=300)
    phone: str | None = Field(None, max_length=30)
    active: bool | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else _check_timezone(value)


class TenantSettings(BaseModel):
    """The tenant-wide switches kept in `tenants.settings` (JSON), read through `tenant_settings` only.

    Unknown keys are ignored and missing ones take the defaults, so a row written by an older release reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # Sell or consume stock the system has not seen arrive (the counts go negative until received).
    allow_negative_stock: bool = False
    # A stored-value card at or below this balance (fen) raises card.low_balance; None: the built-in default.
    low_balance_threshold: int | None = Field(None, ge=0)


class StoreOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    name: str
    timezone: str
    address: str | None
    phone: str | None
    active: bool
    created_at: datetime | None


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    code: str
    name: str


class StoreListing(Strict):
    """How the store shows in the mini-program (replaces the whole listing). Name, address and phone are the
    store's own (PATCH /stores/{id}); opening hours are PUT /stores/{id}/hours."""

    published: StrictBool = Field(description="Patients see the store (and book there) only when true")
    description: str | None = Field(None, max_length=500, description="A short introduction (交通, 停车, 特色)")
    latitude: float | None = Field(None, ge=-90, le=90, allow_inf_nan=False,
                                   description="GCJ-02, as wx.getLocation({type: 'gcj02'}) and Chinese maps give it")
    longitude: float | None = Field(None, ge=-180, le=180, allow_inf_nan=False, validate_default=True,
                                    description="GCJ-02")
    photos: list[ImageUrl] = Field(default_factory=list, max_length=9, description="https image URLs, first is "
                                   "the cover")

    @field_validator("longitude")
    @classmethod
    def _coordinates_together(cls, value: float | None, info: ValidationInfo) -> float | None:
        # Named on longitude (validated after latitude): one without the other places the store nowhere.
        if "latitude" in info.data and (info.data["latitude"] is None) != (value is None):
            raise ValueError("latitude and longitude come together")
        return value


class StoreListingOut(BaseModel):
    store_id: UUID
    published: bool
    description: str | None
    latitude: float | None
    longitude: float | None
    photos: list[str]
