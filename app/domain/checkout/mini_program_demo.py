"""Demo of the patient's mini-program checkout: 王芳 allows subscribe messages, claims a published coupon and
prepays her booked 艾灸 with it and her stored-value card.

Called by app/seed.py after booking, loyalty, checkout and messaging are seeded, inside the seed's transaction.
Everything goes through the services the mini-program's requests use, as the patient (her own actor), so the
demo shows real consent records, a claim, ledger entries and a paid mini-program order.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.clock import utcnow
from app.domain.booking import service as booking
from app.domain.cards import service as cards
from app.domain.catalog import service as catalog
from app.domain.catalog.schemas import ServiceListing
from app.domain.checkout import patient_orders, tier_discounts
from app.domain.checkout.patient_orders import PatientOrderCreate
from app.domain.loyalty import publications
from app.domain.loyalty import service as loyalty
from app.domain.loyalty.publications import PublicationCreate
from app.domain.loyalty.schemas import CouponTemplateCreate
from app.domain.members import service as members
from app.domain.messaging import service as messaging
from app.domain.messaging import subscriptions
from app.domain.messaging.schemas import TemplateCreate
from app.domain.messaging.subscriptions import SubscribeResults

PATIENT = "王芳"
WAITLIST_OFFER = {
    "key": "waitlist_offer", "name": "候补空位通知", "channel": "mini_program_subscribe",
    "wechat_template_id": "demo-waitlist-offer", "page": "pages/waitlist/offer",
    "body": "{{member_name}}您好，您候补的{{service_name}}有空位了：{{store_name}} {{starts_at}}，"
            "已为您保留到{{hold_until}}，请尽快确认。",
    "variables": ["member_name", "store_name", "service_name", "starts_at", "hold_until"],
    "wechat_fields": {"thing1": "{{service_name}}", "time2": "{{starts_at}}", "thing3": "{{store_name}}",
                      "thing4": "保留至{{hold_until}}，请尽快确认"},
}
COUPON = {"name": "新客立减20元", "kind": "fixed", "value": 2000, "valid_days": 30,
          "description": "小程序领券，全场通用"}


async def seed_mini_program(session: AsyncSession, actor: Actor) -> list[str]:
    """Returns one line per thing made (for the seed's summary)."""
    made: list[str] = []
    if await messaging.find_template(session, actor.tenant_id, WAITLIST_OFFER["key"]) is None:
        await messaging.create_template(session, actor, TemplateCreate(**WAITLIST_OFFER))
        made.append("message template waitlist_offer (候补空位通知, subscribe message with a deep link)")
    template = await loyalty.create_template(session, actor, CouponTemplateCreate(**COUPON))
    publication = await publications.publish(session, actor, PublicationCreate(
        template_id=template.id, title="新客立减20元", description="每人限领1张，到店或小程序下单可用",
        total_quantity=200))
    made.append(f"coupon publication {publication.title} (200 to claim in the mini-program)")

    member_id = (await members.member_ids_by_name(session, actor.tenant_id, {PATIENT})).get(PATIENT)
    if member_id is None:
        return made
    patient = await members.load_patient_actor(session, actor.tenant_id, member_id)
    await subscriptions.record_subscribe_results(session, patient, SubscribeResults(
        results={"demo-appointment-reminder": "accept", "demo-waitlist-offer": "accept"}, scene="booking_done"))
    made.append(f"{PATIENT}: subscribe consent for the appointment reminder and waitlist offers")
    coupon = await publications.claim(session, patient, publication.id)
    made.append(f"{PATIENT}: claimed {coupon.name}")

    appointment = await booking.next_appointment(session, actor.tenant_id, member_id, after=utcnow())
    stored = next((c for c in await cards.member_cards(session, actor, member_id, include_shared=False)
                   if c.kind == "stored_value"), None)
    if appointment is None or stored is None:
        return made
    service = await catalog.service_row(session, actor.tenant_id, appointment.service_id)
    if service is None or not service.active:
        return made
    if not service.published:  # the mini-program sells only what is published
        await catalog.set_service_listing(session, actor, service.id, ServiceListing(
            published=True, aftercare_note=service.aftercare_note, photo_url=service.photo_url))
    # What the order will cost: the member-tier price (checkout's rule), less the coupon.
    percent = (await tier_discounts.tier_percents(session, actor.tenant_id, member_id)).get("service", 0)
    total = service.price - service.price * percent // 100
    result = await patient_orders.create_patient_order(session, patient, PatientOrderCreate.model_validate({
        "store_id": appointment.store_id, "appointment_id": appointment.id, "note": "小程序预付",
        "lines": [{"type": "service", "service_id": service.id}],
        "payments": [{"method": "coupon", "coupon_id": coupon.id},
                     {"method": "stored_value", "amount": total - COUPON["value"], "card_id": stored.id}]}))
    order = result.order
    made.append(f"{PATIENT}: prepaid {service.name} in the mini-program, order {order.order_no} ({order.status}, "
                f"¥{order.total / 100:.2f}: coupon + stored value)")
    return made
