"""Webhook retries run by the worker: the deliveries whose next attempt is due, across tenants."""

from __future__ import annotations

from sqlalchemy import text

from app.core.clock import utcnow
from app.core.context import RequestContext, reset_context, set_context
from app.core.db import SessionFactory
from app.core.events import scheduled
from app.domain.webhooks import service

CRON_BATCH = 200

_DUE = text(
    "SELECT d.tenant_id, d.id FROM webhook_deliveries d JOIN webhook_subscriptions s "
    "  ON s.tenant_id = d.tenant_id AND s.id = d.subscription_id AND s.active "
    "WHERE d.status IN ('pending', 'failed') AND d.next_attempt_at <= :now "
    "ORDER BY d.next_attempt_at LIMIT :limit")


@scheduled(second={45})
async def run_webhook_deliveries(sessions: SessionFactory) -> dict[str, int]:
    """Every minute: send the deliveries whose next attempt is due, across tenants."""
    token = set_context(RequestContext(actor_type="system", actor_id="webhooks"))
    try:
        async with sessions(system=True) as session:
            due = (await session.execute(_DUE, {"now": utcnow(), "limit": CRON_BATCH})).all()
        return await service.deliver_many(sessions, [(row.tenant_id, row.id) for row in due]) if due else {}
    finally:
        reset_context(token)
