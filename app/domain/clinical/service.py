"""Clinical use cases: form templates (versioned data), records (draft → signed) and amendments.

Signing locks a record and stores `content_hash` = SHA-256 of the canonical JSON (sorted keys, no spaces,
UTF-8) of the record id, template code and version, member, signer and values. A signed record is never
changed (409 `record_signed`); a correction is an amendment — who, when, why, the whole corrected values,
checked against the same template version — appended with `hash = SHA-256(prev_hash + canonical
amendment)`, where `prev_hash` is the record's hash or the previous amendment's. `verify_record` recomputes
the chain. Values and reasons are encrypted at rest with the members' field encryption.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, NotFound
from app.core.ids import new_id
from app.core.outbox import emit
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.domain.booking import service as booking
from app.domain.clinical import policies
from app.domain.clinical.builtin_templates import BUILTIN_TEMPLATES
from app.domain.clinical.events import RECORD_AMENDED, RECORD_SIGNED
from app.domain.clinical.forms import FormDefinition, field_error, validate_values
from app.domain.clinical.models import ClinicalAmendment, ClinicalRecord, FormTemplate, RecordStatus
from app.domain.clinical.schemas import (
    AmendmentCreate,
    AmendmentOut,
    ClinicalRecordCreate,
    ClinicalRecordOut,
    ClinicalRecordSummary,
    ClinicalRecordUpdate,
    FormTemplateCreate,
    FormTemplateOut,
    FormTemplateVersionCreate,
)
from app.domain.visits import service as visits

# ---------------------------------------------------------------- templates


async def install_builtin_templates(session: AsyncSession, tenant_id: UUID) -> int:
    """Version 1 of each built-in form the tenant does not have yet; idempotent (a tenant's later versions
    are left alone). Called at tenant creation; the migration did the same for tenants that existed."""
    added = 0
    for builtin in BUILTIN_TEMPLATES:
        definition = FormDefinition.model_validate(builtin["definition"]).model_dump(mode="json", exclude_none=True)
        inserted = await session.execute(pg_insert(FormTemplate).values(
            tenant_id=tenant_id, id=new_id(), created_at=utcnow(), code=builtin["code"], version=1,
            name=builtin["name"], kind=builtin["kind"], builtin=True, definition=definition,
        ).on_conflict_do_nothing(index_elements=["tenant_id", "code", "version"]).returning(FormTemplate.id))
        added += inserted.scalar_one_or_none() is not None
    return added


def _definition(template: FormTemplate) -> FormDefinition:
    return FormDefinition.model_validate(template.definition)


def present_template(template: FormTemplate) -> FormTemplateOut:
    definition = _definition(template)
    return FormTemplateOut(
        id=template.id, code=template.code, version=template.version, name=template.name, kind=template.kind,
        builtin=template.builtin, sections=definition.sections, created_at=template.created_at,
        fields=[f.model_dump(mode="json", exclude_none=True) for f in definition.fields()])


async def list_templates(session: AsyncSession, actor: Actor, *, code: str | None = None,
                         all_versions: bool = False) -> list[FormTemplate]:
    """The latest version of each form (every version with `all_versions`), by code."""
    actor.require("clinical:read")
    stmt = select(FormTemplate).where(FormTemplate.tenant_id == actor.tenant_id)
    if code is not None:
        stmt = stmt.where(FormTemplate.code == code)
    rows = list((await session.execute(stmt.order_by(FormTemplate.code, FormTemplate.version.desc()))).scalars())
    if all_versions:
        return rows
    latest: dict[str, FormTemplate] = {}
    for row in rows:
        latest.setdefault(row.code, row)
    return list(latest.values())


async def get_template(session: AsyncSession, actor: Actor, template_id: UUID) -> FormTemplate:
    actor.require("clinical:read")
    return await get_or_404(session, FormTemplate, actor.tenant_id, template_id, code="form_template_not_found")


async def _latest(session: AsyncSession, tenant_id: UUID, code: str) -> FormTemplate | None:
    stmt = (select(FormTemplate).where(FormTemplate.tenant_id == tenant_id, FormTemplate.code == code)
            .order_by(FormTemplate.version.desc()).limit(1))
    return (await session.execute(stmt)).scalars().first()


async def create_template(session: AsyncSession, actor: Actor, data: FormTemplateCreate) -> FormTemplate:
    policies.require_template_admin(actor)
    if await _latest(session, actor.tenant_id, data.code) is not None:
        raise Conflict(f"a form template with code {data.code!r} exists: add a version to it",
                       code="form_template_exists")
    definition = FormDefinition.model_validate({"sections": data.sections})
    template = FormTemplate(tenant_id=actor.tenant_id, code=data.code, version=1, name=data.name, kind=data.kind,
                            definition=definition.model_dump(mode="json", exclude_none=True),
                            created_by_id=actor.id)
    session.add(template)
    await session.flush()
    audit.record(session, "form_template.created", "form_template", template.id, code=template.code, version=1)
    return template


async def create_template_version(session: AsyncSession, actor: Actor, template_id: UUID,
                                  data: FormTemplateVersionCreate) -> FormTemplate:
    """The next version of the form `template_id` is a version of; records keep the version they were
    filled with. Of two concurrent edits the second finds its version number taken (the unique key) and
    is 409 `form_template_edited`: it is made again on top of the first."""
    policies.require_template_admin(actor)
    base = await get_or_404(session, FormTemplate, actor.tenant_id, template_id, code="form_template_not_found")
    latest = await _latest(session, actor.tenant_id, base.code)
    assert latest is not None  # noqa: S101 - `base` itself is a version of the code
    definition = FormDefinition.model_validate({"sections": data.sections})
    template = FormTemplate(tenant_id=actor.tenant_id, code=base.code, version=latest.version + 1,
                            name=data.name or latest.name, kind=data.kind or latest.kind, builtin=latest.builtin,
                            definition=definition.model_dump(mode="json", exclude_none=True),
                            created_by_id=actor.id)
    session.add(template)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("the template was edited at the same time: load it again and retry",
                       code="form_template_edited") from None
    audit.record(session, "form_template.versioned", "form_template", template.id, code=template.code,
                 version=template.version, previous_id=str(latest.id))
    return template


# ---------------------------------------------------------------- hashing and encryption


def canonical_json(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def content_hash(record: ClinicalRecord, values: dict[str, Any], signer_id: UUID) -> str:
    return _sha256(canonical_json({
        "record_id": str(record.id), "template_code": record.template_code,
        "template_version": record.template_version, "member_id": str(record.member_id),
        "signer_id": str(signer_id), "values": values}))


def amendment_hash(prev_hash: str, record_id: UUID, seq: int, author_id: UUID | None, at: datetime, reason: str,
                   values: dict[str, Any]) -> str:
    return _sha256(prev_hash + canonical_json({
        "record_id": str(record_id), "seq": seq, "author_id": str(author_id) if author_id else None,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"), "reason": reason, "values": values}))


def _seal(values: dict[str, Any]) -> str:
    sealed = crypto.encrypt(canonical_json(values))
    assert sealed is not None  # noqa: S101 - a string in, a string out
    return sealed


def _open(sealed: str) -> dict[str, Any]:
    return json.loads(crypto.decrypt(sealed) or "{}")


# ---------------------------------------------------------------- records


async def _template_for(session: AsyncSession, actor: Actor, data: ClinicalRecordCreate) -> FormTemplate:
    if data.template_id is not None:
        template = await session.get(FormTemplate, (actor.tenant_id, data.template_id))
        if template is None:
            raise field_error("template_id", "no such form template")
        return template
    template = await _latest(session, actor.tenant_id, data.template_code or "")
    if template is None:
        raise field_error("template_code", "no such form template")
    return template


async def _check_links(session: AsyncSession, actor: Actor, member_id: UUID, appointment_id: UUID | None,
                       service_record_id: UUID | None) -> None:
    """A linked appointment or service record must be this member's."""
    if appointment_id is not None:
        appointment = await booking.appointment_of(session, actor.tenant_id, appointment_id)
        if appointment is None:
            raise field_error("appointment_id", "no such appointment")
        if appointment.member_id != member_id:
            raise field_error("appointment_id", "the appointment is another member's")
    if service_record_id is not None:
        try:
            record = await visits.get_record(session, actor, service_record_id)
        except NotFound:
            raise field_error("service_record_id", "no such service record") from None
        if record.member_id != member_id:
            raise field_error("service_record_id", "the service record is another member's")


