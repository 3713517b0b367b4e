"""Domain events: which topics exist, how they are emitted, and who reacts to them.

A context declares the topics it emits in `domain/<ctx>/events.py`:

    BOOKED = topic("appointment.booked", "An appointment was booked", "appointment_id", "member_id", ...)

emits them with `emit(session, BOOKED, payload)` (a row in the outbox, committed with the change), and keeps
its reactions in `domain/<ctx>/handlers.py` and its scheduled jobs in `domain/<ctx>/jobs.py`:

    @on("card.sessions_low")
    async def create_renewal_task(session, event): ...      # the dispatcher's session; flush, never commit

    @on_outside_transaction("message.send")
    async def deliver(sessions, event): ...                  # calls out (WeChat, HTTP) between transactions

    @scheduled(minute={5}, run_at_startup=True)
    async def run_card_housekeeping(sessions): ...           # a cron job, given a session factory

The worker imports those modules of every context (`discover`), so nothing is listed by hand. A handler runs
at least once; the dispatcher records each (event, handler) pair it completes, so effects happen once.

`@on(WILDCARD)` registers a handler for every topic (outgoing webhooks fan out from it). It runs after the
topic's own handlers and must be cheap for topics it does not care about.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.db import SessionFactory
from app.core.outbox import OutboxEvent, emit

__all__ = [
    "CONTEXT_MODULES", "HANDLERS", "JOBS", "TOPICS", "WILDCARD", "CallOut", "Handler", "OutboxEvent", "ScheduledJob",
    "Topic", "consumers_of", "discover", "emit", "handler_name", "handlers_for", "on", "on_outside_transaction",
    "outside_transaction", "scheduled", "topic",
]

Handler = Callable[[AsyncSession, OutboxEvent], Awaitable[None]]
CallOut = Callable[[SessionFactory, OutboxEvent], Awaitable[None]]
Job = Callable[[SessionFactory], Awaitable[Any]]

WILDCARD = "*"
# The modules of a context that the worker imports: declarations, reactions, scheduled jobs.
CONTEXT_MODULES = ("events", "handlers", "jobs")


@dataclass(frozen=True)
class Topic:
    name: str
    meaning: str
    payload: tuple[str, ...]
    declared_in: str


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    fn: Job
    cron: dict[str, Any] = field(default_factory=dict)
    run_at_startup: bool = False


TOPICS: dict[str, Topic] = {}
# topic -> [(handler name, handler)], in registration order
HANDLERS: dict[str, list[tuple[str, Callable[..., Awaitable[None]]]]] = {}
_OUTSIDE = "__careloop_outside_transaction__"
JOBS: dict[str, ScheduledJob] = {}


def _caller_module(depth: int = 2) -> str:
    return str(sys._getframe(depth).f_globals.get("__name__", "?"))


def topic(name: str, meaning: str, *payload: str) -> str:
    """Declare a topic this context emits; returns the name, for `emit(session, NAME, ...)`."""
    declared = Topic(name, meaning, tuple(payload), _caller_module())
    existing = TOPICS.get(name)
    if existing is not None and existing.declared_in != declared.declared_in:
        raise RuntimeError(f"topic {name} declared twice: {existing.declared_in} and {declared.declared_in}")
    TOPICS[name] = declared
    return name


def handler_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _register(topics: tuple[str, ...], fn: Callable[..., Awaitable[None]]) -> None:
    name = handler_name(fn)
    for name_of_topic in topics:
        entries = HANDLERS.setdefault(name_of_topic, [])
        if name not in {registered for registered, _ in entries}:
            entries.append((name, fn))


def outside_transaction(fn: Callable[..., Any]) -> bool:
    """Does this handler take a session factory (and call out) rather than the dispatcher's session?"""
    return bool(getattr(fn, _OUTSIDE, False))


def on(*topics: str) -> Callable[[Handler], Handler]:
    """React to the topics inside the dispatcher's transaction (flush, never commit)."""

    def register(fn: Handler) -> Handler:
        _register(topics, fn)
        return fn

    return register


def on_outside_transaction(*topics: str) -> Callable[[CallOut], CallOut]:
    """React to the topics with work that calls out (WeChat, webhooks): the handler gets a session factory
    and opens short transactions around the call. It must be idempotent by its own records: it runs again
    when it fails, and when the worker dies before the dispatcher records it as done."""

    def register(fn: CallOut) -> CallOut:
        setattr(fn, _OUTSIDE, True)
        _register(topics, fn)
        return fn

    return register


def handlers_for(name_of_topic: str) -> list[tuple[str, Callable[..., Awaitable[None]]]]:
    """The topic's own handlers, then the wildcard ones (a handler registered for both runs once)."""
    own = list(HANDLERS.get(name_of_topic, []))
    names = {name for name, _ in own}
    return own + [(name, fn) for name, fn in HANDLERS.get(WILDCARD, []) if name not in names]


def scheduled(*, run_at_startup: bool = False, **cron: Any) -> Callable[[Job], Job]:
    """A periodic job (arq cron fields: `hour`, `minute`, `second`, …), given a session factory."""

    def register(fn: Job) -> Job:
        JOBS[fn.__name__] = ScheduledJob(fn.__name__, fn, cron, run_at_startup)
        return fn

    return register


def discover(package: str = "app.domain") -> list[str]:
    """Import every context's `events`, `handlers` and `jobs` modules; returns the modules imported."""
    root = importlib.import_module(package)
    imported: list[str] = []
    for info in pkgutil.iter_modules(root.__path__):
        if not info.ispkg:
            continue
        for part in CONTEXT_MODULES:
            name = f"{package}.{info.name}.{part}"
            if importlib.util.find_spec(name) is None:
                continue
            importlib.import_module(name)
            imported.append(name)
    return imported


def consumers_of(name_of_topic: str) -> list[str]:
    """The handlers that react to a topic (not counting the wildcard)."""
    return [name for name, _ in HANDLERS.get(name_of_topic, [])]

