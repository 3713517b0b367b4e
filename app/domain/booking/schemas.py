"""Request and response models of appointments."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from app.core.schemas import Strict, Timestamp

Channel = Literal["mini_program", "wecom", "front_desk", "phone", "his"]
AppointmentStatus = Literal["booked", "checked_in", "completed", "cancelled", "no_show"]
MAX_VISIT_SERVICES = 5


class VisitLine(Strict):
    """One service of a multi-service visit; lines are booked back to back in the order given."""

    service_id: UUID
    staff_id: UUID | None = Field(None, description="Omitted: the request's staff_id, else any therapist who can "
                                                    "perform the service")


class AppointmentCreate(Strict):
    member_id: UUID
    store_id: UUID
    service_id: UUID | None = Field(None, description="One service; or give `services` for a multi-service visit")
    staff_id: UUID | None = Field(None, description="The therapist; omitted: any therapist who can perform it")
    starts_at: Timestamp
    services: list[VisitLine] | None = Field(
        None, min_length=1, max_length=MAX_VISIT_SERVICES,
        description="A multi-service visit: each service starts when the previous one's time (with its cleanup "
                    "buffer) ends; all are booked or none, and they share `visit_id`")
    channel: Channel | None = Field(None, description="Patients always book as mini_program; staff default to "
                                                      "front_desk, integrations to his")
    notes: str | None = Field(None, max_length=2000)


class AppointmentReschedule(Strict):
    starts_at: Timestamp
    staff_id: UUID | None = Field(None, description="Move to another therapist; omitted: the same one")


class AppointmentCancel(Strict):
    reason: str | None = Field(None, max_length=300)
    card_id: UUID | None = Field(None, description="For a late cancellation under a deduct_session policy: the "
                                                   "card to deduct the session from (staff only)")
    waive_penalty: bool = Field(False, description="Staff only: do not apply the late-cancellation policy "
                                                   "(e.g. the store cancelled)")


class AppointmentNoShow(Strict):
    reason: str | None = Field(None, max_length=300)
    card_id: UUID | None = Field(None, description="Under a deduct_session no-show policy: the card to deduct from")
    waive_penalty: bool = False


class AppointmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    visit_id: UUID
    member_id: UUID
    store_id: UUID
    service_id: UUID
    staff_id: UUID
    starts_at: datetime
    ends_at: datetime
    blocked_until: datetime = Field(description="ends_at plus the service's cleanup buffer")
    status: AppointmentStatus
    channel: Channel
    notes: str | None = Field(description="The store's internal notes; always null for patients")
    booked_by_kind: str
    cancel_reason: str | None
    service_record_id: UUID | None
    schedule_version: int
    resource_ids: list[UUID] = Field(default_factory=list, description="The rooms, beds and devices it occupies "
                                                                       "(occupied, for a released appointment)")
    created_at: datetime | None
    updated_at: datetime | None


class AppointmentBooked(AppointmentOut):
    appointments: list[AppointmentOut] = Field(
        description="Every appointment of the visit, in order (one, unless `services` was given)")


class AppointmentCompleted(BaseModel):
    appointment_id: UUID
    status: AppointmentStatus
    service_record_id: UUID
    card_id: UUID | None
    card_remaining: int | None = Field(None, description="Sessions of this service left on the card")
    commission: int
    notes: str | None
    completed_at: datetime


class StatusChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    from_status: str | None
    to_status: str
    starts_at: datetime
    staff_id: UUID
    actor_kind: str
    actor_id: UUID | None
    reason: str | None
    details: dict[str, Any]
    created_at: datetime | None


class StatusHistory(BaseModel):
    items: list[StatusChangeOut]
