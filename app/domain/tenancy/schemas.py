from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.clock import DEFAULT_TIMEZONE, valid_timezone

TENANT_CODE_PATTERN = r"^[a-z0-9][a-z0-9-]{1,31}$"


def _check_timezone(value: str) -> str:
    if not valid_timezone(value):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)")
    return value


class StoreCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    timezone: str = Field(DEFAULT_TIMEZONE, max_length=64)
    address: str | None = Field(None, max_length=300)
    phone: str | None = Field(None, max_length=30)

    _tz = field_validator("timezone")(_check_timezone)


class StoreUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(None, min_length=1, max_length=100)
    timezone: str | None = Field(None, max_length=64)
    address: str | None = Field(None, max_length=300)
    phone: str | None = Field(None, max_length=30)
    active: bool | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else _check_timezone(value)


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
