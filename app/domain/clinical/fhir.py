"""FHIR R4 resources built from CareLoop's data, each through fhir.resources' R4B models so it validates.

Builders take what the search functions loaded (no queries here) and answer a validated model:
members → `Patient`, appointments → `Appointment`, service records → `Encounter`, signed clinical records
(with their amendments applied) → `QuestionnaireResponse`. Errors on the FHIR API are `OperationOutcome`s
(`outcome`), carrying the same HTTP status and stable `code` the rest of the API uses in problem+json.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from app.core.errors import PROBLEM_BASE
from app.domain.clinical.forms import FormDefinition, FormField
from app.domain.members.service import OWN_SYSTEM, PatientFacts

FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.3.0"  # R4B: the models fhir.resources validates against; wire-compatible with R4 for these
CANONICAL_BASE = "https://careloop.dev/fhir"
QUESTIONNAIRE_BASE = f"{CANONICAL_BASE}/Questionnaire/"
CODE_SYSTEM_BASE = f"{CANONICAL_BASE}/CodeSystem/"
STAFF_SYSTEM = "urn:careloop:staff"
RECORD_SYSTEM = "urn:careloop:clinical-record"

# FHIR IssueType for each HTTP status the API answers.
ISSUE_TYPES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
               409: "conflict", 410: "deleted", 413: "too-costly", 422: "invalid", 429: "throttled",
               503: "transient"}


def outcome(status: int, code: str, detail: str, *, fields: list[str] | None = None) -> dict[str, Any]:
    """An OperationOutcome (as JSON) for an error: `code` is the API's stable problem code, also in
    `details.coding` under the problem base URI, so clients handle both error shapes the same way."""
    issue: dict[str, Any] = {
        "severity": "error" if status < 500 else "fatal", "code": ISSUE_TYPES.get(status, "exception"),
        "details": {"coding": [{"system": PROBLEM_BASE.rstrip("/"), "code": code}], "text": detail},
        "diagnostics": detail}
    if fields:
        issue["expression"] = fields
    return OperationOutcome.model_validate({"resourceType": "OperationOutcome", "issue": [issue]}).model_dump(
        mode="json", exclude_none=True)


def _instant(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def _meta(last_updated: datetime) -> dict[str, Any]:
    return {"lastUpdated": _instant(last_updated)}


def ref(resource_type: str, resource_id: UUID) -> dict[str, str]:
    return {"reference": f"{resource_type}/{resource_id}"}


# ---------------------------------------------------------------- Patient

_GENDERS = {"female": "female", "male": "male", "other": "other"}


def patient(facts: PatientFacts) -> Patient:
    """A member: our id (also as an identifier in `OWN_SYSTEM`), the identifiers other systems gave them,
    name, gender, birth date, and the mobile number only when the caller may see contact data. A merged
    member is inactive and points at the member it was merged into; an erased one is inactive."""
    data: dict[str, Any] = {
        "resourceType": "Patient", "id": str(facts.id), "meta": _meta(facts.last_updated),
        "identifier": [{"use": "official", "system": OWN_SYSTEM, "value": str(facts.id)}]
        + [{"system": system, "value": value} for system, value in facts.identifiers],
        "active": facts.status == "active", "name": [{"use": "official", "text": facts.name}],
        "gender": _GENDERS.get(facts.gender or "", "unknown"),
    }
    if facts.birthday is not None:
        data["birthDate"] = facts.birthday.isoformat()
    if facts.phone:
        data["telecom"] = [{"system": "phone", "value": facts.phone, "use": "mobile"}]
    if facts.merged_into_id is not None:
        data["link"] = [{"other": ref("Patient", facts.merged_into_id), "type": "replaced-by"}]
    return Patient.model_validate(data)


# ---------------------------------------------------------------- Appointment

_APPOINTMENT_STATUSES = {"booked": "booked", "checked_in": "arrived", "completed": "fulfilled",
                         "cancelled": "cancelled", "no_show": "noshow"}
_PERFORMER = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PPRF",
                          "display": "primary performer"}]}


def _staff(staff_id: UUID) -> dict[str, Any]:
    # Staff are not served as Practitioner resources: the reference names them by identifier.
    return {"identifier": {"system": STAFF_SYSTEM, "value": str(staff_id)}}


def appointment(row: Any, service_name: str | None) -> Appointment:
    """A booking's appointment (`row` as booking's read API answers it)."""
    data: dict[str, Any] = {
        "resourceType": "Appointment", "id": str(row.id),
        "meta": _meta(row.updated_at or row.created_at),
        "status": _APPOINTMENT_STATUSES.get(row.status, "booked"),
        "start": _instant(row.starts_at), "end": _instant(row.ends_at),
        "participant": [
            {"actor": ref("Patient", row.member_id), "required": "required", "status": "accepted"},
            {"type": [_PERFORMER], "actor": _staff(row.staff_id), "required": "required", "status": "accepted"},
        ],
    }
    if row.created_at is not None:
        data["created"] = _instant(row.created_at)
    if service_name:
        data["serviceType"] = [{"text": service_name}]
    if row.status == "cancelled" and row.cancel_reason:
        data["cancelationReason"] = {"text": row.cancel_reason}
    return Appointment.model_validate(data)


# ---------------------------------------------------------------- Encounter

_AMBULATORY = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"}


def encounter(row: Any, service_name: str | None) -> Encounter:
    """A performed service (visits' service record): finished, or entered-in-error once reversed."""
    start = row.completed_at - timedelta(minutes=row.duration_minutes or 0)
    data: dict[str, Any] = {
        "resourceType": "Encounter", "id": str(row.id), "meta": _meta(row.reversed_at or row.completed_at),
        "status": "finished" if row.status == "completed" else "entered-in-error", "class": _AMBULATORY,
        "subject": ref("Patient", row.member_id),
        "participant": [{"type": [_PERFORMER], "individual": _staff(row.staff_id)}],
        "period": {"start": _instant(start), "end": _instant(row.completed_at)},
    }
    if service_name:
        data["serviceType"] = {"text": service_name}
    if row.appointment_id is not None:
        data["appointment"] = [ref("Appointment", row.appointment_id)]
    return Encounter.model_validate(data)


# ---------------------------------------------------------------- QuestionnaireResponse


def questionnaire_canonical(code: str, version: int) -> str:
    return f"{QUESTIONNAIRE_BASE}{code}|{version}"


def _option_system(template_code: str, f: FormField) -> str:
    return f"{CODE_SYSTEM_BASE}body-region" if f.type == "body_region" else \
        f"{CODE_SYSTEM_BASE}{template_code.replace('_', '-')}-{f.key.replace('_', '-')}"


def _answers(template_code: str, f: FormField, value: Any) -> list[dict[str, Any]]:
    """The answers of one field, by its type."""
    if f.type in {"single_select", "multi_select", "body_region"}:
        labels = {o.code: o.label for o in f.options or []}
        codes = value if isinstance(value, list) else [value]
        return [{"valueCoding": {"system": _option_system(template_code, f), "code": c,
                                 "display": labels.get(c, c)}} for c in codes]
    if f.type == "boolean":
        return [{"valueBoolean": bool(value)}]
    if f.type == "date":
        return [{"valueDate": date.fromisoformat(value).isoformat()}]
    if f.type == "scale":
        return [{"valueInteger": int(value)}]
    if f.type == "number":
        if f.unit:
            return [{"valueQuantity": {"value": value, "unit": f.unit}}]
        return [{"valueInteger": value} if isinstance(value, int) else {"valueDecimal": value}]
    return [{"valueString": str(value)}]  # text; signature and image are file references


def questionnaire_response(record: Any, definition: FormDefinition, values: dict[str, Any], *, amended: bool,
                           last_updated: datetime) -> QuestionnaireResponse:
    """A signed clinical record: its current values (the last amendment's, if any) as answers, grouped by the
    form's sections; `questionnaire` is the canonical of the exact form version it was filled with."""
    field_keys = {f.key for f in definition.fields()}
    groups = []
    for section in definition.sections:
        items = [{"linkId": f.key, "text": f.label, "answer": _answers(record.template_code, f, values[f.key])}
                 for f in section.fields if values.get(f.key) not in (None, [], "")]
        if items:
            link = section.key if section.key not in field_keys else f"section-{section.key}"
            groups.append({"linkId": link, "text": section.title, "item": items})
    data: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse", "id": str(record.id), "meta": _meta(last_updated),
        "identifier": {"system": RECORD_SYSTEM, "value": str(record.id)},
        "questionnaire": questionnaire_canonical(record.template_code, record.template_version),
        "status": "amended" if amended else "completed", "subject": ref("Patient", record.member_id),
        "authored": _instant(record.signed_at),
    }
    if record.signed_by_id is not None:
        data["author"] = _staff(record.signed_by_id)
    if record.service_record_id is not None:
        data["encounter"] = ref("Encounter", record.service_record_id)
    if groups:
        data["item"] = groups
    return QuestionnaireResponse.model_validate(data)


