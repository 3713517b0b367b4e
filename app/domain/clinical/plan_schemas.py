"""Request and response shapes of treatment plans."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from app.core.schemas import Name, Strict

MIN_INTERVAL_DAYS, MAX_INTERVAL_DAYS = 1, 365
MAX_SESSIONS_PER_ITEM = 200
MAX_ITEMS = 20
PlanStatusName = Literal["active", "completed", "cancelled"]


class PlanItemIn(Strict):
    service_id: UUID
    sessions: int = Field(gt=0, le=MAX_SESSIONS_PER_ITEM, description="Planned sessions of this service")


class TreatmentPlanCreate(Strict):
    member_id: UUID
    store_id: UUID = Field(description="Where the course is given (its next visits are offered there)")
    title: Name = Field(min_length=1, max_length=100, description="e.g. 颈肩腰腿痛调理疗程")
    goals: str = Field(min_length=1, max_length=2000, description="What the course is for (clinical text, stored "
                                                                  "encrypted)")
    items: list[PlanItemIn] = Field(min_length=1, max_length=MAX_ITEMS,
                                    description="Planned sessions per service, e.g. 10 × 针灸 + 5 × 拔罐")
    interval_days: int = Field(ge=MIN_INTERVAL_DAYS, le=MAX_INTERVAL_DAYS, description="Days between visits")
    start_date: date | None = Field(None, description="Store-local first day (default: today); visits from this "
                                                      "day on count against the plan")
    responsible_staff_id: UUID = Field(description="The clinician in charge (works in the store)")
    card_id: UUID | None = Field(None, description="The member's course card that pays for the sessions")


class TreatmentPlanCancel(Strict):
    reason: str = Field(min_length=1, max_length=500, description="Why the course stops")


class PlanItemOut(BaseModel):
    service_id: UUID
    service_name: str | None
    sessions_planned: int
    sessions_done: int
    remaining: int


class PlanProgressOut(BaseModel):
    id: UUID
    kind: str = Field(description="visit (+1) or reversal (-1, the visit's service record was reversed)")
    delta: int
    service_id: UUID
    service_record_id: UUID
    staff_id: UUID | None
    occurred_at: datetime
    reverses_id: UUID | None


class TreatmentPlanOut(BaseModel):
    id: UUID
    member_id: UUID
    store_id: UUID
    title: str
    goals: str
    status: str
    interval_days: int
    start_date: date
    responsible_staff_id: UUID
    card_id: UUID | None
    sessions_planned: int
    sessions_done: int
    items: list[PlanItemOut]
    last_visit_at: datetime | None
    next_visit_date: date | None = Field(description="Last visit + interval (or the start date), store-local; "
                                                     "null once the plan is completed or cancelled")
    created_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    progress: list[PlanProgressOut] | None = Field(None, description="Every progress entry, oldest first (one "
                                                                     "plan's read only)")


class OfferedSlot(BaseModel):
    starts_at: datetime
    ends_at: datetime
    staff_id: UUID
    resource_ids: list[UUID]


class NextVisitOffer(BaseModel):
    plan_id: UUID
    member_id: UUID
    store_id: UUID
    service_id: UUID = Field(description="The next planned service: the first of the plan's services with "
                                         "sessions left")
    service_name: str | None
    suggested_date: date = Field(description="Last visit + interval (the start date before the first visit), "
                                             "store-local")
    searched_from: date = Field(description="First day searched (the suggested date, or today when it is past)")
    searched_to: date
    slots: list[OfferedSlot] = Field(description="Bookable now, earliest first: POST /appointments with "
                                                 "member_id, store_id, service_id, staff_id and starts_at")
