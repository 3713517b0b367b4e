"""Booking's scheduled work: waitlist offers whose held slot was not taken in time."""

from __future__ import annotations

import logging

from sqlalchemy import text

from app.core.clock import utcnow
from app.core.context import RequestContext, reset_context, set_context
from app.core.db import SessionFactory
from app.core.events import scheduled
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
    token = set_context(RequestContext(actor_type="system", actor_id="waitlist-offer-expiry"))
    expired: dict[str, int] = {}
    try:
        now = utcnow()
        async with sessions(system=True) as session:
            tenants = (await session.execute(_DUE_TENANTS, {"now": now})).scalars().all()
        for tenant_id in tenants:
            try:
                async with sessions(tenant_id) as session:
                    count = await waitlist_offers.expire_due_offers(session, tenant_id, now=now)
            except Exception:  # noqa: BLE001 - log and go on; the next run tries this tenant again
                log.exception("expiring waitlist offers failed", extra={"tenant_id": str(tenant_id)})
                continue
            expired[str(tenant_id)] = count
        return expired
    finally:
        reset_context(token)