# ---------------------------------------------------------------- Consent

CONSENT_SYSTEM = "urn:careloop:consent"
_TREATMENT_SCOPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment",
                                "display": "Treatment"}]}
_PATIENT_CONSENT = {"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}
_OPT_IN = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN",
                       "display": "opt-in"}]}


def consent(signed: Any, last_updated: datetime) -> Consent:
    """A signed consent (`signed` as consents.present answers it): active, or inactive once withdrawn (the
    provision's period ends then). The policy is the exact template version signed; the text's hash is in
    the REST answer and the PDF (`GET /api/v1/consents/{id}/pdf`)."""
    period: dict[str, str] = {"start": _instant(signed.signed_at)}
    if signed.withdrawal is not None:
        period["end"] = _instant(signed.withdrawal.withdrawn_at)
    return Consent.model_validate({
        "resourceType": "Consent", "id": str(signed.id), "meta": _meta(last_updated),
        "identifier": [{"system": CONSENT_SYSTEM, "value": str(signed.id)}],
        "status": "inactive" if signed.status == "withdrawn" else "active", "scope": _TREATMENT_SCOPE,
        "category": [{"coding": [_PATIENT_CONSENT], "text": signed.title}],
        "patient": ref("Patient", signed.member_id), "dateTime": _instant(signed.signed_at),
        "performer": [ref("Patient", signed.member_id) if signed.signed_by_kind == "patient"
                      else _staff(signed.signed_by_id)],
        "policy": [{"uri": f"{CANONICAL_BASE}/ConsentTemplate/{signed.template_code}|{signed.template_version}"}],
        "policyRule": _OPT_IN, "provision": {"type": "permit", "period": period},
    })


