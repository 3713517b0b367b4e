"""The topics loyalty emits (payloads as emitted; see docs/events.md for who consumes them)."""

from __future__ import annotations

from app.core.events import topic

POINTS_EARNED = topic("points.earned", "A member earned points on money paid",
                      "member_id", "points", "balance", "ref_type", "ref_id", "entry_id")
POINTS_REDEEMED = topic("points.redeemed", "A member paid with points",
                        "member_id", "points", "fen", "balance", "ref_type", "ref_id", "entry_id")
POINTS_REVERSED = topic(
    "points.reversed", "Points earned or redeemed on a ref were reversed (a refund)",
    "ref_type", "ref_id", "by_ref_type", "by_ref_id", "earned_removed", "redeemed_restored", "shortfall",
    "member_ids")
COUPON_ISSUED = topic("coupon.issued", "A member was given a coupon",
                      "coupon_id", "member_id", "template_id", "name", "valid_until")
COUPON_USED = topic("coupon.used", "A coupon paid part of an order",
                    "coupon_id", "member_id", "discount_fen", "ref_type", "ref_id")
COUPON_RESTORED = topic("coupon.restored", "A used coupon was given back (a refund)",
                        "coupon_id", "member_id", "status", "ref_type", "ref_id")
