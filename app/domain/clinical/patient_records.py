"""The patient's view of their clinical records in the mini-program.

A patient sees their own SIGNED records and, as the head of a family, those of its members (the members
context's family rule: anyone else is 404, as if it did not exist). Drafts are work in progress of the
clinic and are never shown. Fields marked `staff_only` in the template version the record was filled with
(a clinician's private remark) are left out of the values, of every amendment's values and of the field
list. Amendments are shown with the original: `values` are the current ones (after the latest amendment),
`original_values` as signed. Every read is audited like a staff read (the patient's own reads are not
listed back to them in the access log).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.errors import Forbidden, NotFound
from app.core.pagination import PageParams, paginate
from app.domain.clinical import service as clinical
from app.domain.clinical.forms import FormDefinition
from app.domain.clinical.models import ClinicalRecord, FormTemplate, RecordStatus
from app.domain.iam import service as iam
from app.domain.members import service as members


class PatientFieldOut(BaseModel):
    key: str
    label: str
    type: str
    unit: str | None = None
    options: list[dict[str, str]] | None = Field(None, description="code → label of select options")


class PatientAmendmentOut(BaseModel):
    seq: int
    created_at: datetime
    reason: str
    values: dict[str, Any] = Field(description="The whole corrected values (staff-only fields left out)")


class PatientRecordOut(BaseModel):
    id: UUID
    member_id: UUID
    template_code: str
    template_version: int
    form_name: str
    appointment_id: UUID | None
    service_record_id: UUID | None
    signed_at: datetime | None
    signed_by_name: str | None
    values: dict[str, Any] = Field(description="The current values: after the latest amendment, staff-only "
                                               "fields left out")
    original_values: dict[str, Any] = Field(description="As signed (staff-only fields left out)")
    amendments: list[PatientAmendmentOut] = []
    fields: list[PatientFieldOut] = Field(description="The form's fields the patient may see, in order, for "
                                                      "labels, units and option names")


def _patient(actor: Actor) -> None:
    if actor.kind != "patient":
        raise Forbidden("this is the patient's own view (mini-program sign-in)", code="permission_denied")


def staff_only_keys(definition: FormDefinition) -> frozenset[str]:
    return frozenset(f.key for f in definition.fields() if f.staff_only)


def _visible(values: dict[str, Any], hidden: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in hidden}


async def _present(session: AsyncSession, record: ClinicalRecord, template: FormTemplate,
                   names: dict[UUID, str]) -> PatientRecordOut:
    definition = FormDefinition.model_validate(template.definition)
    hidden = staff_only_keys(definition)
    original = _visible(clinical.record_values(record), hidden)
    amendments = [PatientAmendmentOut(seq=a.seq, created_at=a.created_at, reason=clinical.reason_of(a),
                                      values=_visible(clinical.values_of(a), hidden))
                  for a in await clinical.amendments_of(session, record)]
    return PatientRecordOut(
        id=record.id, member_id=record.member_id, template_code=record.template_code,
        template_version=record.template_version, form_name=template.name, appointment_id=record.appointment_id,
        service_record_id=record.service_record_id, signed_at=record.signed_at,
        signed_by_name=names.get(record.signed_by_id) if record.signed_by_id else None,
        values=amendments[-1].values if amendments else original, original_values=original, amendments=amendments,
        fields=[PatientFieldOut(key=f.key, label=f.label, type=f.type, unit=f.unit,
                                options=[{"code": o.code, "label": o.label} for o in f.options] if f.options else None)
                for f in definition.fields() if not f.staff_only])


async def _staff_names(session: AsyncSession, tenant_id: UUID, records: list[ClinicalRecord]) -> dict[UUID, str]:
    if not any(r.signed_by_id for r in records):
        return {}
    return {s.id: s.display_name for s in await iam.staff_names(session, tenant_id)}


async def list_signed_records(session: AsyncSession, actor: Actor, member_id: UUID | None,
                              params: PageParams) -> tuple[list[PatientRecordOut], str | None]:
    """The member's signed records (the patient, or a member of the family they head), newest first."""
    _patient(actor)
    target = member_id or actor.id
    await members.get_member_row(session, actor, target)  # 404 outside the patient's family
    stmt = select(ClinicalRecord).where(ClinicalRecord.tenant_id == actor.tenant_id,
                                        ClinicalRecord.member_id == target,
                                        ClinicalRecord.status == RecordStatus.SIGNED)
    rows, cursor = await paginate(session, stmt, ClinicalRecord.id, params, descending=True)
    templates = await clinical.templates_by_id(session, actor.tenant_id, {r.template_id for r in rows})
    names = await _staff_names(session, actor.tenant_id, rows)
    await audit.record_read(session, "clinical_record.list", "member", target,
                            record_ids=[str(r.id) for r in rows], by="patient")
    return [await _present(session, r, templates[r.template_id], names) for r in rows], cursor


async def get_signed_record(session: AsyncSession, actor: Actor, record_id: UUID) -> PatientRecordOut:
    """One signed record of the patient or their family; a draft, or anyone else's, is 404."""
    _patient(actor)
    record = await session.get(ClinicalRecord, (actor.tenant_id, record_id))
    missing = NotFound("clinical record not found", code="clinical_record_not_found")
    if record is None or record.status != RecordStatus.SIGNED:
        raise missing
    try:
        await members.get_member_row(session, actor, record.member_id)
    except NotFound:
        raise missing from None
    templates = await clinical.templates_by_id(session, actor.tenant_id, {record.template_id})
    await audit.record_read(session, "clinical_record.read", "clinical_record", record.id,
                            member_id=str(record.member_id), by="patient")
    return await _present(session, record, templates[record.template_id],
                          await _staff_names(session, actor.tenant_id, [record]))
