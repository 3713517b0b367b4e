"""The topics clinical emits (no clinical values in a payload: subscribers read the record through the API,
where the read is permission-checked and audited)."""

from __future__ import annotations

from app.core.events import topic

RECORD_SIGNED = topic(
    "clinical_record.signed", "A clinical record was signed and locked (its content hash is final)",
    "record_id", "member_id", "template_code", "template_version", "signed_by_id", "content_hash",
    "appointment_id", "service_record_id")
RECORD_AMENDED = topic(
    "clinical_record.amended", "A signed clinical record received an amendment (the original is kept)",
    "record_id", "amendment_id", "member_id", "amended_by_id", "hash")

# Treatment plans (no goals or reasons in a payload: they are clinical text, read through the API).
PLAN_CREATED = topic(
    "treatment_plan.created", "A treatment plan (a course of planned sessions) was made for a member",
    "plan_id", "member_id", "store_id", "responsible_staff_id", "card_id", "sessions_planned", "items")
PLAN_PROGRESSED = topic(
    "treatment_plan.progressed", "A visit counted against a treatment plan (delta 1), or a reversed visit was "
                                 "taken back (delta -1)",
    "plan_id", "member_id", "service_id", "service_record_id", "delta", "sessions_done", "sessions_planned")
PLAN_COMPLETED = topic(
    "treatment_plan.completed", "Every planned session of a treatment plan is done",
    "plan_id", "member_id", "sessions_done", "completed_at")
PLAN_CANCELLED = topic(
    "treatment_plan.cancelled", "A treatment plan was cancelled (the reason is read through the API)",
    "plan_id", "member_id", "sessions_done", "sessions_planned", "cancelled_by_id")

# Consent (no text, signature or reason in a payload: they are read through the API, audited).
CONSENT_SIGNED = topic(
    "consent.signed", "A member's consent was signed (in the mini-program or recorded at the desk)",
    "consent_id", "member_id", "template_code", "template_version", "text_hash", "signed_by_kind", "signed_by_id")
CONSENT_WITHDRAWN = topic(
    "consent.withdrawn", "A signed consent was withdrawn (the consent itself is kept, unchanged)",
    "consent_id", "member_id", "template_code", "withdrawn_by_kind", "withdrawn_by_id")

# Photos and attachments (no note, file name or URL in a payload: the file is read through the API, audited).
PHOTO_UPLOADED = topic(
    "clinical_photo.uploaded", "A clinical photo or attachment of a member was checked and stored",
    "photo_id", "member_id", "kind", "treatment_area", "phase", "taken_on", "content_type", "uploaded_by_id",
    "appointment_id", "service_record_id", "clinical_record_id")
