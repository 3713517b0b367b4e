"""Service records (one performed service) and the commissions they earn."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from app.core.models import TENANT_TABLES, TenantRow, tenant_fk, timestamp_field


class ServiceRecord(TenantRow, table=True):
    __tablename__ = "service_records"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        tenant_fk(["store_id"], "stores"),
        tenant_fk(["service_id"], "services"),
        tenant_fk(["staff_id"], "staff"),
        tenant_fk(["card_id"], "cards"),
        Index("ix_service_records_member", "tenant_id", "member_id", "completed_at"),
        Index("ix_service_records_store_day", "tenant_id", "store_id", "completed_at"),
        Index("ix_service_records_staff", "tenant_id", "staff_id", "completed_at"),
        Index("ix_service_records_unsettled", "tenant_id", "member_id", "settlement", "order_id"),
    )

    member_id: UUID
    store_id: UUID
    service_id: UUID
    staff_id: UUID
    appointment_id: UUID | None = None
    # card: a card session paid for it; checkout: it waits for payment at the front desk (开单).
    settlement: str = Field(sa_type=Text)
    card_id: UUID | None = None
    card_entry_id: UUID | None = None
    order_id: UUID | None = None  # the order that settled it (checkout)
    list_price: int = Field(sa_type=BigInteger)
    # What the performance earned: the card session's share of the card price, or the list price.
    earned_amount: int = Field(sa_type=BigInteger)
    duration_minutes: int = Field(sa_type=Integer)
    notes: str | None = Field(default=None, sa_type=Text)
    status: str = Field(default="completed", sa_type=Text)  # completed | reversed
    completed_at: datetime = Field(sa_type=DateTime(timezone=True))
    reversed_at: datetime | None = timestamp_field()
    reversal_reason: str | None = Field(default=None, sa_type=Text)


class Commission(TenantRow, table=True):
    """A staff member's commission for one service record; a reversal is a new, negative row."""

    __tablename__ = "commissions"
    __table_args__ = (
        tenant_fk(["staff_id"], "staff"),
        tenant_fk(["store_id"], "stores"),
        tenant_fk(["service_record_id"], "service_records"),
        Index("ix_commissions_staff", "tenant_id", "staff_id", "occurred_at"),
        Index("ix_commissions_store", "tenant_id", "store_id", "occurred_at"),
    )

    staff_id: UUID
    store_id: UUID
    service_record_id: UUID
    amount: int = Field(sa_type=BigInteger)  # fen, negative for a reversal
    basis: int = Field(sa_type=BigInteger)  # what the percentage applied to
    rule: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB(none_as_null=True), nullable=True))
    staff_level: str | None = Field(default=None, sa_type=Text)
    kind: str = Field(sa_type=Text)  # service | reversal
    reverses_id: UUID | None = None
    occurred_at: datetime = Field(sa_type=DateTime(timezone=True))


TENANT_TABLES.update({"service_records", "commissions"})
