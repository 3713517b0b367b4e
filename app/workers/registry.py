"""Which code reacts to which outbox topic. Contexts register handlers at import time:

    @on("card.low_balance")
    async def create_renewal_task(session, event): ...

A handler runs in its own transaction scoped to the event's tenant; the (event, handler) pair is
recorded in that same transaction, so a handler whose work committed is never run again.

`@on("*")` registers a handler for every topic (outgoing webhooks fan out from it). It runs after the
topic's own handlers; it must be cheap for topics it does not care about, as it sees every event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.outbox import OutboxEvent

Handler = Callable[[AsyncSession, OutboxEvent], Awaitable[None]]

HANDLERS: dict[str, list[tuple[str, Handler]]] = {}
WILDCARD = "*"


def handler_name(fn: Handler) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def on(*topics: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for topic in topics:
            entries = HANDLERS.setdefault(topic, [])
            if handler_name(fn) not in {name for name, _ in entries}:
                entries.append((handler_name(fn), fn))
        return fn

    return register


def handlers_for(topic: str) -> list[tuple[str, Handler]]:
    """The topic's own handlers, then the wildcard ones (a handler registered for both runs once)."""
    own = list(HANDLERS.get(topic, []))
    names = {name for name, _ in own}
    return own + [(name, fn) for name, fn in HANDLERS.get(WILDCARD, []) if name not in names]
