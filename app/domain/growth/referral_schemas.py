"""Request and response shapes of referral."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field, model_validator

from app.core.schemas import Strict

MAX_TREE_DEPTH = 3
CODE_PATTERN = r"^ref-[a-z0-9]{8}$"
MAX_POINTS = 1_000_000
MAX_STORED_VALUE_FEN = 1_000_000  # 10 000 yuan


class RewardIn(Strict):
    """One reward: `points` (a number of points), `coupon` (a coupon template) or `stored_value` (fen credited to
    the member's active stored-value card; the referee's welcome reward cannot be stored value — a new member
    has no card yet)."""

    kind: Literal["points", "coupon", "stored_value"]
    points: int | None = Field(None, gt=0, le=MAX_POINTS)
    coupon_template_id: UUID | None = None
    amount: int | None = Field(None, gt=0, le=MAX_STORED_VALUE_FEN, description="Stored value in fen")

    @model_validator(mode="after")
    def _one_value(self) -> RewardIn:
        needed = {"points": "points", "coupon": "coupon_template_id", "stored_value": "amount"}[self.kind]
        if getattr(self, needed) is None:
            raise ValueError(f"{needed} is required for a {self.kind} reward")
        for other in {"points", "coupon_template_id", "amount"} - {needed}:
            if getattr(self, other) is not None:
                raise ValueError(f"{other} does not belong to a {self.kind} reward")
        return self


class RewardRulesIn(Strict):
    enabled: bool = True
    referrer_reward: RewardIn | None = Field(None, description="To the referrer when the referee's first paid "
                                                               "order completes")
    referee_welcome: RewardIn | None = Field(None, description="To the new member when they register with a code")
    max_rewards_per_referrer_per_month: int | None = Field(
        None, ge=1, le=1000, description="Referrer rewards per calendar month (Asia/Shanghai); more are recorded "
                                         "as `capped` and not given. Null: no limit")

    @model_validator(mode="after")
    def _welcome_kind(self) -> RewardRulesIn:
        if self.referee_welcome is not None and self.referee_welcome.kind == "stored_value":
            raise ValueError("referee_welcome: a new member has no stored-value card; use points or a coupon")
        return self


class RewardRulesOut(RewardRulesIn):
    model_config = {"extra": "ignore"}
    updated_at: datetime | None = None


class ReferralCodeOut(BaseModel):
    member_id: UUID
    code: str = Field(description="Goes into the share link's `scene`; registering with it records the referral")
    share_path: str = Field(description="The mini-program page to share (the code as `scene`)")
    qr_available: bool = Field(description="A mini-program code image of the share page is served at "
                                           "`GET /members/{id}/referral-code/qr.png` (the patient's: "
                                           "`GET /patient/referral/qr.png`)")


class ReferralSet(Strict):
    """Who referred this member: the referrer's code or id (exactly one)."""

    referrer_code: str | None = Field(None, pattern=CODE_PATTERN)
    referrer_id: UUID | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ReferralSet:
        if (self.referrer_code is None) == (self.referrer_id is None):
            raise ValueError("give exactly one of referrer_code and referrer_id")
        return self


class ReferralOut(BaseModel):
    id: UUID
    referrer_id: UUID
    referee_id: UUID
    source: str
    code: str | None
    created_at: datetime | None


class RewardOut(BaseModel):
    id: UUID
    role: str
    kind: str
    status: str
    reward_type: str | None
    amount: int
    beneficiary_id: UUID
    coupon_id: UUID | None
    card_id: UUID | None
    order_id: UUID | None
    created_at: datetime | None


class TreeNode(BaseModel):
    member_id: UUID
    name: str
    referred_at: datetime | None
    rewarded: bool = Field(description="The referrer was rewarded for this referee (and not reversed)")
    referees: list[TreeNode] = Field(default_factory=list)


class ReferralTreeOut(BaseModel):
    member_id: UUID
    code: str
    share_path: str
    referrer: TreeNode | None = Field(description="Who referred this member (without their referees)")
    referees: list[TreeNode]
    depth: int
    rewards: list[RewardOut] = Field(description="Rewards this member received as referrer or referee")
