from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import current_actor, get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute, model_response
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.booking import appointments as service
from app.domain.booking.presenters import present
from app.domain.booking.schemas import (
    AppointmentBooked,
    AppointmentCancel,
    AppointmentCompleted,
    AppointmentCreate,
    AppointmentNoShow,
    AppointmentOut,
    AppointmentReschedule,
    AppointmentStatus,
    StatusChangeOut,
    StatusHistory,
)
from app.domain.visits.presenters import present_record
from app.domain.visits.schemas import AppointmentCompletion

router = APIRouter(tags=["appointments"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
PATIENT_TOO = ("staff", "integration", "patient")
CONFLICTS = {409: {"description": "The slot is not free (`staff_busy`, `resource_unavailable`, `staff_off_shift`, "
                                  "`outside_opening_hours`, …; `conflict` names the staff member or resource), or "
                                  "the appointment's status does not allow this (`invalid_status`)"}}


async def _one(session: AsyncSession, actor: Actor, appointment) -> AppointmentOut:
    return (await present(session, actor, [appointment]))[0]


@router.post("/appointments", status_code=201, response_model=AppointmentBooked, operation_id="create_appointment",
             responses=CONFLICTS)
async def create_appointment(body: AppointmentCreate, session: AsyncSession = Depends(get_db),
                             actor: Actor = current_actor(PATIENT_TOO)) -> Response:
    """Book a service (or, with `services`, several back to back, all or none). The therapist and every
    required room, bed or device are taken inside the transaction; a concurrent booking of the same time
    gets 409. Patients book for themselves or their family, within the store's lead time and horizon."""
    placed = await service.book_placed(session, actor, body)
    booked = await present(session, actor, [a for a, _ in placed], {a.id: ids for a, ids in placed})
    return model_response(AppointmentBooked(**booked[0].model_dump(), appointments=booked), status_code=201)


@router.get("/appointments", response_model=Page[AppointmentOut], operation_id="list_appointments")
async def list_appointments(store_id: UUID | None = Query(None), staff_id: UUID | None = Query(None),
                            member_id: UUID | None = Query(None),
                            since: AwareDatetime | None = Query(None, alias="from",
                                                                description="Starts at or after"),
                            until: AwareDatetime | None = Query(None, alias="to", description="Starts before"),
                            status: AppointmentStatus | None = Query(None),
                            params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                            actor: Actor = current_actor(PATIENT_TOO)) -> Page[AppointmentOut]:
    """Appointments by start time. A range spans at most 62 days (without one: a month either side of now,
    or, filtered by member, all of them). Patients list their own or their family's (`member_id`)."""
    rows, cursor = await service.list_appointments(session, actor, params, store_id=store_id, staff_id=staff_id,
                                                   member_id=member_id, since=since, until=until, status=status)
    return Page(items=await present(session, actor, rows), next_cursor=cursor)


@router.get("/appointments/{appointment_id}", response_model=AppointmentOut, operation_id="get_appointment")
async def get_appointment(appointment_id: UUID, session: AsyncSession = Depends(get_db),
                          actor: Actor = current_actor(PATIENT_TOO)) -> AppointmentOut:
    return await _one(session, actor, await service.get(session, actor, appointment_id))


@router.get("/appointments/{appointment_id}/history", response_model=StatusHistory,
            operation_id="appointment_history")
async def appointment_history(appointment_id: UUID, session: AsyncSession = Depends(get_db),
                              actor: Actor = current_actor(PATIENT_TOO)) -> StatusHistory:
    """Every status change and move, oldest first."""
    rows = await service.history(session, actor, appointment_id)
    return StatusHistory(items=[StatusChangeOut.model_validate(r) for r in rows])


@router.post("/appointments/{appointment_id}/reschedule", response_model=AppointmentOut,
             operation_id="reschedule_appointment", responses=CONFLICTS)
async def reschedule_appointment(appointment_id: UUID, body: AppointmentReschedule,
                                 session: AsyncSession = Depends(get_db),
                                 actor: Actor = current_actor(PATIENT_TOO)) -> AppointmentOut:
    """Move to another time (and optionally therapist) atomically: refused, the booking stays as it was."""
    return await _one(session, actor, await service.reschedule(session, actor, appointment_id, body))


@router.post("/appointments/{appointment_id}/cancel", response_model=AppointmentOut,
             operation_id="cancel_appointment", responses=CONFLICTS)
async def cancel_appointment(appointment_id: UUID, body: AppointmentCancel | None = None,
                             session: AsyncSession = Depends(get_db),
                             actor: Actor = current_actor(PATIENT_TOO)) -> AppointmentOut:
    """Cancel and free the time. Within the store's cancel window the late-cancellation policy applies:
    a fee is recorded for checkout, or a session deduction is recorded (and made from `card_id` when given)."""
    appointment = await service.cancel(session, actor, appointment_id, body or AppointmentCancel())
    return await _one(session, actor, appointment)


@router.post("/appointments/{appointment_id}/check-in", response_model=AppointmentOut,
             operation_id="check_in_appointment", responses=CONFLICTS)
async def check_in_appointment(appointment_id: UUID, session: AsyncSession = Depends(get_db),
                               actor: Actor = require("appointments:write")) -> AppointmentOut:
    return await _one(session, actor, await service.check_in(session, actor, appointment_id))


@router.post("/appointments/{appointment_id}/no-show", response_model=AppointmentOut,
             operation_id="mark_appointment_no_show", responses=CONFLICTS)
async def no_show_appointment(appointment_id: UUID, body: AppointmentNoShow | None = None,
                              session: AsyncSession = Depends(get_db),
                              actor: Actor = require("appointments:write")) -> AppointmentOut:
    """Record that the member did not come (only after the start time; never automatic). Frees the rest of
    the time and applies the store's no-show policy."""
    appointment = await service.no_show(session, actor, appointment_id, body or AppointmentNoShow())
    return await _one(session, actor, appointment)


@router.post("/appointments/{appointment_id}/complete", response_model=AppointmentCompleted,
             operation_id="complete_appointment", responses=CONFLICTS)
async def complete_appointment(appointment_id: UUID, body: AppointmentCompletion | None = None,
                               session: AsyncSession = Depends(get_db),
                               actor: Actor = require("visits:complete")) -> AppointmentCompleted:
    """完成服务: in one transaction deduct a session from `card_id` (or leave the service for checkout),
    deduct consumables, write the commission and the service record, and mark the appointment completed.
    409 when the card has no session of this service left; then nothing is changed."""
    appointment, record, remaining, commission = await service.complete(
        session, actor, appointment_id, body or AppointmentCompletion())
    return AppointmentCompleted(appointment_id=appointment.id, status=appointment.status,
                                service_record_id=record.id, card_id=record.card_id, card_remaining=remaining,
                                commission=commission, notes=present_record(actor, record).notes,
                                completed_at=record.completed_at)
