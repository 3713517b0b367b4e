"""What a clinic sells and uses: services with their consumables recipe, retail products, consumables.

Rows are deactivated, never deleted: card templates, service records, orders and the stock ledger keep
pointing at them. Money is integer fen; quantities are integers in the item's unit (根, ml, 片, g).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Integer, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.models import TENANT_TABLES, TenantRow, tenant_fk, timestamp_field


class Consumable(TenantRow, table=True):
    """Material used up by services (艾条, 按摩精油, 一次性床单); stocked per store."""

    __tablename__ = "consumables"
    __table_args__ = (
        Index("ix_consumables_active", "tenant_id", "active", "id"),
        CheckConstraint("low_stock_threshold >= 0", name="threshold_not_negative"),
    )

    name: str = Field(sa_type=Text)
    unit: str = Field(sa_type=Text)  # fixed at creation: the ledger's quantities are in this unit
    category: str | None = Field(default=None, sa_type=Text)
    description: str | None = Field(default=None, sa_type=Text)
    # A store's balance at or below this raises inventory.low_stock (a store may override it).
    low_stock_threshold: int = Field(default=0, sa_type=BigInteger)
    active: bool = True
    updated_at: datetime | None = timestamp_field()


class Product(TenantRow, table=True):
    """A retail item sold at checkout (养生茶, 艾草足浴包, 医用面膜); stocked per store."""

    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sku"),
        Index("ix_products_active", "tenant_id", "active", "id"),
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("low_stock_threshold >= 0", name="threshold_not_negative"),
    )

    name: str = Field(sa_type=Text)
    sku: str | None = Field(default=None, sa_type=Text)
    category: str | None = Field(default=None, sa_type=Text)
    unit: str = Field(sa_type=Text)  # fixed at creation, as for consumables
    price: int = Field(sa_type=BigInteger)  # fen
    description: str | None = Field(default=None, sa_type=Text)
    low_stock_threshold: int = Field(default=0, sa_type=BigInteger)
    active: bool = True
    updated_at: datetime | None = timestamp_field()


class Service(TenantRow, table=True):
    """A bookable treatment (推拿, 艾灸, 拔罐) with its price, resources, recipe and commission rule."""

    __tablename__ = "services"
    __table_args__ = (
        Index("ix_services_active", "tenant_id", "active", "id"),
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("duration_minutes > 0", name="duration_positive"),
        CheckConstraint("buffer_minutes >= 0", name="buffer_not_negative"),
    )

    name: str = Field(sa_type=Text)
    category: str | None = Field(default=None, sa_type=Text)
    description: str | None = Field(default=None, sa_type=Text)
    duration_minutes: int = Field(sa_type=Integer)
    price: int = Field(sa_type=BigInteger)  # fen
    # [{"kind": "bed", "pool": "推拿床", "resource_ids": [...]}]: read by the booking capability.
    resource_requirements: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default="[]"))
    # Minutes the resources stay blocked after the service (cleaning, changing the sheet).
    buffer_minutes: int = Field(default=0, sa_type=Integer)
    # {"type": "fixed"|"percent", "value": int, "levels": {"senior": int}} or null: no commission.
    commission: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB(none_as_null=True), nullable=True))
    active: bool = True
    updated_at: datetime | None = timestamp_field()
    # The mini-program listing (PUT /services/{id}/listing): on sale to patients only once published.
    published: bool = Field(default=False, sa_column_kwargs={"server_default": text("false")})
    # What the patient should do after the treatment (no shower for 4 hours after 艾灸…), shown with their visits.
    aftercare_note: str | None = Field(default=None, sa_type=Text)
    photo_url: str | None = Field(default=None, sa_type=Text)


class ServiceConsumable(SQLModel, table=True):
    """One line of a service's recipe: performing the service once uses `quantity` of the consumable."""

    __tablename__ = "service_consumables"
    __table_args__ = (
        tenant_fk(["service_id"], "services", ondelete="CASCADE"),
        tenant_fk(["consumable_id"], "consumables"),
        Index("ix_service_consumables_consumable", "tenant_id", "consumable_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    service_id: UUID = Field(primary_key=True)
    consumable_id: UUID = Field(primary_key=True)
    quantity: int = Field(sa_type=BigInteger)


TENANT_TABLES.update({"consumables", "products", "services", "service_consumables"})
