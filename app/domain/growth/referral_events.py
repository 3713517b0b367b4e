"""The topics referral emits (ids and amounts only; names are read through the API)."""

from __future__ import annotations

from app.core.events import topic

REFERRAL_REWARDED = topic(
    "referral.rewarded", "A referral reward was given: to the referrer for the referee's first paid order, or "
                         "the welcome reward to a new referee",
    "reward_id", "referral_id", "referrer_id", "referee_id", "beneficiary_id", "role", "reward_type", "amount",
    "coupon_id", "card_id", "order_id")
REFERRAL_REVERSED = topic(
    "referral.reversed", "The referrer's reward was taken back because the referee's first order was refunded",
    "reward_id", "reverses_id", "referral_id", "referrer_id", "referee_id", "reward_type", "amount", "shortfall",
    "order_id", "refund_id")
