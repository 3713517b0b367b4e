"""Booking's reactions to events, in the dispatcher's transaction: the waitlist follows the appointments, and
its offers reach the member through messaging."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.events import OutboxEvent, on
from app.domain.booking import waitlist_offers
from app.domain.booking.events import (
    APPOINTMENT_BOOKED,
    APPOINTMENT_CANCELLED,
    APPOINTMENT_RESCHEDULED,
    WAITLIST_SLOT_OFFERED,
)
from app.domain.booking.models import WaitlistEntry
from app.domain.booking.waitlist import OPEN_STATUSES
from app.domain.catalog import service as catalog
from app.domain.members import service as members
from app.domain.messaging import service as messaging
from app.domain.messaging import subscriptions
from app.domain.tenancy import service as tenancy

# The message template a waitlist offer is sent with (the tenant creates it with its WeChat template id).
WAITLIST_OFFER_TEMPLATE = "waitlist_offer"

@on(APPOINTMENT_CANCELLED, APPOINTMENT_RESCHEDULED)
async def offer_freed_slot(session: AsyncSession, event: OutboxEvent) -> None:
    """Offer the slot a cancellation (or the old time of a reschedule) freed to the first matching waiter, and
    hold it for them (see `waitlist_offers`)."""
    payload = event.payload
    freed = payload.get("previous_starts_at") if event.topic == APPOINTMENT_RESCHEDULED else payload["starts_at"]
    if freed is None:
        return
    starts_at = datetime.fromisoformat(freed)
    if starts_at <= utcnow():
        return
    tenant_id, store_id = event.tenant_id, UUID(payload["store_id"])
    service_id = UUID(payload["service_id"])
    staff_id = UUID(payload["previous_staff_id"] if event.topic == APPOINTMENT_RESCHEDULED
                    and payload.get("previous_staff_id") else payload["staff_id"])
    store = await tenancy.store_row(session, tenant_id, store_id)
    service = await catalog.service_row(session, tenant_id, service_id)
    if store is None or service is None:
        return
    await waitlist_offers.offer_slot(session, tenant_id, store=store, service=service, staff_id=staff_id,
                                     starts_at=starts_at)


@on(APPOINTMENT_BOOKED)
async def close_entries_on_booking(session: AsyncSession, event: OutboxEvent) -> None:
    """A member who booked that service on that day no longer waits for it."""
    payload = event.payload
    store = await tenancy.store_row(session, event.tenant_id, UUID(payload["store_id"]))
    if store is None:
        return
    day = datetime.fromisoformat(payload["starts_at"]).astimezone(tenancy.store_zone(store)).date()
    closed = await session.execute(update(WaitlistEntry).where(
        WaitlistEntry.tenant_id == event.tenant_id, WaitlistEntry.member_id == UUID(payload["member_id"]),
        WaitlistEntry.store_id == store.id, WaitlistEntry.service_id == UUID(payload["service_id"]),
        WaitlistEntry.day == day, WaitlistEntry.status.in_(OPEN_STATUSES),
    ).values(status="booked", appointment_id=UUID(payload["appointment_id"]), hold_expires_at=None,
             updated_at=utcnow()).returning(WaitlistEntry.id))
    # A slot still held for one of those entries is not needed any more (the member booked another time).
    await waitlist_offers.release_closed_offers(session, event.tenant_id, [row[0] for row in closed.all()])


@on(WAITLIST_SLOT_OFFERED)
async def tell_member_of_offer(session: AsyncSession, event: OutboxEvent) -> None:
    """The offer reaches the member as a mini-program subscribe message (template `waitlist_offer`, sent only
    with their subscription consent) whose deep link opens this offer. Nothing when the tenant has no such
    template; at most one message per offer (the cause is the entry)."""
    tenant_id, payload = event.tenant_id, event.payload
    if await messaging.find_template(session, tenant_id, WAITLIST_OFFER_TEMPLATE) is None:
        return
    member_id = UUID(payload["member_id"])
    store = await tenancy.store_row(session, tenant_id, UUID(payload["store_id"]))
    service = await catalog.service_row(session, tenant_id, UUID(payload["service_id"]))
    zone = tenancy.store_zone(store)
    starts_at = datetime.fromisoformat(payload["starts_at"]).astimezone(zone)
    hold = payload.get("hold_expires_at")
    names = await members.member_names(session, tenant_id, {member_id})
    await subscriptions.send_template_with_page_query(
        session, Actor.system(tenant_id), template_key=WAITLIST_OFFER_TEMPLATE, member_id=member_id,
        variables={"member_name": names.get(member_id, ""), "store_name": store.name if store else "",
                   "service_name": service.name if service else "", "starts_at": f"{starts_at:%Y-%m-%d %H:%M}",
                   "hold_until": f"{datetime.fromisoformat(hold).astimezone(zone):%H:%M}" if hold else ""},
        cause=f"waitlist_offer:{payload['entry_id']}", page_query={"entry_id": payload["entry_id"]})
