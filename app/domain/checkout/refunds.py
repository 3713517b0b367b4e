"""Refunds (退款): request, approval, execution back to the original tenders. WeChat's part (asking WeChat
once the refund has committed, and its refund notifications) is in wechat_refunds.py.

The rules, in the order a refund meets them:

**How much.** A refund gives back `amount` fen of a paid (or partially refunded) order. At most
`paid_total − refunded_total − (refunds requested and not yet executed)`: a refund waiting for approval
reserves its amount, so two pending refunds can never together exceed what was paid. More is 422
`refund_exceeds_refundable`.

**Lines (goods back).** `lines[]` names lines whose goods return; each line's amount (default: what is left
of it) is part of `amount`, and together they may not exceed it (the rest is a refund not tied to goods,
e.g. a complaint). Per line type:
- *product*: all its units go back to stock, so only the line's whole remaining amount may be given
  (422 `partial_product_return`; a price-only refund of a product lists no lines);
- *service*: nothing comes back (the service was performed); the line only records the money;
- *card* (session card: count / package / period): the card is closed and every unused session is written
  off. The line may get at most the value of the unused sessions (remaining × the session's unit value
  frozen at issue) — or the whole line when nothing was used yet. A card used beyond that is 409
  `card_used_beyond_refund`; a closed card 409 `card_closed`.
- *card* (stored-value card) and *top_up*: the value leaves the card pro rata: principal and bonus taken
  out are floor(line refunded so far × issued principal (bonus) / line amount) minus what earlier refunds
  of the line took, so a full refund takes out exactly what was credited. Principal the member has spent
  is 409 `card_used_beyond_refund`; spent bonus is simply forfeited (bonus is never worth cash).

**Which tenders (allocation order).** Money first, then loyalty: `wechat_pay`, `stored_value`, `cash`,
`points`, `coupon`; within a method, in payment order. Each tender takes as much as it has left, so every
allocation is an exact number of fen and the allocations sum to the refund. A coupon is restored whole or
not at all: a refund that would need only part of a coupon tender's value is 422 `refund_splits_coupon`
(in practice the coupon comes back only with the refund that completes the order).
- stored value goes back to the card it came from; principal and bonus as charged, pro rata with the
  same floor-of-the-running-total rule as above (`Payment.principal_used` / `bonus_used`);
- points paid are restored pro rata (floor of the running total of `Payment.points`) and the points the
  order earned are taken back in proportion to the order's refunded share (`loyalty.earned_share`);
- a coupon is restored (`loyalty.restore_coupon`);
- cash leaves the drawer at once (the daily close counts it);
- WeChat Pay goes through WeChat's refund API and completes with its refund notification: the refund is
  `processing` until every allocation has succeeded, then `completed`.

**Approval.** At or below the tenant's `refund_approval_threshold` the refund executes at once. Above it the
refund is `pending_approval` and needs one decision per configured level, in order. A decider holds
`refunds:approve`, acts in the order's store, holds one of the roles of the current level, did not request
the refund and has not decided another level of it (separation of duties). The number of levels is fixed
when the refund is requested; the roles of a level are read from the current settings. Every decision is
an append-only `refund_approvals` row (unique per level: two approvers racing on one level → one wins, the
other 409) plus an audit entry. A rejection ends the refund; the last approval executes it, in the same
transaction.

**Execution** is one transaction: allocations, card ledgers, points, coupons, stock, order totals, outbox
events. WeChat's refund API is called after it commits, by the worker (`refund.wechat_requested`), with the
committed `out_refund_no` (`<refund_no>-<n>`): a timeout or crash is retried as the same refund, never a
second one; a definite refusal marks the refund `failed` (the other tenders' returns stay, for finance).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, Forbidden, Unprocessable
from app.core.events import emit
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.domain.cards import refunds as card_refunds
from app.domain.checkout import settings_service
from app.domain.checkout.events import (
    REFUND_APPROVED,
    REFUND_COMPLETED,
    REFUND_LEVEL_APPROVED,
    REFUND_REJECTED,
    REFUND_REQUESTED,
    WECHAT_REFUND_TOPIC,
)
from app.domain.checkout.models import Order, OrderLine, Payment, Refund, RefundAllocation, RefundApproval
from app.domain.checkout.refund_schemas import (
    RefundAllocationOut,
    RefundApprovalOut,
    RefundCreate,
    RefundDecision,
    RefundOut,
)
from app.domain.inventory import service as inventory
from app.domain.loyalty import service as loyalty
from app.domain.tenancy import service as tenancy

ALLOCATION_ORDER = ("wechat_pay", "stored_value", "cash", "points", "coupon")
REFUNDABLE_ORDER_STATUSES = ("paid", "partially_refunded")
# Requested but not executed yet: their amounts are reserved against the order.
RESERVING_STATUSES = ("pending_approval", "approved")
ORDER_REF = "order"  # how checkout names an order in the other contexts' ledgers
REFUND_REF = "refund"


# ---------------------------------------------------------------- reading


async def _order(session: AsyncSession, actor: Actor, order_id: UUID, *, lock: bool = False) -> Order:
    order = await get_or_404(session, Order, actor.tenant_id, order_id, code="order_not_found", lock=lock)
    actor.require_store(order.store_id)
    return order


async def _lines(session: AsyncSession, order: Order) -> dict[UUID, OrderLine]:
    stmt = select(OrderLine).where(OrderLine.tenant_id == order.tenant_id, OrderLine.order_id == order.id)
    return {line.id: line for line in (await session.exec(stmt.order_by(OrderLine.line_no)
                                                           .execution_options(populate_existing=True))).all()}


async def _payments(session: AsyncSession, order: Order, *, lock: bool = False) -> list[Payment]:
    """The order's succeeded tenders in allocation order."""
    stmt = select(Payment).where(Payment.tenant_id == order.tenant_id, Payment.order_id == order.id,
                                 Payment.status == "succeeded").order_by(Payment.created_at, Payment.id)
    stmt = stmt.execution_options(populate_existing=True)
    if lock:
        stmt = stmt.with_for_update()
    rows = list((await session.exec(stmt)).all())
    return sorted(rows, key=lambda p: ALLOCATION_ORDER.index(p.method))  # stable: payment order within a method


