"""Loyalty: points (a per-member balance and its append-only ledger) and coupons (templates, the coupons
issued from them, and their append-only event log).

`member_points.balance` is kept in the same transaction as the `points_ledger` rows and always equals
their sum; it exists so that a redemption can lock one row (`FOR UPDATE`) and never overdraw. A coupon's
`status` is its current state; `coupon_events.delta` (+1 issue/restore, -1 use/revoke) sums to 1 exactly
while the coupon is `issued`, so the coupon's history is a ledger too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.models import TENANT_TABLES, TenantRow, tenant_fk, timestamp_field


class PointsKind:
    EARN = "earn"  # paid for an order
    REDEEM = "redeem"  # spent as a tender
    REVERSE = "reverse"  # undoes (part of) an earn or redeem entry, which it points at
    ADJUST = "adjust"  # staff correction with a reason
    EXPIRE = "expire"  # written off (reserved for an expiry job)
    MERGE = "merge"  # moved between two records of one person (member merge)
    MIGRATION = "migration"  # the opening balance carried over from the clinic's old system (an import)
    ALL = (EARN, REDEEM, REVERSE, ADJUST, EXPIRE, MERGE, MIGRATION)


class CouponKind:
    FIXED = "fixed"  # 立减: value fen off
    PERCENT = "percent"  # 折扣: value percent off (8折 = 20), optionally capped at cap_fen
    THRESHOLD = "threshold"  # 满减: value fen off when the applicable lines reach threshold_fen
    ALL = (FIXED, PERCENT, THRESHOLD)


class CouponStatus:
    ISSUED = "issued"
    USED = "used"
    EXPIRED = "expired"  # set when a coupon restored by a refund is already past its validity
    REVOKED = "revoked"
    ALL = (ISSUED, USED, EXPIRED, REVOKED)


class LoyaltySettings(SQLModel, table=True):
    """One row per tenant; a tenant without a row uses the defaults below (see service.get_settings)."""

    __tablename__ = "loyalty_settings"
    __table_args__ = (
        CheckConstraint("earn_points_per_yuan BETWEEN 0 AND 10000", name="earn_range"),
        CheckConstraint("redeem_fen_per_point BETWEEN 1 AND 10000", name="redeem_range"),
        CheckConstraint("max_redeem_percent BETWEEN 0 AND 100", name="cap_range"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    enabled: bool = Field(default=True, sa_type=Boolean)
    earn_points_per_yuan: int = Field(default=1, sa_type=Integer)  # points per whole yuan paid
    redeem_fen_per_point: int = Field(default=1, sa_type=Integer)  # 1: 100 points pay 1 yuan
    max_redeem_percent: int = Field(default=50, sa_type=Integer)  # of an order's total
    updated_at: datetime | None = timestamp_field()


class MemberPoints(SQLModel, table=True):
    """The member's points balance: the row a redemption locks."""

    __tablename__ = "member_points"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        CheckConstraint("balance >= 0", name="balance_not_negative"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    member_id: UUID = Field(primary_key=True)
    balance: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime | None = timestamp_field()


class PointsEntry(TenantRow, table=True):
    __tablename__ = "points_ledger"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        tenant_fk(["reverses_id"], "points_ledger"),
        Index("ix_points_ledger_member", "tenant_id", "member_id", "created_at"),
        Index("ix_points_ledger_ref", "tenant_id", "ref_type", "ref_id"),
        # An order earns once: a second earn_points for the same ref returns the first (and a racing
        # duplicate fails here rather than doubling the points).
        Index("uq_points_ledger_earn_ref", "tenant_id", "ref_type", "ref_id", unique=True,
              postgresql_where=text("kind = 'earn'")),
        # One refund reverses a given entry at most once, however often it is retried.
        Index("uq_points_ledger_reversal", "tenant_id", "reverses_id", "by_ref_type", "by_ref_id", unique=True,
              postgresql_where=text("reverses_id IS NOT NULL")),
        CheckConstraint("kind IN ('earn', 'redeem', 'reverse', 'adjust', 'expire', 'merge', 'migration')",
                        name="kind_known"),
        CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
    )

    member_id: UUID
    kind: str = Field(sa_type=Text)
    delta: int = Field(sa_type=BigInteger)
    balance_after: int = Field(sa_type=BigInteger)
    ref_type: str | None = Field(default=None, sa_type=Text)
    ref_id: str | None = Field(default=None, sa_type=Text)
    reverses_id: UUID | None = None
    by_ref_type: str | None = Field(default=None, sa_type=Text)  # reversal: the refund that caused it
    by_ref_id: str | None = Field(default=None, sa_type=Text)
    actor_type: str = Field(sa_type=Text)
    actor_id: str | None = Field(default=None, sa_type=Text)
    reason: str | None = Field(default=None, sa_type=Text)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}"))


class CouponTemplate(TenantRow, table=True):
    __tablename__ = "coupon_templates"
    __table_args__ = (
        CheckConstraint("kind IN ('fixed', 'percent', 'threshold')", name="kind_known"),
        CheckConstraint("value > 0", name="value_positive"),
        CheckConstraint("kind <> 'percent' OR value < 100", name="percent_range"),
        CheckConstraint("kind <> 'threshold' OR threshold_fen > 0", name="threshold_needed"),
    )

    name: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    value: int = Field(sa_type=BigInteger)  # fixed/threshold: fen off; percent: percent off
    cap_fen: int | None = Field(default=None, sa_type=BigInteger)  # percent: most fen it takes off
    threshold_fen: int | None = Field(default=None, sa_type=BigInteger)  # least the applicable lines must sum to
    item_service_ids: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False,
                                                                             server_default="{}"))
    item_product_ids: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False,
                                                                             server_default="{}"))
    valid_days: int | None = Field(default=None, sa_type=Integer)  # from issue
    valid_from: datetime | None = timestamp_field()
    valid_until: datetime | None = timestamp_field()
    description: str | None = Field(default=None, sa_type=Text)
    active: bool = True


