"""The topics visits emits (payloads as emitted; see docs/events.md for who consumes them)."""

from __future__ import annotations

from app.core.events import topic

# The one follow-up trigger: care rules on service.completed set their own delay.
SERVICE_COMPLETED = topic(
    "service.completed", "A service was completed (card session, consumables and commission booked)",
    "service_record_id", "member_id", "service_id", "service_name", "staff_id", "store_id", "card_id", "completed_at")
SERVICE_REVERSED = topic("service.reversed", "A completed service was reversed", "service_record_id", "member_id")
