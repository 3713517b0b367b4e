from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from app.core.schemas import Strict, Timestamp


class ServiceCompletion(Strict):
    """A performed service (a walk-in, or the booking capability's appointment completion)."""

    member_id: UUID
    store_id: UUID
    service_id: UUID
    staff_id: UUID = Field(description="Who performed it (earns the commission)")
    card_id: UUID | None = Field(None, description="Deduct one session of this service from this card; "
                                 "without it the service waits to be paid at checkout")
    notes: str | None = Field(None, max_length=4000)
    duration_minutes: StrictInt | None = Field(None, ge=1, le=24 * 60)
    performed_at: Timestamp | None = Field(None, description="Defaults to now")


class AppointmentCompletion(Strict):
    card_id: UUID | None = None
    notes: str | None = Field(None, max_length=4000)


class ReversalRequest(Strict):
    reason: str = Field(min_length=2, max_length=300)


class ServiceRecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    member_id: UUID
    store_id: UUID
    service_id: UUID
    staff_id: UUID
    appointment_id: UUID | None
    settlement: str
    card_id: UUID | None
    order_id: UUID | None
    list_price: int
    earned_amount: int
    duration_minutes: int
    notes: str | None = Field(description="The therapist's clinical remarks; always null for patients")
    status: str
    completed_at: datetime
    reversed_at: datetime | None
    reversal_reason: str | None


class CompletionOut(ServiceRecordOut):
    service_record_id: UUID = Field(description="Same as id (the API contract's name)")
    card_remaining: int | None = Field(None, description="Sessions of this service left on the card")
    commission: int = 0


class CommissionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    staff_id: UUID
    store_id: UUID
    service_record_id: UUID
    amount: int
    basis: int
    kind: str
    staff_level: str | None
    reverses_id: UUID | None
    occurred_at: datetime


class CommissionTotal(BaseModel):
    staff_id: UUID
    records: int
    amount: int


class CommissionStatement(BaseModel):
    staff_id: UUID
    period_from: datetime
    period_to: datetime
    total: int
    lines: list[dict[str, Any]]
