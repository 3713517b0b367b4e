"""Booking's scheduled work: waitlist offers whose held slot was not taken in time."""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.db import SessionFactory
from app.core.events import scheduled
from app.core.housekeeping import for_each_due_tenant
from app.domain.booking import waitlist_offers

log = logging.getLogger("careloop.booking")

# Tenants with an offer whose hold has run out (the partial index on hold_expires_at finds them).
_DUE_TENANTS = text("SELECT DISTINCT tenant_id FROM waitlist_entries WHERE status = 'offered' "
                    "AND hold_expires_at <= :now LIMIT 500")


@scheduled(second={15, 45})
async def run_waitlist_offer_expiry(sessions: SessionFactory) -> dict[str, int]:
    """Expire offers not taken in time: the slot is released and offered to the next waiter (who is messaged
    in turn). One transaction per tenant; offers are locked and skipped when another run holds them, so a
    second run at the same moment expires nothing twice."""
    async def step(session: AsyncSession, tenant_id: UUID, now: datetime) -> int:
        return await waitlist_offers.expire_due_offers(session, tenant_id, now=now)

    return await for_each_due_tenant(sessions, _DUE_TENANTS, step, actor_id="waitlist-offer-expiry", log=log,
                                     failure="expiring waitlist offers failed")