async def _reserving(session: AsyncSession, order: Order, *, exclude: UUID | None = None) -> list[Refund]:
    stmt = select(Refund).where(Refund.tenant_id == order.tenant_id, Refund.order_id == order.id,
                                Refund.status.in_(RESERVING_STATUSES)).order_by(Refund.created_at, Refund.id)
    return [r for r in (await session.exec(stmt)).all() if r.id != exclude]


async def get_refund_row(session: AsyncSession, actor: Actor, refund_id: UUID, *, lock: bool = False) -> Refund:
    refund = await get_or_404(session, Refund, actor.tenant_id, refund_id, code="refund_not_found", lock=lock)
    actor.require_store(refund.store_id)
    return refund


def _require_reader(actor: Actor) -> None:
    # Approvers (e.g. a custom role with only refunds:approve) must see what they decide on.
    if not (actor.can("orders:read") or actor.can("refunds:approve") or actor.can("refunds:write")):
        actor.require("orders:read")


async def get_refund(session: AsyncSession, actor: Actor, refund_id: UUID) -> RefundOut:
    _require_reader(actor)
    return await present(session, await get_refund_row(session, actor, refund_id))


async def list_refunds(session: AsyncSession, actor: Actor, params: PageParams, *, status: str | None,
                       store_id: UUID | None, order_id: UUID | None = None) -> tuple[list[RefundOut], str | None]:
    _require_reader(actor)
    stmt = select(Refund).where(Refund.tenant_id == actor.tenant_id)
    stores = actor.visible_stores([store_id] if store_id else None)
    if stores is not None:
        stmt = stmt.where(Refund.store_id.in_(stores))
    if status:
        stmt = stmt.where(Refund.status == status)
    if order_id:
        stmt = stmt.where(Refund.order_id == order_id)
    rows, cursor = await paginate(session, stmt, Refund.id, params, descending=True)
    return [await present(session, r, details=False) for r in rows], cursor


