"""The patient's clinical records and health-record access log in the mini-program (patient tokens), under
`/patient/…`.

`member_id` reads a member of the family the patient heads; left out, the patient themself. Anyone else's
id is 404, as if it did not exist.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.clinical import access_log, patient_records
from app.domain.clinical import timeline as _timeline  # noqa: F401 - registers the clinical timeline source
from app.domain.clinical.access_log import AccessEntryOut
from app.domain.clinical.patient_records import PatientRecordOut

router = APIRouter(prefix="/patient", tags=["patient"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)

PATIENT = ("patient",)
FAMILY_MEMBER = Query(None, description="A member of the family the patient heads (default: the patient)")


@router.get("/clinical-records", response_model=Page[PatientRecordOut], operation_id="patient_list_clinical_records")
async def my_clinical_records(member_id: UUID | None = FAMILY_MEMBER, params: PageParams = Depends(page_params),
                              session: AsyncSession = Depends(get_db),
                              actor: Actor = require(audiences=PATIENT)) -> Page[PatientRecordOut]:
    """Their signed clinical records, newest first: current values (after amendments) and the amendments
    with the original, without staff-only fields. Drafts are never shown."""
    items, cursor = await patient_records.list_signed_records(session, actor, member_id, params)
    return Page(items=items, next_cursor=cursor)


@router.get("/clinical-records/{clinical_record_id}", response_model=PatientRecordOut,
            operation_id="patient_get_clinical_record")
async def my_clinical_record(clinical_record_id: UUID, session: AsyncSession = Depends(get_db),
                             actor: Actor = require(audiences=PATIENT)) -> PatientRecordOut:
    """One signed record of theirs or their family's (404 for a draft or anyone else's)."""
    return await patient_records.get_signed_record(session, actor, clinical_record_id)


@router.get("/health-record-access", response_model=Page[AccessEntryOut],
            operation_id="patient_health_record_access")
async def my_health_record_access(member_id: UUID | None = FAMILY_MEMBER, params: PageParams = Depends(page_params),
                                  session: AsyncSession = Depends(get_db),
                                  actor: Actor = require(audiences=PATIENT)) -> Page[AccessEntryOut]:
    """Who opened their health record and when (the right to know under PIPL): every audited read of their
    health data — clinical records, health fields, photos, consents … — with the staff member's name and
    roles (or the HIS client's name), the action and its time, newest first."""
    items, cursor = await access_log.access_log(session, actor, member_id, params)
    return Page(items=items, next_cursor=cursor)
