"""Orders (开单): pricing, tenders, completion, WeChat Pay's notification, cancellation, reads and receipts.

One order is one transaction of the caller's. Opening it prices the lines (see pricing.py), checks that
the tenders sum to the total, and then, in this order:

* holds what must not be promised twice: card sessions of card-settled lines are deducted, completed
  services are claimed (`visits.hold_for_checkout`), sold products leave the shelf (`inventory.sell_products`);
* applies every immediate tender: stored value charged (principal/bonus per the card's spend order),
  points redeemed, the coupon redeemed, cash recorded with its change;
* with a WeChat Pay tender, creates the prepay order (out_trade_no = the payment id's hex) and stays
  `pending` until WeChat's signed notification (or the timeout job's query) says it was paid; without
  one it is `paid` at once;
* completes on payment (`_complete`): cards issued with the template's terms frozen, top-ups credited
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

import html
import json
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import text, update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import DEFAULT_TIMEZONE, utcnow
from app.core.errors import AppError, Conflict, Forbidden, NotFound, ServiceUnavailable, Unprocessable
from app.core.ids import new_id
from app.core.outbox import emit
from app.core.pagination import PageParams, paginate
from app.core.settings import get_settings
from app.domain.cards import service as cards
from app.domain.cards.models import CardKind
from app.domain.catalog import service as catalog
from app.domain.checkout import pricing
from app.domain.checkout.models import Order, OrderLine, Payment, TierDiscount
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
    Receipt,
    ReceiptLine,
    ReceiptTender,
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
from app.domain.tenancy.models import Store
from app.domain.visits import service as visits
from app.integrations.wechat.pay import PayError, WeChatPayClient, get_pay_client

log = logging.getLogger("careloop.checkout")

REF = "order"
PATIENT_LINE_TYPES = {"card", "top_up"}
TENDER_LABELS = {"cash": "现金", "stored_value": "储值卡", "points": "积分抵扣", "coupon": "优惠券",
                 "wechat_pay": "微信支付"}
STATUS_LABELS = {"draft": "草稿", "pending": "待支付", "paid": "已支付", "partially_refunded": "部分退款",
                 "refunded": "已退款", "cancelled": "已取消"}
LINE_LABELS = {"service": "服务", "product": "商品", "card": "售卡", "top_up": "充值"}


def pay_client() -> WeChatPayClient | None:
    """The configured WeChat Pay client (None: WeChat Pay is switched off). Read per call so a changed
    configuration (and the tests' fake server) takes effect without a restart."""
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


async def _store(session: AsyncSession, actor: Actor, store_id: UUID) -> Store:
    store = await session.get(Store, (actor.tenant_id, store_id))
    if store is None:
        raise NotFound("store not found", code="store_not_found", field="store_id")
    if not store.active:
        raise Conflict("this store is closed", code="store_inactive", field="store_id")
    return store


def _order_no(store: Store) -> str:
    # Store-local date and time to the second plus 4 random hex digits: readable on a receipt, sortable,
    # and unique in practice; the unique constraint turns the rare clash into a retryable 409.
    local = utcnow().astimezone(ZoneInfo(store.timezone or DEFAULT_TIMEZONE))
    return f"{local:%Y%m%d%H%M%S}{secrets.token_hex(2).upper()}"


async def _tier_percents(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> dict[str, int]:
    """Line type -> the best member-tier percent the member's tags give (several tiers do not add up)."""
    tags = set(await members.tags_of(session, tenant_id, member_id))
    if not tags:
        return {}
    rows = (await session.exec(select(TierDiscount).where(
        TierDiscount.tenant_id == tenant_id, TierDiscount.active.is_(True),
        TierDiscount.tag_name.in_(tags)))).all()
    best: dict[str, int] = {}
    for row in rows:
        for line_type in row.line_types:
            best[line_type] = max(best.get(line_type, 0), row.percent_off)
    return best


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
            template = await cards.get_template(session, actor, line.card_template_id)
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
        if card.kind != CardKind.STORED_VALUE:
            raise Conflict("only a stored-value card can be topped up", code="card_kind_mismatch")
        if card.status not in ("active", "exhausted"):
            raise Conflict(f"this card is {card.status}", code="card_inactive")
        # The bonus follows the template's current offer (充1000送200); the card keeps its frozen spend terms.
        template = await cards.get_template(session, Actor.system(actor.tenant_id), card.template_id)
    row.name = f"{card.name} 充值"
    row.card_id, row.unit_price = card.id, line.amount
    row.top_up_principal = line.amount
    row.top_up_bonus = pricing.top_up_bonus(line.amount, template.face_value, template.bonus)
    return _Line(row, "top_up")


async def _price(session: AsyncSession, actor: Actor, order: Order, data: OrderCreate) -> list[_Line]:
    built = [await _build_line(session, actor, order, i, line) for i, line in enumerate(data.lines)]
    tiers = await _tier_percents(session, actor.tenant_id, order.member_id)
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
    store = await _store(session, actor, data.store_id)
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
        openid = wechat.payer_openid or actor.extra.get("openid")
        if not openid:
            raise Unprocessable("payments: WeChat Pay in the mini-program needs the payer's openid",
                                code="validation_error", field=f"payments.{data.payments.index(wechat)}.payer_openid")
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
        await _complete(session, actor, order)
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


async def _lines(session: AsyncSession, tenant_id: UUID, order_id: UUID) -> list[OrderLine]:
    stmt = select(OrderLine).where(OrderLine.tenant_id == tenant_id, OrderLine.order_id == order_id)
    return list((await session.exec(stmt.order_by(OrderLine.line_no).execution_options(populate_existing=True))).all())


async def _payments(session: AsyncSession, tenant_id: UUID, order_id: UUID) -> list[Payment]:
    stmt = select(Payment).where(Payment.tenant_id == tenant_id, Payment.order_id == order_id)
    return list((await session.exec(stmt.order_by(Payment.id).execution_options(populate_existing=True))).all())


async def _complete(session: AsyncSession, actor: Actor, order: Order) -> None:
    """Every tender succeeded: deliver what was bought and mark the order paid (once: callers hold the
    order's row lock and check it is pending)."""
    lines = await _lines(session, order.tenant_id, order.id)
    payments = await _payments(session, order.tenant_id, order.id)
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
    earned = await loyalty.earn_points(session, actor, member_id=order.member_id, paid_fen=basis, ref_type=REF,
                                       ref_id=str(order.id)) if basis > 0 else 0
    now = utcnow()
    order.status, order.paid_at, order.updated_at = "paid", now, now
    order.paid_total = sum(p.amount for p in payments)
    session.add(order)
    await session.flush()
    audit.record(session, "order.paid", "order", order.id, order_no=order.order_no, total=order.total,
                 points_earned=earned, issued_cards=[str(line.issued_card_id) for line in lines if line.issued_card_id])
    await emit(session, "order.paid", {
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


# ---------------------------------------------------------------- WeChat Pay: notification, query, close


@dataclass
class PaymentOutcome:
    result: str  # paid | duplicate | rejected | paid_after_cancel | not_paid
    reason: str | None = None


async def _locked_order(session: AsyncSession, tenant_id: UUID, order_id: UUID) -> Order | None:
    return await session.get(Order, (tenant_id, order_id), with_for_update=True, populate_existing=True)


async def apply_wechat_payment(session: AsyncSession, actor: Actor, payment_id: UUID, transaction: dict[str, Any], *,
                               source: str, client: WeChatPayClient) -> PaymentOutcome:
    """WeChat says the payment `payment_id` was made (a verified notification, or our own query): check it
    against what we asked for and, once only, mark it paid and complete the order. Locks the order first
    (as cancel and the timeout job do), then the payment, so concurrent deliveries queue and the second
    finds it done."""
    peek = await session.get(Payment, (actor.tenant_id, payment_id))
    if peek is None:
        return PaymentOutcome("rejected", "unknown_order")
    order = await _locked_order(session, actor.tenant_id, peek.order_id)
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
        await emit(session, "order.paid_after_cancel", {"order_id": str(order.id), "payment_id": str(payment.id),
                                                        "member_id": str(order.member_id), "amount": payment.amount})
        return PaymentOutcome("paid_after_cancel")
    if any(p.status != "succeeded" for p in await _payments(session, actor.tenant_id, order.id)):
        return PaymentOutcome("paid")  # another tender is still open (not possible today: one WeChat tender)
    await _complete(session, actor, order)
    return PaymentOutcome("paid")


async def find_wechat_payment(out_trade_no: str) -> tuple[UUID, UUID] | None:
    """(tenant_id, payment_id) of a WeChat payment: a system lookup, because WeChat's notification names
    no tenant (the index ix_payments_out_trade_no serves it)."""
    from app.core.db import session_scope

    if not isinstance(out_trade_no, str) or not out_trade_no:
        return None
    async with session_scope(system=True) as session:
        row = (await session.execute(text(
            "SELECT tenant_id, id FROM payments WHERE out_trade_no = :o AND method = 'wechat_pay'"),
            {"o": out_trade_no})).first()
    return (row[0], row[1]) if row else None


async def record_rejected_notification(tenant_id: UUID, payment_id: UUID, reason: str, detail: str) -> None:
    """A notification we refused, in the audit log of the tenant it named (only when its encrypted part
    proved readable with our key, so a stranger cannot write into a tenant's log)."""
    from app.core.db import session_scope

    async with session_scope(tenant_id) as session:
        audit.record(session, "payment.wechat_rejected", "payment", payment_id, source="notification",
                     reason=reason, detail=detail)


@dataclass
class NotifyAnswer:
    """What to answer WeChat: 204 (received; WeChat stops resending) or a 4xx/5xx with WeChat's
    `{"code": "FAIL", "message": …}` (WeChat resends later)."""

    status: int
    message: str | None = None


async def receive_wechat_notification(headers: dict[str, str], body: bytes) -> NotifyAnswer:
    """A payment notification, from verification to the completed order, in WeChat's answer terms.

    Verification and decryption first (a forged, tampered or stale notification changes nothing); then
    the tenant is found by out_trade_no with a system lookup, and the tenant's own transaction checks and
    applies it (`apply_wechat_payment`: once only, under the order's row lock)."""
    from app.core.context import RequestContext, current_context, reset_context, set_context
    from app.core.db import session_scope
    from app.integrations.wechat.pay import NotificationRejected, decrypt_resource

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
            found = await find_wechat_payment(resource.get("out_trade_no"))
        except Exception:  # noqa: BLE001 - unattributable: the log line above is all there is
            found = None
        if found is not None:
            await record_rejected_notification(found[0], found[1], exc.code, exc.detail)
        return NotifyAnswer(exc.status, exc.detail)
    if note["event_type"] != "TRANSACTION.SUCCESS":
        # Payment notifications only announce successes; anything else here has nothing for us to do.
        log.info("wechat pay notification %s ignored (event %s)", note["id"], note["event_type"])
        return NotifyAnswer(204)
    resource = note["resource"]
    found = await find_wechat_payment(resource.get("out_trade_no"))
    if found is None:
        log.warning("wechat pay notification for unknown out_trade_no %r", resource.get("out_trade_no"))
        return NotifyAnswer(404, "unknown out_trade_no")
    tenant_id, payment_id = found
    ctx = current_context()
    token = set_context(RequestContext(request_id=ctx.request_id, ip=ctx.ip, actor_type="system",
                                       actor_id="wechat-pay-notify"))
    try:
        async with session_scope(tenant_id) as session:
            outcome = await apply_wechat_payment(session, Actor.system(tenant_id), payment_id, resource,
                                                 source="notification", client=client)
    except AppError as exc:
        # Paid, but the order could not be completed (a card template withdrawn meanwhile, a frozen card
        # to top up): keep the money on record, tell staff, and stop WeChat's resending.
        log.error("wechat pay: order completion failed for payment %s: %s", payment_id, exc.code)
        async with session_scope(tenant_id) as session:
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
    await emit(session, "order.completion_failed", {"order_id": str(payment.order_id), "payment_id": str(payment.id),
                                                    "error": error.code, "detail": error.detail})


async def expire_order(session: AsyncSession, actor: Actor, order_id: UUID, client: WeChatPayClient | None) -> str:
    """The timeout job's step for one order past `expires_at`: ask WeChat; complete it if it was paid,
    else close the WeChat order and cancel ours (releasing the held tenders). Safe to run twice."""
    order = await _locked_order(session, actor.tenant_id, order_id)
    if order is None or order.status != "pending" or order.expires_at is None or order.expires_at > utcnow():
        return "skipped"
    wechat = next((p for p in await _payments(session, actor.tenant_id, order.id)
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
    await _release(session, actor, order, "微信支付超时未付")
    return "cancelled"


async def _query(client: WeChatPayClient, out_trade_no: str) -> dict[str, Any]:
    try:
        return await client.query_order(out_trade_no)
    except PayError as exc:
        if exc.verified and exc.wechat_code == "ORDER_NOT_EXIST":
            return {"trade_state": "NOTPAY"}  # never reached WeChat (the payer did not open the cashier)
        raise


# ---------------------------------------------------------------- cancelling


async def cancel_order(session: AsyncSession, actor: Actor, order_id: UUID, reason: str | None) -> Order:
    """Cancel a pending (or draft) order: close its WeChat order first, then give back every held tender."""
    order = await _locked_order(session, actor.tenant_id, order_id)
    if order is None:
        raise NotFound("order not found", code="order_not_found")
    await _require_access(session, actor, order, write=True)
    if order.status not in ("pending", "draft"):
        raise Conflict(f"only a pending order can be cancelled; this one is {order.status} (refund it instead)",
                       code="order_not_cancellable", status_now=order.status)
    wechat = next((p for p in await _payments(session, actor.tenant_id, order.id)
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
    await _release(session, actor, order, reason or "取消订单")
    return order


async def _release(session: AsyncSession, actor: Actor, order: Order, reason: str) -> None:
    """Reverse everything the order held or applied (each context's reversal is idempotent), close its
    tenders and mark it cancelled."""
    system = Actor.system(actor.tenant_id)  # the order's own holds are undone whoever cancels it
    await cards.reverse_ref(session, system, REF, order.id, reason)
    await inventory.reverse(session, system, REF, order.id, reason)
    await loyalty.reverse_points(session, system, ref_type=REF, ref_id=str(order.id), by_ref_type="order_cancel",
                                 by_ref_id=str(order.id), reason=reason)
    for payment in await _payments(session, order.tenant_id, order.id):
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
    await emit(session, "order.cancelled", {"order_id": str(order.id), "member_id": str(order.member_id),
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
    order = await session.get(Order, (actor.tenant_id, order_id))
    if order is None:
        raise NotFound("order not found", code="order_not_found")
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
        store = await session.get(Store, (actor.tenant_id, store_id))
        zone = ZoneInfo(store.timezone) if store else zone
    if date_from is not None:
        stmt = stmt.where(Order.created_at >= datetime.combine(date_from, time.min, zone))
    if date_to is not None:
        stmt = stmt.where(Order.created_at < datetime.combine(date_to + timedelta(days=1), time.min, zone))
    return await paginate(session, stmt, Order.id, params, descending=True)


async def present(session: AsyncSession, order: Order, wechat_pay: WeChatPayParams | None = None) -> OrderOut:
    lines = await _lines(session, order.tenant_id, order.id)
    payments = await _payments(session, order.tenant_id, order.id)
    if wechat_pay is None and order.status == "pending":
        # A pending order can be paid again from its detail page (the payer closed the cashier, say).
        pending = next((p for p in payments if p.method == "wechat_pay" and p.prepay_id and p.status == "pending"),
                       None)
        client = pay_client() if pending is not None else None
        if pending is not None and client is not None:
            wechat_pay = WeChatPayParams(prepay_id=pending.prepay_id,
                                         mini_program_params=client.mini_program_params(pending.prepay_id))
    earned = await _points_earned(session, order)
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


# ---------------------------------------------------------------- receipts


async def receipt(session: AsyncSession, actor: Actor, order_id: UUID) -> Receipt:
    order = await get_order(session, actor, order_id)
    store = await session.get(Store, (order.tenant_id, order.store_id))
    member = await members.get_member_row(session, Actor.system(order.tenant_id), order.member_id)
    zone = ZoneInfo(store.timezone if store else DEFAULT_TIMEZONE)
    lines = await _lines(session, order.tenant_id, order.id)
    payments = [p for p in await _payments(session, order.tenant_id, order.id) if p.status in ("succeeded", "pending")]

    def local(moment: datetime | None) -> str | None:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else None

    tenders = []
    for p in payments:
        detail = None
        if p.method == "stored_value":
            detail = f"本金 {_yuan(p.principal_used)} 赠送 {_yuan(p.bonus_used)}"
        elif p.method == "points":
            detail = f"{p.points} 积分"
        elif p.method == "cash" and p.cash_received is not None:
            detail = f"实收 {_yuan(p.cash_received)} 找零 {_yuan(p.change_given or 0)}"
        elif p.method == "wechat_pay" and p.status == "pending":
            detail = "待支付"
        tenders.append(ReceiptTender(method=p.method, label=TENDER_LABELS[p.method], amount=p.amount, detail=detail))
    return Receipt(
        order_id=order.id, order_no=order.order_no, status=order.status, store_name=store.name if store else "",
        store_address=store.address if store else None, member_name=member.name, member_phone=member.phone_masked,
        opened_at=local(order.created_at) or "", paid_at=local(order.paid_at),
        lines=[ReceiptLine(name=line.name, type=line.type, quantity=line.quantity, unit_price=line.unit_price,
                           list_amount=line.list_amount,
                           discount=line.line_discount + line.tier_discount + line.order_discount_share,
                           amount=line.amount, settled_by_card=line.settled_by_card,
                           note="次卡抵扣" if line.settled_by_card else (
                               f"赠送 {_yuan(line.top_up_bonus)}" if line.type == "top_up" and line.top_up_bonus
                               else None)) for line in lines],
        subtotal=order.subtotal, discount_total=order.discount_total, total=order.total, tenders=tenders,
        change_given=sum(p.change_given or 0 for p in payments),
        points_earned=await _points_earned(session, order))


async def _points_earned(session: AsyncSession, order: Order) -> int:
    if order.paid_at is None:
        return 0
    done = await loyalty.ref_points(session, Actor.system(order.tenant_id), ref_type=REF, ref_id=str(order.id))
    return done.earned


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen) // 100}.{abs(fen) % 100:02d}"


def receipt_html(r: Receipt) -> str:
    """A printable receipt (58/80 mm thermal printers print this page as is); every value is escaped."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(line.name)}<br><small>{e(LINE_LABELS.get(line.type, line.type))}"
        f"{' · ' + e(line.note) if line.note else ''}</small></td><td class=n>{line.quantity}</td>"
        f"<td class=n>{e(_yuan(line.unit_price))}</td><td class=n>{e(_yuan(line.amount))}</td></tr>"
        for line in r.lines)
    tenders = "".join(
        f"<tr><td>{e(t.label)}{'<br><small>' + e(t.detail) + '</small>' if t.detail else ''}</td>"
        f"<td class=n colspan=3>{e(_yuan(t.amount))}</td></tr>" for t in r.tenders)
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>小票 {e(r.order_no)}</title>
<style>body{{font-family:"PingFang SC","Microsoft YaHei",sans-serif;width:72mm;margin:0 auto;font-size:12px}}
h1{{font-size:16px;text-align:center;margin:4px 0}}table{{width:100%;border-collapse:collapse}}
td,th{{padding:2px 0;vertical-align:top}}.n{{text-align:right;white-space:nowrap}}
hr{{border:0;border-top:1px dashed #000}}small{{color:#555}}@media print{{button{{display:none}}}}</style>
</head><body>
<h1>{e(r.store_name)}</h1>
{f'<p>地址：{e(r.store_address)}</p>' if r.store_address else ''}
<p>单号：{e(r.order_no)}<br>状态：{e(STATUS_LABELS.get(r.status, r.status))}<br>开单时间：{e(r.opened_at)}
{f'<br>支付时间：{e(r.paid_at)}' if r.paid_at else ''}<br>会员：{e(r.member_name)}
{f' {e(r.member_phone)}' if r.member_phone else ''}</p>
<hr><table><tr><th align=left>项目</th><th class=n>数量</th><th class=n>单价</th><th class=n>金额</th></tr>
{rows}</table><hr>
<table><tr><td>合计</td><td class=n colspan=3>{e(_yuan(r.subtotal))}</td></tr>
<tr><td>优惠</td><td class=n colspan=3>-{e(_yuan(r.discount_total))}</td></tr>
<tr><td><b>应收</b></td><td class=n colspan=3><b>{e(_yuan(r.total))}</b></td></tr></table><hr>
<table><tr><th align=left colspan=4>支付方式</th></tr>{tenders}
{f'<tr><td>找零</td><td class=n colspan=3>{e(_yuan(r.change_given))}</td></tr>' if r.change_given else ''}
{f'<tr><td>本单积分</td><td class=n colspan=3>+{r.points_earned}</td></tr>' if r.points_earned else ''}
</table><hr><p style="text-align:center">谢谢惠顾，祝您健康！</p>
<button onclick="window.print()">打印</button>
</body></html>
"""


# ---------------------------------------------------------------- member-tier discounts


async def set_tier_discount(session: AsyncSession, actor: Actor, *, tag_name: str, percent_off: int,
                            line_types: list[str] | None = None, active: bool = True) -> TierDiscount:
    """Members tagged `tag_name` get `percent_off` % on lines of `line_types` (default services and products).
    A price policy, so it needs catalog:write (the front desk sells, it does not set discounts)."""
    actor.require("catalog:write")
    if not 1 <= percent_off <= 90:
        raise Unprocessable("percent_off: between 1 and 90", code="validation_error", field="percent_off")
    types = line_types or ["service", "product"]
    if not set(types) <= {"service", "product", "card", "top_up"}:
        raise Unprocessable("line_types: service, product, card or top_up", code="validation_error",
                            field="line_types")
    row = (await session.exec(select(TierDiscount).where(TierDiscount.tenant_id == actor.tenant_id,
                                                          TierDiscount.tag_name == tag_name))).first()
    row = row or TierDiscount(tenant_id=actor.tenant_id, tag_name=tag_name, percent_off=percent_off)
    row.percent_off, row.line_types, row.active = percent_off, types, active
    session.add(row)
    await session.flush()
    audit.record(session, "tier_discount.set", "tier_discount", row.id, tag=tag_name, percent_off=percent_off,
                 line_types=types, active=active)
    return row


async def list_tier_discounts(session: AsyncSession, actor: Actor) -> list[TierDiscount]:
    actor.require("orders:read")
    return list((await session.exec(select(TierDiscount).where(TierDiscount.tenant_id == actor.tenant_id)
                                    .order_by(TierDiscount.tag_name))).all())


# ---------------------------------------------------------------- plugged into members


@members.timeline_source("order")
async def _orders_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                           before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    stmt = select(Order).where(Order.tenant_id == tenant_id, Order.member_id == member_id)
    if before is not None:
        stmt = stmt.where(members.before_clause(Order.created_at, Order.id, before, "order:"))
    rows = (await session.exec(stmt.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit))).all()
    return [TimelineItem(type="order", occurred_at=o.created_at, id=f"order:{o.id}",
                         title=f"订单 {o.order_no} · {STATUS_LABELS.get(o.status, o.status)} · {_yuan(o.total)}",
                         data={"order_id": str(o.id), "order_no": o.order_no, "status": o.status, "total": o.total,
                               "store_id": str(o.store_id)}) for o in rows]


@members.merge_mover("orders")
async def _move_orders(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID, survivor_id: UUID) -> dict[str, int]:
    moved = await session.execute(update(Order).where(Order.tenant_id == tenant_id, Order.member_id == duplicate_id)
                                  .values(member_id=survivor_id))
    return {"orders": moved.rowcount}
