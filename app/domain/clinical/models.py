"""Clinical tables: form templates (immutable versions), records (draft → signed) and amendments.

A template row is never changed: editing a template inserts the next version under the same code, so a
record always points at the exact definition it was filled with. Record and amendment values are clinical
text and are stored encrypted (`app.core.crypto`, as members' phone numbers are); the hashes are over the
plaintext canonical JSON, so they can be checked after decrypting.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Boolean, CheckConstraint, Column, Index, Integer, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from app.core.models import TENANT_TABLES, TenantRow, tenant_fk, timestamp_field


class RecordStatus:
    DRAFT = "draft"
    SIGNED = "signed"


class FormTemplate(TenantRow, table=True):
    __tablename__ = "form_templates"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    code: str = Field(sa_type=Text)
    version: int = Field(sa_type=Integer)
    name: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)  # tcm | pain | aesthetics | intake | follow_up | custom
    builtin: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    # {"sections": [{"key", "title", "fields": [{key, label, type, required, ...}]}]}
    definition: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_by_id: UUID | None = None


class ClinicalRecord(TenantRow, table=True):
    __tablename__ = "clinical_records"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        tenant_fk(["template_id"], "form_templates"),
        tenant_fk(["appointment_id"], "appointments"),
        tenant_fk(["service_record_id"], "service_records"),
        Index("ix_clinical_records_member", "tenant_id", "member_id", "id"),
        CheckConstraint("status IN ('draft', 'signed')", name="status_known"),
        CheckConstraint("(status = 'signed') = (content_hash IS NOT NULL AND signed_at IS NOT NULL)",
                        name="signed_has_hash"),
    )

    member_id: UUID
    template_id: UUID
    template_code: str = Field(sa_type=Text)
    template_version: int = Field(sa_type=Integer)
    appointment_id: UUID | None = None
    service_record_id: UUID | None = None
    status: str = Field(default=RecordStatus.DRAFT, sa_type=Text)
    values_encrypted: str = Field(sa_type=Text)
    author_id: UUID | None = None
    updated_at: datetime | None = timestamp_field()
    signed_at: datetime | None = timestamp_field()
    signed_by_id: UUID | None = None
    content_hash: str | None = Field(default=None, sa_type=Text)


class ClinicalAmendment(TenantRow, table=True):
    """A correction of a signed record: append-only, chained to the record's hash (or the previous
    amendment's), so removing or changing one breaks every later hash."""

    __tablename__ = "clinical_amendments"
    __table_args__ = (
        tenant_fk(["record_id"], "clinical_records"),
        UniqueConstraint("tenant_id", "record_id", "seq"),
    )

    record_id: UUID
    seq: int = Field(sa_type=Integer)
    author_id: UUID | None = None
    reason_encrypted: str = Field(sa_type=Text)
    values_encrypted: str = Field(sa_type=Text)
    prev_hash: str = Field(sa_type=Text)
    hash: str = Field(sa_type=Text)


TENANT_TABLES.update({"form_templates", "clinical_records", "clinical_amendments"})
