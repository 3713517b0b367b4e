from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.clock import DEFAULT_TIMEZONE, valid_timezone
from app.core.schemas import Name

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
