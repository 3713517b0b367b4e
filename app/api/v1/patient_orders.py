"""The patient pays in the mini-program (`patient` audience): a booked service, a card or a top-up, with stored
value, points, a coupon and WeChat Pay for the rest. Receipts are `GET /orders/{id}/receipt` (patients read
their own and their family's)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import current_actor, get_db
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.domain.checkout import orders, patient_orders
from app.domain.checkout.patient_orders import PatientOrderCreate
from app.domain.checkout.schemas import OrderOut

router = APIRouter(tags=["patient"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
PATIENT = ("patient",)


@router.post("/patient/orders", status_code=201, response_model=OrderOut, operation_id="patient_create_order",
             responses={409: {"description": "A tender cannot be drawn (`insufficient_balance`, `coupon_used`, "
                                             "`insufficient_points`, …) or the appointment is already paid "
                                             "(`appointment_already_paid`)"}})
async def create_patient_order(body: PatientOrderCreate, session: AsyncSession = Depends(get_db),
                               actor: Actor = current_actor(PATIENT)) -> OrderOut:
    """Pay for a service (optionally the booked `appointment_id` it is for), a card or a top-up, for yourself or
    your family, with any mix of `stored_value` (your or a family-shared card), `points`, one `coupon` and
    `wechat_pay` for the rest. The tenders must add up to the total: 422 `payment_mismatch` names `payments`
    and the `gap`; points above the store's cap are 422 `points_cap_exceeded` and a coupon that does not apply
    to the lines 422 `coupon_not_applicable`, each naming `payments.<i>…`; nothing is written then. With WeChat
    Pay the order is `pending`, `wechat_pay.mini_program_params` go to `wx.requestPayment`, and WeChat's
    notification marks it `paid` (your own WeChat account is charged: no openid to send)."""
    result = await patient_orders.create_patient_order(session, actor, body)
    return await orders.present(session, result.order, result.wechat_pay)
