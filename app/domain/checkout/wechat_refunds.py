"""WeChat Pay's part of a refund: asking WeChat once the refund has committed, and its refund notifications.

A refund's WeChat allocations get their `out_refund_no` (`<refund_no>-<n>`) in the refund's own transaction
(refunds.py). WeChat is asked after that commits, by the worker (`refund.wechat_requested`, see handlers.py),
with the stored number, between short transactions of its own: WeChat treats every request with one
out_refund_no as the same refund, so a timeout, a crash or a rerun asks again and never for a second refund.
A definite refusal marks the refund `failed` (the other tenders' returns stay, for finance). WeChat's signed
refund notification then settles each allocation once, under its row lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.clock import utcnow
from app.core.context import RequestContext, current_context, reset_context, set_context
from app.core.db import SessionFactory
from app.core.errors import NotFound
from app.core.events import emit
from app.domain.checkout.events import REFUND_COMPLETED, REFUND_FAILED
from app.domain.checkout.models import Order, Payment, Refund, RefundAllocation
from app.domain.checkout.orders import pay_client
from app.domain.checkout.refunds import refund_payload
from app.integrations.wechat.pay import NotificationRejected, PayError

REFUND_EVENTS = {"REFUND.SUCCESS": "SUCCESS", "REFUND.ABNORMAL": "ABNORMAL", "REFUND.CLOSED": "CLOSED"}


# ---------------------------------------------------------------- asking WeChat (after the refund committed)


@dataclass(frozen=True)
class _Ask:
    """One WeChat allocation to ask WeChat for, as committed."""

    allocation_id: UUID
    out_refund_no: str
    amount: int
    out_trade_no: str
    payment_total: int
    reason: str


async def request_refunds(sessions: SessionFactory, tenant_id: UUID, refund_id: UUID) -> None:
    """Ask WeChat for each pending WeChat allocation of a committed refund. Nothing is held open while WeChat
    answers: the asks are read in one short transaction and each answer is recorded in another, under the
    allocation's and the refund's row locks (the notification's order), and only if nothing settled it
    meanwhile. An open outcome (a timeout, a 5xx, or WeChat's "try again later": FREQUENCY_LIMITED,
    SYSTEM_ERROR, NOT_ENOUGH) raises, and the outbox retries with the same out_refund_no, with backoff, until
    the event is dead-lettered (then `POST /outbox/{id}/retry` asks again); only a definitive refusal (a
    verified 4xx answer, `PayError.refused`) fails the refund, as an ABNORMAL notification would, and the
    remaining allocations are not asked."""
    async with sessions(tenant_id) as session:
        asks = await _pending_asks(session, tenant_id, refund_id)
    if not asks:
        return
    client = pay_client()
    if client is None:
        raise RuntimeError("WeChat Pay is not configured: a WeChat payment cannot be refunded")
    for ask in asks:
        try:
            answer = await client.refund(out_trade_no=ask.out_trade_no, out_refund_no=ask.out_refund_no,
                                         refund_fen=ask.amount, total_fen=ask.payment_total, reason=ask.reason)
        except PayError as exc:
            if exc.refused:
                async with sessions(tenant_id) as session:
                    await _record_refusal(session, tenant_id, refund_id, ask, exc)
                return
            raise  # unknown outcome: retried with the same out_refund_no
        async with sessions(tenant_id) as session:
            await _record_answer(session, tenant_id, refund_id, ask, answer)


async def _pending_asks(session: AsyncSession, tenant_id: UUID, refund_id: UUID) -> list[_Ask]:
    """The refund's WeChat allocations not asked for yet (none unless the refund is processing)."""
    refund = await session.get(Refund, (tenant_id, refund_id))
    if refund is None or refund.status != "processing":
        return []
    rows = (await session.execute(
        select(RefundAllocation, Payment)
        .join(Payment, (Payment.tenant_id == RefundAllocation.tenant_id) & (Payment.id == RefundAllocation.payment_id))
        .where(RefundAllocation.tenant_id == tenant_id, RefundAllocation.refund_id == refund.id,
               RefundAllocation.method == "wechat_pay", RefundAllocation.status == "pending",
               RefundAllocation.wechat_refund_id.is_(None))
        .order_by(RefundAllocation.out_refund_no))).all()
    return [_Ask(allocation.id, allocation.out_refund_no, allocation.amount, payment.out_trade_no, payment.amount,
                 refund.reason) for allocation, payment in rows]


async def _locked(session: AsyncSession, tenant_id: UUID, refund_id: UUID,
                  ask: _Ask) -> tuple[Refund, RefundAllocation]:
    # The allocation first, then the refund: the order the notification takes them in.
    allocation = await session.get(RefundAllocation, (tenant_id, ask.allocation_id), with_for_update=True,
                                   populate_existing=True)
    refund = await session.get(Refund, (tenant_id, refund_id), with_for_update=True, populate_existing=True)
    assert allocation is not None and refund is not None  # allocations and refunds are never deleted
    return refund, allocation


async def _record_answer(session: AsyncSession, tenant_id: UUID, refund_id: UUID, ask: _Ask,
                         answer: dict[str, Any]) -> None:
    refund, allocation = await _locked(session, tenant_id, refund_id, ask)
    if allocation.wechat_refund_id is None and isinstance(answer.get("refund_id"), str):
        allocation.wechat_refund_id = answer["refund_id"]
    # WeChat sometimes settles at once; the notification then finds the allocation settled and does nothing.
    if answer.get("status") == "SUCCESS" and allocation.status == "pending":
        allocation.status, allocation.succeeded_at = "succeeded", utcnow()
    session.add(allocation)
    await session.flush()
    await complete_if_settled(session, refund)


async def _record_refusal(session: AsyncSession, tenant_id: UUID, refund_id: UUID, ask: _Ask,
                          exc: PayError) -> None:
    refund, allocation = await _locked(session, tenant_id, refund_id, ask)
    if allocation.status != "pending" or refund.status != "processing":
        return  # settled meanwhile (by a notification, or another run)
    payment = await session.get(Payment, (tenant_id, allocation.payment_id))
    await _fail_allocation(session, refund, allocation, payment, outcome=exc.wechat_code or "REFUSED",
                           detail={"wechat_message": exc.wechat_message})


async def complete_if_settled(session: AsyncSession, refund: Refund) -> bool:
    """Mark a processing refund completed once every allocation has succeeded (exactly once)."""
    if refund.status != "processing":
        return False
    pending = (await session.execute(select(func.count()).select_from(RefundAllocation).where(
        RefundAllocation.tenant_id == refund.tenant_id, RefundAllocation.refund_id == refund.id,
        RefundAllocation.status != "succeeded"))).scalar_one()
    if pending:
        return False
    refund.status, refund.completed_at = "completed", utcnow()
    refund.updated_at = refund.completed_at
    session.add(refund)
    await session.flush()
    await emit(session, REFUND_COMPLETED, refund_payload(refund))
    return True


def refund_time(value: Any) -> datetime | None:
    """WeChat's `success_time` (RFC 3339), when it is one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


# ---------------------------------------------------------------- WeChat refund notifications


async def handle_refund_notification(sessions: SessionFactory, headers: Mapping[str, str], body: bytes) -> None:
    """Settle one WeChat refund allocation from WeChat's signed refund notification.

    `parse_notification` proves origin and freshness (forged, tampered or stale → `NotificationRejected`,
    a 4xx, so nothing is touched). The allocation is found by `out_refund_no` (a system lookup: the
    notification names no tenant) and must match the notification's order and amount. SUCCESS marks it
    succeeded once — under a row lock, so the fifth delivery (or a concurrent one) finds it settled and
    does nothing — and completes the refund when it was the last. ABNORMAL / CLOSED marks it failed and the
    refund `failed`, giving its amount back to the order's refundable total: the money did not leave, and
    finance settles it by hand (WeChat's 异常退款 needs the merchant platform anyway). The notification comes
    with no caller's transaction: the lookup and the settling each open their own from `sessions`.
    """
    client = pay_client()
    if client is None:
        raise NotFound("WeChat Pay is not configured", code="wechat_pay_disabled")
    note = client.parse_notification(headers, body)
    resource = note["resource"]
    outcome = REFUND_EVENTS.get(note["event_type"]) or resource.get("refund_status")
    out_refund_no = resource.get("out_refund_no")
    if outcome not in ("SUCCESS", "ABNORMAL", "CLOSED") or not isinstance(out_refund_no, str):
        raise NotificationRejected("malformed", "not a refund notification")
    ctx = current_context()
    token = set_context(RequestContext(request_id=ctx.request_id, ip=ctx.ip, actor_type="system",
                                       actor_id="wechat-pay-refund-notify"))
    try:
        await _settle_allocation(sessions, note, resource, outcome, out_refund_no)
    finally:
        reset_context(token)


async def _settle_allocation(sessions: SessionFactory, note: dict[str, Any], resource: dict[str, Any], outcome: str,
                             out_refund_no: str) -> None:
    async with sessions(system=True) as lookup:
        tenant_id = (await lookup.execute(select(RefundAllocation.tenant_id).where(
            RefundAllocation.out_refund_no == out_refund_no))).scalars().first()
    if tenant_id is None:
        raise NotificationRejected("malformed", "unknown out_refund_no")
    async with sessions(tenant_id) as session:
        allocation = (await session.exec(select(RefundAllocation).where(
            RefundAllocation.tenant_id == tenant_id, RefundAllocation.out_refund_no == out_refund_no)
            .with_for_update().execution_options(populate_existing=True))).one()
        payment = await session.get(Payment, (tenant_id, allocation.payment_id))
        amount = resource.get("amount") if isinstance(resource.get("amount"), dict) else {}
        if resource.get("out_trade_no") != payment.out_trade_no or amount.get("refund") != allocation.amount:
            raise NotificationRejected("malformed", "the notification does not match the refund we asked for")
        if allocation.status != "pending":
            return  # settled by an earlier delivery
        refund = await session.get(Refund, (tenant_id, allocation.refund_id), with_for_update=True,
                                   populate_existing=True)
        if isinstance(resource.get("refund_id"), str):
            allocation.wechat_refund_id = resource["refund_id"]
        if outcome == "SUCCESS":
            allocation.status = "succeeded"
            allocation.succeeded_at = refund_time(resource.get("success_time")) or utcnow()
            session.add(allocation)
            await session.flush()
            audit.record(session, "refund.wechat_succeeded", "refund", refund.id, out_refund_no=out_refund_no,
                         amount=allocation.amount, notification=note["id"])
            await complete_if_settled(session, refund)
            return
        await _fail_allocation(session, refund, allocation, payment, outcome=outcome,
                               detail={"notification": note["id"]})


async def _fail_allocation(session: AsyncSession, refund: Refund, allocation: RefundAllocation, payment: Payment,
                           *, outcome: str, detail: dict[str, Any]) -> None:
    """The WeChat part of a refund did not happen: its amount goes back to the order's refundable total
    and the refund is `failed`; what the other tenders already returned stays, for finance to settle."""
    allocation.status = "failed"
    session.add(allocation)
    order = await session.get(Order, (refund.tenant_id, refund.order_id), with_for_update=True,
                              populate_existing=True)
    payment.refunded_amount -= allocation.amount
    order.refunded_total -= allocation.amount
    order.status = "paid" if order.refunded_total == 0 else "partially_refunded"
    refund.status, refund.updated_at = "failed", utcnow()
    session.add_all([payment, order, refund])
    await session.flush()
    audit.record(session, "refund.wechat_failed", "refund", refund.id, out_refund_no=allocation.out_refund_no,
                 amount=allocation.amount, outcome=outcome, **detail)
    await emit(session, REFUND_FAILED, refund_payload(refund, out_refund_no=allocation.out_refund_no,
                                                      outcome=outcome))
