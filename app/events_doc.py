"""docs/events.md: every outbox topic, what it means, its payload and who consumes it — made from the registry.

The table is generated (`careloop export-events`), and a test fails when the committed file drifts from the
code, so it cannot go stale. A topic is consumed when a context's handler reacts to it (the care engine's
rule evaluation counts: a tenant's rules may trigger on it) or when integrators may subscribe to it as a
webhook; a topic that nothing consumes is listed by `unconsumed()` and fails the suite.
"""

from __future__ import annotations

from pathlib import Path

from app.core.events import TOPICS, consumers_of, discover
from app.domain.webhooks.topics import WEBHOOK_TOPICS

EVENTS_DOC = Path(__file__).resolve().parents[1] / "docs" / "events.md"


def _short(handler: str) -> str:
    return handler.removeprefix("app.domain.")


def consumers(topic: str) -> list[str]:
    """Who reacts to `topic`: handlers by their module path (sorted: the order they registered in depends
    on which modules were imported first), and `webhook` when integrators may subscribe."""
    found = sorted(_short(name) for name in consumers_of(topic))
    if topic in WEBHOOK_TOPICS:
        found.append("webhook")
    return found


def unconsumed() -> list[str]:
    discover()
    return sorted(name for name in TOPICS if not consumers(name))


def events_markdown() -> str:
    discover()
    lines = [
        "# Events",
        "",
        "Generated from the code by `careloop export-events`; do not edit by hand (a test compares it with the",
        "code). Each event is a row of the outbox, written in the transaction of the change it reports; the worker",
        "hands it to every consumer at least once, and each consumer's effect happens once.",
        "",
        "| topic | meaning | payload | declared in | consumed by |",
        "|---|---|---|---|---|",
    ]
    for name, declared in sorted(TOPICS.items()):
        payload = ", ".join(f"`{key}`" for key in declared.payload) or "—"
        used = "<br>".join(f"`{c}`" for c in consumers(name)) or "**nobody**"
        lines.append(f"| `{name}` | {declared.meaning} | {payload} | `{_short(declared.declared_in)}` | {used} |")
    return "\n".join(lines) + "\n"
