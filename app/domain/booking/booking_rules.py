"""What a patient may know of a store's booking policy before booking: how far ahead, how soon, and until when
they may cancel or move a booking themselves (the rest of the policy is the store's own business)."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import NotFound
from app.domain.booking.schedule import booking_policy
from app.domain.tenancy import service as tenancy


class BookingRulesOut(BaseModel):
    store_id: UUID
    timezone: str
    slot_step_minutes: int = Field(description="Slots start every this many minutes from opening time")
    lead_time_minutes: int = Field(description="Patients book at least this long ahead")
    horizon_days: int = Field(description="…and at most this many days ahead")
    bookable_from: datetime = Field(description="The earliest start a patient may book now")
    bookable_until: datetime = Field(description="The latest start a patient may book now")
    cancel_window_hours: int = Field(description="Patients cancel or move a booking themselves until this many "
                                                 "hours before it starts; later, only the store can (409 "
                                                 "`cancel_window_passed`)")
    late_cancel_action: str = Field(description="What the store does about a late cancellation: none, fee, "
                                                "deduct_session")
    late_cancel_fee: int = Field(description="fen, when the action is fee")
    no_show_action: str
    no_show_fee: int


async def booking_rules(session: AsyncSession, actor: Actor, store_id: UUID, *,
                        now: datetime | None = None) -> BookingRulesOut:
    """The store's rules for patient bookings (any signed-in caller: they are shown to patients)."""
    store = await tenancy.store_row(session, actor.tenant_id, store_id)
    if store is None or not store.active:
        raise NotFound("store not found", code="store_not_found")
    policy = await booking_policy(session, actor.tenant_id, store.id)
    now = now or utcnow()
    zone = tenancy.store_zone(store)
    return BookingRulesOut(
        store_id=store.id, timezone=store.timezone, slot_step_minutes=policy.slot_step_minutes,
        lead_time_minutes=policy.lead_time_minutes, horizon_days=policy.horizon_days,
        bookable_from=(now + timedelta(minutes=policy.lead_time_minutes)).astimezone(zone),
        bookable_until=(now + timedelta(days=policy.horizon_days)).astimezone(zone),
        cancel_window_hours=policy.cancel_window_hours, late_cancel_action=policy.late_cancel_action,
        late_cancel_fee=policy.late_cancel_fee, no_show_action=policy.no_show_action, no_show_fee=policy.no_show_fee)