async def present(session: AsyncSession, refund: Refund, *, details: bool = True) -> RefundOut:
    out = RefundOut.model_validate(refund, from_attributes=True)
    if details:
        allocations = (await session.exec(select(RefundAllocation).where(
            RefundAllocation.tenant_id == refund.tenant_id, RefundAllocation.refund_id == refund.id)
            .order_by(RefundAllocation.created_at, RefundAllocation.id))).all()
        approvals = (await session.exec(select(RefundApproval).where(
            RefundApproval.tenant_id == refund.tenant_id, RefundApproval.refund_id == refund.id)
            .order_by(RefundApproval.level))).all()
        out.allocations = [RefundAllocationOut.model_validate(a, from_attributes=True) for a in allocations]
        out.approvals = [RefundApprovalOut.model_validate(a, from_attributes=True) for a in approvals]
    return out


# ---------------------------------------------------------------- allocation (pure)


def _running_share(part: int, base: int, before: int, after: int) -> int:
    """The share of `part` that refunding `before → after` of `base` releases: floor of the running total,
    so partial refunds round down and the refund that completes `base` releases exactly what is left."""
    if base <= 0:
        return 0
    return part * after // base - part * before // base


def allocate(payments: list[Payment], amount: int, remaining: dict[UUID, int]) -> list[tuple[Payment, int]]:
    """Split `amount` over the tenders in allocation order; `remaining` (per payment) is consumed."""
    out: list[tuple[Payment, int]] = []
    left = amount
    for payment in payments:
        if left == 0:
            break
        available = remaining.get(payment.id, 0)
        take = min(available, left)
        if take == 0:
            continue
        if payment.method == "coupon" and take < available:
            whole = amount - left + available  # the refund that would bring the coupon back whole
            raise Unprocessable(f"amount: a coupon is restored whole; refund at most {amount - left} fen, or "
                                f"{whole} fen with the coupon", code="refund_splits_coupon", field="amount",
                                without_coupon=amount - left, with_coupon=whole)
        out.append((payment, take))
        remaining[payment.id] = available - take
        left -= take
    if left:
        raise Unprocessable(f"amount: {left} fen more than the order's tenders have left", field="amount",
                            code="refund_exceeds_refundable")
    return out


# ---------------------------------------------------------------- requesting


@dataclass
class _LinePlan:
    line: OrderLine
    amount: int


def _line_reserved(refunds: list[Refund]) -> dict[str, int]:
    reserved: dict[str, int] = {}
    for r in refunds:
        for entry in r.lines:
            reserved[entry["line_id"]] = reserved.get(entry["line_id"], 0) + int(entry["amount"])
    return reserved


async def _check_lines(session: AsyncSession, actor: Actor, order: Order, data: RefundCreate,
                       reserving: list[Refund]) -> list[_LinePlan]:
    lines = await _lines(session, order)
    reserved = _line_reserved(reserving)
    seen: set[UUID] = set()
    plans = []
    for index, item in enumerate(data.lines):
        field = f"lines.{index}"
        line = lines.get(item.line_id)
        if line is None:
            raise Unprocessable(f"{field}.line_id: not a line of this order", code="line_not_in_order",
                                field=f"{field}.line_id")
        if line.id in seen:
            raise Unprocessable(f"{field}.line_id: listed twice", code="validation_error", field=f"{field}.line_id")
        seen.add(line.id)
        left = line.amount - line.refunded_amount - reserved.get(str(line.id), 0)
        if item.amount is not None:
            amount = item.amount
        else:  # what is left of the line; of a used session card, what its unused sessions are worth
            amount = min(left, await _session_card_cap(session, actor, line, left))
        if left <= 0:
            raise Unprocessable(f"{field}: this line has nothing left to refund", code="line_fully_refunded",
                                field=f"{field}.line_id")
        if amount > left:
            raise Unprocessable(f"{field}.amount: at most {left} fen of this line is left to refund",
                                code="line_amount_exceeds", field=f"{field}.amount", refundable=left)
        await _check_goods(session, actor, line, amount, left, field)
        plans.append(_LinePlan(line, amount))
    if sum(p.amount for p in plans) > data.amount:
        raise Unprocessable(f"lines: the lines' amounts ({sum(p.amount for p in plans)} fen) exceed the refund "
                            f"amount ({data.amount} fen)", code="lines_exceed_amount", field="lines")
    return plans