class Coupon(TenantRow, table=True):
    """One coupon issued to one member, with its template's terms frozen at issue."""

    __tablename__ = "coupons"
    __table_args__ = (
        tenant_fk(["template_id"], "coupon_templates"),
        tenant_fk(["member_id"], "members"),
        UniqueConstraint("tenant_id", "code"),
        Index("ix_coupons_member", "tenant_id", "member_id", "status"),
        Index("ix_coupons_used_ref", "tenant_id", "used_ref_type", "used_ref_id"),
        CheckConstraint("status IN ('issued', 'used', 'expired', 'revoked')", name="status_known"),
        CheckConstraint("status <> 'used' OR (used_at IS NOT NULL AND discount_fen > 0)", name="use_recorded"),
    )

    template_id: UUID
    member_id: UUID
    code: str = Field(sa_type=Text)
    name: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    value: int = Field(sa_type=BigInteger)
    cap_fen: int | None = Field(default=None, sa_type=BigInteger)
    threshold_fen: int | None = Field(default=None, sa_type=BigInteger)
    item_service_ids: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False,
                                                                             server_default="{}"))
    item_product_ids: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False,
                                                                             server_default="{}"))
    status: str = Field(default=CouponStatus.ISSUED, sa_type=Text)
    valid_from: datetime = Field(sa_type=DateTime(timezone=True))
    valid_until: datetime | None = timestamp_field()
    used_at: datetime | None = timestamp_field()
    used_ref_type: str | None = Field(default=None, sa_type=Text)
    used_ref_id: str | None = Field(default=None, sa_type=Text)
    discount_fen: int | None = Field(default=None, sa_type=BigInteger)
    updated_at: datetime | None = timestamp_field()


class CouponEvent(TenantRow, table=True):
    __tablename__ = "coupon_events"
    __table_args__ = (
        tenant_fk(["coupon_id"], "coupons"),
        Index("ix_coupon_events_coupon", "tenant_id", "coupon_id", "created_at"),
        CheckConstraint("kind IN ('issue', 'use', 'restore', 'revoke', 'expire', 'move')", name="kind_known"),
        CheckConstraint("delta BETWEEN -1 AND 1", name="delta_range"),
    )

    coupon_id: UUID
    kind: str = Field(sa_type=Text)
    delta: int = Field(default=0, sa_type=Integer)  # uses available: +1 issue/restore, -1 use/revoke
    member_id: UUID | None = None
    ref_type: str | None = Field(default=None, sa_type=Text)
    ref_id: str | None = Field(default=None, sa_type=Text)
    discount_fen: int | None = Field(default=None, sa_type=BigInteger)
    actor_type: str = Field(sa_type=Text)
    actor_id: str | None = Field(default=None, sa_type=Text)
    reason: str | None = Field(default=None, sa_type=Text)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}"))


TENANT_TABLES.update({"loyalty_settings", "member_points", "points_ledger", "coupon_templates", "coupons",
                      "coupon_events"})


class CouponPublication(TenantRow, table=True):
    """A coupon template published for patients to claim themselves in the mini-program (领券中心): open from
    `starts_at` until `ends_at`, at most `total_quantity` claims in all (None: no limit) and
    `per_member_limit` per member. `claimed_count` is the row a claim locks and raises, so the total is
    never exceeded under concurrent claims."""

    __tablename__ = "coupon_publications"
    __table_args__ = (
        tenant_fk(["template_id"], "coupon_templates"),
        Index("ix_coupon_publications_open", "tenant_id", "active", "starts_at"),
        CheckConstraint("per_member_limit BETWEEN 1 AND 10", name="per_member_limit_range"),
        CheckConstraint("total_quantity IS NULL OR total_quantity > 0", name="total_quantity_positive"),
        CheckConstraint("claimed_count >= 0 AND (total_quantity IS NULL OR claimed_count <= total_quantity)",
                        name="claimed_within_total"),
        CheckConstraint("ends_at IS NULL OR ends_at > starts_at", name="window_order"),
    )

    template_id: UUID
    title: str = Field(sa_type=Text)
    description: str | None = Field(default=None, sa_type=Text)
    starts_at: datetime = Field(sa_type=DateTime(timezone=True))
    ends_at: datetime | None = timestamp_field()
    total_quantity: int | None = Field(default=None, sa_type=Integer)
    per_member_limit: int = Field(default=1, sa_type=Integer)
    claimed_count: int = Field(default=0, sa_type=Integer)
    active: bool = True
    updated_at: datetime | None = timestamp_field()


class CouponClaim(TenantRow, table=True):
    """One coupon a member claimed from a publication; `claim_no` counts the member's claims of it, so the
    unique key refuses a claim beyond the per-member limit even when two arrive at once."""

    __tablename__ = "coupon_claims"
    __table_args__ = (
        tenant_fk(["publication_id"], "coupon_publications"),
        tenant_fk(["member_id"], "members"),
        tenant_fk(["coupon_id"], "coupons"),
        UniqueConstraint("tenant_id", "publication_id", "member_id", "claim_no"),
        UniqueConstraint("tenant_id", "coupon_id"),
        Index("ix_coupon_claims_member", "tenant_id", "member_id"),
        CheckConstraint("claim_no >= 1", name="claim_no_positive"),
    )

    publication_id: UUID
    member_id: UUID
    claim_no: int = Field(sa_type=Integer)
    coupon_id: UUID


TENANT_TABLES.update({"coupon_publications", "coupon_claims"})
