"""Clinical photos and attachments: upload (multipart), lists, before/after pairs, signed download URLs, and the
patient's own photos in the mini-program."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date
from typing import Literal, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES, problem_responses
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.db import session_scope
from app.core.errors import PayloadTooLarge
from app.core.pagination import Page, PageParams, page_params
from app.domain.clinical import photos, policies
from app.domain.clinical.photo_schemas import (
    MAX_NOTE,
    ClinicalPhotoOut,
    PhotoPairsOut,
    PhotoUpload,
    TreatmentArea,
)

router = APIRouter(tags=["clinical"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
patient_router = APIRouter(prefix="/patient", tags=["patient"], route_class=TransactionalRoute,
                           responses=PROBLEM_RESPONSES)
T = TypeVar("T")
PATIENT = ("patient",)
UPLOAD_PATH = "/clinical-photos"


def _audited(call: Awaitable[T]) -> Awaitable[T]:
    """A `not_in_care` refusal is audited in a transaction of its own before the 403."""
    return policies.audited(session_scope, call)


NOT_IN_CARE = {403: {"description": "Missing clinical permission, or the member is not in the caller's care "
                                    "(`not_in_care`, audited)"}}
UPLOAD_PROBLEMS = problem_responses({
    403: "Missing clinical:write, or the member is not in the caller's care (`not_in_care`, audited)",
    413: "Over the size limit: 10 MB for an image, 20 MB for a PDF (`file_too_large`, `payload_too_large`)",
    422: "`validation_error` naming the field: `file` when it is not what its content type or name says, not a "
         "readable JPEG/PNG/WebP (or PDF for an attachment), or too many pixels; a link that is another member's",
})


async def _read(file: UploadFile) -> bytes:
    limit = photos.largest_upload()
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the file is larger than {limit} bytes", code="file_too_large",
                              errors=[{"field": "file", "message": f"over {limit} bytes", "type": "file_too_large"}])
    return data


@router.post(UPLOAD_PATH, status_code=201, response_model=ClinicalPhotoOut, operation_id="upload_clinical_photo",
             responses=UPLOAD_PROBLEMS)
async def upload_clinical_photo(
    file: UploadFile = File(description="JPEG, PNG or WebP (a photo); also PDF for kind=attachment. Images are "
                                        "re-encoded without EXIF (orientation applied) and get a 320 px thumbnail"),
    member_id: UUID = Form(),
    treatment_area: TreatmentArea = Form(description="Body-region code: face, neck, lower_back, knee_left, …"),
    phase: Literal["before", "during", "after"] = Form(),
    taken_on: date = Form(description="The day the photo was taken (store-local)"),
    kind: Literal["photo", "attachment"] = Form("photo"),
    appointment_id: UUID | None = Form(None),
    service_record_id: UUID | None = Form(None, description="The treatment (service record) it documents"),
    clinical_record_id: UUID | None = Form(None),
    staff_only: bool = Form(False, description="Hidden from the patient in the mini-program"),
    note: str | None = Form(None, max_length=MAX_NOTE),
    session: AsyncSession = Depends(get_db),
    actor: Actor = require("clinical:write"),
) -> ClinicalPhotoOut:
    """Upload a clinical photo or attachment of a member (multipart/form-data). The file is checked before
    anything is stored; a refused one leaves nothing behind."""
    data = PhotoUpload(member_id=member_id, kind=kind, treatment_area=treatment_area.value, phase=phase,
                       taken_on=taken_on, appointment_id=appointment_id, service_record_id=service_record_id,
                       clinical_record_id=clinical_record_id, staff_only=staff_only, note=note or None)
    content = await _read(file)
    photo = await _audited(photos.upload_photo(session, actor, data, content=content,
                                               content_type=file.content_type, filename=file.filename))
    return await photos.present(photo, urls="thumbnail")


@router.get(UPLOAD_PATH, response_model=Page[ClinicalPhotoOut], operation_id="list_clinical_photos",
            responses=NOT_IN_CARE)
async def list_clinical_photos(
    member_id: UUID,
    kind: Literal["photo", "attachment"] | None = Query(None),
    treatment_area: TreatmentArea | None = Query(None),
    phase: Literal["before", "during", "after"] | None = Query(None),
    params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
    actor: Actor = require("clinical:read"),
) -> Page[ClinicalPhotoOut]:
    """A member's photos and attachments, newest first, with signed thumbnail URLs (audited)."""
    items, cursor = await _audited(photos.page_photos(
        session, actor, member_id, params, kind=kind, phase=phase,
        treatment_area=treatment_area.value if treatment_area else None))
    return Page(items=items, next_cursor=cursor)


@router.get(f"{UPLOAD_PATH}/pairs", response_model=PhotoPairsOut, operation_id="list_clinical_photo_pairs",
            responses=NOT_IN_CARE)
async def list_clinical_photo_pairs(
    member_id: UUID, treatment_area: TreatmentArea | None = Query(None),
    session: AsyncSession = Depends(get_db), actor: Actor = require("clinical:read"),
) -> PhotoPairsOut:
    """Before/after comparison: the member's photos per treatment area and day, by phase, newest day first
    (`complete` when both a before and an after photo exist; audited)."""
    return await _audited(photos.photo_pairs(session, actor, member_id,
                                             treatment_area=treatment_area.value if treatment_area else None))


@router.get(f"{UPLOAD_PATH}/{{clinical_photo_id}}", response_model=ClinicalPhotoOut,
            operation_id="get_clinical_photo", responses=NOT_IN_CARE)
async def get_clinical_photo(clinical_photo_id: UUID, session: AsyncSession = Depends(get_db),
                             actor: Actor = require("clinical:read")) -> ClinicalPhotoOut:
    """One photo or attachment with signed, short-lived URLs of the file (`url`) and its thumbnail (audited)."""
    return await _audited(photos.get_photo(session, actor, clinical_photo_id))


@patient_router.get("/clinical-photos", response_model=Page[ClinicalPhotoOut],
                    operation_id="patient_list_clinical_photos")
async def patient_list_clinical_photos(params: PageParams = Depends(page_params),
                                       session: AsyncSession = Depends(get_db),
                                       actor: Actor = require(audiences=PATIENT)) -> Page[ClinicalPhotoOut]:
    """The patient's own photos and attachments, newest first, with thumbnail URLs (none the clinic marked
    staff-only, and without the staff's note)."""
    items, cursor = await photos.patient_photos(session, actor, params)
    return Page(items=items, next_cursor=cursor)


@patient_router.get("/clinical-photos/{clinical_photo_id}", response_model=ClinicalPhotoOut,
                    operation_id="patient_get_clinical_photo",
                    responses={404: {"description": "Not one of the patient's own photos "
                                                    "(`clinical_photo_not_found`)"}})
async def patient_get_clinical_photo(clinical_photo_id: UUID, session: AsyncSession = Depends(get_db),
                                     actor: Actor = require(audiences=PATIENT)) -> ClinicalPhotoOut:
    """One of the patient's own photos with signed download URLs."""
    return await photos.patient_photo(session, actor, clinical_photo_id)