async def _check_goods(session: AsyncSession, actor: Actor, line: OrderLine, amount: int, left: int,
                       field: str) -> None:
    """409/422 now, at the request, for goods that cannot come back (execution checks again)."""
    if line.type == "product" and amount != left:
        raise Unprocessable(f"{field}.amount: a product line's goods come back whole; refund its remaining "
                            f"{left} fen, or list no lines for a price-only refund", code="partial_product_return",
                            field=f"{field}.amount")
    card_id = line.issued_card_id if line.type == "card" else line.card_id if line.type == "top_up" else None
    if line.type in ("card", "top_up"):
        if card_id is None:
            raise Conflict(f"{field}: this line issued no card", code="card_not_issued", field=f"{field}.line_id")
        quote = await card_refunds.refund_quote(session, actor, card_id)
        if quote.status == "closed":
            raise Conflict(f"{field}: the card was closed already", code="card_closed", field=f"{field}.line_id")
        if quote.kind == "stored_value":
            principal, _ = _value_out(line, quote, amount)
            if principal > quote.principal_balance:
                raise Conflict(f"{field}: the card holds {quote.principal_balance} fen of principal; this refund "
                               f"takes {principal}", code="card_used_beyond_refund", field=f"{field}.amount",
                               principal_balance=quote.principal_balance)
        else:
            cap = await _session_card_cap(session, actor, line, left)
            if amount > cap:
                raise Conflict(f"{field}: the card was used; its unused sessions are worth {cap} fen",
                               code="card_used_beyond_refund", field=f"{field}.amount", refundable=cap)


async def _session_card_cap(session: AsyncSession, actor: Actor, line: OrderLine, left: int) -> int:
    if line.type != "card" or line.issued_card_id is None:
        return left
    quote = await card_refunds.refund_quote(session, actor, line.issued_card_id)
    if quote.kind == "stored_value" or quote.untouched:
        return left
    return min(left, quote.unused_value)


def _value_out(line: OrderLine, quote: card_refunds.RefundQuote, amount: int) -> tuple[int, int]:
    """Principal and bonus that refunding `amount` more of a stored-value sale or top-up line takes out."""
    if line.type == "top_up":
        principal, bonus = line.top_up_principal, line.top_up_bonus
    else:
        principal, bonus = quote.issued_principal, quote.issued_bonus
    before, after = line.refunded_amount, line.refunded_amount + amount
    return (_running_share(principal, line.amount, before, after),
            _running_share(bonus, line.amount, before, after))


async def _refund_no(session: AsyncSession, store_id: UUID, tenant_id: UUID) -> str:
    day = utcnow().astimezone(tenancy.store_zone(await tenancy.store_row(session, tenant_id, store_id)))
    return f"RF{day:%Y%m%d}{secrets.token_hex(5).upper()}"  # ≤ 64 with "-n": a valid out_refund_no


