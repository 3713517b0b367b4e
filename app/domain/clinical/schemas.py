"""Request and response shapes of the clinical API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, model_validator

from app.core.schemas import Name, Strict
from app.domain.clinical.forms import KEY_PATTERN, Section, check_sections

TemplateKind = Literal["tcm", "pain", "aesthetics", "intake", "follow_up", "custom"]
# The values of a form: field key → answer; each answer is checked against the template's field.
FormValues = Annotated[dict[str, Any], Field(max_length=300, description="Field key → value, checked against "
                                                                       "the template version's fields")]


class FormTemplateCreate(Strict):
    code: str = Field(pattern=KEY_PATTERN, description="Stable code; versions of one form share it")
    name: Name = Field(min_length=1, max_length=100)
    kind: TemplateKind = "custom"
    sections: list[Section] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _sections(self) -> FormTemplateCreate:
        check_sections(self.sections)
        return self


class FormTemplateVersionCreate(Strict):
    """The next version of a template: its whole new definition (name and kind kept unless given)."""

    name: Name | None = Field(None, min_length=1, max_length=100)
    kind: TemplateKind | None = None
    sections: list[Section] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _sections(self) -> FormTemplateVersionCreate:
        check_sections(self.sections)
        return self


class FormTemplateOut(BaseModel):
    id: UUID
    code: str
    version: int
    name: str
    kind: str
    builtin: bool
    sections: list[Section]
    fields: list[dict[str, Any]] = Field(description="Every field of every section, flattened: key, type, "
                                                     "options[] (for selects), …")
    created_at: datetime


class ClinicalRecordCreate(Strict):
    member_id: UUID
    template_code: str | None = Field(None, pattern=KEY_PATTERN, description="Fill the latest version of this code")
    template_id: UUID | None = Field(None, description="Fill this exact template version")
    values: FormValues
    appointment_id: UUID | None = None
    service_record_id: UUID | None = None

    @model_validator(mode="after")
    def _one_template(self) -> ClinicalRecordCreate:
        if (self.template_code is None) == (self.template_id is None):
            raise ValueError("give exactly one of template_code or template_id")
        return self


class ClinicalRecordUpdate(Strict):
    values: FormValues = Field(description="The draft's whole new values (replacing the old ones)")


class AmendmentCreate(Strict):
    reason: str = Field(min_length=1, max_length=1000, description="Why the signed record is corrected")
    values: FormValues = Field(description="The corrected values, whole, checked against the record's template "
                                           "version")


class AmendmentOut(BaseModel):
    id: UUID
    seq: int
    author_id: UUID | None
    created_at: datetime
    reason: str
    values: dict[str, Any]
    prev_hash: str
    hash: str


class ClinicalRecordOut(BaseModel):
    id: UUID
    member_id: UUID
    template_id: UUID
    template_code: str
    template_version: int
    appointment_id: UUID | None
    service_record_id: UUID | None
    status: str
    values: dict[str, Any] = Field(description="As first written (for a signed record: as signed)")
    current_values: dict[str, Any] = Field(description="The values after the latest amendment")
    author_id: UUID | None
    created_at: datetime
    updated_at: datetime | None
    signed_at: datetime | None
    signed_by_id: UUID | None
    content_hash: str | None
    hash_verified: bool | None = Field(None, description="Whether the signed content and every amendment still "
                                                         "match their hashes (null for a draft)")
    amendments: list[AmendmentOut] = []


class ClinicalRecordSummary(BaseModel):
    id: UUID
    member_id: UUID
    template_code: str
    template_version: int
    status: str
    appointment_id: UUID | None
    service_record_id: UUID | None
    created_at: datetime
    signed_at: datetime | None
    amendment_count: int = 0
