from __future__ import annotations

import datetime as dt
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Forbidden
from app.domain.booking import availability as service

router = APIRouter(tags=["booking"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)


class SlotOut(BaseModel):
    starts_at: dt.datetime = Field(description="In the store's time zone")
    ends_at: dt.datetime = Field(description="End of the service (the buffer after it is not included)")
    staff_id: UUID = Field(description="The requested staff member, or the one booking without one would get")
    resource_ids: list[UUID] = Field(description="One per resource requirement of the service, as booking would pick")


class UnavailableOut(BaseModel):
    starts_at: dt.datetime
    ends_at: dt.datetime
    reasons: list[str] = Field(description="store_closed, outside_hours, in_the_past, too_soon, beyond_horizon, "
                                           "staff_lacks_skill, off_shift, therapist_busy, room_taken, "
                                           "resource_unavailable")


class UnavailableDayOut(BaseModel):
    date: dt.date = Field(description="A store-local day of the request")
    reason: str = Field(description="no_opening_hours (none set at all), closed_weekday (none on that weekday), "
                                    "store_closed (a closed day), store_inactive, service_inactive")
    message: str = Field(description="The reason in words, for the person setting the store up")


class AvailabilityOut(BaseModel):
    slots: list[SlotOut]
    unavailable: list[UnavailableOut] | None = Field(None, description="Only with `explain=true`")
    unavailable_days: list[UnavailableDayOut] | None = Field(
        None, description="Only with `explain=true`: the days on which nothing can be offered at all (the store "
                          "is closed, has no opening hours, or the service is no longer offered), and why; a day "
                          "without opening hours has no grid, so `unavailable` has no slot of it to explain")


@router.get("/availability", response_model=AvailabilityOut, operation_id="get_availability")
async def get_availability(
    store_id: UUID,
    service_id: UUID,
    day: dt.date | None = Query(None, alias="date", description="A store-local day (YYYY-MM-DD)"),
    day_from: dt.date | None = Query(None, alias="from", description="First store-local day of a range"),
    day_to: dt.date | None = Query(None, alias="to",
                                   description=f"Last day of the range (at most {service.MAX_RANGE_DAYS} days)"),
    staff_id: UUID | None = Query(None, description="Only this staff member; absent: any skilled one"),
    explain: bool = Query(False, description="Staff only: also list each unavailable grid slot with why"),
    session: AsyncSession = Depends(get_db),
    actor: Actor = require(audiences=("staff", "integration", "patient")),
) -> AvailabilityOut:
    """Bookable slots of a service at a store on a day (`date`) or a range (`from`–`to`), honouring opening
    hours, closures, shifts, time off, skills, every required resource, buffers, lead time and horizon
    (the last two bind patients and integrations, not staff). Staff need `appointments:read`."""
    first, last = service.resolve_days(day, day_from, day_to, today=utcnow().date())
    if explain and actor.kind != "staff":
        raise Forbidden("explain=true is for staff", code="explain_staff_only")
    found = await service.find_slots(session, actor, store_id=store_id, service_id=service_id, day_from=first,
                                     day_to=last, staff_id=staff_id, explain=explain)
    return AvailabilityOut(
        slots=[SlotOut(starts_at=s.starts_at, ends_at=s.ends_at, staff_id=s.staff_id, resource_ids=s.resource_ids)
               for s in found.slots],
        unavailable=None if found.unavailable is None else [
            UnavailableOut(starts_at=u.starts_at, ends_at=u.ends_at, reasons=u.reasons) for u in found.unavailable],
        unavailable_days=None if found.unavailable_days is None else [
            UnavailableDayOut(date=d.day, reason=d.reason, message=d.message) for d in found.unavailable_days])