async def request_refund(session: AsyncSession, actor: Actor, order_id: UUID, data: RefundCreate) -> Refund:
    actor.require("refunds:write")
    order = await _order(session, actor, order_id, lock=True)  # serialises refunds of one order
    if order.status not in REFUNDABLE_ORDER_STATUSES:
        raise Conflict(f"a {order.status} order cannot be refunded", code="order_not_refundable")
    reserving = await _reserving(session, order)
    refundable = order.paid_total - order.refunded_total - sum(r.amount for r in reserving)
    if data.amount > refundable:
        raise Unprocessable(f"amount: at most {max(refundable, 0)} fen of this order can be refunded",
                            code="refund_exceeds_refundable", field="amount", refundable=max(refundable, 0))
    payments = await _payments(session, order)
    remaining = {p.id: p.amount - p.refunded_amount for p in payments}
    for earlier in reserving:  # the tenders the reserved refunds will take, so this one sees what is left
        allocate(payments, earlier.amount, remaining)
    allocate(payments, data.amount, remaining)  # 422 now rather than at the last approval
    plans = await _check_lines(session, actor, order, data, reserving)
    settings = await settings_service.load(session, actor)
    needs_approval = data.amount > settings.refund_approval_threshold and bool(settings.approval_levels)
    refund = Refund(
        tenant_id=actor.tenant_id, order_id=order.id, store_id=order.store_id,
        refund_no=await _refund_no(session, order.store_id, actor.tenant_id), amount=data.amount,
        reason=data.reason, status="pending_approval" if needs_approval else "approved",
        lines=[{"line_id": str(p.line.id), "type": p.line.type, "amount": p.amount} for p in plans],
        levels_required=len(settings.approval_levels) if needs_approval else 0,
        requested_by_id=actor.id if actor.kind == "staff" else None, updated_at=utcnow())
    session.add(refund)
    await session.flush()
    audit.record(session, "refund.request", "refund", refund.id, order=str(order.id), amount=data.amount,
                 reason=data.reason, lines=refund.lines, levels_required=refund.levels_required)
    await emit(session, REFUND_REQUESTED, refund_payload(refund))
    if not needs_approval:
        await _execute(session, actor, refund, order)
    return refund


def refund_payload(refund: Refund, **extra: Any) -> dict[str, Any]:
    """The payload of every refund event: the refund as it is after the change, and what the event adds."""
    return {"refund_id": str(refund.id), "order_id": str(refund.order_id), "store_id": str(refund.store_id),
            "amount": refund.amount, "status": refund.status, **extra}


# ---------------------------------------------------------------- approving


async def decide(session: AsyncSession, actor: Actor, refund_id: UUID, decision: str,
                 data: RefundDecision) -> Refund:
    actor.require("refunds:approve")
    refund = await get_refund_row(session, actor, refund_id, lock=True)  # one decision at a time
    if refund.status != "pending_approval":
        raise Conflict(f"this refund is {refund.status}, not waiting for approval", code="refund_not_pending")
    level = refund.levels_approved + 1
    if data.level is not None and data.level != level:
        raise Conflict(f"level {data.level} was decided already; the refund waits for level {level}",
                       code="approval_level_moved", level=level)
    if refund.requested_by_id == actor.id:
        raise Forbidden("you requested this refund; someone else must decide it", code="self_approval")
    earlier = (await session.exec(select(RefundApproval.id).where(
        RefundApproval.tenant_id == actor.tenant_id, RefundApproval.refund_id == refund.id,
        RefundApproval.decided_by_id == actor.id))).first()
    if earlier is not None:
        raise Forbidden("you decided another level of this refund; each level needs a different person",
                        code="already_decided")
    settings = await settings_service.load(session, actor)
    levels = settings.approval_levels
    allowed = levels[min(level, len(levels)) - 1] if levels else list(actor.roles)
    role = next((r for r in actor.roles if r in allowed), None)
    if role is None:
        raise Forbidden(f"level {level} is decided by {', '.join(allowed)}", code="approval_role_required",
                        level=level, roles=allowed)
    session.add(RefundApproval(tenant_id=actor.tenant_id, refund_id=refund.id, level=level, decision=decision,
                               decided_by_id=actor.id, role=role, note=data.note))
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # a concurrent decision on this level committed first
        raise Conflict(f"level {level} was decided already", code="approval_level_moved") from exc
    audit.record(session, f"refund.{decision}", "refund", refund.id, level=level, role=role, note=data.note,
                 amount=refund.amount)
    refund.updated_at = utcnow()
    if decision == "reject":
        refund.status = "rejected"
        session.add(refund)
        await session.flush()
        await emit(session, REFUND_REJECTED, refund_payload(refund, level=level))
        return refund
    refund.levels_approved = level
    if level < refund.levels_required:
        session.add(refund)
        await session.flush()
        await emit(session, REFUND_LEVEL_APPROVED, refund_payload(refund, level=level, next_level=level + 1))
        return refund
    refund.status = "approved"
    session.add(refund)
    await session.flush()
    await emit(session, REFUND_APPROVED, refund_payload(refund, levels=level))
    await _execute(session, actor, refund, await _order(session, actor, refund.order_id, lock=True))
    return refund


