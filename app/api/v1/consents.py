"""Consent for staff: consent templates (versioned text), consents recorded at the desk, reading and
withdrawing them, the PDF, and which consent a service needs before it is booked or completed."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import client_ip, get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.db import session_scope
from app.core.pagination import Page, PageParams, page_params
from app.domain.clinical import consents, policies
from app.domain.clinical.consent_schemas import (
    ConsentOut,
    ConsentSign,
    ConsentTemplateCreate,
    ConsentTemplateOut,
    ConsentTemplateVersionCreate,
    ConsentWithdraw,
    ServiceConsentRequirementOut,
    ServiceConsentRequirementSet,
)
from app.domain.clinical.forms import KEY_PATTERN

router = APIRouter(tags=["consent"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
T = TypeVar("T")

NOT_IN_CARE = {403: {"description": "Missing clinical permission, or the member is not in the caller's care "
                                    "(`not_in_care`, audited)"}}
PDF_RESPONSE = {200: {"content": {"application/pdf": {}}, "description": "The signed consent as a PDF"}}


def _audited(call: Awaitable[T]) -> Awaitable[T]:
    """A `not_in_care` refusal is audited in a transaction of its own before the 403."""
    return policies.audited(session_scope, call)


def request_device(request: Request) -> dict[str, str | None]:
    """What the request itself shows of the device, kept next to what the client says."""
    return {"user_agent": (request.headers.get("user-agent") or "")[:500] or None, "ip": client_ip(request)}


def pdf_response(pdf: consents.ConsentPdf) -> Response:
    return Response(content=pdf.content, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{pdf.filename}"', "Cache-Control": "no-store"})


@router.get("/consent-templates", response_model=Page[ConsentTemplateOut], operation_id="list_consent_templates")
async def list_consent_templates(
    code: str | None = Query(None, pattern=KEY_PATTERN, max_length=64),
    all_versions: bool = Query(False, description="Every version, not only the latest of each code"),
    session: AsyncSession = Depends(get_db), actor: Actor = require("clinical:read"),
) -> Page[ConsentTemplateOut]:
    """The tenant's consent texts, latest version of each code (built in: `acupuncture` 针灸治疗知情同意书,
    `aesthetic_injection` 医美注射治疗知情同意书)."""
    rows = await consents.list_templates(session, actor, code=code, all_versions=all_versions)
    return Page(items=[consents.present_template(t) for t in rows])


@router.get("/consent-templates/{consent_template_id}", response_model=ConsentTemplateOut,
            operation_id="get_consent_template")
async def get_consent_template(consent_template_id: UUID, session: AsyncSession = Depends(get_db),
                               actor: Actor = require("clinical:read")) -> ConsentTemplateOut:
    return consents.present_template(await consents.get_template(session, actor, consent_template_id))


@router.post("/consent-templates", status_code=201, response_model=ConsentTemplateOut,
             operation_id="create_consent_template",
             responses={409: {"description": "A consent with this code exists (`consent_template_exists`)"}})
async def create_consent_template(body: ConsentTemplateCreate, session: AsyncSession = Depends(get_db),
                                  actor: Actor = require("clinical:write")) -> ConsentTemplateOut:
    """A new consent text (version 1). Needs clinical:write and members.health:all."""
    return consents.present_template(await consents.create_template(session, actor, body))


@router.post("/consent-templates/{consent_template_id}/versions", status_code=201, response_model=ConsentTemplateOut,
             operation_id="create_consent_template_version",
             responses={409: {"description": "Edited at the same time (`consent_template_edited`)"}})
async def create_consent_template_version(consent_template_id: UUID, body: ConsentTemplateVersionCreate,
                                          session: AsyncSession = Depends(get_db),
                                          actor: Actor = require("clinical:write")) -> ConsentTemplateOut:
    """Edit a consent: its next version, with the whole new text. Signed consents keep the version signed."""
    return consents.present_template(
        await consents.create_template_version(session, actor, consent_template_id, body))


@router.post("/consents", status_code=201, response_model=ConsentOut, operation_id="record_consent",
             responses={**NOT_IN_CARE, 409: {"description": "A newer version of the text exists "
                                                            "(`consent_template_superseded`)"}})
async def record_consent(body: ConsentSign, request: Request, session: AsyncSession = Depends(get_db),
                         actor: Actor = require("clinical:write")) -> ConsentOut:
    """Record a consent the member signed at the desk (on a tablet): the signature PNG (base64, ≤ 200 KB,
    ≤ 2000×2000 px; else 422 naming `signature_png`), the template version shown, the device."""
    consent = await _audited(consents.sign(session, actor, body, request_device=request_device(request)))
    return await consents.present(session, consent)


@router.get("/consents", response_model=Page[ConsentOut], operation_id="list_consents", responses=NOT_IN_CARE)
async def list_consents(member_id: UUID, params: PageParams = Depends(page_params),
                        session: AsyncSession = Depends(get_db),
                        actor: Actor = require("clinical:read")) -> Page[ConsentOut]:
    """A member's consents, newest first, each `signed` or `withdrawn` (audited)."""
    items, cursor = await _audited(consents.list_consents(session, actor, member_id, params))
    return Page(items=items, next_cursor=cursor)


