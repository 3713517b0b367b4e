"""Shapes of the clinical photo and attachment API."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from app.domain.clinical.forms import BODY_REGIONS

PhotoKindName = Literal["photo", "attachment"]
PhotoPhaseName = Literal["before", "during", "after"]
# Treatment areas are the body-region codes the forms use (face, neck, lower_back, knee_left, …).
TreatmentArea = Enum("TreatmentArea", {code: code for code, _ in BODY_REGIONS}, type=str)  # type: ignore[misc]
AREA_LABELS: dict[str, str] = dict(BODY_REGIONS)
MAX_NOTE = 2000


class PhotoUpload(BaseModel):
    """The form fields of an upload, once parsed (the file travels beside them)."""

    member_id: UUID
    kind: PhotoKindName = "photo"
    treatment_area: str
    phase: PhotoPhaseName
    taken_on: date
    appointment_id: UUID | None = None
    service_record_id: UUID | None = None
    clinical_record_id: UUID | None = None
    staff_only: bool = False
    note: str | None = Field(None, max_length=MAX_NOTE)


class ClinicalPhotoOut(BaseModel):
    id: UUID
    member_id: UUID
    kind: PhotoKindName
    treatment_area: str
    treatment_area_label: str | None = None
    phase: PhotoPhaseName
    taken_on: date
    appointment_id: UUID | None = None
    service_record_id: UUID | None = None
    clinical_record_id: UUID | None = None
    staff_only: bool = False
    note: str | None = Field(None, description="Left out of the patient's own view")
    filename: str | None = Field(None, description="The name the file was uploaded with")
    content_type: str
    size_bytes: int
    sha256: str = Field(description="SHA-256 of the stored bytes (after re-encoding, for images)")
    width: int | None = None
    height: int | None = None
    uploaded_by_id: UUID | None = None
    created_at: datetime
    url: str | None = Field(None, description="Signed, short-lived download URL of the file (on the item only)")
    thumbnail_url: str | None = Field(None, description="Signed, short-lived URL of the 320 px JPEG thumbnail "
                                                        "(images only)")
    urls_expire_at: datetime | None = None


class PhotoPairGroup(BaseModel):
    """The photos of one treatment area on one day, by phase: a before/after pair when both are there."""

    treatment_area: str
    treatment_area_label: str | None = None
    taken_on: date
    complete: bool = Field(description="Both a before and an after photo exist")
    before: list[ClinicalPhotoOut]
    during: list[ClinicalPhotoOut]
    after: list[ClinicalPhotoOut]


class PhotoPairsOut(BaseModel):
    member_id: UUID
    items: list[PhotoPairGroup]
