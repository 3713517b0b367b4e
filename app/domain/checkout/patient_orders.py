"""The patient pays in the mini-program: a booked service (prepaid), a card, or a top-up, with any mix of stored
value, points, one coupon and WeChat Pay for the rest.

Only what the patient may do is checked here; the order then takes checkout's one path (`orders.open_order`):
the same pricing, the same tenders in the same order, the same locks and conditional updates that keep
stored value, points and coupons from being spent twice under concurrent requests, and the same WeChat Pay
prepay (JSAPI, charged to the patient's own WeChat account: the server knows the openid) completed by
WeChat's signed notification. Nothing of it is forked.

What the patient may not do: pay cash, give discounts, sell products, charge a completed service
(`service_record_id`) or settle with card sessions (that happens at the visit). A prepaid appointment is
paid once: a second open or paid mini-program order for it is 409 `appointment_already_paid` (a partial
unique index backs the check under concurrent requests). When the appointment is completed, the service
record is settled by the prepaid order (`settle_prepaid_service`), so the front desk does not charge it again.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, StrictInt
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.errors import AppError, Conflict, Forbidden, NotFound, Unprocessable
from app.core.schemas import Fen, Strict
from app.domain.booking import service as booking
from app.domain.cards import templates as card_templates
from app.domain.catalog import service as catalog
from app.domain.checkout import orders
from app.domain.checkout.models import Order, OrderLine
from app.domain.checkout.schemas import (
    MAX_FEN,
    CardLineIn,
    CouponTender,
    OrderCreate,
    PointsTender,
    ServiceLineIn,
    StoredValueTender,
    TopUpLineIn,
    WeChatPayTender,
)
from app.domain.visits import service as visits

log = logging.getLogger("careloop.checkout")

PREPAY_INDEX = "uq_orders_patient_appointment"
PAYABLE_APPOINTMENT_STATUSES = ("booked", "checked_in")
OPEN_OR_PAID = ("pending", "paid", "partially_refunded")


class PatientServiceLine(Strict):
    type: Literal["service"]
    service_id: UUID
    quantity: StrictInt = Field(1, ge=1, le=10)


class PatientCardLine(Strict):
    type: Literal["card"]
    card_template_id: UUID


class PatientTopUpLine(Strict):
    type: Literal["top_up"]
    card_id: UUID
    amount: Fen = Field(ge=1, le=MAX_FEN, description="Principal credited, fen; the bonus follows the card's template")


PatientLine = Annotated[PatientServiceLine | PatientCardLine | PatientTopUpLine, Field(discriminator="type")]
PatientTender = Annotated[StoredValueTender | PointsTender | CouponTender | WeChatPayTender,
                          Field(discriminator="method")]


class PatientOrderCreate(Strict):
    member_id: UUID | None = Field(None, description="Who the order is for: the patient (omitted) or someone of "
                                                     "their family")
    store_id: UUID
    appointment_id: UUID | None = Field(None, description="Prepay this booked appointment; its service must be "
                                                          "one of the lines")
    lines: list[PatientLine] = Field(min_length=1, max_length=20)
    payments: list[PatientTender] = Field(
        min_length=1, max_length=4,
        description="Stored value, points, one coupon and WeChat Pay for the rest; they must sum to the total "
                    "(422 `payment_mismatch` naming `payments`, with the `gap`)")
    note: str | None = Field(None, max_length=200)


def _as_order_line(line: PatientServiceLine | PatientCardLine | PatientTopUpLine):
    if isinstance(line, PatientServiceLine):
        return ServiceLineIn(type="service", service_id=line.service_id, quantity=line.quantity)
    if isinstance(line, PatientCardLine):
        return CardLineIn(type="card", card_template_id=line.card_template_id)
    return TopUpLineIn(type="top_up", card_id=line.card_id, amount=line.amount)


async def _on_sale(session: AsyncSession, actor: Actor, data: PatientOrderCreate) -> None:
    """Patients buy only what the clinic put on sale in the mini-program: an unpublished (or unknown) service
    or card template is 404, naming the line, as if it did not exist."""
    wanted = {line.service_id for line in data.lines if isinstance(line, PatientServiceLine)}
    published = {s.id for s in await catalog.published_services(session, actor.tenant_id, wanted)} if wanted else set()
    for index, line in enumerate(data.lines):
        if isinstance(line, PatientServiceLine) and line.service_id not in published:
            raise NotFound("service not found", code="service_not_found", field=f"lines.{index}.service_id")
        if isinstance(line, PatientCardLine):
            try:
                await card_templates.on_sale_template(session, actor.tenant_id, line.card_template_id)
            except NotFound as exc:
                exc.extra["field"] = f"lines.{index}.card_template_id"
                raise


async def _payable_appointment(session: AsyncSession, actor: Actor, data: PatientOrderCreate,
                               member_id: UUID) -> None:
    """The appointment is the member's, booked at this store for one of the lines' services, and not yet
    prepaid (409 `appointment_already_paid` with the order that pays it)."""
    assert data.appointment_id is not None
    appointment = await booking.appointment_of(session, actor.tenant_id, data.appointment_id)
    if appointment is None or appointment.member_id != member_id:
        raise NotFound("appointment not found", code="appointment_not_found", field="appointment_id")
    if appointment.status not in PAYABLE_APPOINTMENT_STATUSES:
        raise Conflict(f"the appointment is {appointment.status}: there is nothing to pay ahead",
                       code="appointment_not_payable", field="appointment_id", current_status=appointment.status)
    if appointment.store_id != data.store_id:
        raise Unprocessable("store_id: the appointment is at another store", code="validation_error",
                            field="store_id")
    if not any(isinstance(line, PatientServiceLine) and line.service_id == appointment.service_id
               for line in data.lines):
        raise Unprocessable("lines: the appointment's service must be one of the lines", code="validation_error",
                            field="lines")
    paid = (await session.exec(select(Order.id).where(
        Order.tenant_id == actor.tenant_id, Order.appointment_id == appointment.id, Order.opened_by_kind == "patient",
        Order.status.in_(OPEN_OR_PAID)).limit(1))).first()
    if paid is not None:
        raise Conflict("this appointment is already paid (or being paid)", code="appointment_already_paid",
                       field="appointment_id", order_id=str(paid))


async def create_patient_order(session: AsyncSession, actor: Actor, data: PatientOrderCreate) -> orders.OrderResult:
    """Open and pay the patient's order for themselves or their family (404 for anyone else). With a WeChat
    Pay tender the order is `pending` and its `wx.requestPayment` parameters are in the answer; otherwise it is
    paid at once. Bad input is a 422 naming the field, and nothing is written."""
    if actor.kind != "patient":
        raise Forbidden("this is the patient's own checkout; staff open orders at POST /orders",
                        code="permission_denied")
    member_id = data.member_id or actor.id
    await _on_sale(session, actor, data)
    if data.appointment_id is not None:
        await _payable_appointment(session, actor, data, member_id)
    order = OrderCreate(member_id=member_id, store_id=data.store_id, appointment_id=data.appointment_id,
                        note=data.note, lines=[_as_order_line(line) for line in data.lines],
                        payments=list(data.payments))
    try:
        return await orders.open_order(session, actor, order)
    except IntegrityError as exc:
        # A concurrent order for the same appointment committed first (the partial unique index).
        constraint = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
        if constraint == PREPAY_INDEX:
            raise Conflict("this appointment is already paid (or being paid)", code="appointment_already_paid",
                           field="appointment_id") from None
        raise


async def settle_prepaid_service(session: AsyncSession, tenant_id: UUID, appointment_id: UUID,
                                 service_record_id: UUID) -> bool:
    """For checkout's handler on `appointment.completed`: the service record of an appointment the patient
    prepaid is settled by that order (claimed as any completed service charged at checkout), so it no longer
    waits for payment. False when nothing was prepaid, or the record was settled otherwise (a card session)."""
    order = (await session.exec(select(Order).where(
        Order.tenant_id == tenant_id, Order.appointment_id == appointment_id, Order.opened_by_kind == "patient",
        Order.status.in_(("paid", "partially_refunded"))).limit(1))).first()
    if order is None:
        return False
    try:
        async with session.begin_nested():  # undone whole when no line of the order is this service
            record = await visits.hold_for_checkout(session, Actor.system(tenant_id), service_record_id,
                                                    member_id=order.member_id, order_id=order.id)
            line = (await session.exec(select(OrderLine).where(
                OrderLine.tenant_id == tenant_id, OrderLine.order_id == order.id, OrderLine.type == "service",
                OrderLine.service_id == record.service_id, OrderLine.service_record_id.is_(None))
                .order_by(OrderLine.line_no).limit(1).with_for_update())).first()
            if line is None:
                raise _NothingToSettle
            line.service_record_id = record.id
            session.add(line)
            await session.flush()
    except (AppError, _NothingToSettle) as exc:  # settled with a card session, by another order, or not prepaid
        log.info("prepaid service not settled by its order",
                 extra={"order_id": str(order.id), "code": getattr(exc, "code", "no_line")})
        return False
    return True


class _NothingToSettle(Exception):
    pass
