"""Consent in the mini-program (patient tokens), under `/patient/…`: read the text, sign it, see and withdraw
one's own consents (and those of the family one heads), and download the PDF.

`member_id` names a member of the family the patient heads; left out, the patient themself. Anyone else's
member or consent is 404, as if it did not exist.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.api.v1.consents import PDF_RESPONSE, pdf_response, request_device
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.clinical import consents
from app.domain.clinical.consent_schemas import ConsentOut, ConsentTemplateOut, ConsentWithdraw, PatientConsentSign
from app.domain.clinical.forms import KEY_PATTERN

router = APIRouter(prefix="/patient", tags=["patient"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)

PATIENT = ("patient",)
FAMILY_MEMBER = Query(None, description="A member of the family the patient heads (default: the patient)")


@router.get("/consent-templates", response_model=Page[ConsentTemplateOut],
            operation_id="patient_list_consent_templates")
async def list_consent_templates(code: str | None = Query(None, pattern=KEY_PATTERN, max_length=64),
                                 session: AsyncSession = Depends(get_db),
                                 actor: Actor = require(audiences=PATIENT)) -> Page[ConsentTemplateOut]:
    """The current text of each consent (or of `code`): show `title` and `body`, then sign `id`."""
    rows = await consents.list_templates(session, actor, code=code)
    return Page(items=[consents.present_template(t) for t in rows])


@router.post("/consents", status_code=201, response_model=ConsentOut, operation_id="patient_sign_consent",
             responses={409: {"description": "A newer version of the text exists (`consent_template_superseded`)"}})
async def sign_consent(body: PatientConsentSign, request: Request, session: AsyncSession = Depends(get_db),
                       actor: Actor = require(audiences=PATIENT)) -> ConsentOut:
    """Sign a consent for oneself (or a family member): the template version shown (`template_id`, optionally
    `text_sha256` of the text shown), the handwritten signature as a base64 PNG (≤ 200 KB, ≤ 2000×2000 px;
    else 422 naming `signature_png`) and the device (`device.device_model`, `system`, …)."""
    consent = await consents.sign(session, actor, body, request_device=request_device(request))
    return await consents.present(session, consent)


@router.get("/consents", response_model=Page[ConsentOut], operation_id="patient_list_consents")
async def list_consents(member_id: UUID | None = FAMILY_MEMBER, params: PageParams = Depends(page_params),
                        session: AsyncSession = Depends(get_db),
                        actor: Actor = require(audiences=PATIENT)) -> Page[ConsentOut]:
    """The member's consents, newest first, each `signed` or `withdrawn`."""
    items, cursor = await consents.list_consents(session, actor, member_id, params)
    return Page(items=items, next_cursor=cursor)


@router.get("/consents/{consent_id}", response_model=ConsentOut, operation_id="patient_get_consent")
async def get_consent(consent_id: UUID, session: AsyncSession = Depends(get_db),
                      actor: Actor = require(audiences=PATIENT)) -> ConsentOut:
    return await consents.get_consent(session, actor, consent_id)


@router.get("/consents/{consent_id}/pdf", operation_id="patient_get_consent_pdf", response_class=Response,
            responses=PDF_RESPONSE)
async def get_consent_pdf(consent_id: UUID, session: AsyncSession = Depends(get_db),
                          actor: Actor = require(audiences=PATIENT)) -> Response:
    """The signed consent as a PDF, to keep or to show."""
    return pdf_response(await consents.consent_pdf(session, actor, consent_id))


@router.post("/consents/{consent_id}/withdraw", response_model=ConsentOut, operation_id="patient_withdraw_consent",
             responses={409: {"description": "Already withdrawn (`consent_withdrawn`)"}})
async def withdraw_consent(consent_id: UUID, body: ConsentWithdraw, session: AsyncSession = Depends(get_db),
                           actor: Actor = require(audiences=PATIENT)) -> ConsentOut:
    """Withdraw one's consent: when and why are recorded; the signed consent itself is kept."""
    consent = await consents.withdraw(session, actor, consent_id, body)
    return await consents.present(session, consent)
