from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Column, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.clock import DEFAULT_TIMEZONE
from app.core.ids import new_id
from app.core.models import TENANT_TABLES, TenantRow, created_at_field


class Tenant(SQLModel, table=True):
    """A brand or chain. The one global table: readable by the app role, written only by the owner."""

    __tablename__ = "tenants"

    id: UUID = Field(default_factory=new_id, primary_key=True)
    code: str = Field(sa_type=Text, unique=True)
    name: str = Field(sa_type=Text)
    active: bool = True
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime | None = created_at_field()


class Store(TenantRow, table=True):
    __tablename__ = "stores"

    name: str = Field(sa_type=Text)
    timezone: str = Field(default=DEFAULT_TIMEZONE, sa_type=Text)
    address: str | None = Field(default=None, sa_type=Text)
    phone: str | None = Field(default=None, sa_type=Text)
    active: bool = True


TENANT_TABLES.add("stores")