# ---------------------------------------------------------------- executing


async def _execute(session: AsyncSession, actor: Actor, refund: Refund, order: Order) -> None:
    if order.status not in REFUNDABLE_ORDER_STATUSES:
        raise Conflict(f"the order is {order.status} now", code="order_not_refundable")
    if refund.amount > order.paid_total - order.refunded_total:
        raise Conflict("the order no longer has this much to refund", code="refund_exceeds_refundable",
                       refundable=order.paid_total - order.refunded_total)
    payments = await _payments(session, order, lock=True)
    plan = allocate(payments, refund.amount, {p.id: p.amount - p.refunded_amount for p in payments})
    now = utcnow()
    allocations: list[RefundAllocation] = []
    wechat: list[tuple[RefundAllocation, Payment]] = []
    points_to_restore = 0
    for index, (payment, amount) in enumerate(plan, start=1):
        before, after = payment.refunded_amount, payment.refunded_amount + amount
        allocation = RefundAllocation(tenant_id=refund.tenant_id, refund_id=refund.id, payment_id=payment.id,
                                      method=payment.method, amount=amount)
        if payment.method == "stored_value":
            # Bonus gets the rest: its running total is then ceil(bonus_used × after / amount), which also
            # ends exactly at bonus_used, so neither part is ever over-returned.
            principal = _running_share(payment.principal_used, payment.amount, before, after)
            bonus = amount - principal
            await card_refunds.refund_value(session, actor, payment.card_id, principal=principal, bonus=bonus,
                                     store_id=refund.store_id, ref_type=REFUND_REF, ref_id=refund.id,
                                     reason=refund.reason, details={"purpose": "tender", "payment_id": str(payment.id),
                                                                    "order_id": str(order.id)})
        elif payment.method == "points":
            points_to_restore += _running_share(payment.points or 0, payment.amount, before, after)
        elif payment.method == "coupon":
            await loyalty.restore_coupon(session, actor, coupon_id=payment.coupon_id, ref_type=ORDER_REF,
                                         ref_id=str(order.id), reason=refund.reason)
        if payment.method == "wechat_pay":
            allocation.out_refund_no = f"{refund.refund_no}-{index}"
            wechat.append((allocation, payment))
        else:
            allocation.status, allocation.succeeded_at = "succeeded", now
        payment.refunded_amount = after
        payment.updated_at = now
        session.add(payment)
        allocations.append(allocation)
    session.add_all(allocations)
    order.refunded_total += refund.amount
    order.status = "refunded" if order.refunded_total == order.paid_total else "partially_refunded"
    order.updated_at = now
    session.add(order)
    await session.flush()
    await _take_back_points(session, actor, refund, order, points_to_restore)
    refund.lines = await _goods_back(session, actor, refund, order)
    refund.status = "processing" if wechat else "completed"
    refund.completed_at = None if wechat else now
    refund.updated_at = now
    session.add(refund)
    await session.flush()
    audit.record(session, "refund.execute", "refund", refund.id, order=str(order.id), amount=refund.amount,
                 allocations=[{"method": a.method, "amount": a.amount, "payment": str(a.payment_id)}
                              for a in allocations], lines=refund.lines)
    if not wechat:
        await emit(session, REFUND_COMPLETED, refund_payload(refund))
        return
    # WeChat is asked after this transaction commits (wechat_refunds.request_refunds): the out_refund_no is
    # then durable, so no failure on our side can ever make us ask WeChat for the same money twice.
    await emit(session, WECHAT_REFUND_TOPIC, {"refund_id": str(refund.id)})


