"""Completing a visit with its clinical form in one call (the sidebar's "完成服务" with the form filled)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.db import session_scope
from app.domain.booking.schemas import AppointmentCompleted
from app.domain.clinical import policies, visit_forms
from app.domain.clinical import timeline as _timeline  # noqa: F401 - registers the clinical timeline source
from app.domain.clinical.schemas import ClinicalRecordOut
from app.domain.clinical.visit_forms import VisitCompletionWithRecord
from app.domain.visits.presenters import present_record

router = APIRouter(tags=["clinical"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)


class VisitCompletedWithRecord(AppointmentCompleted):
    clinical_record: ClinicalRecordOut


@router.post("/appointments/{appointment_id}/complete-with-record", response_model=VisitCompletedWithRecord,
             operation_id="complete_appointment_with_record",
             responses={403: {"description": "Missing visits:complete or clinical:write, or the member is not in "
                                             "the caller's care (`not_in_care`, audited)"},
                        409: {"description": "The completion is refused (`invalid_status`, `no_sessions_left`, …)"},
                        422: {"description": "A form value does not fit (`record.values.<key>`), or an unknown "
                                             "template (`record.template_code` / `record.template_id`)"}})
async def complete_appointment_with_record(appointment_id: UUID, body: VisitCompletionWithRecord,
                                           session: AsyncSession = Depends(get_db),
                                           actor: Actor = require("visits:complete", "clinical:write"),
                                           ) -> VisitCompletedWithRecord:
    """完成服务 with the visit's form, in ONE transaction: what `POST /appointments/{id}/complete` does (card
    session, consumables, commission, service record) and the clinical record of `record.template_code` (or
    `record.template_id`) with `record.values`, linked to the appointment and the new service record, signed
    when `record.sign` is true. Any refusal — a value that does not fit, a member outside the caller's care,
    a completion refused — leaves nothing written."""
    visit = await policies.audited(session_scope, visit_forms.complete_with_record(session, actor, appointment_id,
                                                                                   body))
    record = visit.service_record
    return VisitCompletedWithRecord(
        appointment_id=visit.appointment_id, status=visit.status, service_record_id=record.id,
        card_id=record.card_id, card_remaining=visit.card_remaining, commission=visit.commission,
        notes=present_record(actor, record).notes, completed_at=record.completed_at,
        clinical_record=await visit_forms.present(session, visit))