@router.get("/consents/{consent_id}", response_model=ConsentOut, operation_id="get_consent", responses=NOT_IN_CARE)
async def get_consent(consent_id: UUID, session: AsyncSession = Depends(get_db),
                      actor: Actor = require("clinical:read")) -> ConsentOut:
    """One consent: version, text hash, signer, time, device, withdrawal, and whether its hashes verify."""
    return await _audited(consents.get_consent(session, actor, consent_id))


@router.get("/consents/{consent_id}/pdf", operation_id="get_consent_pdf", response_class=Response,
            responses={**PDF_RESPONSE, **NOT_IN_CARE})
async def get_consent_pdf(consent_id: UUID, session: AsyncSession = Depends(get_db),
                          actor: Actor = require("clinical:read")) -> Response:
    """The signed consent as a PDF: the Chinese text, signer, time, template version, text hash, signature."""
    return pdf_response(await _audited(consents.consent_pdf(session, actor, consent_id)))


@router.post("/consents/{consent_id}/withdraw", response_model=ConsentOut, operation_id="withdraw_consent",
             responses={**NOT_IN_CARE, 409: {"description": "Already withdrawn (`consent_withdrawn`)"}})
async def withdraw_consent(consent_id: UUID, body: ConsentWithdraw, session: AsyncSession = Depends(get_db),
                           actor: Actor = require("clinical:write")) -> ConsentOut:
    """Withdraw a consent (the member asked at the desk): who, when and why are appended; the consent is kept."""
    consent = await _audited(consents.withdraw(session, actor, consent_id, body))
    return await consents.present(session, consent)


@router.put("/services/{service_id}/consent-requirement", response_model=ServiceConsentRequirementOut,
            operation_id="set_service_consent_requirement")
async def set_service_consent_requirement(service_id: UUID, body: ServiceConsentRequirementSet,
                                          session: AsyncSession = Depends(get_db),
                                          actor: Actor = require("clinical:write")) -> ServiceConsentRequirementOut:
    """The consent this service needs: without a signed (not withdrawn) one of `template_code`, booking it
    (`required_before: booking`) or completing it is 409 `consent_required`. Needs clinical:write and
    members.health:all."""
    return await consents.set_requirement(session, actor, service_id, body)


@router.get("/services/{service_id}/consent-requirement", response_model=ServiceConsentRequirementOut,
            operation_id="get_service_consent_requirement")
async def get_service_consent_requirement(service_id: UUID, session: AsyncSession = Depends(get_db),
                                          actor: Actor = require("catalog:read")) -> ServiceConsentRequirementOut:
    """The consent this service needs (404 `consent_requirement_not_found` when none)."""
    return await consents.get_requirement(session, actor, service_id)


@router.delete("/services/{service_id}/consent-requirement", status_code=204, response_class=Response,
               operation_id="remove_service_consent_requirement")
async def remove_service_consent_requirement(service_id: UUID, session: AsyncSession = Depends(get_db),
                                             actor: Actor = require("clinical:write")) -> Response:
    """The service needs no consent any more."""
    await consents.remove_requirement(session, actor, service_id)
    return Response(status_code=204)