async def _take_back_points(session: AsyncSession, actor: Actor, refund: Refund, order: Order,
                            redeemed_to_restore: int) -> None:
    ref = await loyalty.ref_points(session, actor, ref_type=ORDER_REF, ref_id=str(order.id))
    earned = 0
    if ref.earned and order.paid_total:
        share = loyalty.earned_share(ref.earned, order.refunded_total, order.paid_total)
        earned = max(share - ref.earned_settled, 0)
    if not earned and not redeemed_to_restore:
        return
    result = await loyalty.reverse_points(session, actor, ref_type=ORDER_REF, ref_id=str(order.id),
                                          by_ref_type=REFUND_REF, by_ref_id=str(refund.id), reason=refund.reason,
                                          points_earned_to_remove=earned,
                                          points_redeemed_to_restore=redeemed_to_restore)
    if result.shortfall:
        # Earned points already spent cannot be taken back; finance sees it in the audit log.
        audit.record(session, "refund.points_shortfall", "refund", refund.id, shortfall=result.shortfall)


async def _goods_back(session: AsyncSession, actor: Actor, refund: Refund, order: Order) -> list[dict[str, Any]]:
    lines = await _lines(session, order)
    out = []
    for entry in refund.lines:
        line = lines[UUID(entry["line_id"])]
        amount = int(entry["amount"])
        effect: dict[str, Any] = {}
        if line.type == "product":
            effect["stock_returned"] = await _return_stock(session, refund, order, line)
        elif line.type in ("card", "top_up"):
            card_id = line.issued_card_id if line.type == "card" else line.card_id
            left = line.amount - line.refunded_amount
            await _check_goods(session, actor, line, amount, left, "lines")
            quote = await card_refunds.refund_quote(session, actor, card_id)
            if quote.kind == "stored_value":
                principal, bonus = _value_out(line, quote, amount)
                bonus = min(bonus, quote.bonus_balance)  # spent bonus is forfeited, never charged for
                if principal or bonus:
                    await card_refunds.refund_value(session, actor, card_id, principal=-principal, bonus=-bonus,
                                             store_id=refund.store_id, ref_type=REFUND_REF, ref_id=refund.id,
                                             reason=refund.reason, details={"purpose": "goods",
                                                                            "line_id": str(line.id)})
                effect.update(card_id=str(card_id), principal_out=principal, bonus_out=bonus)
            else:
                written = await card_refunds.close_for_refund(session, actor, card_id, store_id=refund.store_id,
                                                       ref_type=REFUND_REF, ref_id=refund.id, reason=refund.reason)
                effect.update(card_id=str(card_id), sessions_written_off=-sum(e.sessions_delta for e in written))
        line.refunded_amount += amount
        session.add(line)
        out.append({**entry, **effect})
    await session.flush()
    return out


async def _return_stock(session: AsyncSession, refund: Refund, order: Order, line: OrderLine) -> int:
    """Put one product line's units back on the shelf: reverse that line's sale movement.

    The order sold all its products under one reference (`order`, order id), one movement per line, so
    `inventory.reverse` (whole reference) would return every line; this reverses the one movement of this
    product and quantity not reversed yet. It runs as the system actor: the refund was authorised by
    refunds:write / refunds:approve, and the stock returning is its consequence, not a stock adjustment
    the requester needs inventory:write for."""
    system = Actor.system(order.tenant_id)
    movements, _ = await inventory.list_movements(session, system, PageParams(limit=200), store_id=order.store_id,
                                                  item_id=line.product_id, kind="sale", ref_type=ORDER_REF,
                                                  ref_id=str(order.id))
    for movement in (m for m in movements if m.quantity == -line.quantity):
        try:
            async with session.begin_nested():
                reversals = await inventory.reverse_movement(session, system, movement.id,
                                                             f"退款 {refund.refund_no}")
        except Conflict as exc:
            if exc.code == "movement_already_reversed":
                continue  # another line of the same product and quantity was returned earlier
            raise
        return sum(m.quantity for m in reversals)
    raise Conflict("this line's goods were returned already", code="goods_already_returned")
