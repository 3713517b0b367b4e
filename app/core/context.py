"""Who is acting and on which request: set per request (or job), read by audit and logs."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    request_id: str | None = None
    ip: str | None = None
    actor_type: str = "system"  # staff | patient | integration | system | anonymous
    actor_id: str | None = None


_current: ContextVar[RequestContext] = ContextVar("careloop_request", default=RequestContext())  # noqa: B039 - frozen


def current_context() -> RequestContext:
    return _current.get()


def set_context(ctx: RequestContext):
    return _current.set(ctx)


def reset_context(token) -> None:
    _current.reset(token)
