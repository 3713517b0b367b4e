"""Completing a visit with its form: one call records the service and the clinical record of it.

The therapist in the sidebar has one hand free: "完成服务" and the form they filled go together, in ONE
transaction. The appointment is completed through booking's own use case (`booking.appointments.complete`,
the one `POST /appointments/{id}/complete` runs: card session, consumables, commission, service record,
events), then the record is created against the appointment and the new service record, and signed when
asked. Clinical depends on booking and visits, never the reverse.

Order matters only for what a refusal costs, never for what it leaves behind: the clinical permission and
the care relationship are checked first (a 403 `not_in_care` is audited in a transaction of its own by the
delivery layer); the form's values are checked after the completion, and a value that does not fit
(422 naming `record.values.<key>`) rolls the completion back with everything else — the request's
transaction is committed only when the whole call succeeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple
from uuid import UUID

from pydantic import Field, model_validator
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.errors import NotFound
from app.core.schemas import Strict
from app.domain.booking import appointments as booking_appointments
from app.domain.booking import service as booking
from app.domain.clinical import policies
from app.domain.clinical import service as clinical
from app.domain.clinical.forms import KEY_PATTERN, FormValueError
from app.domain.clinical.models import ClinicalRecord
from app.domain.clinical.schemas import ClinicalRecordCreate, ClinicalRecordOut, FormValues
from app.domain.visits.schemas import AppointmentCompletion

if TYPE_CHECKING:
    from app.domain.visits.models import ServiceRecord


class VisitForm(Strict):
    """The form filled during the visit."""

    template_code: str | None = Field(None, pattern=KEY_PATTERN, description="Fill the latest version of this code")
    template_id: UUID | None = Field(None, description="Fill this exact template version")
    values: FormValues
    sign: bool = Field(False, description="Sign (and lock) the record in the same call")

    @model_validator(mode="after")
    def _one_template(self) -> VisitForm:
        if (self.template_code is None) == (self.template_id is None):
            raise ValueError("give exactly one of template_code or template_id")
        return self


class VisitCompletionWithRecord(AppointmentCompletion):
    """`POST /appointments/{id}/complete`'s body (`card_id`, `notes`) and the visit's form."""

    record: VisitForm


class CompletedVisit(NamedTuple):
    appointment_id: UUID
    status: str
    service_record: ServiceRecord
    card_remaining: int | None
    commission: int
    clinical_record: ClinicalRecord


def _renamed(error: FormValueError) -> FormValueError:
    """The form's errors named where they are in this body (`record.values.<key>`, `record.template_code`)."""
    errors = [dict(e, field=f"record.{e['field']}") for e in error.extra.get("errors", [])]
    return FormValueError(errors) if errors else error


async def complete_with_record(session: AsyncSession, actor: Actor, appointment_id: UUID,
                               data: VisitCompletionWithRecord) -> CompletedVisit:
    """Complete the appointment and write (and optionally sign) its clinical record, all or nothing."""
    actor.require("visits:complete", "clinical:write")
    appointment = await booking.appointment_of(session, actor.tenant_id, appointment_id)
    if appointment is None:
        raise NotFound("appointment not found", code="appointment_not_found")
    # Before anything is written: a caller outside the care relationship is refused (and audited).
    await policies.require_clinical_access(session, actor, appointment.member_id, "clinical:write",
                                           action="complete_with_record")
    done, service_record, remaining, commission = await booking_appointments.complete(
        session, actor, appointment_id, AppointmentCompletion(card_id=data.card_id, notes=data.notes))
    form = data.record
    try:
        record = await clinical.create_record(session, actor, ClinicalRecordCreate(
            member_id=appointment.member_id, template_code=form.template_code, template_id=form.template_id,
            values=form.values, appointment_id=appointment_id, service_record_id=service_record.id))
    except FormValueError as error:
        # The completion above is in this transaction and goes with the refusal.
        raise _renamed(error) from None
    if form.sign:
        record = await clinical.sign_record(session, actor, record.id)
    return CompletedVisit(appointment_id=done.id, status=done.status, service_record=service_record,
                          card_remaining=remaining, commission=commission, clinical_record=record)


async def present(session: AsyncSession, visit: CompletedVisit) -> ClinicalRecordOut:
    return await clinical.present_record(session, visit.clinical_record)
