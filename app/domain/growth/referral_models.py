"""Referral: each member's share code, who referred whom, the tenant's reward rules, and the rewards given.

- `referral_codes`: one code per member (unique per tenant); its row is also the lock that serialises the
  rewards of one referrer, so the monthly limit holds under concurrent deliveries.
- `referrals`: at most one per referee (unique key), recorded at registration or by staff.
- `referral_reward_rules`: one row per tenant, the rules as data (validated through the schemas).
- `referral_rewards`: append-only. A `grant` per referee and role (referrer / referee) and at most one
  `reversal` per referee, by unique key: an `order.paid` delivered twice, or twice at once, rewards once.
  The points, coupon and stored-value effects live in the loyalty and cards ledgers; a reversal writes
  reversal entries there and a `reversal` row here, never deletes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import CheckConstraint, DateTime, Index, Integer, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from app.core.models import TENANT_TABLES, TenantRow, tenant_fk


class ReferralCode(TenantRow, table=True):
    __tablename__ = "referral_codes"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        UniqueConstraint("tenant_id", "member_id"),
        UniqueConstraint("tenant_id", "code"),
    )

    member_id: UUID
    code: str = Field(sa_type=Text)


class Referral(TenantRow, table=True):
    __tablename__ = "referrals"
    __table_args__ = (
        tenant_fk(["referrer_id"], "members"),
        tenant_fk(["referee_id"], "members"),
        UniqueConstraint("tenant_id", "referee_id"),
        Index("ix_referrals_referrer", "tenant_id", "referrer_id"),
        CheckConstraint("referrer_id <> referee_id", name="not_self"),
        CheckConstraint("source IN ('registration', 'staff')", name="source_known"),
    )

    referrer_id: UUID
    referee_id: UUID
    source: str = Field(sa_type=Text)
    code: str | None = Field(default=None, sa_type=Text)
    recorded_by_id: UUID | None = None


class ReferralRewardRules(TenantRow, table=True):
    __tablename__ = "referral_reward_rules"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    rules: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    updated_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    updated_by_id: UUID | None = None


class ReferralReward(TenantRow, table=True):
    """Append-only: a reward given (or withheld, with the reason in `status`) and its reversal."""

    __tablename__ = "referral_rewards"
    __table_args__ = (
        tenant_fk(["referral_id"], "referrals"),
        tenant_fk(["beneficiary_id"], "members"),
        tenant_fk(["reverses_id"], "referral_rewards"),
        UniqueConstraint("tenant_id", "referee_id", "role", "kind"),
        Index("ix_referral_rewards_beneficiary", "tenant_id", "beneficiary_id", "created_at"),
        CheckConstraint("role IN ('referrer', 'referee')", name="role_known"),
        CheckConstraint("kind IN ('grant', 'reversal')", name="kind_known"),
        CheckConstraint("(kind = 'grant') = (reverses_id IS NULL)", name="reversal_points_back"),
        CheckConstraint("reward_type IS NULL OR reward_type IN ('points', 'coupon', 'stored_value')",
                        name="reward_type_known"),
        CheckConstraint("status IN ('granted', 'capped', 'not_configured', 'unavailable', 'reversed', "
                        "'partly_reversed')", name="status_known"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
    )

    referral_id: UUID
    referee_id: UUID
    beneficiary_id: UUID
    role: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    status: str = Field(sa_type=Text)
    reward_type: str | None = Field(default=None, sa_type=Text)
    # Points, or fen of stored value; 1 for a coupon. On a reversal: what was actually taken back.
    amount: int = Field(default=0, sa_type=Integer)
    coupon_id: UUID | None = None
    card_id: UUID | None = None
    order_id: UUID | None = None
    refund_id: UUID | None = None
    reverses_id: UUID | None = None
    note: str | None = Field(default=None, sa_type=Text)


TENANT_TABLES.update({"referral_codes", "referrals", "referral_reward_rules", "referral_rewards"})
