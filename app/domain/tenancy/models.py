from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, CheckConstraint, Column, Double, Text, text
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
    __table_args__ = (
        CheckConstraint("(latitude IS NULL) = (longitude IS NULL)", name="coordinates_paired"),
        CheckConstraint("latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180", name="coordinates_range"),
    )

    name: str = Field(sa_type=Text)
    timezone: str = Field(default=DEFAULT_TIMEZONE, sa_type=Text)
    address: str | None = Field(default=None, sa_type=Text)
    phone: str | None = Field(default=None, sa_type=Text)
    active: bool = True
    # The mini-program listing (set with PUT /stores/{id}/listing): shown to patients only once published.
    published: bool = Field(default=False, sa_column_kwargs={"server_default": text("false")})
    description: str | None = Field(default=None, sa_type=Text)
    # GCJ-02, the datum of wx.getLocation({type: "gcj02"}) and of Chinese maps: distances to the patient are
    # only right when both sides use it.
    latitude: float | None = Field(default=None, sa_type=Double)
    longitude: float | None = Field(default=None, sa_type=Double)
    photos: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False,
                                                                     server_default="{}"))


TENANT_TABLES.add("stores")
