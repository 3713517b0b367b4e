"""The topics checkout emits (payloads as emitted; see docs/events.md for who consumes them)."""

from __future__ import annotations

from app.core.events import topic

ORDER_PAID = topic(
    "order.paid", "An order was paid in full and completed (cards issued, top-ups credited, points earned)",
    "order_id", "order_no", "member_id", "store_id", "total", "paid_total", "points_earned", "lines", "tenders",
    "paid_at")
ORDER_PAID_AFTER_CANCEL = topic(
    "order.paid_after_cancel", "WeChat Pay money arrived for an order already cancelled; someone must give it back",
    "order_id", "payment_id", "member_id", "amount")
ORDER_COMPLETION_FAILED = topic(
    "order.completion_failed", "An order was paid but could not be completed; staff must settle it by hand",
    "order_id", "payment_id", "error", "detail")
ORDER_CANCELLED = topic("order.cancelled", "A pending order was cancelled and everything it held given back",
                        "order_id", "member_id", "store_id", "reason")

# Every refund event carries the refund as it is after the change (`refunds.refund_payload`).
REFUND_KEYS = ("refund_id", "order_id", "store_id", "amount", "status")

REFUND_REQUESTED = topic("refund.requested", "A refund of a paid order was requested", *REFUND_KEYS)
REFUND_APPROVED = topic("refund.approved", "The last approval level approved a refund", *REFUND_KEYS, "levels")
REFUND_REJECTED = topic("refund.rejected", "A refund was rejected at an approval level", *REFUND_KEYS, "level")
REFUND_LEVEL_APPROVED = topic("refund.level_approved",
                              "An approval level approved a refund that waits for the next level", *REFUND_KEYS,
                              "level", "next_level")
REFUND_COMPLETED = topic("refund.completed", "A refund went back to all its tenders", *REFUND_KEYS)
REFUND_FAILED = topic("refund.failed", "WeChat did not refund its part of a refund; finance settles it",
                      *REFUND_KEYS, "out_refund_no", "outcome")
# Checkout's own step: WeChat is asked for the refund once the refund's transaction has committed.
WECHAT_REFUND_TOPIC = topic("refund.wechat_requested", "A committed refund has WeChat Pay parts to ask WeChat for",
                            "refund_id")
