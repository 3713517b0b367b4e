"""Checkout's reactions to events."""

from __future__ import annotations

from uuid import UUID

from app.core.db import SessionFactory
from app.core.events import OutboxEvent, on_outside_transaction
from app.domain.checkout import wechat_refunds
from app.domain.checkout.events import WECHAT_REFUND_TOPIC


@on_outside_transaction(WECHAT_REFUND_TOPIC)
async def request_wechat_refunds(sessions: SessionFactory, event: OutboxEvent) -> None:
    """A refund with WeChat Pay parts committed: ask WeChat for them, with their stored out_refund_no (WeChat's
    refund API is called between transactions, never inside one; see wechat_refunds.request_refunds)."""
    await wechat_refunds.request_refunds(sessions, event.tenant_id, UUID(event.payload["refund_id"]))
