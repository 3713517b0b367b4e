"""Growth tables, first slice: channels, campaign codes, spend; leads with touches and history; assignment
rules; the tenant's lead-intake secret.

A lead's phone is kept like a member's (`app.core.crypto`: AES-GCM at rest, an HMAC blind index for exact
lookup). `match_key` is what makes one person one open lead: the phone's blind index, or, without a phone,
`wx:` + the unionid (or openid). A partial unique index over open leads' match keys lets concurrent intakes
of one person meet in `INSERT … ON CONFLICT` instead of racing a lookup.
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from app.core.models import TENANT_TABLES, TenantRow, timestamp_field


def _fk(table: str, column: str, target: str) -> ForeignKeyConstraint:
    """A composite foreign key with tenant_id, named short: the conventional name of some of these runs past
    PostgreSQL's 63 characters."""
    return ForeignKeyConstraint(["tenant_id", column], [f"{target}.tenant_id", f"{target}.id"],
                                name=f"fk_{table}_{column}")


class LeadStatus:
    NEW = "new"
    CONTACTED = "contacted"
    CONSULTATION_BOOKED = "consultation_booked"
    ARRIVED = "arrived"
    CONSULTED = "consulted"
    WON = "won"
    LOST = "lost"


# The funnel in order; a lead moves forward along it (skipping steps, as a walk-in that arrives at once
# does) and ends won or lost.
FUNNEL = (LeadStatus.NEW, LeadStatus.CONTACTED, LeadStatus.CONSULTATION_BOOKED, LeadStatus.ARRIVED,
          LeadStatus.CONSULTED, LeadStatus.WON)
CLOSED = (LeadStatus.WON, LeadStatus.LOST)
OPEN_PREDICATE = "status NOT IN ('won', 'lost')"
CHANNEL_KINDS = ("paid_ads", "platform", "referral", "walk_in", "event", "other")


class Channel(TenantRow, table=True):
    __tablename__ = "growth_channels"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        Index("uq_growth_channels_code", "tenant_id", "code", unique=True, postgresql_where=text("code IS NOT NULL")),
        CheckConstraint("kind IN ('paid_ads', 'platform', 'referral', 'walk_in', 'event', 'other')",
                        name="kind_known"),
    )

    name: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    # What an ad platform or landing page names the channel by in an intake request (optional).
    code: str | None = Field(default=None, sa_type=Text)
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=text("true")))
    updated_at: datetime | None = timestamp_field()


class CampaignCode(TenantRow, table=True):
    __tablename__ = "growth_campaign_codes"
    __table_args__ = (
        _fk("growth_campaign_codes", "channel_id", "growth_channels"),
        _fk("growth_campaign_codes", "store_id", "stores"),
        UniqueConstraint("tenant_id", "code"),
    )

    channel_id: UUID
    code: str = Field(sa_type=Text)  # ≤ 32 characters: it is the mini-program QR code's scene
    name: str = Field(sa_type=Text)
    store_id: UUID | None = None  # leads from this code belong to this store unless they say otherwise
    page: str | None = Field(default=None, sa_type=Text)  # the mini-program page the QR code opens
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=text("true")))


class ChannelSpend(TenantRow, table=True):
    __tablename__ = "growth_channel_spend"
    __table_args__ = (
        _fk("growth_channel_spend", "channel_id", "growth_channels"),
        Index("ix_growth_channel_spend_channel", "tenant_id", "channel_id", "period_start"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("period_end >= period_start", name="period_ordered"),
    )

    channel_id: UUID
    period_start: date = Field(sa_type=Date)
    period_end: date = Field(sa_type=Date)
    amount: int = Field(sa_type=BigInteger)  # fen
    note: str | None = Field(default=None, sa_type=Text)
    created_by_id: UUID | None = None


class IntakeSecret(SQLModel, table=True):
    """One per tenant: the HMAC key ad platforms sign intake requests with. Encrypted with the field keys
    (the HMAC needs it back in the clear to verify), shown once when created or rotated."""

    __tablename__ = "growth_intake_secrets"

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    secret_encrypted: str = Field(sa_type=Text)
    rotated_at: datetime | None = timestamp_field()
    rotated_by_id: UUID | None = None


class AssignmentRule(TenantRow, table=True):
    """Who gets a new lead. The row is also the round-robin cursor: assignment locks it (FOR UPDATE), so
    concurrent intakes take turns on it and no consultant is skipped or served twice in a row."""

    __tablename__ = "growth_assignment_rules"
    __table_args__ = (
        _fk("growth_assignment_rules", "store_id", "stores"),
        _fk("growth_assignment_rules", "campaign_code_id", "growth_campaign_codes"),
        CheckConstraint("strategy IN ('round_robin', 'least_open')", name="strategy_known"),
        CheckConstraint("first_contact_minutes IS NULL OR first_contact_minutes > 0", name="deadline_positive"),
    )

    name: str = Field(sa_type=Text)
    store_id: UUID | None = None  # None: tenant-wide
    strategy: str = Field(sa_type=Text)
    channel_kind: str | None = Field(default=None, sa_type=Text)
    campaign_code_id: UUID | None = None
    interest_tag: str | None = Field(default=None, sa_type=Text)
    on_shift_only: bool = Field(default=False, sa_column=Column(Boolean, nullable=False,
                                                                server_default=text("false")))
    first_contact_minutes: int | None = Field(default=None, sa_type=Integer)
    priority: int = Field(default=100, sa_type=Integer)
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=text("true")))
    last_assignee_id: UUID | None = None  # the round-robin cursor
    assigned_count: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime | None = timestamp_field()


