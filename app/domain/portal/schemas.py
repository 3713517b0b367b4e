"""What the mini-program shows a patient: the published storefront and their own account.

These are narrower than the staff schemas on purpose: no cost, commission, recipe, staff username, phone or
level, member tags or notes. A field added to a staff schema does not reach patients unless it is added here.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from app.domain.booking.schedule_schemas import OpeningRangeOut
from app.domain.members.schemas import ConsentOut


class PublishedStoreOut(BaseModel):
    id: UUID
    name: str
    address: str | None
    phone: str | None = Field(description="The store's front desk")
    timezone: str
    description: str | None
    latitude: float | None = Field(description="GCJ-02")
    longitude: float | None
    photos: list[str]
    hours: list[OpeningRangeOut] = Field(description="Opening hours, store-local, per ISO weekday (1 = Monday)")
    distance_m: int | None = Field(None, description="Metres from the location sent (null without one, or when "
                                                     "the store has no coordinates)")


class StoreList(BaseModel):
    items: list[PublishedStoreOut] = Field(description="Nearest first when a location was sent, else by name; "
                                                       "stores without coordinates last")
    next_cursor: str | None = Field(None, description="Always null: every published store is in one answer")


class ServiceOnSaleOut(BaseModel):
    id: UUID
    name: str
    category: str | None
    description: str | None
    duration_minutes: int
    price: int = Field(description="fen")
    aftercare_note: str | None
    photo_url: str | None


class ServiceList(BaseModel):
    items: list[ServiceOnSaleOut]
    next_cursor: str | None = None


class ServiceDetailOut(ServiceOnSaleOut):
    store_ids: list[UUID] = Field(description="The published stores where it can be booked")


class SkillOut(BaseModel):
    service_id: UUID
    name: str


class TherapistOut(BaseModel):
    id: UUID
    name: str
    title: str | None
    bio: str | None
    photo_url: str | None
    skills: list[SkillOut] = Field(description="The services on sale they perform")
    store_ids: list[UUID] = Field(description="The published stores they work in")


class TherapistList(BaseModel):
    items: list[TherapistOut]
    next_cursor: str | None = None


class TemplateItemOnSale(BaseModel):
    service_id: UUID
    service_name: str
    sessions: int
    gifted_sessions: int


class CardTemplateOnSaleOut(BaseModel):
    id: UUID
    name: str
    kind: str = Field(description="stored_value, count, package or period")
    price: int = Field(description="fen")
    face_value: int = Field(description="stored_value: principal credited, fen")
    bonus: int = Field(description="stored_value: bonus credited (充1000送200), fen")
    valid_days: int | None
    valid_until: date | None
    shared_pool_sessions: int | None
    family_shareable: bool
    description: str | None
    usable_store_ids: list[UUID] = Field(description="Empty: usable in every store")
    items: list[TemplateItemOnSale]


class CardTemplateList(BaseModel):
    items: list[CardTemplateOnSaleOut]
    next_cursor: str | None = None


# ---------------------------------------------------------------- the patient's own account


class FamilyMemberOut(BaseModel):
    member_id: UUID
    name: str
    role: str | None = Field(description="head or member")
    relation: str | None = Field(description="self, child, spouse, …")


class FamilyView(BaseModel):
    id: UUID
    name: str
    head_member_id: UUID
    members: list[FamilyMemberOut]


class OwnProfileOut(BaseModel):
    id: UUID
    name: str
    phone: str | None
    gender: str | None
    birthday: date | None
    address: str | None
    home_store_id: UUID | None
    family: FamilyView | None
    consents: list[ConsentOut] = Field(description="What they accepted (the privacy policy versions), oldest first")


class ChildAdded(BaseModel):
    member_id: UUID = Field(description="The child's member id (book and buy for them with it)")
    family: FamilyView


class PatientCardItemOut(BaseModel):
    service_id: UUID | None
    service_name: str | None
    sessions_total: int
    gifted_sessions: int
    remaining: int


class PatientCardOut(BaseModel):
    id: UUID
    member_id: UUID = Field(description="Whose card it is (a family card shared with them names its owner)")
    name: str
    kind: str
    status: str
    balance: int = Field(description="Stored value: principal + bonus, fen")
    principal_balance: int
    bonus_balance: int
    starts_at: datetime | None
    expires_at: datetime | None
    family_shareable: bool
    items: list[PatientCardItemOut] = Field(description="Sessions left per service")


class PatientCardList(BaseModel):
    items: list[PatientCardOut]
    next_cursor: str | None = None


class PatientCardEntryOut(BaseModel):
    id: UUID
    kind: str = Field(description="issue, deduct, charge, top_up, reverse, refund, freeze, unfreeze, transfer, "
                                  "extend, expire")
    service_id: UUID | None = Field(description="The service whose sessions changed")
    sessions_delta: int
    principal_delta: int
    bonus_delta: int
    store_id: UUID | None
    created_at: datetime | None


class PatientCardLedger(BaseModel):
    items: list[PatientCardEntryOut] = Field(description="Newest first")
    next_cursor: str | None


class VisitOut(BaseModel):
    kind: Literal["appointment", "service_record"] = Field(description="A booked appointment (upcoming) or a "
                                                                       "performed service (past)")
    id: UUID
    member_id: UUID
    status: str
    starts_at: datetime = Field(description="The appointment's start, or when the service was performed")
    ends_at: datetime | None
    store_id: UUID
    store_name: str | None
    service_id: UUID
    service_name: str | None
    staff_id: UUID
    staff_name: str | None
    aftercare_note: str | None = Field(description="The service's aftercare advice")


class VisitsOut(BaseModel):
    upcoming: list[VisitOut] = Field(description="Booked and checked-in appointments not yet over, soonest first "
                                                 "(all of them, on the first page only)")
    past: list[VisitOut] = Field(description="Performed services, newest first, a page at a time")
    next_cursor: str | None = Field(description="For the next page of `past`")
