"""Orders (开单): pricing, tenders, completion, cancellation and reads. WeChat Pay's notification and the
timeout of unpaid orders are in wechat_payments.py, receipts in receipts.py, member-tier discounts in
tier_discounts.py.

One order is one transaction of the caller's. Opening it prices the lines (see pricing.py), checks that
the tenders sum to the total, and then, in this order:

* holds what must not be promised twice: card sessions of card-settled lines are deducted, completed
  services are claimed (`visits.hold_for_checkout`), sold products leave the shelf (`inventory.sell_products`);
* applies every immediate tender: stored value charged (principal/bonus per the card's spend order),
  points redeemed, the coupon redeemed, cash recorded with its change;
* with a WeChat Pay tender, creates the prepay order (out_trade_no = the payment id's hex) and stays
  `pending` until WeChat's signed notification (or the timeout job's query) says it was paid; without
  one it is `paid` at once;
* completes on payment (`complete_order`): cards issued with the template's terms frozen, top-ups credited
  (principal + bonus), points earned, `order.paid` emitted.

Everything held or applied refers to the order (ref_type `order`, ref_id the order id), so cancelling a
pending order releases it through each context's reverse function. Holding stock and sessions at opening
(not at payment) is deliberate: a WeChat payment that arrives 10 minutes later must not fail because the
last jar of tea was sold meanwhile — the money would already be taken.

Points are earned on money that came in or was spent from a card's principal (cash + WeChat Pay + stored-
value principal), less what paid for top-ups (that money earns when its principal is spent); bonus value,
points and coupons earn nothing (pricing.points_earn_basis).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import DEFAULT_TIMEZONE, utcnow
from app.core.errors import AppError, Conflict, Forbidden, NotFound, ServiceUnavailable, Unprocessable
from app.core.events import emit
from app.core.ids import new_id
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.core.settings import get_settings
from app.domain.cards import service as cards
from app.domain.cards import templates as card_templates
from app.domain.catalog import service as catalog
from app.domain.checkout import pricing, tier_discounts
from app.domain.checkout.events import ORDER_CANCELLED, ORDER_PAID
from app.domain.checkout.models import Order, OrderLine, Payment
from app.domain.checkout.schemas import (
    CardLineIn,
    CashTender,
    CouponTender,
    OrderCreate,
    OrderLineOut,
    OrderOut,
    PaymentOut,
    PointsTender,
    ProductLineIn,
    ServiceLineIn,
    StoredValueTender,
    TopUpLineIn,
    WeChatPayParams,
    WeChatPayTender,
)
from app.domain.inventory import service as inventory
from app.domain.loyalty import service as loyalty
from app.domain.members import service as members
from app.domain.members.schemas import TimelineItem
from app.domain.tenancy import service as tenancy
from app.domain.visits import service as visits
from app.domain.wechat_links import service as wechat_links
from app.integrations.wechat.pay import PayError, WeChatPayClient, get_pay_client

if TYPE_CHECKING:
    from app.domain.tenancy.models import Store

REF = "order"
PATIENT_LINE_TYPES = {"card", "top_up"}
STATUS_LABELS = {"draft": "草稿", "pending": "待支付", "paid": "已支付", "partially_refunded": "部分退款",
                 "refunded": "已退款", "cancelled": "已取消"}


def pay_client() -> WeChatPayClient | None:
    """The configured WeChat Pay client (None: WeChat Pay is switched off), for orders and refunds alike.
    Read per call so a changed configuration (and the tests' fake server) takes effect without a restart."""
    return get_pay_client(get_settings())


@contextmanager
def _naming(field_name: str) -> Iterator[None]:
    """Errors of another context about an input name that input (`lines.2.card_id`), unless they name one."""
    try:
        yield
    except AppError as exc:
        exc.extra.setdefault("field", field_name)
        raise


# ---------------------------------------------------------------- opening an order


@dataclass
class _Line:
    row: OrderLine
    tier_type: str  # the line type tier discounts are keyed on
    sale_product_id: UUID | None = None


@dataclass
class _Tender:
    index: int
    method: str
    amount: int
    data: Any
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class OrderResult:
    order: Order
    wechat_pay: WeChatPayParams | None = None


def _authorize(actor: Actor, data: OrderCreate) -> None:
    if actor.kind == "patient":
        # The mini-program sells cards and top-ups and takes WeChat Pay; the rest happens at the front desk.
        for index, line in enumerate(data.lines):
            if line.type not in PATIENT_LINE_TYPES:
                raise Forbidden("in the mini-program only cards and top-ups can be bought", code="permission_denied",
                                field=f"lines.{index}.type")
        if not data.payments or any(p.method != "wechat_pay" for p in data.payments):
            raise Forbidden("in the mini-program orders are paid with WeChat Pay", code="permission_denied",
                            field="payments")
        if data.order_discount or any(line.line_discount for line in data.lines):
            raise Forbidden("discounts are given by staff", code="permission_denied", field="order_discount")
        return
    actor.require("orders:write")
    actor.require_store(data.store_id)


def _order_no(store: Store) -> str:
    # Store-local date and time to the second plus 4 random hex digits: readable on a receipt, sortable,
    # and unique in practice; the unique constraint turns the rare clash into a retryable 409.
    local = utcnow().astimezone(tenancy.store_zone(store))
    return f"{local:%Y%m%d%H%M%S}{secrets.token_hex(2).upper()}"


async def _build_line(session: AsyncSession, actor: Actor, order: Order, index: int, line: Any) -> _Line:
    prefix = f"lines.{index}"
    row = OrderLine(tenant_id=actor.tenant_id, order_id=order.id, line_no=index + 1, type=line.type, name="",
                    unit_price=0, list_amount=0, amount=0, line_discount=line.line_discount)
    if isinstance(line, ServiceLineIn):
        with _naming(f"{prefix}.service_id"):
            service = await catalog.get_service_row(session, actor, line.service_id)
        if not service.active:
            raise Conflict(f"{service.name} is no longer offered", code="service_inactive",
                           field=f"{prefix}.service_id")
        row.name, row.service_id, row.quantity, row.unit_price = service.name, service.id, line.quantity, service.price
        if line.service_record_id is not None:
            if line.quantity != 1:
                raise Unprocessable(f"{prefix}.quantity: a completed service is charged once",
                                    code="validation_error", field=f"{prefix}.quantity")
            with _naming(f"{prefix}.service_record_id"):
                record = await visits.hold_for_checkout(session, actor, line.service_record_id,
                                                        member_id=order.member_id, order_id=order.id)
            if record.service_id != service.id:
                raise Unprocessable(f"{prefix}.service_record_id: that record is of another service",
                                    code="validation_error", field=f"{prefix}.service_record_id")
            row.service_record_id, row.unit_price = record.id, record.list_price
        if line.card_id is not None:
            with _naming(f"{prefix}.card_id"):
                card = await cards.get_card(session, actor, line.card_id)
            row.card_id, row.settled_by_card = card.id, True
        return _Line(row, "service")
    if isinstance(line, ProductLineIn):
        with _naming(f"{prefix}.product_id"):
            product = await catalog.get_product(session, actor, line.product_id)
        if not product.active:
            raise Conflict(f"{product.name} is no longer sold", code="product_inactive", field=f"{prefix}.product_id")
        row.name, row.product_id, row.quantity, row.unit_price = product.name, product.id, line.quantity, product.price
        return _Line(row, "product", sale_product_id=product.id)
    if isinstance(line, CardLineIn):
        with _naming(f"{prefix}.card_template_id"):
            template = await card_templates.get_template(session, actor, line.card_template_id)
        if not template.active:
            raise Conflict("this card is no longer sold", code="card_template_inactive",
                           field=f"{prefix}.card_template_id")
        row.name, row.card_template_id, row.unit_price = template.name, template.id, template.price
        return _Line(row, "card")
    assert isinstance(line, TopUpLineIn)
    with _naming(f"{prefix}.card_id"):
        card = await cards.get_card(session, actor, line.card_id)
        if card.member_id != order.member_id:
            raise NotFound("card not found", code="card_not_found")  # another member's card: as if absent
        if card.kind != "stored_value":
            raise Conflict("only a stored-value card can be topped up", code="card_kind_mismatch")
        if card.status not in ("active", "exhausted"):
            raise Conflict(f"this card is {card.status}", code="card_inactive")
        # The bonus follows the template's current offer (充1000送200); the card keeps its frozen spend terms.
        template = await card_templates.get_template(session, Actor.system(actor.tenant_id), card.template_id)
    row.name = f"{card.name} 充值"
    row.card_id, row.unit_price = card.id, line.amount
    row.top_up_principal = line.amount
    row.top_up_bonus = pricing.top_up_bonus(line.amount, template.face_value, template.bonus)
    return _Line(row, "top_up")


async def _price(session: AsyncSession, actor: Actor, order: Order, data: OrderCreate) -> list[_Line]:
    built = [await _build_line(session, actor, order, i, line) for i, line in enumerate(data.lines)]
    tiers = await tier_discounts.tier_percents(session, actor.tenant_id, order.member_id)
    try:
        priced = pricing.price_order([
            pricing.LineInput(unit_price=b.row.unit_price, quantity=b.row.quantity, line_discount=b.row.line_discount,
                              tier_percent=tiers.get(b.tier_type, 0), settled_by_card=b.row.settled_by_card)
            for b in built], data.order_discount)
    except pricing.PricingError as exc:
        raise Unprocessable(f"{exc.field}: {exc}", code="validation_error", field=exc.field) from None
    for b, p in zip(built, priced.lines, strict=True):
        b.row.list_amount, b.row.tier_discount = p.list_amount, p.tier_discount
        b.row.order_discount_share, b.row.amount = p.order_discount_share, p.amount
    order.subtotal, order.discount_total, order.total = priced.subtotal, priced.discount_total, priced.total
    return built


def _coupon_lines(built: list[_Line]) -> list[loyalty.CouponLine]:
    # What each line costs after line, tier and order discounts: a coupon is the last discount applied.
    return [loyalty.CouponLine(kind=b.row.type, amount_fen=b.row.amount,
                               item_id=b.row.service_id or b.row.product_id or b.row.card_template_id or b.row.card_id)
            for b in built if not b.row.settled_by_card]


async def _quote_tenders(session: AsyncSession, actor: Actor, order: Order, data: OrderCreate,
                         built: list[_Line]) -> list[_Tender]:
    tenders: list[_Tender] = []
    seen: set[str] = set()
    for index, tender in enumerate(data.payments):
        prefix = f"payments.{index}"
        # One coupon, one points redemption and one WeChat payment per order (cash and cards may repeat).
        if tender.method in ("points", "coupon", "wechat_pay") and tender.method in seen:
            raise Unprocessable(f"{prefix}.method: only one {tender.method} tender per order",
                                code="validation_error", field=f"{prefix}.method")
        seen.add(tender.method)
        if isinstance(tender, CashTender):
            received = tender.cash_received if tender.cash_received is not None else tender.amount
            if received < tender.amount:
                raise Unprocessable(f"{prefix}.cash_received: less than the cash amount ({tender.amount} fen)",
                                    code="validation_error", field=f"{prefix}.cash_received")
            tenders.append(_Tender(index, "cash", tender.amount, tender,
                                   {"cash_received": received, "change": received - tender.amount}))
        elif isinstance(tender, StoredValueTender):
            with _naming(f"{prefix}.card_id"):
                await cards.get_card(session, actor, tender.card_id)
            topped = {b.row.card_id for b in built if b.row.type == "top_up"}
            if tender.card_id in topped:
                raise Unprocessable(f"{prefix}.card_id: a card cannot pay for its own top-up",
                                    code="validation_error", field=f"{prefix}.card_id")
            tenders.append(_Tender(index, "stored_value", tender.amount, tender))
        elif isinstance(tender, PointsTender):
            settings = await loyalty.get_settings(session, actor.tenant_id)
            if not settings.enabled:
                raise Conflict("points are not enabled for this clinic", code="points_disabled",
                               field=f"{prefix}.points")
            amount = loyalty.fen_for_points(settings, tender.points)
            cap = loyalty.max_redeem_fen(settings, order.total)
            if amount > cap:
                raise Unprocessable(f"{prefix}.points: points may pay at most {cap} fen of this order",
                                    code="points_cap_exceeded", field=f"{prefix}.points", cap_fen=cap)
            if amount <= 0:
                raise Unprocessable(f"{prefix}.points: too few points to pay a fen", code="validation_error",
                                    field=f"{prefix}.points")
            tenders.append(_Tender(index, "points", amount, tender))
        elif isinstance(tender, CouponTender):
            try:
                quoted = await loyalty.quote_coupon(session, actor, coupon_id=tender.coupon_id,
                                                    member_id=order.member_id, lines=_coupon_lines(built),
                                                    now=utcnow())
            except AppError as exc:
                # Loyalty names its own inputs (`lines`); here the coupon tender is what the caller can change.
                exc.extra["field"] = f"{prefix}.coupon_id"
                raise
            if tender.amount is not None and tender.amount != quoted:
                raise Unprocessable(f"{prefix}.amount: the coupon takes {quoted} fen off this order, not "
                                    f"{tender.amount}", code="validation_error", field=f"{prefix}.amount",
                                    quoted=quoted)
            tenders.append(_Tender(index, "coupon", quoted, tender))
        else:
            assert isinstance(tender, WeChatPayTender)
            tenders.append(_Tender(index, "wechat_pay", tender.amount, tender))
    tendered = sum(t.amount for t in tenders)
    gap = order.total - tendered
    if gap:
        what = f"short by {gap} fen" if gap > 0 else f"over by {-gap} fen"
        raise Unprocessable(f"payments: the tenders sum to {tendered} fen but the total is {order.total} fen "
                            f"({what})", code="payment_mismatch", field="payments", gap=gap, total=order.total,
                            tendered=tendered)
    return tenders


async def create_order(session: AsyncSession, actor: Actor, data: OrderCreate) -> OrderResult:
    _authorize(actor, data)
    return await open_order(session, actor, data)


async def open_order(session: AsyncSession, actor: Actor, data: OrderCreate) -> OrderResult:
    """Price, hold, tender and (without WeChat Pay) complete an order the caller has authorised: the one path
    every order takes, whoever opens it (the front desk through `create_order`, the patient's mini-program
    through `patient_orders`)."""
    store = await tenancy.active_store(session, actor, data.store_id)
    with _naming("member_id"):
        member = await members.get_member_row(session, actor, data.member_id)
    if member.status != "active":
        raise Conflict(f"member is {member.status}", code="member_inactive", field="member_id")
    wechat = next((p for p in data.payments if p.method == "wechat_pay"), None)
    client = pay_client() if wechat is not None else None
    if wechat is not None and client is None:
        raise Conflict("WeChat Pay is not configured for this deployment", code="wechat_pay_unavailable",
                       field="payments")
    now = utcnow()
    order = Order(tenant_id=actor.tenant_id, id=new_id(), order_no=_order_no(store), member_id=member.id,
                  store_id=store.id, status="pending", order_discount=data.order_discount, note=data.note,
                  opened_by_kind=actor.kind, opened_by_id=actor.id, appointment_id=data.appointment_id,
                  updated_at=now)
    session.add(order)
    await session.flush()  # lines, holds and ledger entries refer to it
    built = await _price(session, actor, order, data)
    tenders = await _quote_tenders(session, actor, order, data, built)
    session.add_all(b.row for b in built)
    session.add(order)
    await session.flush()
    await _hold(session, actor, order, built)
    payments = await _apply_tenders(session, actor, order, tenders)
    result = OrderResult(order=order)
    wechat_payment = next((p for p in payments if p.method == "wechat_pay"), None)
    if wechat_payment is not None:
        assert client is not None and isinstance(wechat, WeChatPayTender)
        # A patient pays from their own bound WeChat account; staff may name the payer's (wechat_links decides).
        openid = await wechat_links.payer_openid(session, actor, member_id=order.member_id,
                                                 requested=wechat.payer_openid,
                                                 field=f"payments.{data.payments.index(wechat)}.payer_openid")
        order.expires_at = now + timedelta(minutes=get_settings().wechat_pay_order_timeout_minutes)
        prepay_id = await client.create_jsapi_order(
            out_trade_no=wechat_payment.out_trade_no, description=f"{store.name}-{order.order_no}"[:127],
            total_fen=wechat_payment.amount, payer_openid=openid, expires_at=order.expires_at)
        wechat_payment.prepay_id = prepay_id
        session.add_all([order, wechat_payment])
        result.wechat_pay = WeChatPayParams(prepay_id=prepay_id,
                                            mini_program_params=client.mini_program_params(prepay_id))
    await session.flush()
    audit.record(session, "order.create", "order", order.id, order_no=order.order_no, member=str(member.id),
                 store=str(store.id), total=order.total, tenders={t.method: t.amount for t in tenders},
                 lines=[{"type": b.row.type, "name": b.row.name, "amount": b.row.amount} for b in built])
    if wechat_payment is None:
        await complete_order(session, actor, order)
    return result


async def _hold(session: AsyncSession, actor: Actor, order: Order, built: list[_Line]) -> None:
    """Card sessions and stock leave now (see the module docstring); the claimed service records were taken
    while the lines were built."""
    for index, b in enumerate(built):
        if b.row.settled_by_card:
            for _ in range(b.row.quantity):
                with _naming(f"lines.{index}.card_id"):
                    await cards.deduct_session(session, actor, b.row.card_id, service_id=b.row.service_id,
                                               member_id=order.member_id, store_id=order.store_id, ref_type=REF,
                                               ref_id=order.id)
    sales = [(i, b) for i, b in enumerate(built) if b.sale_product_id is not None]
    if sales:
        try:
            await inventory.sell_products(session, actor, order.store_id,
                                          [inventory.SaleLine(b.sale_product_id, b.row.quantity) for _, b in sales],
                                          REF, order.id)
        except AppError as exc:
            # sell_products names its own line index; point at the order's line instead.
            named = str(exc.extra.get("field") or "")
            short = str(exc.extra.get("item_id") or "")  # insufficient_stock names the item, not the line
            if named.startswith("lines."):
                exc.extra["field"] = f"lines.{sales[int(named.split('.')[1])][0]}.product_id"
            elif short:
                exc.extra["field"] = next((f"lines.{i}.product_id" for i, b in sales
                                           if str(b.sale_product_id) == short), "lines")
            else:
                exc.extra.setdefault("field", "lines")
            raise


async def _apply_tenders(session: AsyncSession, actor: Actor, order: Order, tenders: list[_Tender]) -> list[Payment]:
    now = utcnow()
    payments = []
    for t in tenders:
        payment = Payment(tenant_id=actor.tenant_id, id=new_id(), order_id=order.id, store_id=order.store_id,
                          method=t.method, amount=t.amount, status="pending", updated_at=now)
        prefix = f"payments.{t.index}"
        if t.method == "cash":
            payment.cash_received, payment.change_given = t.extra["cash_received"], t.extra["change"]
        elif t.method == "stored_value":
            with _naming(f"{prefix}.card_id"):
                charge = await cards.charge_value(session, actor, t.data.card_id, amount=t.amount,
                                                  member_id=order.member_id, store_id=order.store_id,
                                                  ref_type=REF, ref_id=order.id)
            payment.card_id, payment.principal_used, payment.bonus_used = t.data.card_id, charge.principal, charge.bonus
        elif t.method == "points":
            with _naming(f"{prefix}.points"):
                await loyalty.redeem_points(session, actor, member_id=order.member_id, points=t.data.points,
                                            ref_type=REF, ref_id=str(order.id), order_total_fen=order.total)
            payment.points = t.data.points
        elif t.method == "coupon":
            with _naming(f"{prefix}.coupon_id"):
                await loyalty.redeem_coupon(session, actor, coupon_id=t.data.coupon_id, member_id=order.member_id,
                                            discount_fen=t.amount, ref_type=REF, ref_id=str(order.id))
            payment.coupon_id = t.data.coupon_id
        else:  # wechat_pay: WeChat's notification settles it
            payment.out_trade_no = payment.id.hex
        if t.method != "wechat_pay":
            payment.status, payment.succeeded_at = "succeeded", now
        payments.append(payment)
    session.add_all(payments)
    await session.flush()
    return payments


# ---------------------------------------------------------------- completing (paid)


async def order_lines(session: AsyncSession, tenant_id: UUID, order_id: UUID) -> list[OrderLine]:
    stmt = select(OrderLine).where(OrderLine.tenant_id == tenant_id, OrderLine.order_id == order_id)
    return list((await session.exec(stmt.order_by(OrderLine.line_no).execution_options(populate_existing=True))).all())


async def order_payments(session: AsyncSession, tenant_id: UUID, order_id: UUID) -> list[Payment]:
    stmt = select(Payment).where(Payment.tenant_id == tenant_id, Payment.order_id == order_id)
    return list((await session.exec(stmt.order_by(Payment.id).execution_options(populate_existing=True))).all())


async def complete_order(session: AsyncSession, actor: Actor, order: Order) -> None:
    """Every tender succeeded: deliver what was bought and mark the order paid (once: callers hold the
    order's row lock and check it is pending)."""
    lines = await order_lines(session, order.tenant_id, order.id)
    payments = await order_payments(session, order.tenant_id, order.id)
    assert all(p.status == "succeeded" for p in payments), "completing an order with an unsettled tender"
    for line in lines:
        if line.type == "card":
            card = await cards.issue_card(session, actor, member_id=order.member_id, template_id=line.card_template_id,
                                          store_id=order.store_id, price_paid=line.amount, order_id=order.id)
            line.issued_card_id = card.id
            session.add(line)
        elif line.type == "top_up":
            await cards.top_up(session, actor, line.card_id, principal=line.top_up_principal,
                               bonus=line.top_up_bonus, store_id=order.store_id, ref_type=REF, ref_id=order.id)
    basis = pricing.points_earn_basis(
        cash=sum(p.amount for p in payments if p.method == "cash"),
        wechat=sum(p.amount for p in payments if p.method == "wechat_pay"),
        stored_value_principal=sum(p.principal_used for p in payments if p.method == "stored_value"),
        top_up_lines=sum(line.amount for line in lines if line.type == "top_up"))
    # The order's member earns its points whoever opened it: a parent paying a child's visit in the mini-program
    # cannot reach the child's points (loyalty's rule for patients), yet the child earns them.
    earned = await loyalty.earn_points(session, Actor.system(order.tenant_id), member_id=order.member_id,
                                       paid_fen=basis, ref_type=REF, ref_id=str(order.id)) if basis > 0 else 0
    now = utcnow()
    order.status, order.paid_at, order.updated_at = "paid", now, now
    order.paid_total = sum(p.amount for p in payments)
    session.add(order)
    await session.flush()
    audit.record(session, "order.paid", "order", order.id, order_no=order.order_no, total=order.total,
                 points_earned=earned, issued_cards=[str(line.issued_card_id) for line in lines if line.issued_card_id])
    await emit(session, ORDER_PAID, {
        "order_id": str(order.id), "order_no": order.order_no, "member_id": str(order.member_id),
        "store_id": str(order.store_id), "total": order.total, "paid_total": order.paid_total,
        "points_earned": earned,
        "lines": [{"line_no": line.line_no, "type": line.type, "name": line.name, "quantity": line.quantity,
                   "amount": line.amount, "service_id": _s(line.service_id), "product_id": _s(line.product_id),
                   "card_template_id": _s(line.card_template_id), "card_id": _s(line.card_id),
                   "issued_card_id": _s(line.issued_card_id), "settled_by_card": line.settled_by_card}
                  for line in lines],
        "tenders": [{"method": p.method, "amount": p.amount} for p in payments],
        "paid_at": now.isoformat()})


def _s(value: Any) -> str | None:
    return None if value is None else str(value)


# ---------------------------------------------------------------- cancelling


async def cancel_order(session: AsyncSession, actor: Actor, order_id: UUID, reason: str | None) -> Order:
    """Cancel a pending (or draft) order: close its WeChat order first, then give back every held tender."""
    order = await get_or_404(session, Order, actor.tenant_id, order_id, code="order_not_found", lock=True)
    await _require_access(session, actor, order, write=True)
    if order.status not in ("pending", "draft"):
        raise Conflict(f"only a pending order can be cancelled; this one is {order.status} (refund it instead)",
                       code="order_not_cancellable", status_now=order.status)
    wechat = next((p for p in await order_payments(session, actor.tenant_id, order.id)
                   if p.method == "wechat_pay" and p.status == "pending"), None)
    client = pay_client()
    if wechat is not None:
        if client is None:
            raise ServiceUnavailable("WeChat Pay is not configured: cannot close the WeChat order",
                                     code="wechat_pay_unavailable")
        try:
            await client.close_order(wechat.out_trade_no)
        except PayError as exc:
            if exc.verified and exc.wechat_code == "ORDERPAID":
                raise Conflict("the member has just paid with WeChat; the order completes when WeChat's "
                               "notification arrives", code="order_already_paid") from None
            if not (exc.verified and exc.wechat_code in ("ORDER_NOT_EXIST", "ORDERCLOSED")):
                raise
    await release_order(session, actor, order, reason or "取消订单")
    return order


async def locked_order(session: AsyncSession, tenant_id: UUID, order_id: UUID) -> Order | None:
    """The order under its row lock (re-read), or None: WeChat's notification and the timeout job take it
    first, as cancel_order does, so they queue and each finds what the one before did."""
    return await session.get(Order, (tenant_id, order_id), with_for_update=True, populate_existing=True)


async def release_order(session: AsyncSession, actor: Actor, order: Order, reason: str) -> None:
    """Reverse everything the order held or applied (each context's reversal is idempotent), close its
    tenders and mark it cancelled."""
    system = Actor.system(actor.tenant_id)  # the order's own holds are undone whoever cancels it
    await cards.reverse_ref(session, system, REF, order.id, reason)
    await inventory.reverse(session, system, REF, order.id, reason)
    await loyalty.reverse_points(session, system, ref_type=REF, ref_id=str(order.id), by_ref_type="order_cancel",
                                 by_ref_id=str(order.id), reason=reason)
    for payment in await order_payments(session, order.tenant_id, order.id):
        if payment.method == "coupon" and payment.status == "succeeded":
            await loyalty.restore_coupon(session, system, coupon_id=payment.coupon_id, ref_type=REF,
                                         ref_id=str(order.id), reason=reason)
    await visits.release_from_checkout(session, system, order.id)
    now = utcnow()
    await session.execute(update(Payment).where(Payment.tenant_id == order.tenant_id, Payment.order_id == order.id,
                                                Payment.status.in_(("pending", "succeeded")))
                          .values(status="closed", updated_at=now))
    order.status, order.cancelled_at, order.updated_at = "cancelled", now, now
    session.add(order)
    await session.flush()
    audit.record(session, "order.cancel", "order", order.id, reason=reason, order_no=order.order_no)
    await emit(session, ORDER_CANCELLED, {"order_id": str(order.id), "member_id": str(order.member_id),
                                          "store_id": str(order.store_id), "reason": reason})


# ---------------------------------------------------------------- reading


async def _require_access(session: AsyncSession, actor: Actor, order: Order, *, write: bool = False) -> None:
    if actor.kind == "patient":
        await members.get_member_row(session, actor, order.member_id)  # 404 unless theirs or their family's
        if write and order.opened_by_kind != "patient":
            raise Forbidden("this order was opened at the front desk", code="permission_denied")
        return
    actor.require("orders:write" if write else "orders:read")
    if not actor.can_act_in_store(order.store_id):
        raise NotFound("order not found", code="order_not_found")


async def get_order(session: AsyncSession, actor: Actor, order_id: UUID) -> Order:
    order = await get_or_404(session, Order, actor.tenant_id, order_id, code="order_not_found")
    await _require_access(session, actor, order)
    return order


async def list_orders(session: AsyncSession, actor: Actor, params: PageParams, *, store_id: UUID | None = None,
                      member_id: UUID | None = None, status: str | None = None, date_from: date | None = None,
                      date_to: date | None = None):
    """Newest first. `date_from`/`date_to` are store-local days (the store's zone with `store_id`, else
    Asia/Shanghai), both inclusive."""
    stmt = select(Order).where(Order.tenant_id == actor.tenant_id)
    if actor.kind == "patient":
        member_id = member_id or actor.id
        await members.get_member_row(session, actor, member_id)
    else:
        actor.require("orders:read")
        stores = actor.visible_stores([store_id] if store_id else None)
        if stores is not None:
            stmt = stmt.where(Order.store_id.in_(stores))
    if store_id is not None:
        stmt = stmt.where(Order.store_id == store_id)
    if member_id is not None:
        stmt = stmt.where(Order.member_id == member_id)
    if status is not None:
        stmt = stmt.where(Order.status == status)
    zone = ZoneInfo(DEFAULT_TIMEZONE)
    if store_id is not None and (date_from or date_to):
        zone = tenancy.store_zone(await tenancy.store_row(session, actor.tenant_id, store_id))
    if date_from is not None:
        stmt = stmt.where(Order.created_at >= datetime.combine(date_from, time.min, zone))
    if date_to is not None:
        stmt = stmt.where(Order.created_at < datetime.combine(date_to + timedelta(days=1), time.min, zone))
    return await paginate(session, stmt, Order.id, params, descending=True)


async def present(session: AsyncSession, order: Order, wechat_pay: WeChatPayParams | None = None) -> OrderOut:
    lines = await order_lines(session, order.tenant_id, order.id)
    payments = await order_payments(session, order.tenant_id, order.id)
    if wechat_pay is None and order.status == "pending":
        # A pending order can be paid again from its detail page (the payer closed the cashier, say).
        pending = next((p for p in payments if p.method == "wechat_pay" and p.prepay_id and p.status == "pending"),
                       None)
        client = pay_client() if pending is not None else None
        if pending is not None and client is not None:
            wechat_pay = WeChatPayParams(prepay_id=pending.prepay_id,
                                         mini_program_params=client.mini_program_params(pending.prepay_id))
    earned = await points_earned(session, order)
    return OrderOut(
        id=order.id, order_no=order.order_no, status=order.status, member_id=order.member_id,
        store_id=order.store_id, subtotal=order.subtotal, discount_total=order.discount_total, total=order.total,
        paid_total=order.paid_total, refunded_total=order.refunded_total, order_discount=order.order_discount,
        change_given=sum(p.change_given or 0 for p in payments), points_earned=earned,
        issued_cards=[line.issued_card_id for line in lines if line.issued_card_id],
        note=order.note, appointment_id=order.appointment_id,
        lines=[OrderLineOut.model_validate(line) for line in lines],
        payments=[PaymentOut.model_validate(p) for p in payments], wechat_pay=wechat_pay,
        expires_at=order.expires_at, paid_at=order.paid_at, cancelled_at=order.cancelled_at,
        created_at=order.created_at)



async def points_earned(session: AsyncSession, order: Order) -> int:
    """The points the order earned (0 until it is paid)."""
    if order.paid_at is None:
        return 0
    done = await loyalty.ref_points(session, Actor.system(order.tenant_id), ref_type=REF, ref_id=str(order.id))
    return done.earned


def yuan(fen: int) -> str:
    """Fen as a receipt shows money: ¥12.30, -¥0.50."""
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen) // 100}.{abs(fen) % 100:02d}"


# ---------------------------------------------------------------- plugged into members


@members.timeline_source("order")
async def _orders_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                           before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    stmt = select(Order).where(Order.tenant_id == tenant_id, Order.member_id == member_id)
    if before is not None:
        stmt = stmt.where(members.before_clause(Order.created_at, Order.id, before, "order:"))
    rows = (await session.exec(stmt.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit))).all()
    return [TimelineItem(type="order", occurred_at=o.created_at, id=f"order:{o.id}",
                         title=f"订单 {o.order_no} · {STATUS_LABELS.get(o.status, o.status)} · {yuan(o.total)}",
                         data={"order_id": str(o.id), "order_no": o.order_no, "status": o.status, "total": o.total,
                               "store_id": str(o.store_id)}) for o in rows]


@members.merge_mover("orders")
async def _move_orders(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID, survivor_id: UUID) -> dict[str, int]:
    moved = await session.execute(update(Order).where(Order.tenant_id == tenant_id, Order.member_id == duplicate_id)
                                  .values(member_id=survivor_id))
    return {"orders": moved.rowcount}
