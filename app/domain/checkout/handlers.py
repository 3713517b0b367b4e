"""Checkout's reactions to events."""

from __future__ import annotations

from uuid import UUID

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.db import SessionFactory
from app.core.events import OutboxEvent, on, on_outside_transaction
from app.domain.booking.events import APPOINTMENT_COMPLETED
from app.domain.checkout import patient_orders, settings_service, wechat_refunds
from app.domain.checkout.events import (
    ORDER_COMPLETION_FAILED,
    REFUND_LEVEL_APPROVED,
    REFUND_REQUESTED,
    WECHAT_REFUND_TOPIC,
)
from app.domain.checkout.models import Order, Refund, RefundApproval
from app.domain.iam import service as iam
from app.domain.messaging import alerts
from app.domain.tenancy import service as tenancy


@on_outside_transaction(WECHAT_REFUND_TOPIC)
async def request_wechat_refunds(sessions: SessionFactory, event: OutboxEvent) -> None:
    """A refund with WeChat Pay parts committed: ask WeChat for them, with their stored out_refund_no (WeChat's
    refund API is called between transactions, never inside one; see wechat_refunds.request_refunds)."""
    await wechat_refunds.request_refunds(sessions, event.tenant_id, UUID(event.payload["refund_id"]))


# ---------------------------------------------------------------- alerts to staff (WeCom)


@on(REFUND_REQUESTED, REFUND_LEVEL_APPROVED)
async def alert_refund_approvers(session: AsyncSession, event: OutboxEvent) -> None:
    """A refund waits for a level's decision: tell who may give it (they hold `refunds:approve`, act in the
    order's store and hold a role of that level; the requester and earlier deciders cannot decide it)."""
    refund = await session.get(Refund, (event.tenant_id, UUID(event.payload["refund_id"])))
    if refund is None or refund.status != "pending_approval":
        return  # executed at once (under the threshold), or decided before the alert went out
    level = int(event.payload.get("next_level") or 1)
    if refund.levels_approved + 1 != level:
        return  # this level was decided meanwhile; the next one has its own event
    actor = Actor.system(event.tenant_id)
    levels = (await settings_service.load(session, actor)).approval_levels
    if not levels:
        return
    roles = list(levels[min(level, len(levels)) - 1])
    deciders = set((await session.exec(select(RefundApproval.decided_by_id).where(
        RefundApproval.tenant_id == event.tenant_id, RefundApproval.refund_id == refund.id))).all())
    excluded = deciders | {refund.requested_by_id}
    approvers = [s for s in await iam.active_staff_with_permission(
        session, event.tenant_id, settings_service.APPROVE_PERMISSION, store_id=refund.store_id, roles=roles)
        if s not in excluded]
    order = await session.get(Order, (event.tenant_id, refund.order_id))
    store = await tenancy.store_row(session, event.tenant_id, refund.store_id)
    variables = {"store_name": store.name if store else "", "order_no": order.order_no if order else "",
                 "amount_yuan": f"{refund.amount / 100:.2f}", "reason": refund.reason, "level": str(level)}
    await alerts.send_staff_alert(session, event.tenant_id, alerts.REFUND_PENDING_APPROVAL, staff_ids=approvers,
                                  variables=variables, subject=str(event.id))


@on(ORDER_COMPLETION_FAILED)
async def alert_front_desk(session: AsyncSession, event: OutboxEvent) -> None:
    """Money arrived for an order that could not be completed: the front desk of its store settles it by hand."""
    order = await session.get(Order, (event.tenant_id, UUID(event.payload["order_id"])))
    if order is None:
        return
    store = await tenancy.store_row(session, event.tenant_id, order.store_id)
    desk = await iam.active_staff_with_role(session, event.tenant_id, "front_desk", store_id=order.store_id)
    await alerts.send_staff_alert(session, event.tenant_id, alerts.ORDER_COMPLETION_FAILED, staff_ids=desk,
                                  subject=str(event.id), variables={
                                      "store_name": store.name if store else "", "order_no": order.order_no,
                                      "error": str(event.payload.get("detail") or event.payload.get("error") or "")})


# ---------------------------------------------------------------- prepaid appointments


@on(APPOINTMENT_COMPLETED)
async def settle_prepaid_service(session: AsyncSession, event: OutboxEvent) -> None:
    """A completed appointment the patient prepaid in the mini-program: its service record is settled by that
    order, so it does not wait for payment at the front desk (see patient_orders.settle_prepaid_service)."""
    record_id = event.payload.get("service_record_id")
    if record_id:
        await patient_orders.settle_prepaid_service(session, event.tenant_id, UUID(event.payload["appointment_id"]),
                                                    UUID(record_id))