# ---------------------------------------------------------------- DocumentReference

_DOCUMENT_KINDS = {"photo": "临床照片", "attachment": "临床附件"}
_PHASES = {"before": "治疗前", "during": "治疗中", "after": "治疗后"}


def document_reference(photo: Any) -> DocumentReference:
    """A clinical photo or attachment (`photo` as photos.present answers it). The attachment's `url` is the
    signed, short-lived download link: only on a read by id (a search lists metadata; read one to fetch it)."""
    attachment: dict[str, Any] = {"contentType": photo.content_type, "size": photo.size_bytes,
                                  "creation": _instant(photo.created_at)}
    if photo.filename:
        attachment["title"] = photo.filename
    if photo.url:
        attachment["url"] = photo.url
    context: dict[str, Any] = {"period": {"start": photo.taken_on.isoformat(), "end": photo.taken_on.isoformat()}}
    if photo.service_record_id is not None:
        context["encounter"] = [ref("Encounter", photo.service_record_id)]
    if photo.clinical_record_id is not None:
        context["related"] = [ref("QuestionnaireResponse", photo.clinical_record_id)]
    area = photo.treatment_area_label or photo.treatment_area
    data: dict[str, Any] = {
        "resourceType": "DocumentReference", "id": str(photo.id), "meta": _meta(photo.created_at),
        "status": "current", "type": {"text": _DOCUMENT_KINDS.get(photo.kind, photo.kind)},
        "category": [{"text": area}], "subject": ref("Patient", photo.member_id), "date": _instant(photo.created_at),
        "description": f"{area} · {_PHASES.get(photo.phase, photo.phase)}", "content": [{"attachment": attachment}],
        "context": context,
    }
    if photo.uploaded_by_id is not None:
        data["author"] = [_staff(photo.uploaded_by_id)]
    return DocumentReference.model_validate(data)


# ---------------------------------------------------------------- CapabilityStatement


def capability_statement(base_url: str, resources: list[tuple[str, list[tuple[str, str, str]]]],
                         published: datetime) -> CapabilityStatement:
    """What this server does: read and search-type for each resource, with its search parameters
    (name, FHIR type, documentation)."""
    return CapabilityStatement.model_validate({
        "resourceType": "CapabilityStatement", "status": "active", "date": _instant(published), "kind": "instance",
        "name": "CareLoopFHIR", "title": "CareLoop FHIR R4 read API", "publisher": "CareLoop",
        "fhirVersion": FHIR_VERSION, "format": ["application/fhir+json", "json"],
        "implementation": {"description": "CareLoop", "url": base_url},
        "software": {"name": "CareLoop"},
        "rest": [{
            "mode": "server",
            "documentation": "Bearer token of the staff or integration audience (OAuth2 client credentials). "
                             "Searches page with `_count` (at most 100) and the `next` link.",
            "security": {"service": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "OAuth"}]}]},
            "resource": [{
                "type": name, "interaction": [{"code": "read"}, {"code": "search-type"}],
                "versioning": "no-version", "readHistory": False, "updateCreate": False,
                "searchParam": [{"name": p, "type": t, "documentation": doc} for p, t, doc in params],
            } for name, params in resources],
        }],
    })
