"""Scheduled work done tenant by tenant: find the tenants with something due, then one transaction each."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

from sqlalchemy import TextClause
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.clock import utcnow
from app.core.context import RequestContext, reset_context, set_context
from app.core.db import SessionFactory

TenantStep = Callable[[AsyncSession, UUID, datetime], Awaitable[int]]


async def for_each_due_tenant(sessions: SessionFactory, due_tenants: TextClause, step: TenantStep, *,
                              actor_id: str, log: logging.Logger, failure: str) -> dict[str, int]:
    """Run `step(session, tenant_id, now)` for each tenant `due_tenants` (a system query taking `:now`) finds,
    one transaction per tenant, as the system actor `actor_id`. A tenant whose step fails is logged
    (`failure`) and left for the next run; the others go on. Answers what each step counted, by tenant."""
    token = set_context(RequestContext(actor_type="system", actor_id=actor_id))
    done: dict[str, int] = {}
    try:
        now = utcnow()
        async with sessions(system=True) as session:
            tenants = (await session.execute(due_tenants, {"now": now})).scalars().all()
        for tenant_id in tenants:
            try:
                async with sessions(tenant_id) as session:
                    done[str(tenant_id)] = await step(session, tenant_id, now)
            except Exception:  # noqa: BLE001 - log and go on; the next run tries this tenant again
                log.exception(failure, extra={"tenant_id": str(tenant_id)})
        return done
    finally:
        reset_context(token)