class Lead(TenantRow, table=True):
    __tablename__ = "growth_leads"
    __table_args__ = (
        _fk("growth_leads", "channel_id", "growth_channels"),
        _fk("growth_leads", "campaign_code_id", "growth_campaign_codes"),
        _fk("growth_leads", "store_id", "stores"),
        _fk("growth_leads", "member_id", "members"),
        _fk("growth_leads", "assignee_id", "staff"),
        _fk("growth_leads", "rule_id", "growth_assignment_rules"),
        Index("uq_growth_leads_open_match", "tenant_id", "match_key", unique=True,
              postgresql_where=text(OPEN_PREDICATE)),
        Index("ix_growth_leads_assignee", "tenant_id", "assignee_id", "status"),
        Index("ix_growth_leads_contact_due", "contact_due_at", postgresql_where=text(
            "status = 'new' AND escalated_at IS NULL AND contact_due_at IS NOT NULL")),
        CheckConstraint("status IN ('new', 'contacted', 'consultation_booked', 'arrived', 'consulted', 'won', "
                        "'lost')", name="status_known"),
        CheckConstraint("status <> 'lost' OR lost_reason IS NOT NULL", name="lost_has_reason"),
        CheckConstraint("phone_index IS NOT NULL OR openid IS NOT NULL OR unionid IS NOT NULL", name="reachable"),
    )

    name: str = Field(sa_type=Text)
    phone_encrypted: str | None = Field(default=None, sa_type=Text)
    phone_index: str | None = Field(default=None, sa_type=Text)
    openid: str | None = Field(default=None, sa_type=Text)
    unionid: str | None = Field(default=None, sa_type=Text)
    match_key: str = Field(sa_type=Text)
    source: str = Field(sa_type=Text)  # manual | intake
    channel_id: UUID | None = None
    campaign_code_id: UUID | None = None
    store_id: UUID | None = None
    interests: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False,
                                                                         server_default=text("'{}'")))
    note: str | None = Field(default=None, sa_type=Text)
    member_id: UUID | None = None
    status: str = Field(default=LeadStatus.NEW, sa_type=Text)
    lost_reason: str | None = Field(default=None, sa_type=Text)
    assignee_id: UUID | None = None
    rule_id: UUID | None = None
    assigned_at: datetime | None = timestamp_field()
    contact_due_at: datetime | None = timestamp_field()
    first_contacted_at: datetime | None = timestamp_field()
    escalated_at: datetime | None = timestamp_field()
    touches: int = Field(default=1, sa_type=Integer)
    last_touch_at: datetime | None = timestamp_field()
    created_by_id: UUID | None = None
    updated_at: datetime | None = timestamp_field()


class LeadTouch(TenantRow, table=True):
    """Each time the person reached us (the first intake too): append-only."""

    __tablename__ = "growth_lead_touches"
    __table_args__ = (
        _fk("growth_lead_touches", "lead_id", "growth_leads"),
        Index("ix_growth_lead_touches_lead", "tenant_id", "lead_id", "created_at"),
    )

    lead_id: UUID
    source: str = Field(sa_type=Text)
    channel_id: UUID | None = None
    campaign_code_id: UUID | None = None
    note: str | None = Field(default=None, sa_type=Text)


class LeadHistory(TenantRow, table=True):
    """Every change of a lead (created, assigned, each status change, escalation): who, when, from, to,
    note. Append-only."""

    __tablename__ = "growth_lead_history"
    __table_args__ = (
        _fk("growth_lead_history", "lead_id", "growth_leads"),
        Index("ix_growth_lead_history_lead", "tenant_id", "lead_id", "created_at"),
    )

    lead_id: UUID
    change: str = Field(sa_type=Text)  # created | assigned | status | escalated
    from_status: str | None = Field(default=None, sa_type=Text)
    to_status: str | None = Field(default=None, sa_type=Text)
    assignee_id: UUID | None = None
    actor_kind: str = Field(sa_type=Text)
    actor_id: UUID | None = None
    note: str | None = Field(default=None, sa_type=Text)


TENANT_TABLES.update({"growth_channels", "growth_campaign_codes", "growth_channel_spend", "growth_intake_secrets",
                      "growth_assignment_rules", "growth_leads", "growth_lead_touches", "growth_lead_history"})