async def create_record(session: AsyncSession, actor: Actor, data: ClinicalRecordCreate) -> ClinicalRecord:
    await policies.require_clinical_access(session, actor, data.member_id, "clinical:write", action="create")
    template = await _template_for(session, actor, data)
    values = validate_values(_definition(template), data.values)
    await _check_links(session, actor, data.member_id, data.appointment_id, data.service_record_id)
    now = utcnow()
    record = ClinicalRecord(tenant_id=actor.tenant_id, member_id=data.member_id, template_id=template.id,
                            template_code=template.code, template_version=template.version,
                            appointment_id=data.appointment_id, service_record_id=data.service_record_id,
                            values_encrypted=_seal(values), author_id=actor.id, created_at=now, updated_at=now)
    session.add(record)
    await session.flush()
    audit.record(session, "clinical_record.created", "clinical_record", record.id, member_id=str(record.member_id),
                 template_code=template.code, template_version=template.version)
    return record


async def _record(session: AsyncSession, actor: Actor, record_id: UUID, permission: str, action: str, *,
                  lock: bool = False) -> ClinicalRecord:
    record = await get_or_404(session, ClinicalRecord, actor.tenant_id, record_id, code="clinical_record_not_found",
                              lock=lock)
    await policies.require_clinical_access(session, actor, record.member_id, permission, action=action,
                                           record_id=record.id)
    return record


