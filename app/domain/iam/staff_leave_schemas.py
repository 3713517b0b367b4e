"""Request and response of a staff member's leave (the hand-over of their work; see `staff_leave`)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field, StrictBool

from app.core.schemas import Name, Strict


class StaffLeave(Strict):
    """Every kind of work needs a target: its own, or `target_staff_id`."""

    target_staff_id: UUID | None = Field(
        None, description="Takes over every kind of work that has no target of its own below")
    members_to: UUID | None = Field(None, description="New staff contact of the members the leaver looked after")
    tasks_to: UUID | None = Field(None, description="New assignee of the leaver's open tasks")
    appointments_to: UUID | None = Field(
        None, description="Therapist who takes the leaver's future appointments (at the same times; they must "
                          "work in the store, be on shift, hold the skill and be free)")
    deactivate: StrictBool = Field(False, description="Also disable the account (which ends its sign-ins)")
    reason: Name | None = Field(None, max_length=300, description="e.g. 离职")


class MovedAppointment(BaseModel):
    appointment_id: UUID
    starts_at: datetime
    staff_id: UUID


class StaffLeaveOut(BaseModel):
    staff_id: UUID
    deactivated: bool
    members_to: UUID | None
    member_ids: list[UUID]
    tasks_to: UUID | None
    task_ids: list[UUID]
    appointments_to: UUID | None
    appointments: list[MovedAppointment]
