"""Booking in GraphQL: the mini-program shows free slots and books; the sidebar shows a therapist's day."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import strawberry
from strawberry.types import Info

from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import AppError
from app.core.pagination import PageParams
from app.domain.booking import appointments, availability
from app.domain.booking.presenters import present
from app.domain.booking.schemas import AppointmentCancel, AppointmentCreate, AppointmentOut, AppointmentReschedule
from app.graphql.context import Context, page_limit, parse_id, validated

EVERYONE = ("staff", "integration", "patient")


@strawberry.type
class Slot:
    starts_at: datetime
    ends_at: datetime
    staff_id: strawberry.ID
    resource_ids: list[strawberry.ID]


@strawberry.type
class Appointment:
    id: strawberry.ID
    visit_id: strawberry.ID
    member_id: strawberry.ID
    store_id: strawberry.ID
    service_id: strawberry.ID
    staff_id: strawberry.ID
    starts_at: datetime
    ends_at: datetime
    status: str
    channel: str
    notes: str | None = strawberry.field(description="The store's internal notes; always null for patients")
    resource_ids: list[strawberry.ID]
    service_record_id: strawberry.ID | None

    @classmethod
    def of(cls, out: AppointmentOut) -> Appointment:
        def ident(value: Any) -> strawberry.ID:
            return strawberry.ID(str(value))

        return cls(id=ident(out.id), visit_id=ident(out.visit_id), member_id=ident(out.member_id),
                   store_id=ident(out.store_id), service_id=ident(out.service_id), staff_id=ident(out.staff_id),
                   starts_at=out.starts_at, ends_at=out.ends_at, status=out.status, channel=out.channel,
                   notes=out.notes, resource_ids=[ident(r) for r in out.resource_ids],
                   service_record_id=ident(out.service_record_id) if out.service_record_id else None)


@strawberry.type
class AppointmentPage:
    items: list[Appointment]
    next_cursor: str | None


async def _present(info: Info[Context, None], actor: Actor, rows: list) -> list[Appointment]:
    """Through the audience's presenter, as REST does (patients never get the store's notes)."""
    return [Appointment.of(a) for a in await present(info.context.session, actor, rows)]


@strawberry.type
class BookingQueries:
    @strawberry.field(description="Bookable slots of a service at a store on a store-local day.")
    async def availability(self, info: Info[Context, None], store_id: strawberry.ID, service_id: strawberry.ID,
                           date: date, staff_id: strawberry.ID | None = None) -> list[Slot]:
        actor = await info.context.actor(audiences=EVERYONE)
        first, last = availability.resolve_days(date, None, None, today=utcnow().date())
        found = await availability.find_slots(
            info.context.session, actor, store_id=parse_id(store_id, "store_id"),
            service_id=parse_id(service_id, "service_id"), day_from=first, day_to=last,
            staff_id=parse_id(staff_id, "staff_id") if staff_id else None)
        return [Slot(starts_at=s.starts_at, ends_at=s.ends_at, staff_id=strawberry.ID(str(s.staff_id)),
                     resource_ids=[strawberry.ID(str(r)) for r in s.resource_ids]) for s in found.slots]

    @strawberry.field(description="Appointments by start time: a patient's own (give memberId), a therapist's "
                                  "own day in the sidebar (mine: true), or a store's.")
    async def appointments(self, info: Info[Context, None], member_id: strawberry.ID | None = None,
                           store_id: strawberry.ID | None = None, mine: bool = False,
                           starts_from: datetime | None = None, starts_before: datetime | None = None,
                           status: str | None = None, limit: int = 50, cursor: str | None = None) -> AppointmentPage:
        actor = await info.context.actor(audiences=EVERYONE)
        if mine and actor.kind != "staff":
            raise AppError("mine is for staff", code="validation_error", status=422, field="mine")
        rows, next_cursor = await appointments.list_appointments(
            info.context.session, actor, PageParams(limit=page_limit(limit), cursor=cursor),
            store_id=parse_id(store_id, "store_id") if store_id else None,
            staff_id=actor.id if mine else None,
            member_id=parse_id(member_id, "member_id") if member_id else None,
            since=starts_from, until=starts_before, status=status)
        return AppointmentPage(items=await _present(info, actor, list(rows)), next_cursor=next_cursor)


@strawberry.input
class BookingInput:
    member_id: strawberry.ID
    store_id: strawberry.ID
    service_id: strawberry.ID
    starts_at: datetime
    staff_id: strawberry.ID | None = None
    notes: str | None = None


@strawberry.type
class BookingMutations:
    @strawberry.mutation(description="Book a service; the therapist and every required resource are taken "
                                     "atomically (a taken slot is a staff_busy / resource_unavailable error).")
    async def book_appointment(self, info: Info[Context, None], input: BookingInput) -> Appointment:
        actor = await info.context.actor(audiences=EVERYONE)
        data = validated(AppointmentCreate, member_id=str(input.member_id), store_id=str(input.store_id),
                          service_id=str(input.service_id), staff_id=str(input.staff_id) if input.staff_id else None,
                          starts_at=input.starts_at.isoformat(), notes=input.notes,
                          channel=None if actor.kind == "patient" else "wecom")
        booked = await appointments.book(info.context.session, actor, data)
        return (await _present(info, actor, booked))[0]

    @strawberry.mutation(description="Move an appointment; the old time stays booked if the new one is taken.")
    async def reschedule_appointment(self, info: Info[Context, None], id: strawberry.ID, starts_at: datetime,
                                     staff_id: strawberry.ID | None = None) -> Appointment:
        actor = await info.context.actor(audiences=EVERYONE)
        data = validated(AppointmentReschedule, starts_at=starts_at.isoformat(),
                          staff_id=str(staff_id) if staff_id else None)
        moved = await appointments.reschedule(info.context.session, actor, parse_id(id, "id"), data)
        return (await _present(info, actor, [moved]))[0]

    @strawberry.mutation(description="Cancel an appointment and free its time.")
    async def cancel_appointment(self, info: Info[Context, None], id: strawberry.ID,
                                 reason: str | None = None) -> Appointment:
        actor = await info.context.actor(audiences=EVERYONE)
        data = validated(AppointmentCancel, reason=reason)
        cancelled = await appointments.cancel(info.context.session, actor, parse_id(id, "id"), data)
        return (await _present(info, actor, [cancelled]))[0]
