"""Consent tables: templates (insert-only versions of a text), signed consents and their withdrawals (both
append-only), and which services need a consent before they are booked or completed.

A signed consent is never changed: the database refuses any UPDATE or DELETE of `signed_consents` and
`consent_withdrawals` (triggers, whoever runs them) and the app role is not granted either. Withdrawing is a
second row, one per consent, chained to the consent's hash. The signature image and the device details are
personal data and stored encrypted (`app.core.crypto`, as phone numbers are); the hashes are over the
plaintext, so they can be checked after decrypting.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import Boolean, CheckConstraint, Column, DateTime, Index, Integer, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from app.core.models import TENANT_TABLES, TenantRow, tenant_fk, timestamp_field


class RequiredBefore:
    BOOKING = "booking"  # no booking (and so no completion) without the consent
    COMPLETION = "completion"  # may be booked; signed at the desk before the treatment is completed


class ConsentTemplate(TenantRow, table=True):
    __tablename__ = "consent_templates"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    code: str = Field(sa_type=Text)
    version: int = Field(sa_type=Integer)
    title: str = Field(sa_type=Text)
    body: str = Field(sa_type=Text)
    builtin: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    created_by_id: UUID | None = None


class SignedConsent(TenantRow, table=True):
    __tablename__ = "signed_consents"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        tenant_fk(["template_id"], "consent_templates"),
        # The booking check asks "has this member a consent of this code" on every booking of a service
        # that needs one.
        Index("ix_signed_consents_member_code", "tenant_id", "member_id", "template_code"),
        CheckConstraint("signed_by_kind IN ('patient', 'staff')", name="signer_kind_known"),
    )

    member_id: UUID
    template_id: UUID
    template_code: str = Field(sa_type=Text)
    template_version: int = Field(sa_type=Integer)
    text_hash: str = Field(sa_type=Text)  # SHA-256 of the exact text shown and signed
    signature_encrypted: str = Field(sa_type=Text)  # base64 PNG, encrypted
    signature_hash: str = Field(sa_type=Text)  # SHA-256 of the PNG bytes
    device_encrypted: str = Field(sa_type=Text)  # canonical JSON of what the client and the request said
    signed_by_kind: str = Field(sa_type=Text)
    signed_by_id: UUID
    signed_at: datetime = Field(sa_type=DateTime(timezone=True))
    content_hash: str = Field(sa_type=Text)


class ConsentWithdrawal(TenantRow, table=True):
    """One per consent: who withdrew it, when and why; chained to the consent's hash."""

    __tablename__ = "consent_withdrawals"
    __table_args__ = (
        tenant_fk(["consent_id"], "signed_consents"),
        UniqueConstraint("tenant_id", "consent_id"),
        CheckConstraint("withdrawn_by_kind IN ('patient', 'staff')", name="withdrawer_kind_known"),
    )

    consent_id: UUID
    withdrawn_by_kind: str = Field(sa_type=Text)
    withdrawn_by_id: UUID
    reason_encrypted: str = Field(sa_type=Text)
    prev_hash: str = Field(sa_type=Text)
    hash: str = Field(sa_type=Text)


class ServiceConsentRequirement(SQLModel, table=True):
    """Clinical's own setting per service (catalog is untouched): the consent code it needs, and before what."""

    __tablename__ = "service_consent_requirements"
    __table_args__ = (
        tenant_fk(["service_id"], "services"),
        CheckConstraint("required_before IN ('booking', 'completion')", name="required_before_known"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    service_id: UUID = Field(primary_key=True)
    template_code: str = Field(sa_type=Text)
    required_before: str = Field(default=RequiredBefore.BOOKING, sa_type=Text)
    updated_at: datetime | None = timestamp_field()
    updated_by_id: UUID | None = None


TENANT_TABLES.update({"consent_templates", "signed_consents", "consent_withdrawals",
                      "service_consent_requirements"})