async def _template_of(session: AsyncSession, record: ClinicalRecord) -> FormTemplate:
    template = await session.get(FormTemplate, (record.tenant_id, record.template_id))
    assert template is not None  # noqa: S101 - a foreign key
    return template


def _signed(record: ClinicalRecord) -> Conflict:
    return Conflict("the record is signed and can no longer be edited: add an amendment", code="record_signed")


async def update_record(session: AsyncSession, actor: Actor, record_id: UUID,
                        data: ClinicalRecordUpdate) -> ClinicalRecord:
    record = await _record(session, actor, record_id, "clinical:write", "update", lock=True)
    if record.status != RecordStatus.DRAFT:
        raise _signed(record)
    values = validate_values(_definition(await _template_of(session, record)), data.values)
    record.values_encrypted = _seal(values)
    record.updated_at = utcnow()
    session.add(record)
    audit.record(session, "clinical_record.updated", "clinical_record", record.id, member_id=str(record.member_id))
    return record


async def sign_record(session: AsyncSession, actor: Actor, record_id: UUID) -> ClinicalRecord:
    """Sign a draft: the row lock makes a second concurrent signing wait and then find it signed (409)."""
    record = await _record(session, actor, record_id, "clinical:write", "sign", lock=True)
    if record.status != RecordStatus.DRAFT:
        raise Conflict("the record is already signed", code="record_signed")
    values = _open(record.values_encrypted)
    record.status = RecordStatus.SIGNED
    record.signed_at = record.updated_at = utcnow()
    record.signed_by_id = actor.id
    record.content_hash = content_hash(record, values, actor.id)
    session.add(record)
    audit.record(session, "clinical_record.signed", "clinical_record", record.id, member_id=str(record.member_id),
                 content_hash=record.content_hash)
    await emit(session, RECORD_SIGNED, {
        "record_id": str(record.id), "member_id": str(record.member_id), "template_code": record.template_code,
        "template_version": record.template_version, "signed_by_id": str(actor.id),
        "content_hash": record.content_hash,
        "appointment_id": str(record.appointment_id) if record.appointment_id else None,
        "service_record_id": str(record.service_record_id) if record.service_record_id else None})
    return record


async def _amendments(session: AsyncSession, record: ClinicalRecord) -> list[ClinicalAmendment]:
    return list((await session.execute(select(ClinicalAmendment).where(
        ClinicalAmendment.tenant_id == record.tenant_id, ClinicalAmendment.record_id == record.id)
        .order_by(ClinicalAmendment.seq))).scalars())


async def amend_record(session: AsyncSession, actor: Actor, record_id: UUID,
                       data: AmendmentCreate) -> ClinicalAmendment:
    """Append a correction to a signed record (a draft is simply edited). The record's row lock orders
    concurrent amendments, so the chain never forks."""
    record = await _record(session, actor, record_id, "clinical:write", "amend", lock=True)
    if record.status != RecordStatus.SIGNED:
        raise Conflict("only a signed record is amended; edit the draft instead", code="record_not_signed")
    values = validate_values(_definition(await _template_of(session, record)), data.values)
    previous = await _amendments(session, record)
    prev_hash = previous[-1].hash if previous else record.content_hash or ""
    seq = len(previous) + 1
    at = utcnow()
    amendment = ClinicalAmendment(
        tenant_id=actor.tenant_id, record_id=record.id, seq=seq, author_id=actor.id, created_at=at,
        reason_encrypted=crypto.encrypt(data.reason) or "", values_encrypted=_seal(values), prev_hash=prev_hash,
        hash=amendment_hash(prev_hash, record.id, seq, actor.id, at, data.reason, values))
    session.add(amendment)
    await session.flush()
    audit.record(session, "clinical_record.amended", "clinical_record", record.id, member_id=str(record.member_id),
                 amendment_id=str(amendment.id), hash=amendment.hash)
    await emit(session, RECORD_AMENDED, {
        "record_id": str(record.id), "amendment_id": str(amendment.id), "member_id": str(record.member_id),
        "amended_by_id": str(actor.id), "hash": amendment.hash})
    return amendment


def values_of(amendment: ClinicalAmendment) -> dict[str, Any]:
    return _open(amendment.values_encrypted)


