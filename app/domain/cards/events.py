"""The topics cards emits (payloads as emitted; see docs/events.md for who consumes them)."""

from __future__ import annotations

from app.core.events import topic

CARD_ISSUED = topic("card.issued", "A course or stored-value card was sold or issued",
                    "card_id", "member_id", "kind", "price_paid")
CARD_SESSIONS_LOW = topic("card.sessions_low", "A card item has few sessions left after a deduction",
                          "card_id", "member_id", "service_id", "remaining", "total_remaining")
CARD_LOW_BALANCE = topic("card.low_balance", "A stored-value card fell below the low-balance threshold",
                         "card_id", "member_id", "balance")
CARD_CLOSED = topic("card.closed", "A card was closed (its sale refunded)", "card_id", "member_id", "reason")
CARD_TRANSFERRED = topic("card.transferred", "A card moved to another member",
                         "card_id", "from_member_id", "to_member_id")
CARD_EXPIRING = topic("card.expiring", "A card expires within a week", "card_id", "member_id", "expires_at")
CARD_EXPIRED = topic("card.expired", "A card's validity ended; its remaining sessions were written off",
                     "card_id", "member_id")
