"""One retry policy for everything that is tried again later: outbox deliveries, messages, webhooks.

Each kind keeps its own numbers (settings `job_*`, `message_*`, `webhook_*`), but the rule is one: after the
n-th failed attempt wait `base * 2^(n-1)` seconds (capped at `max`), and after `max_attempts` failures the
item is dead: it stays visible (`?status=dead`) and waits for a person to retry it through the API, which
gives it a fresh count of attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from app.core.settings import Settings, get_settings

DEAD = "dead"
RetryKind = Literal["job", "message", "webhook"]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float

    def backoff_seconds(self, attempts: int) -> float:
        """How long to wait after the `attempts`-th failed attempt."""
        return min(self.base_seconds * (2 ** max(attempts - 1, 0)), self.max_seconds)

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts

    def next_attempt_at(self, attempts: int, now: datetime) -> datetime | None:
        """When to try again after the `attempts`-th failure; None when the item is dead."""
        if self.exhausted(attempts):
            return None
        return now + timedelta(seconds=self.backoff_seconds(attempts))


def policy(kind: RetryKind, settings: Settings | None = None) -> RetryPolicy:
    """The policy of one kind of item, read from settings each time (tests and operators change them)."""
    s = settings or get_settings()
    if kind == "job":
        return RetryPolicy(s.job_max_attempts, s.job_backoff_base_seconds, s.job_backoff_max_seconds)
    if kind == "message":
        return RetryPolicy(s.message_max_attempts, s.message_backoff_base_seconds, s.message_backoff_max_seconds)
    return RetryPolicy(s.webhook_max_attempts, s.webhook_backoff_base_seconds, s.webhook_backoff_max_seconds)


class Retried(Protocol):
    """What an item tried again later carries (an outbox event, a message, a webhook delivery)."""

    status: str
    attempts: int
    last_error: str | None


def revive(item: Retried, *, status: str, due_at: datetime, due_field: str = "next_attempt_at") -> None:
    """Give an item a fresh start, as the admin retry of a dead one does: `status` (the item's waiting
    state), no attempts counted, no last error, due at `due_at` (held in `due_field`)."""
    item.status, item.attempts, item.last_error = status, 0, None
    setattr(item, due_field, due_at)


def error_text(exc: BaseException, limit: int = 2000) -> str:
    """How a failure is recorded on the item (`last_error`)."""
    return f"{type(exc).__name__}: {exc}"[:limit]
