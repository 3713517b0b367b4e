"""Checkout housekeeping run by the worker: WeChat Pay orders left unpaid past their `expires_at`."""

from __future__ import annotations

import logging

from sqlalchemy import text

from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.context import RequestContext, reset_context, set_context
from app.core.db import SessionFactory
from app.core.events import scheduled
from app.domain.checkout import orders, wechat_payments

log = logging.getLogger("careloop.checkout")
BATCH = 200

# Pending orders past their expiry whose WeChat payment is still open. (One whose payment succeeded but
# whose completion failed waits for staff: see wechat_payments.record_paid_but_incomplete.)
_EXPIRED = text(
    "SELECT o.tenant_id, o.id FROM orders o WHERE o.status = 'pending' AND o.expires_at <= :now "
    "AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.tenant_id = o.tenant_id AND p.order_id = o.id "
    "AND p.method = 'wechat_pay' AND p.status = 'succeeded') ORDER BY o.expires_at LIMIT :limit")


@scheduled(second={30})
async def run_wechat_order_timeouts(sessions: SessionFactory) -> dict[str, int]:
    """For each expired pending order ask WeChat: paid → complete it as the notification would; otherwise
    close the WeChat order and cancel ours, releasing the held tenders. Each order in its own transaction
    under its row lock, so a notification arriving at the same moment and a second run of this job both
    find the order settled and do nothing (idempotent)."""
    token = set_context(RequestContext(actor_type="system", actor_id="wechat-order-timeouts"))
    done: dict[str, int] = {}
    try:
        client = orders.pay_client()
        async with sessions(system=True) as session:
            due = (await session.execute(_EXPIRED, {"now": utcnow(), "limit": BATCH})).all()
        for tenant_id, order_id in due:
            try:
                async with sessions(tenant_id) as session:
                    result = await wechat_payments.expire_order(session, Actor.system(tenant_id), order_id, client)
            except Exception:  # noqa: BLE001 - log and go on; the next run retries this order
                log.exception("expiring order failed", extra={"order_id": str(order_id)})
                result = "failed"
            done[result] = done.get(result, 0) + 1
        return done
    finally:
        reset_context(token)