def record_values(record: ClinicalRecord) -> dict[str, Any]:
    """The record's values as written (as signed, for a signed one), decrypted."""
    return _open(record.values_encrypted)


def reason_of(amendment: ClinicalAmendment) -> str:
    return crypto.decrypt(amendment.reason_encrypted) or ""


async def amendments_of(session: AsyncSession, record: ClinicalRecord) -> list[ClinicalAmendment]:
    """The record's amendments in order (no permission check: the caller has made its own)."""
    return await _amendments(session, record)


async def record_row(session: AsyncSession, tenant_id: UUID, record_id: UUID) -> ClinicalRecord:
    """The record row (no permission check: for presenting what the caller has just written)."""
    return await get_or_404(session, ClinicalRecord, tenant_id, record_id, code="clinical_record_not_found")


async def templates_by_id(session: AsyncSession, tenant_id: UUID, ids: set[UUID]) -> dict[UUID, FormTemplate]:
    """Template versions by id, in one query (names and definitions for a page of records)."""
    if not ids:
        return {}
    rows = (await session.execute(select(FormTemplate).where(FormTemplate.tenant_id == tenant_id,
                                                             FormTemplate.id.in_(ids)))).scalars()
    return {t.id: t for t in rows}


def verify_record(record: ClinicalRecord, amendments: list[ClinicalAmendment]) -> bool | None:
    """Whether the signed values and every amendment still match their hashes (None for a draft)."""
    if record.status != RecordStatus.SIGNED or record.signed_by_id is None:
        return None
    if content_hash(record, _open(record.values_encrypted), record.signed_by_id) != record.content_hash:
        return False
    prev = record.content_hash or ""
    for a in amendments:
        expected = amendment_hash(prev, record.id, a.seq, a.author_id, a.created_at, crypto.decrypt(a.reason_encrypted)
                                  or "", _open(a.values_encrypted))
        if a.prev_hash != prev or a.hash != expected:
            return False
        prev = a.hash
    return True


async def present_record(session: AsyncSession, record: ClinicalRecord) -> ClinicalRecordOut:
    amendments = await _amendments(session, record)
    values = _open(record.values_encrypted)
    shown = [AmendmentOut(id=a.id, seq=a.seq, author_id=a.author_id, created_at=a.created_at,
                          reason=crypto.decrypt(a.reason_encrypted) or "", values=_open(a.values_encrypted),
                          prev_hash=a.prev_hash, hash=a.hash) for a in amendments]
    return ClinicalRecordOut(
        id=record.id, member_id=record.member_id, template_id=record.template_id,
        template_code=record.template_code, template_version=record.template_version,
        appointment_id=record.appointment_id, service_record_id=record.service_record_id, status=record.status,
        values=values, current_values=shown[-1].values if shown else values, author_id=record.author_id,
        created_at=record.created_at, updated_at=record.updated_at, signed_at=record.signed_at,
        signed_by_id=record.signed_by_id, content_hash=record.content_hash,
        hash_verified=verify_record(record, amendments), amendments=shown)


async def get_record(session: AsyncSession, actor: Actor, record_id: UUID) -> ClinicalRecordOut:
    """One record with its amendments; the read is audited."""
    record = await _record(session, actor, record_id, "clinical:read", "read")
    await audit.record_read(session, "clinical_record.read", "clinical_record", record.id,
                            member_id=str(record.member_id))
    return await present_record(session, record)


async def list_records(session: AsyncSession, actor: Actor, member_id: UUID,
                       params: PageParams) -> tuple[list[ClinicalRecordSummary], str | None]:
    """A member's records, newest first, without their values; the listing is audited as a read."""
    await policies.require_clinical_access(session, actor, member_id, "clinical:read", action="list")
    stmt = select(ClinicalRecord).where(ClinicalRecord.tenant_id == actor.tenant_id,
                                        ClinicalRecord.member_id == member_id)
    rows, cursor = await paginate(session, stmt, ClinicalRecord.id, params, descending=True)
    counts: dict[UUID, int] = {}
    if rows:
        counts = dict((await session.execute(select(ClinicalAmendment.record_id, func.count()).where(
            ClinicalAmendment.tenant_id == actor.tenant_id,
            ClinicalAmendment.record_id.in_([r.id for r in rows])).group_by(ClinicalAmendment.record_id))).all())
    await audit.record_read(session, "clinical_record.list", "member", member_id,
                            record_ids=[str(r.id) for r in rows])
    return [ClinicalRecordSummary(
        id=r.id, member_id=r.member_id, template_code=r.template_code, template_version=r.template_version,
        status=r.status, appointment_id=r.appointment_id, service_record_id=r.service_record_id,
        created_at=r.created_at, signed_at=r.signed_at, amendment_count=counts.get(r.id, 0)) for r in rows], cursor
