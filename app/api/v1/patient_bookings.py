"""Patient booking around the appointments API: taking a waitlist offer (the slot a cancellation freed, held
for the member until `hold_expires_at`), and the store's booking rules as patients are held to them."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import current_actor, get_db
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.schemas import Strict
from app.domain.booking import booking_rules, waitlist
from app.domain.booking.booking_rules import BookingRulesOut
from app.domain.booking.presenters import present
from app.domain.booking.schemas import AppointmentBooked, Channel

router = APIRouter(tags=["booking"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
PATIENT_TOO = ("staff", "integration", "patient")


class OfferAccept(Strict):
    channel: Channel | None = None


@router.post("/waitlist/{entry_id}/accept", status_code=201, response_model=AppointmentBooked,
             operation_id="accept_waitlist_offer",
             responses={409: {"description": "No offer to take (`invalid_status`), the offer has expired "
                                             "(`offer_expired`), or the booking is refused as any booking "
                                             "would be (`member_busy`, …)"}})
async def accept_offer(entry_id: UUID, body: OfferAccept | None = None, session: AsyncSession = Depends(get_db),
                       actor: Actor = current_actor(PATIENT_TOO)) -> AppointmentBooked:
    """Take the slot offered to this waitlist entry (the subscribe message's deep link opens it): the held slot
    is booked for the member in one step. Patients for themselves or their family; staff (the member called
    back) with `appointments:write`. To decline, leave the waitlist (`…/cancel`): the slot goes to the next."""
    placed = await waitlist.accept_offer(session, actor, entry_id, channel=body.channel if body else None)
    booked = await present(session, actor, [a for a, _ in placed], {a.id: ids for a, ids in placed})
    return AppointmentBooked(**booked[0].model_dump(), appointments=booked)


@router.get("/stores/{store_id}/booking-rules", response_model=BookingRulesOut, operation_id="get_booking_rules")
async def get_booking_rules(store_id: UUID, session: AsyncSession = Depends(get_db),
                            actor: Actor = current_actor(PATIENT_TOO)) -> BookingRulesOut:
    """What patients are held to when they book at this store: the earliest and latest start they may book now
    (a booking outside is 422 `too_soon` / `beyond_horizon` naming `starts_at`), and until when they may cancel
    or move a booking themselves (later: 409 `cancel_window_passed`)."""
    return await booking_rules.booking_rules(session, actor, store_id)
