"""Card housekeeping run by the worker: expiry, and the expiring-soon notice."""

from __future__ import annotations

import logging

from sqlalchemy import text

from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.context import RequestContext, reset_context, set_context
from app.core.db import SessionFactory
from app.core.events import scheduled
from app.domain.cards import service as cards

log = logging.getLogger("careloop.cards")
BATCH = 500

_DUE = text(
    "SELECT tenant_id, id FROM cards WHERE status IN ('active', 'exhausted') AND expires_at <= :now "
    "ORDER BY expires_at LIMIT :limit")
_EXPIRING = text(
    "SELECT tenant_id, id FROM cards WHERE status = 'active' AND expiring_notified_at IS NULL "
    "AND expires_at > :now AND expires_at <= :soon ORDER BY expires_at LIMIT :limit")


@scheduled(minute={5}, run_at_startup=True)
async def run_card_housekeeping(sessions: SessionFactory) -> dict[str, int]:
    """Expire due cards and announce those expiring within a week; each card in its own transaction,
    so one bad card cannot hold up the rest, and a rerun finds only what is still to do."""
    token = set_context(RequestContext(actor_type="system", actor_id="card-housekeeping"))
    done = {"expired": 0, "expiring": 0}
    try:
        now = utcnow()
        async with sessions(system=True) as session:
            due = (await session.execute(_DUE, {"now": now, "limit": BATCH})).all()
            soon = (await session.execute(_EXPIRING, {"now": now, "soon": now + cards.EXPIRING_NOTICE,
                                                      "limit": BATCH})).all()
        for rows, step, key in ((due, cards.expire_card, "expired"), (soon, cards.notify_expiring, "expiring")):
            for tenant_id, card_id in rows:
                try:
                    async with sessions(tenant_id) as session:
                        done[key] += await step(session, Actor.system(tenant_id), card_id)
                except Exception:  # noqa: BLE001 - log and go on with the other cards
                    log.exception("card housekeeping failed", extra={"card_id": str(card_id)})
        return done
    finally:
        reset_context(token)
