"""Clinical records in GraphQL: the WeCom sidebar fills a form (draft, edit, sign, amend) and completes a
visit with its form in one call; the mini-program shows a patient their signed records and who opened them.

Same services and permissions as REST (`/form-templates`, `/clinical-records`,
`/appointments/{id}/complete-with-record`, `/patient/clinical-records`, `/patient/health-record-access`):
`clinical:read` / `clinical:write` and the care relationship for staff (a `not_in_care` refusal is audited
in a transaction of its own, as REST does), the family rule for patients. Form values travel as JSON
objects and are checked against the template version (422 `validation_error` naming `values.<key>`).
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from app.core.db import session_scope
from app.core.pagination import PageParams
from app.domain.booking import appointments
from app.domain.clinical import access_log, patient_records, policies, visit_forms
from app.domain.clinical import service as clinical
from app.domain.clinical import timeline as _timeline  # noqa: F401 - registers the clinical timeline source
from app.domain.clinical.access_log import AccessEntryOut
from app.domain.clinical.patient_records import PatientRecordOut
from app.domain.clinical.schemas import (
    AmendmentCreate,
    ClinicalRecordCreate,
    ClinicalRecordOut,
    ClinicalRecordSummary,
    ClinicalRecordUpdate,
    FormTemplateOut,
)
from app.domain.clinical.visit_forms import VisitCompletionWithRecord
from app.domain.visits.presenters import present_record
from app.domain.visits.schemas import AppointmentCompletion
from app.graphql.context import Context, page_limit, parse_id, validated

STAFF = ("staff",)
PATIENT = ("patient",)
T = TypeVar("T")


def _ident(value: Any) -> strawberry.ID | None:
    return strawberry.ID(str(value)) if value is not None else None


def _audited(call: Awaitable[T]) -> Awaitable[T]:
    """A `not_in_care` refusal is audited in a transaction of its own before the 403."""
    return policies.audited(session_scope, call)


# ---------------------------------------------------------------- types


@strawberry.type
class FormTemplate:
    id: strawberry.ID
    code: str
    version: int
    name: str
    kind: str
    builtin: bool
    sections: JSON = strawberry.field(description="Sections of fields, as REST's form template")
    fields: JSON = strawberry.field(description="Every field flattened: key, label, type, options, staff_only, …")

    @classmethod
    def of(cls, out: FormTemplateOut) -> FormTemplate:
        return cls(id=strawberry.ID(str(out.id)), code=out.code, version=out.version, name=out.name, kind=out.kind,
                   builtin=out.builtin, sections=[s.model_dump(mode="json", exclude_none=True) for s in out.sections],
                   fields=out.fields)


@strawberry.type
class ClinicalAmendment:
    id: strawberry.ID
    seq: int
    author_id: strawberry.ID | None
    created_at: datetime
    reason: str
    values: JSON
    hash: str


@strawberry.type
class ClinicalRecord:
    id: strawberry.ID
    member_id: strawberry.ID
    template_id: strawberry.ID
    template_code: str
    template_version: int
    appointment_id: strawberry.ID | None
    service_record_id: strawberry.ID | None
    status: str
    values: JSON = strawberry.field(description="As first written (for a signed record: as signed)")
    current_values: JSON = strawberry.field(description="After the latest amendment")
    author_id: strawberry.ID | None
    created_at: datetime
    signed_at: datetime | None
    signed_by_id: strawberry.ID | None
    content_hash: str | None
    hash_verified: bool | None
    amendments: list[ClinicalAmendment]

    @classmethod
    def of(cls, out: ClinicalRecordOut) -> ClinicalRecord:
        return cls(
            id=strawberry.ID(str(out.id)), member_id=strawberry.ID(str(out.member_id)),
            template_id=strawberry.ID(str(out.template_id)), template_code=out.template_code,
            template_version=out.template_version, appointment_id=_ident(out.appointment_id),
            service_record_id=_ident(out.service_record_id), status=out.status, values=out.values,
            current_values=out.current_values, author_id=_ident(out.author_id), created_at=out.created_at,
            signed_at=out.signed_at, signed_by_id=_ident(out.signed_by_id), content_hash=out.content_hash,
            hash_verified=out.hash_verified,
            amendments=[ClinicalAmendment(id=strawberry.ID(str(a.id)), seq=a.seq, author_id=_ident(a.author_id),
                                          created_at=a.created_at, reason=a.reason, values=a.values, hash=a.hash)
                        for a in out.amendments])


@strawberry.type
class ClinicalRecordListItem:
    id: strawberry.ID
    template_code: str
    template_version: int
    status: str
    appointment_id: strawberry.ID | None
    service_record_id: strawberry.ID | None
    created_at: datetime
    signed_at: datetime | None
    amendment_count: int

    @classmethod
    def of(cls, out: ClinicalRecordSummary) -> ClinicalRecordListItem:
        return cls(id=strawberry.ID(str(out.id)), template_code=out.template_code,
                   template_version=out.template_version, status=out.status,
                   appointment_id=_ident(out.appointment_id), service_record_id=_ident(out.service_record_id),
                   created_at=out.created_at, signed_at=out.signed_at, amendment_count=out.amendment_count)


@strawberry.type
class ClinicalRecordPage:
    items: list[ClinicalRecordListItem]
    next_cursor: str | None


@strawberry.type
class VisitCompletion:
    appointment_id: strawberry.ID
    status: str
    service_record_id: strawberry.ID
    card_id: strawberry.ID | None
    card_remaining: int | None
    commission: int
    completed_at: datetime
    clinical_record: ClinicalRecord | None = strawberry.field(description="The visit's form, when one was given")


@strawberry.input
class ClinicalRecordInput:
    member_id: strawberry.ID
    template_code: str | None = None
    template_id: strawberry.ID | None = None
    values: JSON
    appointment_id: strawberry.ID | None = None
    service_record_id: strawberry.ID | None = None
    sign: bool = strawberry.field(default=False, description="Sign (and lock) it in the same call")


@strawberry.input
class VisitFormInput:
    template_code: str | None = None
    template_id: strawberry.ID | None = None
    values: JSON
    sign: bool = False


@strawberry.type
class PatientClinicalAmendment:
    seq: int
    created_at: datetime
    reason: str
    values: JSON


@strawberry.type
class PatientClinicalRecord:
    id: strawberry.ID
    member_id: strawberry.ID
    template_code: str
    template_version: int
    form_name: str
    signed_at: datetime | None
    signed_by_name: str | None
    values: JSON = strawberry.field(description="Current values (after amendments), staff-only fields left out")
    original_values: JSON
    amendments: list[PatientClinicalAmendment]
    fields: JSON = strawberry.field(description="The fields the patient may see: key, label, type, unit, options")

    @classmethod
    def of(cls, out: PatientRecordOut) -> PatientClinicalRecord:
        return cls(id=strawberry.ID(str(out.id)), member_id=strawberry.ID(str(out.member_id)),
                   template_code=out.template_code, template_version=out.template_version, form_name=out.form_name,
                   signed_at=out.signed_at, signed_by_name=out.signed_by_name, values=out.values,
                   original_values=out.original_values,
                   amendments=[PatientClinicalAmendment(seq=a.seq, created_at=a.created_at, reason=a.reason,
                                                        values=a.values) for a in out.amendments],
                   fields=[f.model_dump(mode="json", exclude_none=True) for f in out.fields])


@strawberry.type
class PatientClinicalRecordPage:
    items: list[PatientClinicalRecord]
    next_cursor: str | None


@strawberry.type
class HealthRecordAccess:
    occurred_at: datetime
    action: str
    action_label: str
    target_type: str
    accessor_type: str
    accessor_name: str | None
    accessor_roles: list[str]

    @classmethod
    def of(cls, out: AccessEntryOut) -> HealthRecordAccess:
        return cls(occurred_at=out.occurred_at, action=out.action,
                   action_label=out.action_label, target_type=out.target_type, accessor_type=out.accessor_type,
                   accessor_name=out.accessor_name, accessor_roles=out.accessor_roles)


@strawberry.type
class HealthRecordAccessPage:
    items: list[HealthRecordAccess]
    next_cursor: str | None


def _member(member_id: strawberry.ID | None) -> UUID | None:
    return parse_id(member_id, "member_id") if member_id is not None else None


def _text_id(value: strawberry.ID | None) -> str | None:
    return str(value) if value is not None else None


# ---------------------------------------------------------------- queries


@strawberry.type
class ClinicalQueries:
    @strawberry.field(description="The tenant's forms, latest version of each code (sidebar; clinical:read).")
    async def form_templates(self, info: Info[Context, None], code: str | None = None) -> list[FormTemplate]:
        actor = await info.context.actor("clinical:read", audiences=STAFF)
        rows = await clinical.list_templates(info.context.session, actor, code=code)
        return [FormTemplate.of(clinical.present_template(t)) for t in rows]

    @strawberry.field(description="A member's clinical records, newest first, without values (sidebar; "
                                  "clinical:read and the care relationship; audited).")
    async def member_clinical_records(self, info: Info[Context, None], member_id: strawberry.ID, limit: int = 20,
                                      cursor: str | None = None) -> ClinicalRecordPage:
        actor = await info.context.actor("clinical:read", audiences=STAFF)
        items, next_cursor = await _audited(clinical.list_records(
            info.context.session, actor, parse_id(member_id, "member_id"),
            PageParams(limit=page_limit(limit), cursor=cursor)))
        return ClinicalRecordPage(items=[ClinicalRecordListItem.of(i) for i in items], next_cursor=next_cursor)

    @strawberry.field(description="One clinical record with its values and amendments (sidebar; audited).")
    async def clinical_record(self, info: Info[Context, None], id: strawberry.ID) -> ClinicalRecord:
        actor = await info.context.actor("clinical:read", audiences=STAFF)
        return ClinicalRecord.of(await _audited(clinical.get_record(info.context.session, actor, parse_id(id, "id"))))

    @strawberry.field(description="The patient's signed clinical records (or, with memberId, a member of the "
                                  "family they head), newest first, without staff-only fields (mini-program).")
    async def my_clinical_records(self, info: Info[Context, None], member_id: strawberry.ID | None = None,
                                  limit: int = 20, cursor: str | None = None) -> PatientClinicalRecordPage:
        actor = await info.context.actor(audiences=PATIENT)
        items, next_cursor = await patient_records.list_signed_records(
            info.context.session, actor, _member(member_id), PageParams(limit=page_limit(limit), cursor=cursor))
        return PatientClinicalRecordPage(items=[PatientClinicalRecord.of(i) for i in items], next_cursor=next_cursor)

    @strawberry.field(description="Who opened the patient's health record and when (PIPL right to know), newest "
                                  "first (mini-program).")
    async def my_health_record_access(self, info: Info[Context, None], member_id: strawberry.ID | None = None,
                                      limit: int = 20, cursor: str | None = None) -> HealthRecordAccessPage:
        actor = await info.context.actor(audiences=PATIENT)
        items, next_cursor = await access_log.access_log(info.context.session, actor, _member(member_id),
                                                         PageParams(limit=page_limit(limit), cursor=cursor))
        return HealthRecordAccessPage(items=[HealthRecordAccess.of(i) for i in items], next_cursor=next_cursor)


# ---------------------------------------------------------------- mutations


@strawberry.type
class ClinicalMutations:
    @strawberry.mutation(description="Fill a form for a member: a draft record (signed at once with sign: true); "
                                     "clinical:write and the care relationship.")
    async def create_clinical_record(self, info: Info[Context, None], input: ClinicalRecordInput) -> ClinicalRecord:
        actor = await info.context.actor("clinical:write", audiences=STAFF)
        session = info.context.session
        data = validated(ClinicalRecordCreate, member_id=str(input.member_id), template_code=input.template_code,
                         template_id=_text_id(input.template_id), values=input.values,
                         appointment_id=_text_id(input.appointment_id),
                         service_record_id=_text_id(input.service_record_id))
        record = await _audited(clinical.create_record(session, actor, data))
        if input.sign:
            record = await _audited(clinical.sign_record(session, actor, record.id))
        return ClinicalRecord.of(await clinical.present_record(session, record))

    @strawberry.mutation(description="Replace a draft's values (record_signed once it is signed).")
    async def update_clinical_record(self, info: Info[Context, None], id: strawberry.ID,
                                     values: JSON) -> ClinicalRecord:
        actor = await info.context.actor("clinical:write", audiences=STAFF)
        record = await _audited(clinical.update_record(info.context.session, actor, parse_id(id, "id"),
                                                       validated(ClinicalRecordUpdate, values=values)))
        return ClinicalRecord.of(await clinical.present_record(info.context.session, record))

    @strawberry.mutation(description="Sign and lock a draft (its content hash is final).")
    async def sign_clinical_record(self, info: Info[Context, None], id: strawberry.ID) -> ClinicalRecord:
        actor = await info.context.actor("clinical:write", audiences=STAFF)
        record = await _audited(clinical.sign_record(info.context.session, actor, parse_id(id, "id")))
        return ClinicalRecord.of(await clinical.present_record(info.context.session, record))

    @strawberry.mutation(description="Correct a signed record: the reason and the whole corrected values; the "
                                     "original stays as signed.")
    async def amend_clinical_record(self, info: Info[Context, None], id: strawberry.ID, reason: str,
                                    values: JSON) -> ClinicalRecord:
        actor = await info.context.actor("clinical:write", audiences=STAFF)
        session = info.context.session
        record_id = parse_id(id, "id")
        await _audited(clinical.amend_record(session, actor, record_id,
                                             validated(AmendmentCreate, reason=reason, values=values)))
        return ClinicalRecord.of(await clinical.present_record(
            session, await clinical.record_row(session, actor.tenant_id, record_id)))

    @strawberry.mutation(description="完成服务 from the sidebar in one call: the appointment's completion (card "
                                     "session, consumables, commission, service record) and, with `form`, its "
                                     "clinical record (signed with form.sign) — all or nothing. Without a form: "
                                     "visits:complete; with one: also clinical:write and the care relationship.")
    async def complete_visit(self, info: Info[Context, None], appointment_id: strawberry.ID,
                             card_id: strawberry.ID | None = None, notes: str | None = None,
                             form: VisitFormInput | None = None) -> VisitCompletion:
        actor = await info.context.actor("visits:complete", audiences=STAFF)
        session = info.context.session
        appointment = parse_id(appointment_id, "appointment_id")
        if form is None:
            data = validated(AppointmentCompletion, card_id=_text_id(card_id), notes=notes)
            done, record, remaining, commission = await appointments.complete(session, actor, appointment, data)
            return VisitCompletion(appointment_id=strawberry.ID(str(done.id)), status=done.status,
                                   service_record_id=strawberry.ID(str(record.id)), card_id=_ident(record.card_id),
                                   card_remaining=remaining, commission=commission,
                                   completed_at=present_record(actor, record).completed_at, clinical_record=None)
        body = validated(VisitCompletionWithRecord, card_id=_text_id(card_id), notes=notes, record={
            k: v for k, v in {"template_code": form.template_code, "template_id": _text_id(form.template_id),
                              "values": form.values, "sign": form.sign}.items() if v is not None})
        visit = await _audited(visit_forms.complete_with_record(session, actor, appointment, body))
        record = visit.service_record
        return VisitCompletion(appointment_id=strawberry.ID(str(visit.appointment_id)), status=visit.status,
                               service_record_id=strawberry.ID(str(record.id)), card_id=_ident(record.card_id),
                               card_remaining=visit.card_remaining, commission=visit.commission,
                               completed_at=record.completed_at,
                               clinical_record=ClinicalRecord.of(await visit_forms.present(session, visit)))
