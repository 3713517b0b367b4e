"""Scheduled jobs as the worker runs them: each context's `@scheduled` job bound to the session factory.

`from app.workers.scheduled import run_card_housekeeping` gives the job as arq calls it (a `ctx` argument
that may be omitted, keyword arguments passed through), so tests and `careloop` commands run a job exactly
as the worker does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from app.core.db import session_scope
from app.core.events import JOBS, ScheduledJob, discover

BoundJob = Callable[..., Awaitable[Any]]


def bind(job: ScheduledJob) -> BoundJob:
    async def run(ctx: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return await job.fn(session_scope, **kwargs)

    run.__name__ = run.__qualname__ = job.name
    run.__doc__ = job.fn.__doc__
    return run


def all_jobs() -> list[ScheduledJob]:
    discover()
    return sorted(JOBS.values(), key=lambda job: job.name)


def __getattr__(name: str) -> BoundJob:
    discover()
    job = JOBS.get(name)
    if job is None:
        raise AttributeError(f"no scheduled job named {name}")
    return bind(job)
