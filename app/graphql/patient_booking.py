"""The patient books and pays in the mini-program (GraphQL, `patient` tokens): the store's booking rules, the
waitlist and its offers, paying with stored value, points, a coupon and WeChat Pay, claiming published
coupons, receipts, and subscribe-message consent.

Booking itself (`bookAppointment`, `rescheduleAppointment`, `cancelAppointment`) is booking's GraphQL; a
patient is held there to the store's horizon and, for changes, its cancellation cut-off. Every resolver here
calls the owning context's service, as the REST routes do, with the same errors (`extensions.code`, and
`extensions.field` for bad input).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from app.domain.booking import booking_rules, waitlist
from app.domain.booking.presenters import present
from app.domain.booking.waitlist import WaitlistJoin
from app.domain.checkout import orders, patient_orders, receipts
from app.domain.checkout.patient_orders import PatientOrderCreate
from app.domain.loyalty import publications
from app.domain.messaging import subscriptions
from app.domain.messaging.subscriptions import SubscribeResults
from app.graphql.booking import Appointment
from app.graphql.checkout import Order
from app.graphql.context import Context, parse_id, validated

PATIENT = ("patient",)
EVERYONE = ("staff", "integration", "patient")


def _id(value: Any) -> strawberry.ID | None:
    return None if value is None else strawberry.ID(str(value))


@strawberry.type
class BookingRules:
    store_id: strawberry.ID
    timezone: str
    slot_step_minutes: int
    lead_time_minutes: int
    horizon_days: int
    bookable_from: datetime
    bookable_until: datetime
    cancel_window_hours: int = strawberry.field(description="Patients cancel or move a booking themselves until "
                                                            "this many hours before it starts")
    late_cancel_action: str
    late_cancel_fee: int
    no_show_action: str
    no_show_fee: int


@strawberry.type
class WaitlistOffer:
    id: strawberry.ID
    member_id: strawberry.ID
    store_id: strawberry.ID
    service_id: strawberry.ID
    day: date
    status: str = strawberry.field(description="waiting, offered, booked, cancelled, expired")
    offered_starts_at: datetime | None
    offered_staff_id: strawberry.ID | None
    hold_expires_at: datetime | None = strawberry.field(description="While offered: the slot is held until then")
    appointment_id: strawberry.ID | None

    @classmethod
    def of(cls, entry: Any) -> WaitlistOffer:
        return cls(id=strawberry.ID(str(entry.id)), member_id=strawberry.ID(str(entry.member_id)),
                   store_id=strawberry.ID(str(entry.store_id)), service_id=strawberry.ID(str(entry.service_id)),
                   day=entry.day, status=entry.status, offered_starts_at=entry.offered_starts_at,
                   offered_staff_id=_id(entry.offered_staff_id), hold_expires_at=entry.hold_expires_at,
                   appointment_id=_id(entry.appointment_id))


@strawberry.type
class ClaimableCoupon:
    id: strawberry.ID
    title: str
    description: str | None
    coupon_name: str
    kind: str
    value: int
    cap_fen: int | None
    threshold_fen: int | None
    valid_days: int | None
    valid_until: datetime | None
    ends_at: datetime | None
    remaining: int | None
    claimed_by_me: int
    can_claim: bool


@strawberry.type
class ClaimedCoupon:
    id: strawberry.ID
    code: str
    name: str
    kind: str
    value: int
    status: str
    valid_from: datetime
    valid_until: datetime | None


@strawberry.type
class SubscribeConsent:
    wechat_template_id: str
    granted: int = strawberry.field(description="Messages of this template still allowed")


@strawberry.type
class ReceiptLine:
    name: str
    type: str
    quantity: int
    amount: int
    note: str | None


@strawberry.type
class ReceiptTender:
    method: str
    label: str
    amount: int
    detail: str | None


@strawberry.type
class OrderReceipt:
    order_id: strawberry.ID
    order_no: str
    status: str
    store_name: str
    opened_at: str
    paid_at: str | None
    lines: list[ReceiptLine]
    subtotal: int
    discount_total: int
    total: int
    tenders: list[ReceiptTender]
    points_earned: int


@strawberry.input
class PatientOrderLineInput:
    type: str = strawberry.field(description="service, card or top_up")
    service_id: strawberry.ID | None = None
    quantity: int | None = None
    card_template_id: strawberry.ID | None = None
    card_id: strawberry.ID | None = strawberry.field(default=None, description="top_up: the stored-value card")
    amount: int | None = strawberry.field(default=None, description="top_up: principal in fen")


@strawberry.input
class PatientTenderInput:
    method: str = strawberry.field(description="stored_value, points, coupon or wechat_pay")
    amount: int | None = None
    card_id: strawberry.ID | None = None
    points: int | None = None
    coupon_id: strawberry.ID | None = None


@strawberry.input
class PatientOrderInput:
    store_id: strawberry.ID
    lines: list[PatientOrderLineInput]
    payments: list[PatientTenderInput]
    member_id: strawberry.ID | None = None
    appointment_id: strawberry.ID | None = None
    note: str | None = None


def _plain(obj: Any) -> dict[str, Any]:
    """A GraphQL input as the REST body it stands for (None: not given)."""
    return {k: (str(v) if isinstance(v, str) else v) for k, v in vars(obj).items() if v is not None}


@strawberry.type
class PatientBookingQueries:
    @strawberry.field(description="The store's booking rules as patients are held to them.")
    async def booking_rules(self, info: Info[Context, None], store_id: strawberry.ID) -> BookingRules:
        actor = await info.context.actor(audiences=EVERYONE)
        rules = await booking_rules.booking_rules(info.context.session, actor, parse_id(store_id, "store_id"))
        return BookingRules(**{**rules.model_dump(), "store_id": strawberry.ID(str(rules.store_id))})

    @strawberry.field(description="A waitlist entry and its offer (what the offer message's deep link opens).")
    async def waitlist_entry(self, info: Info[Context, None], id: strawberry.ID) -> WaitlistOffer:
        actor = await info.context.actor(audiences=EVERYONE)
        return WaitlistOffer.of(await waitlist.get_entry(info.context.session, actor, parse_id(id, "id")))

    @strawberry.field(description="Coupons open for claiming now (领券中心).")
    async def claimable_coupons(self, info: Info[Context, None]) -> list[ClaimableCoupon]:
        actor = await info.context.actor(audiences=PATIENT)
        return [ClaimableCoupon(**{**c.model_dump(exclude={"item_service_ids"}), "id": strawberry.ID(str(c.id))})
                for c in await publications.claimable(info.context.session, actor)]

    @strawberry.field(description="Subscribe templates the patient still allows messages of.")
    async def my_message_consents(self, info: Info[Context, None]) -> list[SubscribeConsent]:
        actor = await info.context.actor(audiences=PATIENT)
        return [SubscribeConsent(wechat_template_id=c.wechat_template_id, granted=c.granted)
                for c in await subscriptions.current_consents(info.context.session, actor)]

    @strawberry.field(description="An order's receipt (patients: their own and their family's).")
    async def order_receipt(self, info: Info[Context, None], order_id: strawberry.ID) -> OrderReceipt:
        actor = await info.context.actor(audiences=EVERYONE)
        r = await receipts.receipt(info.context.session, actor, parse_id(order_id, "order_id"))
        return OrderReceipt(
            order_id=strawberry.ID(str(r.order_id)), order_no=r.order_no, status=r.status, store_name=r.store_name,
            opened_at=r.opened_at, paid_at=r.paid_at, subtotal=r.subtotal, discount_total=r.discount_total,
            total=r.total, points_earned=r.points_earned,
            lines=[ReceiptLine(name=x.name, type=x.type, quantity=x.quantity, amount=x.amount, note=x.note)
                   for x in r.lines],
            tenders=[ReceiptTender(method=t.method, label=t.label, amount=t.amount, detail=t.detail)
                     for t in r.tenders])


@strawberry.type
class PatientBookingMutations:
    @strawberry.mutation(description="Pay for a service (optionally the booked appointment), a card or a top-up "
                                     "with stored value, points, a coupon and WeChat Pay for the rest. The "
                                     "tenders must add up to the total (payment_mismatch). With WeChat Pay the "
                                     "order is pending and wechatPayParams go to wx.requestPayment.")
    async def pay_order(self, info: Info[Context, None], input: PatientOrderInput) -> Order:
        actor = await info.context.actor(audiences=PATIENT)
        data = validated(PatientOrderCreate, store_id=str(input.store_id),
                         member_id=str(input.member_id) if input.member_id else None,
                         appointment_id=str(input.appointment_id) if input.appointment_id else None,
                         note=input.note, lines=[_plain(line) for line in input.lines],
                         payments=[_plain(p) for p in input.payments])
        result = await patient_orders.create_patient_order(info.context.session, actor, data)
        return Order.of(await orders.present(info.context.session, result.order, result.wechat_pay))

    @strawberry.mutation(description="Claim one coupon of a published offer for yourself.")
    async def claim_coupon(self, info: Info[Context, None], publication_id: strawberry.ID) -> ClaimedCoupon:
        actor = await info.context.actor(audiences=PATIENT)
        coupon = await publications.claim(info.context.session, actor, parse_id(publication_id, "publication_id"))
        out = publications.present_claimed(coupon)
        return ClaimedCoupon(id=strawberry.ID(str(out.id)), code=out.code, name=out.name, kind=out.kind,
                             value=out.value, status=out.status, valid_from=out.valid_from,
                             valid_until=out.valid_until)

    @strawberry.mutation(description="Record what wx.requestSubscribeMessage answered ({templateId: accept|reject|"
                                     "ban|filter}); each accept allows one message of that template.")
    async def report_subscribe_results(self, info: Info[Context, None], results: JSON,
                                       scene: str | None = None) -> list[SubscribeConsent]:
        actor = await info.context.actor(audiences=PATIENT)
        data = validated(SubscribeResults, results=results, scene=scene)
        consents, _ = await subscriptions.record_subscribe_results(info.context.session, actor, data)
        return [SubscribeConsent(wechat_template_id=c.wechat_template_id, granted=c.granted) for c in consents]

    @strawberry.mutation(description="Wait for a service on a day; a freed slot is offered and held for you.")
    async def join_waitlist(self, info: Info[Context, None], member_id: strawberry.ID, store_id: strawberry.ID,
                            service_id: strawberry.ID, day: date,
                            staff_id: strawberry.ID | None = None) -> WaitlistOffer:
        actor = await info.context.actor(audiences=EVERYONE)
        data = validated(WaitlistJoin, member_id=str(member_id), store_id=str(store_id), service_id=str(service_id),
                         day=day.isoformat(), staff_id=str(staff_id) if staff_id else None)
        return WaitlistOffer.of(await waitlist.join(info.context.session, actor, data))

    @strawberry.mutation(description="Take the slot offered to a waitlist entry: it is booked for the member.")
    async def accept_waitlist_offer(self, info: Info[Context, None], entry_id: strawberry.ID) -> Appointment:
        actor = await info.context.actor(audiences=EVERYONE)
        placed = await waitlist.accept_offer(info.context.session, actor, parse_id(entry_id, "entry_id"))
        shown = await present(info.context.session, actor, [a for a, _ in placed], {a.id: ids for a, ids in placed})
        return Appointment.of(shown[0])

    @strawberry.mutation(description="Leave the waitlist (declining an offer: the slot goes to the next waiter).")
    async def leave_waitlist(self, info: Info[Context, None], entry_id: strawberry.ID) -> WaitlistOffer:
        actor = await info.context.actor(audiences=EVERYONE)
        return WaitlistOffer.of(await waitlist.leave(info.context.session, actor, parse_id(entry_id, "entry_id")))
