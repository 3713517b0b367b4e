"""Request and response shapes of the growth API (channels, campaign codes, spend, leads, rules, intake)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.schemas import Fen, Name, Strict

ChannelKind = Literal["paid_ads", "platform", "referral", "walk_in", "event", "other"]
LeadStatusName = Literal["new", "contacted", "consultation_booked", "arrived", "consulted", "won", "lost"]
Strategy = Literal["round_robin", "least_open"]
# A campaign code is the mini-program QR code's scene: WeChat allows at most 32 visible characters; we keep
# to letters, digits, '-' and '_' so it survives every URL and landing page unescaped.
CODE_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
PAGE_PATTERN = r"^[A-Za-z0-9_/-]{1,128}$"
Interest = Annotated[Name, Field(min_length=1, max_length=40)]  # e.g. 光子嫩肤, 失眠调理


class ChannelCreate(Strict):
    name: Name = Field(min_length=1, max_length=50, description="e.g. 抖音, 小红书, 大众点评, 老带新, 到店")
    kind: ChannelKind
    code: str | None = Field(None, pattern=CODE_PATTERN, description="What intake requests name the channel by")
    active: bool = True


class ChannelUpdate(Strict):
    name: Name | None = Field(None, min_length=1, max_length=50)
    kind: ChannelKind | None = None
    active: bool | None = None


class ChannelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    name: str
    kind: str
    code: str | None
    active: bool
    created_at: datetime | None


class CampaignCodeCreate(Strict):
    channel_id: UUID
    code: str = Field(pattern=CODE_PATTERN, description="Unique in the tenant; the QR code's scene")
    name: Name = Field(min_length=1, max_length=100)
    store_id: UUID | None = Field(None, description="Leads from this code belong to this store")
    page: str | None = Field(None, pattern=PAGE_PATTERN,
                             description="Mini-program page the QR code opens (default: the home page)")
    active: bool = True


class CampaignCodeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    channel_id: UUID
    code: str
    name: str
    store_id: UUID | None
    page: str | None
    active: bool
    created_at: datetime | None


class SpendCreate(Strict):
    period_start: date
    period_end: date
    amount: Fen = Field(ge=0, le=10**12, description="Integer fen")
    note: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _ordered(self) -> SpendCreate:
        if self.period_end < self.period_start:
            raise ValueError("period_end must not be before period_start")
        return self


class SpendOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    channel_id: UUID
    period_start: date
    period_end: date
    amount: int
    note: str | None
    created_at: datetime | None


class LeadCreate(Strict):
    """Manual entry by staff. A phone or a WeChat identity (openid / unionid) is required."""

    name: Name = Field(min_length=1, max_length=50)
    phone: str | None = Field(None, min_length=5, max_length=30)
    openid: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    unionid: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    channel_id: UUID | None = None
    campaign_code: str | None = Field(None, pattern=CODE_PATTERN)
    store_id: UUID | None = None
    interests: list[Interest] = Field(default_factory=list, max_length=20)
    note: str | None = Field(None, max_length=2000)
    assignee_id: UUID | None = Field(None, description="Skip the assignment rules and give it to this consultant")


class LeadIntake(Strict):
    """What an ad platform or landing page posts (signed) to `/lead-intake/{tenant_code}`."""

    name: Name | None = Field(None, max_length=50)
    phone: str | None = Field(None, min_length=5, max_length=30)
    openid: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    unionid: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    channel_code: str | None = Field(None, pattern=CODE_PATTERN)
    campaign_code: str | None = Field(None, pattern=CODE_PATTERN)
    store_id: UUID | None = None
    interests: list[Interest] = Field(default_factory=list, max_length=20)
    note: str | None = Field(None, max_length=2000)


class LeadUpdate(Strict):
    status: Literal["contacted", "consultation_booked", "arrived", "consulted", "won", "lost"] | None = None
    lost_reason: str | None = Field(None, min_length=1, max_length=500)
    comment: str | None = Field(None, max_length=2000, description="Kept with this change in the lead's history")
    assignee_id: UUID | None = Field(None, description="Reassign (needs growth:admin or staff:write)")

    @model_validator(mode="after")
    def _reason(self) -> LeadUpdate:
        if self.status == "lost" and not self.lost_reason:
            raise ValueError("lost_reason is required when status is lost")
        if self.lost_reason is not None and self.status != "lost":
            raise ValueError("lost_reason goes with status lost only")
        if self.status is None and self.assignee_id is None and self.comment is None:
            raise ValueError("give status, assignee_id or comment")
        return self


class LeadHistoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    change: str
    from_status: str | None
    to_status: str | None
    assignee_id: UUID | None
    actor_kind: str
    actor_id: UUID | None
    note: str | None
    created_at: datetime | None


class LeadOut(BaseModel):
    id: UUID
    name: str
    phone: str | None = Field(description="Masked for roles without members.contact:read")
    has_wechat: bool
    source: str
    channel_id: UUID | None
    campaign_code_id: UUID | None
    store_id: UUID | None
    interests: list[str]
    note: str | None
    member_id: UUID | None
    status: str
    lost_reason: str | None
    assignee_id: UUID | None
    rule_id: UUID | None
    assigned_at: datetime | None
    contact_due_at: datetime | None
    first_contacted_at: datetime | None
    escalated_at: datetime | None
    touches: int
    last_touch_at: datetime | None
    created_at: datetime | None
    history: list[LeadHistoryOut] | None = None


class IntakeOut(BaseModel):
    lead_id: UUID
    created: bool = Field(description="false: an open lead of this person got a new touch")
    status: str
    assignee_id: UUID | None
    member_id: UUID | None


class IntakeSecretOut(BaseModel):
    secret: str = Field(description="Shown once: sign intake requests with it")
    rotated_at: datetime
    header_timestamp: str = "X-CareLoop-Timestamp"
    header_signature: str = "X-CareLoop-Signature"


class RuleCreate(Strict):
    name: Name = Field(min_length=1, max_length=100)
    store_id: UUID | None = Field(None, description="None: tenant-wide")
    strategy: Strategy = "round_robin"
    channel_kind: ChannelKind | None = None
    campaign_code_id: UUID | None = None
    interest_tag: Interest | None = Field(None, min_length=1, max_length=40)
    on_shift_only: bool = False
    first_contact_minutes: int | None = Field(None, ge=1, le=7 * 24 * 60)
    priority: int = Field(100, ge=0, le=10_000, description="Lower first (store rules before tenant-wide)")
    active: bool = True

    @model_validator(mode="after")
    def _shift_needs_store(self) -> RuleCreate:
        if self.on_shift_only and self.store_id is None:
            raise ValueError("on_shift_only needs store_id: shifts are kept per store")
        return self


class RuleUpdate(Strict):
    name: Name | None = Field(None, min_length=1, max_length=100)
    strategy: Strategy | None = None
    on_shift_only: bool | None = None
    first_contact_minutes: int | None = Field(None, ge=1, le=7 * 24 * 60)
    priority: int | None = Field(None, ge=0, le=10_000)
    active: bool | None = None


class RuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    name: str
    store_id: UUID | None
    strategy: str
    channel_kind: str | None
    campaign_code_id: UUID | None
    interest_tag: str | None
    on_shift_only: bool
    first_contact_minutes: int | None
    priority: int
    active: bool
    last_assignee_id: UUID | None
    assigned_count: int
    created_at: datetime | None
