"""Clinical records: form templates (versioned), records (draft → signed), amendments."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.db import session_scope
from app.core.pagination import Page, PageParams, page_params
from app.domain.clinical import policies, service
from app.domain.clinical.forms import KEY_PATTERN
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

router = APIRouter(tags=["clinical"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
T = TypeVar("T")


def _audited(call: Awaitable[T]) -> Awaitable[T]:
    """A `not_in_care` refusal is audited in a transaction of its own before the 403."""
    return policies.audited(session_scope, call)


NOT_IN_CARE = {403: {"description": "Missing clinical permission, or the member is not in the caller's care "
                                    "(`not_in_care`, audited)"}}


@router.get("/form-templates", response_model=Page[FormTemplateOut], operation_id="list_form_templates")
async def list_form_templates(
    code: str | None = Query(None, pattern=KEY_PATTERN, max_length=64),
    all_versions: bool = Query(False, description="Every version, not only the latest of each code"),
    session: AsyncSession = Depends(get_db), actor: Actor = require("clinical:read"),
) -> Page[FormTemplateOut]:
    """The tenant's forms, latest version of each code (built in: `tcm_four_exams`, `pain_vas`,
    `aesthetic_skin`, `intake_questionnaire`, `post_treatment_check`)."""
    rows = await service.list_templates(session, actor, code=code, all_versions=all_versions)
    return Page(items=[service.present_template(t) for t in rows])


@router.get("/form-templates/{form_template_id}", response_model=FormTemplateOut, operation_id="get_form_template")
async def get_form_template(form_template_id: UUID, session: AsyncSession = Depends(get_db),
                            actor: Actor = require("clinical:read")) -> FormTemplateOut:
    return service.present_template(await service.get_template(session, actor, form_template_id))


@router.post("/form-templates", status_code=201, response_model=FormTemplateOut, operation_id="create_form_template",
             responses={409: {"description": "A template with this code exists (`form_template_exists`)"}})
async def create_form_template(body: FormTemplateCreate, session: AsyncSession = Depends(get_db),
                               actor: Actor = require("clinical:write")) -> FormTemplateOut:
    """A new form (version 1). Needs clinical:write and members.health:all."""
    return service.present_template(await service.create_template(session, actor, body))


@router.post("/form-templates/{form_template_id}/versions", status_code=201, response_model=FormTemplateOut,
             operation_id="create_form_template_version")
async def create_form_template_version(form_template_id: UUID, body: FormTemplateVersionCreate,
                                       session: AsyncSession = Depends(get_db),
                                       actor: Actor = require("clinical:write")) -> FormTemplateOut:
    """Edit a form: its next version, with the whole new definition. Existing records keep theirs."""
    return service.present_template(await service.create_template_version(session, actor, form_template_id, body))


@router.post("/clinical-records", status_code=201, response_model=ClinicalRecordOut,
             operation_id="create_clinical_record", responses=NOT_IN_CARE)
async def create_clinical_record(body: ClinicalRecordCreate, session: AsyncSession = Depends(get_db),
                                 actor: Actor = require("clinical:write")) -> ClinicalRecordOut:
    """A draft record of a form for a member, optionally of an appointment or service record of theirs.
    Values that do not fit the form are 422 naming each field (`values.<key>`)."""
    return await service.present_record(session, await _audited(service.create_record(session, actor, body)))


@router.get("/clinical-records", response_model=Page[ClinicalRecordSummary], operation_id="list_clinical_records",
            responses=NOT_IN_CARE)
async def list_clinical_records(member_id: UUID, params: PageParams = Depends(page_params),
                                session: AsyncSession = Depends(get_db),
                                actor: Actor = require("clinical:read")) -> Page[ClinicalRecordSummary]:
    """A member's records, newest first, without values (audited)."""
    items, cursor = await _audited(service.list_records(session, actor, member_id, params))
    return Page(items=items, next_cursor=cursor)


@router.get("/clinical-records/{clinical_record_id}", response_model=ClinicalRecordOut,
            operation_id="get_clinical_record", responses=NOT_IN_CARE)
async def get_clinical_record(clinical_record_id: UUID, session: AsyncSession = Depends(get_db),
                              actor: Actor = require("clinical:read")) -> ClinicalRecordOut:
    """The record as written or signed, its amendments in order, and whether its hashes still verify
    (the read is audited)."""
    return await _audited(service.get_record(session, actor, clinical_record_id))


@router.patch("/clinical-records/{clinical_record_id}", response_model=ClinicalRecordOut,
              operation_id="update_clinical_record",
              responses={**NOT_IN_CARE, 409: {"description": "The record is signed (`record_signed`)"}})
async def update_clinical_record(clinical_record_id: UUID, body: ClinicalRecordUpdate,
                                 session: AsyncSession = Depends(get_db),
                                 actor: Actor = require("clinical:write")) -> ClinicalRecordOut:
    """Replace a draft's values."""
    record = await _audited(service.update_record(session, actor, clinical_record_id, body))
    return await service.present_record(session, record)


@router.post("/clinical-records/{clinical_record_id}/sign", response_model=ClinicalRecordOut,
             operation_id="sign_clinical_record",
             responses={**NOT_IN_CARE, 409: {"description": "Already signed (`record_signed`)"}})
async def sign_clinical_record(clinical_record_id: UUID, session: AsyncSession = Depends(get_db),
                               actor: Actor = require("clinical:write")) -> ClinicalRecordOut:
    """Sign and lock the record: `content_hash` is the SHA-256 of its canonical content."""
    record = await _audited(service.sign_record(session, actor, clinical_record_id))
    return await service.present_record(session, record)


@router.post("/clinical-records/{clinical_record_id}/amendments", status_code=201, response_model=AmendmentOut,
             operation_id="amend_clinical_record",
             responses={**NOT_IN_CARE, 409: {"description": "The record is a draft (`record_not_signed`)"}})
async def amend_clinical_record(clinical_record_id: UUID, body: AmendmentCreate,
                                session: AsyncSession = Depends(get_db),
                                actor: Actor = require("clinical:write")) -> AmendmentOut:
    """Correct a signed record: the reason and the whole corrected values (checked against the record's
    template version), appended; the original stays as signed."""
    amendment = await _audited(service.amend_record(session, actor, clinical_record_id, body))
    return AmendmentOut(id=amendment.id, seq=amendment.seq, author_id=amendment.author_id,
                        created_at=amendment.created_at, reason=body.reason,
                        values=service.values_of(amendment), prev_hash=amendment.prev_hash, hash=amendment.hash)
