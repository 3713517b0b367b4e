"""WeChat Pay's side of an order: its signed payment notification, our own query when it is late, and closing
the WeChat order of one that timed out.

A WeChat Pay order stays `pending` until WeChat says it was paid: the notification (or the timeout job's
query) is checked against what we asked for and applied once, under the order's row lock, which cancel
and the timeout job take too (`orders.locked_order`), so concurrent deliveries queue and the second finds
the payment done.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.context import RequestContext, current_context, reset_context, set_context
from app.core.db import SessionFactory
from app.core.errors import AppError
from app.core.events import emit
from app.domain.checkout.events import ORDER_COMPLETION_FAILED, ORDER_PAID_AFTER_CANCEL
from app.domain.checkout.models import Payment
from app.domain.checkout.orders import complete_order, locked_order, order_payments, pay_client, release_order
from app.integrations.wechat.pay import NotificationRejected, PayError, WeChatPayClient, decrypt_resource

log = logging.getLogger("careloop.checkout")


@dataclass
class PaymentOutcome:
    result: str  # paid | duplicate | rejected | paid_after_cancel | not_paid
    reason: str | None = None


async def apply_wechat_payment(session: AsyncSession, actor: Actor, payment_id: UUID, transaction: dict[str, Any], *,
                               source: str, client: WeChatPayClient) -> PaymentOutcome:
    """WeChat says the payment `payment_id` was made (a verified notification, or our own query): check it
    against what we asked for and, once only, mark it paid and complete the order. Locks the order first
    (as cancel and the timeout job do), then the payment, so concurrent deliveries queue and the second
    finds it done."""
    peek = await session.get(Payment, (actor.tenant_id, payment_id))
    if peek is None:
        return PaymentOutcome("rejected", "unknown_order")
    order = await locked_order(session, actor.tenant_id, peek.order_id)
    payment = await session.get(Payment, (actor.tenant_id, payment_id), with_for_update=True, populate_existing=True)
    assert order is not None and payment is not None
    if payment.status == "succeeded":
        return PaymentOutcome("duplicate")
    amount = transaction.get("amount") if isinstance(transaction.get("amount"), dict) else {}
    problems = []
    if transaction.get("trade_state") != "SUCCESS":
        return PaymentOutcome("not_paid", str(transaction.get("trade_state")))
    if amount.get("total") != payment.amount or amount.get("currency", "CNY") != "CNY":
        problems.append("amount")
    if transaction.get("mchid") != client.config.mchid:
        problems.append("mchid")
    if transaction.get("appid") != client.config.appid:
        problems.append("appid")
    if problems:
        audit.record(session, "payment.wechat_rejected", "payment", payment.id, source=source,
                     reason="mismatch:" + ",".join(problems), out_trade_no=payment.out_trade_no,
                     expected_amount=payment.amount, notified_amount=amount.get("total"),
                     notified_mchid=transaction.get("mchid"), notified_appid=transaction.get("appid"),
                     transaction_id=transaction.get("transaction_id"))
        return PaymentOutcome("rejected", "mismatch:" + ",".join(problems))
    now = utcnow()
    payment.status, payment.succeeded_at, payment.updated_at = "succeeded", now, now
    payment.transaction_id = str(transaction.get("transaction_id") or "") or None
    session.add(payment)
    await session.flush()
    audit.record(session, "payment.wechat_paid", "payment", payment.id, source=source, amount=payment.amount,
                 transaction_id=payment.transaction_id, order=str(order.id))
    if order.status != "pending":
        # Paid after the order was cancelled (the payer finished on a stale page while it was closing):
        # the money arrived and is recorded, and someone has to give it back.
        await emit(session, ORDER_PAID_AFTER_CANCEL, {"order_id": str(order.id), "payment_id": str(payment.id),
                                                      "member_id": str(order.member_id), "amount": payment.amount})
        return PaymentOutcome("paid_after_cancel")
    if any(p.status != "succeeded" for p in await order_payments(session, actor.tenant_id, order.id)):
        return PaymentOutcome("paid")  # another tender is still open (not possible today: one WeChat tender)
    await complete_order(session, actor, order)
    return PaymentOutcome("paid")


async def find_wechat_payment(sessions: SessionFactory, out_trade_no: str) -> tuple[UUID, UUID] | None:
    """(tenant_id, payment_id) of a WeChat payment: a system lookup, because WeChat's notification names
    no tenant (the index ix_payments_out_trade_no serves it)."""
    if not isinstance(out_trade_no, str) or not out_trade_no:
        return None
    async with sessions(system=True) as session:
        row = (await session.execute(text(
            "SELECT tenant_id, id FROM payments WHERE out_trade_no = :o AND method = 'wechat_pay'"),
            {"o": out_trade_no})).first()
    return (row[0], row[1]) if row else None


async def record_rejected_notification(sessions: SessionFactory, tenant_id: UUID, payment_id: UUID, reason: str,
                                       detail: str) -> None:
    """A notification we refused, in the audit log of the tenant it named (only when its encrypted part
    proved readable with our key, so a stranger cannot write into a tenant's log)."""
    async with sessions(tenant_id) as session:
        audit.record(session, "payment.wechat_rejected", "payment", payment_id, source="notification",
                     reason=reason, detail=detail)


@dataclass
class NotifyAnswer:
    """What to answer WeChat: 204 (received; WeChat stops resending) or a 4xx/5xx with WeChat's
    `{"code": "FAIL", "message": …}` (WeChat resends later)."""

    status: int
    message: str | None = None


async def receive_wechat_notification(sessions: SessionFactory, headers: dict[str, str],
                                      body: bytes) -> NotifyAnswer:
    """A payment notification, from verification to the completed order, in WeChat's answer terms.

    Verification and decryption first (a forged, tampered or stale notification changes nothing); then
    the tenant is found by out_trade_no with a system lookup, and the tenant's own transaction checks and
    applies it (`apply_wechat_payment`: once only, under the order's row lock). The notification comes with
    no caller's transaction: each step opens its own from `sessions`."""
    client = pay_client()
    if client is None:
        return NotifyAnswer(404, "WeChat Pay is not configured here")
    try:
        note = client.parse_notification(headers, body)
    except NotificationRejected as exc:
        log.warning("wechat pay notification rejected: %s (%s)", exc.code, exc.detail)
        # Attribute it if its encrypted part opens with our key (AES-GCM proves whoever made it holds the
        # key, so a stranger cannot write into a tenant's audit log) — a replay or a re-signed copy, say.
        try:
            envelope = json.loads(body)
            resource = json.loads(decrypt_resource(client.config.api_v3_key, envelope["resource"]))
            found = await find_wechat_payment(sessions, resource.get("out_trade_no"))
        except Exception:  # noqa: BLE001 - unattributable: the log line above is all there is
            found = None
        if found is not None:
            await record_rejected_notification(sessions, found[0], found[1], exc.code, exc.detail)
        return NotifyAnswer(exc.status, exc.detail)
    if note["event_type"] != "TRANSACTION.SUCCESS":
        # Payment notifications only announce successes; anything else here has nothing for us to do.
        log.info("wechat pay notification %s ignored (event %s)", note["id"], note["event_type"])
        return NotifyAnswer(204)
    resource = note["resource"]
    found = await find_wechat_payment(sessions, resource.get("out_trade_no"))
    if found is None:
        log.warning("wechat pay notification for unknown out_trade_no %r", resource.get("out_trade_no"))
        return NotifyAnswer(404, "unknown out_trade_no")
    tenant_id, payment_id = found
    ctx = current_context()
    token = set_context(RequestContext(request_id=ctx.request_id, ip=ctx.ip, actor_type="system",
                                       actor_id="wechat-pay-notify"))
    try:
        async with sessions(tenant_id) as session:
            outcome = await apply_wechat_payment(session, Actor.system(tenant_id), payment_id, resource,
                                                 source="notification", client=client)
    except AppError as exc:
        # Paid, but the order could not be completed (a card template withdrawn meanwhile, a frozen card
        # to top up): keep the money on record, tell staff, and stop WeChat's resending.
        log.error("wechat pay: order completion failed for payment %s: %s", payment_id, exc.code)
        async with sessions(tenant_id) as session:
            await record_paid_but_incomplete(session, Actor.system(tenant_id), payment_id, resource, exc)
        return NotifyAnswer(204)
    finally:
        reset_context(token)
    if outcome.result == "rejected":
        return NotifyAnswer(400, f"rejected: {outcome.reason}")
    return NotifyAnswer(204)  # paid now, paid before (a repeat), or nothing to do


async def record_paid_but_incomplete(session: AsyncSession, actor: Actor, payment_id: UUID,
                                     transaction: dict[str, Any], error: AppError) -> None:
    payment = await session.get(Payment, (actor.tenant_id, payment_id), with_for_update=True, populate_existing=True)
    if payment is None or payment.status == "succeeded":
        return
    now = utcnow()
    payment.status, payment.succeeded_at, payment.updated_at = "succeeded", now, now
    payment.transaction_id = str(transaction.get("transaction_id") or "") or None
    session.add(payment)
    await session.flush()
    audit.record(session, "order.completion_failed", "order", payment.order_id, payment=str(payment.id),
                 error=error.code, detail=error.detail)
    await emit(session, ORDER_COMPLETION_FAILED, {"order_id": str(payment.order_id), "payment_id": str(payment.id),
                                                  "error": error.code, "detail": error.detail})


async def expire_order(session: AsyncSession, actor: Actor, order_id: UUID, client: WeChatPayClient | None) -> str:
    """The timeout job's step for one order past `expires_at`: ask WeChat; complete it if it was paid,
    else close the WeChat order and cancel ours (releasing the held tenders). Safe to run twice."""
    order = await locked_order(session, actor.tenant_id, order_id)
    if order is None or order.status != "pending" or order.expires_at is None or order.expires_at > utcnow():
        return "skipped"
    wechat = next((p for p in await order_payments(session, actor.tenant_id, order.id)
                   if p.method == "wechat_pay" and p.status == "pending"), None)
    if wechat is not None and client is not None:
        state = await _query(client, wechat.out_trade_no)
        if state.get("trade_state") == "SUCCESS":
            outcome = await apply_wechat_payment(session, actor, wechat.id, state, source="query", client=client)
            return outcome.result
        try:
            await client.close_order(wechat.out_trade_no)
        except PayError as exc:
            if exc.verified and exc.wechat_code == "ORDERPAID":  # paid between our query and the close
                state = await _query(client, wechat.out_trade_no)
                outcome = await apply_wechat_payment(session, actor, wechat.id, state, source="query", client=client)
                return outcome.result
            if not (exc.verified and exc.wechat_code in ("ORDER_NOT_EXIST", "ORDERCLOSED")):
                raise
    await release_order(session, actor, order, "微信支付超时未付")
    return "cancelled"


async def _query(client: WeChatPayClient, out_trade_no: str) -> dict[str, Any]:
    try:
        return await client.query_order(out_trade_no)
    except PayError as exc:
        if exc.verified and exc.wechat_code == "ORDER_NOT_EXIST":
            return {"trade_state": "NOTPAY"}  # never reached WeChat (the payer did not open the cashier)
        raise
