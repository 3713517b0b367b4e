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
