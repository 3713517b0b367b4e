"""The FHIR read API's resource registry: for each resource type one read and one search function.

A search answers a `Bundle` of type `searchset`: the matches of one page (keyset by id, `_count` per page, at
most `MAX_COUNT`), `total` over all pages, `self` and `next` links (the next one carries an opaque `_cursor`)
and a `fullUrl` per entry (a page that comes out exactly full has a next link, which may answer an empty
page: knowing would cost a query more per page). Every type takes `_id`, `_lastUpdated` (prefixes `eq` `gt`
`ge` `lt` `le`; a date without a time is a day in China Standard Time, the stores' default zone) and `_count`;
an unknown or
malformed parameter is 400 (`invalid_search_parameter`), never silently ignored, so a sync never reads more
than it asked for.

Other contexts are read through their service modules: members (Patient), booking (Appointment), visits
(Encounter), catalog (service names). Clinical records (QuestionnaireResponse), consents (Consent) and photos
(DocumentReference) are health data: staff need `clinical:read` and the care relationship
(`policies.require_clinical_access`), and a search across members needs `members.health:all` as well (an
integration is given it as a scope); every read is audited. A new type is one builder in `fhir` and one
`register(name, read, search, *params)` here; the router makes its routes and the CapabilityStatement lists it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource
from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import AppError, Forbidden, NotFound
from app.core.pagination import decode_cursor, encode_cursor
from app.domain.booking import service as booking
from app.domain.catalog import service as catalog
from app.domain.clinical import consents, fhir, photos, policies
from app.domain.clinical import service as clinical
from app.domain.clinical.consent_models import ConsentWithdrawal, SignedConsent
from app.domain.clinical.forms import FormDefinition
from app.domain.clinical.models import ClinicalAmendment, ClinicalRecord, FormTemplate, RecordStatus
from app.domain.clinical.photo_models import ClinicalPhoto
from app.domain.members import service as members
from app.domain.visits import service as visits

DEFAULT_COUNT = 20
MAX_COUNT = 100
DAY_ZONE = ZoneInfo("Asia/Shanghai")
COMMON_PARAMS = ("_id", "_lastUpdated", "_count", "_cursor", "_format")


class InvalidSearch(AppError):
    code, status, title = "invalid_search_parameter", 400, "Invalid search parameter"

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}", field=param)


class ResourceNotFound(NotFound):
    def __init__(self, resource_type: str, resource_id: str) -> None:
        super().__init__(f"{resource_type}/{resource_id[:64]} is not known", code="resource_not_found")


class UnknownResourceType(NotFound):
    def __init__(self, resource_type: str) -> None:
        super().__init__(f"{resource_type[:64]!r} is not a resource type this server serves",
                         code="unknown_resource_type")


# ---------------------------------------------------------------- parameters

Bound = tuple[str, datetime]  # (gt | ge | lt | le, instant)

_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?"
                   r"(Z|[+-]\d{2}:\d{2}))?)?)?")
_PREFIXES = ("eq", "gt", "ge", "lt", "le")


def _period(param: str, text: str) -> tuple[datetime, datetime]:
    """The interval [start, end) a FHIR date/dateTime value stands for, by its precision."""
    text = text.replace(" ", "+")  # an unencoded `+` of an offset arrives as a space
    m = _DATE.fullmatch(text)
    if m is None:
        raise InvalidSearch(param, "not a FHIR date or dateTime (e.g. 2026-12-01 or 2026-12-01T10:00:00+08:00)")
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    try:
        if hour is None:
            start = datetime(int(year), int(month or 1), int(day or 1), tzinfo=DAY_ZONE)
            if day is not None:
                return start, start + timedelta(days=1)
            if month is not None:
                return start, (start + timedelta(days=32)).replace(day=1)
            return start, start.replace(year=start.year + 1)
        start = datetime.fromisoformat(f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}{fraction or ''}"
                                       f"{'+00:00' if offset == 'Z' else offset}")
    except ValueError:
        raise InvalidSearch(param, "not a valid date") from None
    step = timedelta(microseconds=1) if fraction else timedelta(seconds=1) if second else timedelta(minutes=1)
    return start, start + step


def date_bounds(param: str, values: list[str]) -> list[Bound]:
    """Each value (`ge2026-12-01`, `2026-12-01T10:00:00+08:00`, …) as bounds on an instant; several values
    must all hold (a range is `ge…&lt…`)."""
    bounds: list[Bound] = []
    for raw in values:
        prefix, text = (raw[:2], raw[2:]) if raw[:2].isalpha() else ("eq", raw)
        if prefix not in _PREFIXES:
            raise InvalidSearch(param, f"prefix {prefix!r} is not supported (eq, gt, ge, lt, le)")
        start, end = _period(param, text)
        bounds += {"eq": [("ge", start), ("lt", end)], "gt": [("ge", end)], "ge": [("ge", start)],
                   "lt": [("lt", start)], "le": [("lt", end)]}[prefix]
    return bounds


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


@dataclass
class SearchQuery:
    """A search's parameters: the common ones parsed, the type's own ones as given (name → values)."""

    ids: set[UUID] | None = None
    last_updated: list[Bound] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    after: UUID | None = None
    params: dict[str, list[str]] = field(default_factory=dict)

    def one(self, name: str) -> str | None:
        values = self.params.get(name, [])
        if len(values) > 1:
            raise InvalidSearch(name, "give it once")
        return values[0] if values else None

    def patient(self) -> UUID | None | bool:
        """The `patient` reference (`Patient/<id>` or `<id>`): its id, None when not given, False when it
        names nobody this server could have (then nothing matches)."""
        value = self.one("patient")
        if value is None:
            return None
        return _uuid(value.removeprefix("Patient/")) or False


def parse_query(items: list[tuple[str, str]], own: tuple[str, ...]) -> SearchQuery:
    query = SearchQuery()
    for name, value in items:
        if name not in COMMON_PARAMS and name not in own:
            known = ", ".join((*own, "_id", "_lastUpdated", "_count"))
            raise InvalidSearch(name, f"not a supported search parameter here ({known})")
        if len(value) > 500 or "\x00" in value:
            raise InvalidSearch(name, "value too long or not text")
        query.params.setdefault(name, []).append(value)
    if (ids := query.one("_id")) is not None:
        query.ids = {u for u in (_uuid(v.strip()) for v in ids.split(",")) if u is not None}
    query.last_updated = date_bounds("_lastUpdated", query.params.get("_lastUpdated", []))
    if (count := query.one("_count")) is not None:
        if not count.isdigit() or int(count) < 1:
            raise InvalidSearch("_count", "must be a whole number from 1")
        query.count = min(int(count), MAX_COUNT)
    if (cursor := query.one("_cursor")) is not None:
        query.after = decode_cursor(cursor, UUID)
    if (fmt := query.one("_format")) is not None and fmt not in ("json", fhir.FHIR_JSON, "application/json"):
        raise InvalidSearch("_format", "only json is served")
    return query


# ---------------------------------------------------------------- the registry

Read = Callable[[AsyncSession, Actor, UUID], Awaitable[Resource | None]]
Search = Callable[[AsyncSession, Actor, SearchQuery], Awaitable[tuple[list[Resource], int]]]


@dataclass(frozen=True)
class ResourceType:
    name: str
    read: Read
    search: Search
    # (name, FHIR search parameter type, documentation), besides the common ones
    params: tuple[tuple[str, str, str], ...] = ()


REGISTRY: dict[str, ResourceType] = {}

COMMON_DOCS = (("_id", "token", "Logical id; several comma-separated"),
                ("_lastUpdated", "date", "Last change, with prefix eq/gt/ge/lt/le (repeat for a range)"))


def register(name: str, read: Read, search: Search, *params: tuple[str, str, str]) -> None:
    REGISTRY[name] = ResourceType(name, read, search, params)


def resource_type(name: str) -> ResourceType:
    if name not in REGISTRY:
        raise UnknownResourceType(name)
    return REGISTRY[name]


async def read(session: AsyncSession, actor: Actor, type_name: str, raw_id: str) -> dict[str, Any]:
    kind = resource_type(type_name)
    resource_id = _uuid(raw_id)
    found = await kind.read(session, actor, resource_id) if resource_id is not None else None
    if found is None:
        raise ResourceNotFound(type_name, raw_id)
    return found.model_dump(mode="json", exclude_none=True)


async def search(session: AsyncSession, actor: Actor, type_name: str, items: list[tuple[str, str]],
                 base_url: str) -> dict[str, Any]:
    """One page of a search as a searchset Bundle (`base_url` is the FHIR base, e.g. …/api/v1/fhir)."""
    kind = resource_type(type_name)
    query = parse_query(items, tuple(p[0] for p in kind.params))
    found, total = await kind.search(session, actor, query)
    own = [(k, v) for k, v in items if k != "_cursor"]
    links = [{"relation": "self", "url": f"{base_url}/{type_name}" + (f"?{urlencode(items)}" if items else "")}]
    if len(found) == query.count and found:
        following = [*own, ("_cursor", encode_cursor(found[-1].id))]
        links.append({"relation": "next", "url": f"{base_url}/{type_name}?{urlencode(following)}"})
    bundle = Bundle.model_validate({
        "resourceType": "Bundle", "type": "searchset", "total": total, "timestamp": utcnow().isoformat(),
        "link": links,
        "entry": [{"fullUrl": f"{base_url}/{type_name}/{r.id}", "resource": r, "search": {"mode": "match"}}
                  for r in found]})
    return bundle.model_dump(mode="json", exclude_none=True)


def capabilities(base_url: str) -> dict[str, Any]:
    return fhir.capability_statement(base_url, [
        (k.name, [*COMMON_DOCS, *k.params]) for k in REGISTRY.values()], utcnow()).model_dump(
        mode="json", exclude_none=True)


# ---------------------------------------------------------------- Patient (members)


def _patient_query(query: SearchQuery) -> members.PatientQuery | None:
    """The members query of a Patient search; None when it cannot match anyone."""
    ids = query.ids
    system = value = None
    if (identifier := query.one("identifier")) is not None:
        if "|" in identifier:
            system, _, value = identifier.partition("|")
            if not system:
                return None  # `|value`: an identifier without a system, which members never have
        else:
            value = identifier
        if system == members.OWN_SYSTEM:  # our own id, asked as an identifier
            own = _uuid(value or "")
            if value and own is None:
                return None
            ids = (ids & {own} if ids is not None else {own}) if own else ids
            system = value = None
    return members.PatientQuery(ids=ids, identifier_system=system, identifier_value=value or None,
                                updated=query.last_updated, after=query.after, limit=query.count)


async def _read_patient(session: AsyncSession, actor: Actor, member_id: UUID) -> Resource | None:
    found, _ = await members.patients(session, actor, members.PatientQuery(ids={member_id}, limit=1))
    return fhir.patient(found[0]) if found else None


async def _search_patients(session: AsyncSession, actor: Actor, query: SearchQuery) -> tuple[list[Resource], int]:
    actor.require("members:read")
    patient_query = _patient_query(query)
    if patient_query is None:
        return [], 0
    found, total = await members.patients(session, actor, patient_query)
    return [fhir.patient(p) for p in found], total


register("Patient", _read_patient, _search_patients,
         ("identifier", "token", "`system|value` (or `system|`, or a value in any system); "
                                 f"`{members.OWN_SYSTEM}|<id>` is our own member id"))


# ---------------------------------------------------------------- Appointment (booking)


async def _service_names(session: AsyncSession, tenant_id: UUID, service_ids: set[UUID]) -> dict[UUID, str]:
    return {k: s.name for k, s in (await catalog.services_by_id(session, tenant_id, service_ids)).items()}


async def _appointments(session: AsyncSession, actor: Actor, query: SearchQuery) -> tuple[list[Resource], int]:
    actor.require("appointments:read")
    patient = query.patient()
    if patient is False or query.ids == set():
        return [], 0
    rows, total = await booking.appointments_matching(
        session, actor.tenant_id, ids=query.ids, member_id=patient or None, store_ids=actor.store_ids,
        starts=date_bounds("date", query.params.get("date", [])), updated=query.last_updated, after=query.after,
        limit=query.count)
    names = await _service_names(session, actor.tenant_id, {r.service_id for r in rows})
    return [fhir.appointment(r, names.get(r.service_id)) for r in rows], total


async def _read_appointment(session: AsyncSession, actor: Actor, appointment_id: UUID) -> Resource | None:
    found, _ = await _appointments(session, actor, SearchQuery(ids={appointment_id}, count=1))
    return found[0] if found else None


register("Appointment", _read_appointment, _appointments,
         ("patient", "reference", "`Patient/<id>`"),
         ("date", "date", "Start of the appointment, with prefix eq/gt/ge/lt/le (repeat for a range)"))


# ---------------------------------------------------------------- Encounter (visits' service records)


async def _encounters(session: AsyncSession, actor: Actor, query: SearchQuery) -> tuple[list[Resource], int]:
    actor.require("appointments:read")  # what reading service records takes
    patient = query.patient()
    if patient is False or query.ids == set():
        return [], 0
    rows, total = await visits.records_matching(session, actor.tenant_id, ids=query.ids, member_id=patient or None,
                                                updated=query.last_updated, after=query.after, limit=query.count)
    names = await _service_names(session, actor.tenant_id, {r.service_id for r in rows})
    return [fhir.encounter(r, names.get(r.service_id)) for r in rows], total


async def _read_encounter(session: AsyncSession, actor: Actor, record_id: UUID) -> Resource | None:
    found, _ = await _encounters(session, actor, SearchQuery(ids={record_id}, count=1))
    return found[0] if found else None


register("Encounter", _read_encounter, _encounters, ("patient", "reference", "`Patient/<id>`"))


# ---------------------------------------------------------------- QuestionnaireResponse (signed records)


def _require_all_members(actor: Actor) -> None:
    actor.require("clinical:read")
    if not (actor.kind == "system" or actor.can("members.health:all")):
        raise Forbidden("searching clinical data of every member needs members.health:all; "
                        "search one member's with patient=", code="patient_required")


async def _clinical_scope(session: AsyncSession, actor: Actor, query: SearchQuery, action: str) -> UUID | None | bool:
    """Whom a search of health data covers: one member (`patient`, with the care relationship), None for every
    member (`members.health:all`), False when nothing can match."""
    patient = query.patient()
    if patient is None:
        _require_all_members(actor)
    elif patient is False:
        actor.require("clinical:read")
    else:
        try:
            await policies.require_clinical_access(session, actor, patient, "clinical:read", action=action)
        except NotFound:
            return False
    return False if query.ids == set() else patient


_ORDER = {"gt": "__gt__", "ge": "__ge__", "lt": "__lt__", "le": "__le__"}


async def _page(session: AsyncSession, stmt: Any, id_column: Any, last_updated: Any,
                query: SearchQuery) -> tuple[list[Any], int]:
    """One page (by id after the cursor) of `stmt` narrowed by `_id` and `_lastUpdated`, and the total."""
    conditions = [getattr(last_updated, _ORDER[op])(instant) for op, instant in query.last_updated]
    if query.ids is not None:
        conditions.append(id_column.in_(query.ids))
    stmt = stmt.where(*conditions)
    total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    if query.after is not None:
        stmt = stmt.where(id_column > query.after)
    return list((await session.execute(stmt.order_by(id_column).limit(query.count))).all()), total


async def _questionnaire_responses(session: AsyncSession, actor: Actor,
                                   query: SearchQuery) -> tuple[list[Resource], int]:
    patient = await _clinical_scope(session, actor, query, "list")
    if patient is False:
        return [], 0
    amended_at = (select(ClinicalAmendment.record_id, func.max(ClinicalAmendment.created_at).label("at"))
                  .where(ClinicalAmendment.tenant_id == actor.tenant_id)
                  .group_by(ClinicalAmendment.record_id).subquery())
    last_updated = func.coalesce(amended_at.c.at, ClinicalRecord.updated_at, ClinicalRecord.signed_at)
    stmt = (select(ClinicalRecord, last_updated).outerjoin(amended_at, amended_at.c.record_id == ClinicalRecord.id)
            .where(ClinicalRecord.tenant_id == actor.tenant_id, ClinicalRecord.status == RecordStatus.SIGNED))
    if patient:
        stmt = stmt.where(ClinicalRecord.member_id == patient)
    rows, total = await _page(session, stmt, ClinicalRecord.id, last_updated, query)
    if not rows:
        return [], total
    records = [r for r, _ in rows]
    templates = {t.id: FormDefinition.model_validate(t.definition) for t in (await session.execute(
        select(FormTemplate).where(FormTemplate.tenant_id == actor.tenant_id,
                                   FormTemplate.id.in_({r.template_id for r in records})))).scalars()}
    latest: dict[UUID, ClinicalAmendment] = {}
    for amendment in (await session.execute(select(ClinicalAmendment).where(
            ClinicalAmendment.tenant_id == actor.tenant_id,
            ClinicalAmendment.record_id.in_([r.id for r in records])).order_by(ClinicalAmendment.seq))).scalars():
        latest[amendment.record_id] = amendment
    await audit.record_read(session, "clinical_record.read", "member" if patient else "tenant",
                            patient or actor.tenant_id, record_ids=[str(r.id) for r in records], via="fhir")
    return [fhir.questionnaire_response(
        record, templates[record.template_id],
        clinical.values_of(latest[record.id] if record.id in latest else record),  # type: ignore[arg-type]
        amended=record.id in latest, last_updated=updated) for record, updated in rows], total


async def _read_questionnaire_response(session: AsyncSession, actor: Actor, record_id: UUID) -> Resource | None:
    record = await session.get(ClinicalRecord, (actor.tenant_id, record_id))
    if record is None or record.status != RecordStatus.SIGNED:
        actor.require("clinical:read")
        return None
    await policies.require_clinical_access(session, actor, record.member_id, "clinical:read", action="read",
                                           record_id=record.id)
    found, _ = await _questionnaire_responses(session, actor, SearchQuery(
        ids={record_id}, count=1, params={"patient": [str(record.member_id)]}))
    return found[0] if found else None


register("QuestionnaireResponse", _read_questionnaire_response, _questionnaire_responses,
         ("patient", "reference", "`Patient/<id>`; without it the search needs members.health:all"))


# ---------------------------------------------------------------- Consent (signed consents)


async def _consents(session: AsyncSession, actor: Actor, query: SearchQuery) -> tuple[list[Resource], int]:
    patient = await _clinical_scope(session, actor, query, "consent_list")
    if patient is False:
        return [], 0
    last_updated = func.coalesce(ConsentWithdrawal.created_at, SignedConsent.signed_at)
    stmt = (select(SignedConsent, last_updated)
            .outerjoin(ConsentWithdrawal, (ConsentWithdrawal.tenant_id == SignedConsent.tenant_id)
                       & (ConsentWithdrawal.consent_id == SignedConsent.id))
            .where(SignedConsent.tenant_id == actor.tenant_id))
    if patient:
        stmt = stmt.where(SignedConsent.member_id == patient)
    rows, total = await _page(session, stmt, SignedConsent.id, last_updated, query)
    if rows:
        await audit.record_read(session, "consent.list", "member" if patient else "tenant", patient or actor.tenant_id,
                                consent_ids=[str(c.id) for c, _ in rows], via="fhir")
    return [fhir.consent(await consents.present(session, c), updated) for c, updated in rows], total


async def _read_consent(session: AsyncSession, actor: Actor, consent_id: UUID) -> Resource | None:
    try:
        signed = await consents.get_consent(session, actor, consent_id)  # access-checked and audited
    except NotFound:
        return None
    withdrawn = signed.withdrawal.withdrawn_at if signed.withdrawal is not None else None
    return fhir.consent(signed, withdrawn or signed.signed_at)


register("Consent", _read_consent, _consents,
         ("patient", "reference", "`Patient/<id>`; without it the search needs members.health:all"))


# ---------------------------------------------------------------- DocumentReference (clinical photos)


async def _document_references(session: AsyncSession, actor: Actor,
                               query: SearchQuery) -> tuple[list[Resource], int]:
    patient = await _clinical_scope(session, actor, query, "list_photos")
    if patient is False:
        return [], 0
    stmt = select(ClinicalPhoto, ClinicalPhoto.created_at).where(ClinicalPhoto.tenant_id == actor.tenant_id)
    if patient:
        stmt = stmt.where(ClinicalPhoto.member_id == patient)
    # Photos are never changed: the last update is the upload.
    rows, total = await _page(session, stmt, ClinicalPhoto.id, ClinicalPhoto.created_at, query)
    if rows:
        await audit.record_read(session, "clinical_photo.list", "member" if patient else "clinical_photo", patient,
                                member_id=str(patient) if patient else None,
                                photo_ids=[str(p.id) for p, _ in rows], via="fhir")
    return [fhir.document_reference(await photos.present(p)) for p, _ in rows], total


async def _read_document_reference(session: AsyncSession, actor: Actor, photo_id: UUID) -> Resource | None:
    try:
        photo = await photos.get_photo(session, actor, photo_id)  # access-checked, audited, signed URLs
    except NotFound:
        return None
    return fhir.document_reference(photo)


register("DocumentReference", _read_document_reference, _document_references,
         ("patient", "reference", "`Patient/<id>`; without it the search needs members.health:all"))
