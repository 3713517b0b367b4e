"""What a rule may react to: the outbox topics (with how each names its real-world cause) and the
schedule kinds. The engine subscribes to exactly the topics listed here, and the API refuses others.

A cause key names the thing that happened, not the message that said so: a redelivered or duplicated
event, or a second low-sessions event for the same card item, yields the same key, and
`rule_runs (tenant_id, rule_id, cause_key)` is unique, so the rule fires once for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.core.outbox import OutboxEvent

APPOINTMENT_FIELDS = frozenset({"store_id", "service_id", "staff_id", "channel", "service_category", "status"})
SERVICE_FIELDS = frozenset({"store_id", "service_id", "staff_id", "service_category", "service_name", "card_id"})


@dataclass(frozen=True)
class TopicSpec:
    topic: str
    description: str
    cause: Callable[[dict[str, Any], OutboxEvent], str]
    fields: frozenset[str]  # payload (or derived) fields a trigger filter may test
    # Delayed reminders go stale when the appointment moves or is cancelled; these are checked again.
    appointment_must_be_open: bool = False


def _appointment(suffix: str) -> Callable[[dict[str, Any], OutboxEvent], str]:
    return lambda p, e: f"appointment:{p['appointment_id']}:{suffix}"


def _versioned(suffix: str) -> Callable[[dict[str, Any], OutboxEvent], str]:
    # A rescheduled appointment gets a new reminder: the schedule version is part of the cause.
    return lambda p, e: f"appointment:{p['appointment_id']}:{suffix}:v{p.get('schedule_version', 0)}"


TOPICS: dict[str, TopicSpec] = {spec.topic: spec for spec in [
    TopicSpec("member.created", "a member was registered",
              lambda p, e: f"member:{p['member_id']}:created", frozenset({"home_store_id"})),
    TopicSpec("appointment.booked", "an appointment was booked", _appointment("booked"), APPOINTMENT_FIELDS),
    TopicSpec("appointment.cancelled", "an appointment was cancelled", _appointment("cancelled"),
              APPOINTMENT_FIELDS | {"late"}),
    TopicSpec("appointment.rescheduled", "an appointment was moved", _versioned("rescheduled"), APPOINTMENT_FIELDS),
    TopicSpec("appointment.checked_in", "the member checked in", _appointment("checked_in"), APPOINTMENT_FIELDS),
    TopicSpec("appointment.no_show", "the member did not come", _appointment("no_show"), APPOINTMENT_FIELDS),
    TopicSpec("appointment.completed", "an appointment was completed", _appointment("completed"),
              APPOINTMENT_FIELDS),
    TopicSpec("appointment.reminder_due", "the store's reminder time before an appointment (default 24 h)",
              _versioned("reminder"), APPOINTMENT_FIELDS, appointment_must_be_open=True),
    TopicSpec("service.completed", "a service was completed (with or without an appointment)",
              lambda p, e: f"service_record:{p['service_record_id']}", SERVICE_FIELDS),
    # Sessions-low is emitted on every deduction at or below the threshold: one cause per card item.
    TopicSpec("card.sessions_low", "a card item has few sessions left",
              lambda p, e: f"card:{p['card_id']}:{p.get('service_id')}:sessions_low",
              frozenset({"remaining", "total_remaining", "service_id", "service_category"})),
    # Emitted once per crossing of the threshold; a top-up and a later crossing is a new cause.
    TopicSpec("card.low_balance", "a stored-value card fell below the low-balance threshold",
              lambda p, e: f"card:{p['card_id']}:low_balance:{e.id}", frozenset({"balance"})),
    TopicSpec("card.expiring", "a card expires within a week",
              lambda p, e: f"card:{p['card_id']}:expiring:{p.get('expires_at')}", frozenset()),
    TopicSpec("card.expired", "a card expired", lambda p, e: f"card:{p['card_id']}:expired", frozenset()),
    TopicSpec("card.issued", "a card was sold or issued", lambda p, e: f"card:{p['card_id']}:issued",
              frozenset({"store_id"})),
    TopicSpec("order.paid", "an order was paid in full",
              lambda p, e: f"order:{p.get('order_id') or e.id}:paid", frozenset({"store_id", "total"})),
]}

SCHEDULE_KINDS = {
    "inactive_days": "no visit for `days` days (from the member's last visit)",
    "birthday": "the member's birthday (store-local day); `days` before it when given",
    "before_next_visit": "`days` days before a booked visit (store-local day)",
}
