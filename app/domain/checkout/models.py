"""Checkout: orders (开单), their lines, the tenders that pay them, refunds and their approvals.

Money is integer fen everywhere. An order's lines are priced when it is opened (list price, line
discount, member-tier discount, a share of the order discount) and frozen; `payments` are the tenders
(cash, stored value, points, coupon, WeChat Pay), each a row with its own status. A refund is allocated to
the original tenders (`refund_allocations`) and, above the tenant's threshold, waits for approvals
(`refund_approvals`, append-only). The ledgers that move (card balances and sessions, points, coupons,
stock) are those of their own contexts; these rows point at them through ref_type `order` / `refund`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.models import TENANT_TABLES, TenantRow, created_at_field, tenant_fk, timestamp_field

ORDER_STATUSES = ("draft", "pending", "paid", "partially_refunded", "refunded", "cancelled")
LINE_TYPES = ("service", "product", "card", "top_up")
TENDERS = ("cash", "stored_value", "points", "coupon", "wechat_pay")
PAYMENT_STATUSES = ("pending", "succeeded", "failed", "closed")
REFUND_STATUSES = ("pending_approval", "approved", "processing", "completed", "rejected", "failed")


class Order(TenantRow, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        tenant_fk(["store_id"], "stores"),
        UniqueConstraint("tenant_id", "order_no"),
        Index("ix_orders_store_time", "tenant_id", "store_id", "created_at"),
        Index("ix_orders_member_time", "tenant_id", "member_id", "created_at"),
        Index("ix_orders_pending", "tenant_id", "status", "expires_at"),
        # A patient prepays a booked appointment once: a second open or paid mini-program order for it is
        # refused by this index, also when two arrive at once (a cancelled or refunded one frees it).
        Index("uq_orders_patient_appointment", "tenant_id", "appointment_id", unique=True,
              postgresql_where=text("opened_by_kind = 'patient' AND appointment_id IS NOT NULL "
                                    "AND status IN ('pending', 'paid', 'partially_refunded')")),
        CheckConstraint("status IN ('draft', 'pending', 'paid', 'partially_refunded', 'refunded', 'cancelled')",
                        name="status_known"),
        CheckConstraint("subtotal >= 0 AND discount_total >= 0 AND total >= 0 AND total = subtotal - discount_total",
                        name="totals_consistent"),
        CheckConstraint("paid_total >= 0 AND refunded_total >= 0 AND refunded_total <= paid_total",
                        name="paid_and_refunded"),
    )

    order_no: str = Field(sa_type=Text)  # shown on receipts: store-local date + a sequence-like suffix
    member_id: UUID
    store_id: UUID
    status: str = Field(default="draft", sa_type=Text)
    subtotal: int = Field(default=0, sa_type=BigInteger)  # sum of the lines' list amounts
    discount_total: int = Field(default=0, sa_type=BigInteger)  # line + tier + order discounts
    total: int = Field(default=0, sa_type=BigInteger)  # what the tenders must cover
    paid_total: int = Field(default=0, sa_type=BigInteger)
    refunded_total: int = Field(default=0, sa_type=BigInteger)
    order_discount: int = Field(default=0, sa_type=BigInteger)  # the order-level discount asked for
    note: str | None = Field(default=None, sa_type=Text)
    opened_by_kind: str = Field(sa_type=Text)  # staff / patient / integration
    opened_by_id: UUID | None = None
    appointment_id: UUID | None = None  # the visit being checked out, if any
    paid_at: datetime | None = timestamp_field()
    cancelled_at: datetime | None = timestamp_field()
    expires_at: datetime | None = timestamp_field()  # an unpaid WeChat Pay order is closed after this
    updated_at: datetime | None = timestamp_field()


class OrderLine(TenantRow, table=True):
    __tablename__ = "order_lines"
    __table_args__ = (
        tenant_fk(["order_id"], "orders", ondelete="CASCADE"),
        UniqueConstraint("tenant_id", "order_id", "line_no"),
        CheckConstraint("type IN ('service', 'product', 'card', 'top_up')", name="type_known"),
        CheckConstraint("quantity >= 1 AND unit_price >= 0 AND list_amount >= 0 AND amount >= 0", name="amounts"),
        CheckConstraint("line_discount >= 0 AND tier_discount >= 0 AND order_discount_share >= 0",
                        name="discounts_not_negative"),
        CheckConstraint("amount = list_amount - line_discount - tier_discount - order_discount_share",
                        name="amount_consistent"),
    )

    order_id: UUID
    line_no: int = Field(sa_type=Integer)
    type: str = Field(sa_type=Text)
    name: str = Field(sa_type=Text)  # frozen for the receipt
    service_id: UUID | None = None
    product_id: UUID | None = None
    card_template_id: UUID | None = None
    card_id: UUID | None = None  # top_up: the card topped up; service: the card whose session settles it
    service_record_id: UUID | None = None  # a completed service this line charges for
    quantity: int = Field(default=1, sa_type=Integer)
    unit_price: int = Field(sa_type=BigInteger)
    list_amount: int = Field(sa_type=BigInteger)  # unit_price * quantity
    line_discount: int = Field(default=0, sa_type=BigInteger)
    tier_discount: int = Field(default=0, sa_type=BigInteger)
    order_discount_share: int = Field(default=0, sa_type=BigInteger)
    amount: int = Field(sa_type=BigInteger)  # payable for this line
    settled_by_card: bool = False  # a service paid with a card session (amount 0)
    issued_card_id: UUID | None = None  # card lines: the card issued on payment
    top_up_principal: int = Field(default=0, sa_type=BigInteger)
    top_up_bonus: int = Field(default=0, sa_type=BigInteger)
    refunded_amount: int = Field(default=0, sa_type=BigInteger)


class Payment(TenantRow, table=True):
    """One tender of an order."""

    __tablename__ = "payments"
    __table_args__ = (
        tenant_fk(["order_id"], "orders", ondelete="CASCADE"),
        Index("ix_payments_order", "tenant_id", "order_id"),
        Index("ix_payments_store_day", "tenant_id", "store_id", "succeeded_at"),
        # Notifications from WeChat carry only out_trade_no: a system lookup finds the tenant by it.
        Index("ix_payments_out_trade_no", "out_trade_no"),
        UniqueConstraint("tenant_id", "out_trade_no"),
        CheckConstraint("method IN ('cash', 'stored_value', 'points', 'coupon', 'wechat_pay')", name="method_known"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'closed')", name="status_known"),
        CheckConstraint("amount > 0 AND refunded_amount >= 0 AND refunded_amount <= amount", name="amounts"),
        CheckConstraint("cash_received IS NULL OR cash_received >= amount", name="cash_covers"),
    )

    order_id: UUID
    store_id: UUID  # denormalised for the daily close
    method: str = Field(sa_type=Text)
    amount: int = Field(sa_type=BigInteger)
    status: str = Field(default="pending", sa_type=Text)
    refunded_amount: int = Field(default=0, sa_type=BigInteger)
    card_id: UUID | None = None  # stored_value
    principal_used: int = Field(default=0, sa_type=BigInteger)  # stored_value split, as charged
    bonus_used: int = Field(default=0, sa_type=BigInteger)
    coupon_id: UUID | None = None
    points: int | None = Field(default=None, sa_type=BigInteger)
    cash_received: int | None = Field(default=None, sa_type=BigInteger)
    change_given: int | None = Field(default=None, sa_type=BigInteger)
    out_trade_no: str | None = Field(default=None, sa_type=Text)  # wechat_pay
    prepay_id: str | None = Field(default=None, sa_type=Text)
    transaction_id: str | None = Field(default=None, sa_type=Text)  # WeChat's id, once paid
    succeeded_at: datetime | None = timestamp_field()
    updated_at: datetime | None = timestamp_field()


class Refund(TenantRow, table=True):
    __tablename__ = "refunds"
    __table_args__ = (
        tenant_fk(["order_id"], "orders"),
        UniqueConstraint("tenant_id", "refund_no"),
        Index("ix_refunds_order", "tenant_id", "order_id"),
        Index("ix_refunds_store_day", "tenant_id", "store_id", "completed_at"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "status IN ('pending_approval', 'approved', 'processing', 'completed', 'rejected', 'failed')",
            name="status_known"),
    )

    order_id: UUID
    store_id: UUID
    refund_no: str = Field(sa_type=Text)
    amount: int = Field(sa_type=BigInteger)
    reason: str = Field(sa_type=Text)
    status: str = Field(default="pending_approval", sa_type=Text)
    # Lines whose goods go back (card lines: unused sessions/balance reversed), with amounts per line.
    lines: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False,
                                                                                server_default="[]"))
    levels_required: int = Field(default=0, sa_type=Integer)
    levels_approved: int = Field(default=0, sa_type=Integer)
    requested_by_id: UUID | None = None
    completed_at: datetime | None = timestamp_field()
    updated_at: datetime | None = timestamp_field()


class RefundAllocation(TenantRow, table=True):
    """The part of a refund that goes back through one original tender."""

    __tablename__ = "refund_allocations"
    __table_args__ = (
        tenant_fk(["refund_id"], "refunds"),
        tenant_fk(["payment_id"], "payments"),
        Index("ix_refund_allocations_refund", "tenant_id", "refund_id"),
        Index("ix_refund_allocations_out_refund_no", "out_refund_no"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status_known"),
    )

    refund_id: UUID
    payment_id: UUID
    method: str = Field(sa_type=Text)
    amount: int = Field(sa_type=BigInteger)
    status: str = Field(default="pending", sa_type=Text)
    out_refund_no: str | None = Field(default=None, sa_type=Text)  # wechat_pay
    wechat_refund_id: str | None = Field(default=None, sa_type=Text)
    succeeded_at: datetime | None = timestamp_field()


class RefundApproval(TenantRow, table=True):
    """One decision on a refund at one approval level (append-only)."""

    __tablename__ = "refund_approvals"
    __table_args__ = (
        tenant_fk(["refund_id"], "refunds"),
        UniqueConstraint("tenant_id", "refund_id", "level"),
        CheckConstraint("decision IN ('approve', 'reject')", name="decision_known"),
    )

    refund_id: UUID
    level: int = Field(sa_type=Integer)
    decision: str = Field(sa_type=Text)
    decided_by_id: UUID
    role: str = Field(sa_type=Text)  # the role under which the approver decided
    note: str | None = Field(default=None, sa_type=Text)


class CheckoutSettings(SQLModel, table=True):
    """Per tenant: when refunds need approval and by whom; the defaults apply without a row."""

    __tablename__ = "checkout_settings"

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    refund_approval_threshold: int = Field(default=50000, sa_type=BigInteger)  # fen; above it: approvals
    # Levels in order, each a list of role names any of which may decide: [["store_manager"], ["finance"]].
    approval_levels: list[list[str]] = Field(
        default_factory=lambda: [["store_manager"], ["finance"]],
        sa_column=Column(JSONB, nullable=False, server_default='[["store_manager"], ["finance"]]'))
    updated_at: datetime | None = timestamp_field()
    created_at: datetime | None = created_at_field()


class TierDiscount(TenantRow, table=True):
    """A member-tier discount: members with the tag get `percent_off` on lines of the listed types."""

    __tablename__ = "tier_discounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "tag_name"),
        CheckConstraint("percent_off BETWEEN 1 AND 90", name="percent_range"),
    )

    tag_name: str = Field(sa_type=Text)  # e.g. 金卡会员
    percent_off: int = Field(sa_type=Integer)
    line_types: list[str] = Field(default_factory=lambda: ["service", "product"],
                                  sa_column=Column(JSONB, nullable=False, server_default='["service", "product"]'))
    active: bool = True


class DailyClose(TenantRow, table=True):
    """A store's closed day: the figures as they were when the clerk closed it (日结)."""

    __tablename__ = "daily_closes"
    __table_args__ = (
        tenant_fk(["store_id"], "stores"),
        UniqueConstraint("tenant_id", "store_id", "day"),
    )

    store_id: UUID
    day: date = Field(sa_type=Date)
    figures: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    closed_by_id: UUID | None = None
    closed_at: datetime = Field(sa_type=DateTime(timezone=True))


TENANT_TABLES.update({"orders", "order_lines", "payments", "refunds", "refund_allocations", "refund_approvals",
                      "checkout_settings", "tier_discounts", "daily_closes"})
