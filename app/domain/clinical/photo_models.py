"""Clinical photos and attachments: one metadata row per stored file (the bytes are in the file store).

A row is written only after the file was checked and stored, and is never changed (append-only, like a signed
record): a wrong upload is superseded by a new one, not edited. The note and the original file name are
clinical text and personal data, so they are encrypted at rest (`app.core.crypto`).
"""

from __future__ import annotations

from datetime import date
from uuid import UUID

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Column, Date, Index, Integer, Text, UniqueConstraint, text
from sqlmodel import Field

from app.core.models import TENANT_TABLES, TenantRow, tenant_fk


class PhotoKind:
    PHOTO = "photo"
    ATTACHMENT = "attachment"


class PhotoPhase:
    BEFORE = "before"
    DURING = "during"
    AFTER = "after"


class ClinicalPhoto(TenantRow, table=True):
    __tablename__ = "clinical_photos"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        tenant_fk(["appointment_id"], "appointments"),
        tenant_fk(["service_record_id"], "service_records"),
        tenant_fk(["clinical_record_id"], "clinical_records"),
        UniqueConstraint("tenant_id", "storage_key"),
        Index("ix_clinical_photos_member", "tenant_id", "member_id", "id"),
        Index("ix_clinical_photos_member_area", "tenant_id", "member_id", "treatment_area", "taken_on"),
        CheckConstraint("kind IN ('photo', 'attachment')", name="kind_known"),
        CheckConstraint("phase IN ('before', 'during', 'after')", name="phase_known"),
        CheckConstraint("size_bytes > 0", name="size_positive"),
    )

    member_id: UUID
    kind: str = Field(sa_type=Text)
    treatment_area: str = Field(sa_type=Text)
    phase: str = Field(sa_type=Text)
    taken_on: date = Field(sa_column=Column(Date, nullable=False))
    appointment_id: UUID | None = None
    service_record_id: UUID | None = None
    clinical_record_id: UUID | None = None
    # Hidden from the patient's own view in the mini-program (e.g. a photo taken for the clinician's eyes only).
    staff_only: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    note_encrypted: str | None = Field(default=None, sa_type=Text)
    filename_encrypted: str | None = Field(default=None, sa_type=Text)
    content_type: str = Field(sa_type=Text)
    size_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(sa_type=Text)
    width: int | None = Field(default=None, sa_type=Integer)
    height: int | None = Field(default=None, sa_type=Integer)
    storage_key: str = Field(sa_type=Text)
    thumbnail_key: str | None = Field(default=None, sa_type=Text)
    uploaded_by_id: UUID | None = None


TENANT_TABLES.add("clinical_photos")
