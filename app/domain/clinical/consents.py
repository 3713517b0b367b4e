"""Consent: versioned consent texts, consents signed by patients (or recorded by staff at the desk), their
withdrawal, the PDF, and services that cannot be booked or completed without one.

- A template version is never changed: an edit inserts the next version of the code. A patient signs the
  latest version (an older one is 409 `consent_template_superseded`): the consent keeps its template id,
  version and `text_hash` = SHA-256 of the text shown (title, a blank line, the body; UTF-8).
- The signature is a PNG (checked with Pillow: really a PNG, ≤ 200 KB, ≤ 2000×2000 px, not blank; else 422
  naming `signature_png`), stored encrypted with the device details (what the client says of its device, and
  the request's user agent and address). `content_hash` = SHA-256 of the canonical JSON of the consent.
- A signed consent is never changed (the database refuses UPDATE and DELETE); withdrawing appends one row
  (who, when, why) whose hash chains to the consent's. Consents are read by staff with `clinical:read` and the
  care relationship, and by the patient for themselves and their family; every read is audited.
- `service_consent_requirements` (clinical's own table) names the consent a service needs and whether before
  booking or only before completion; booking and visits call the checks registered in
  `app.domain.booking.hooks`, registered here at import: one indexed query per booked service.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from PIL import Image, UnidentifiedImageError
from sqlalchemy import and_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.db import fetch
from app.core.errors import Conflict, Forbidden, NotFound, invalid
from app.core.events import emit
from app.core.ids import new_id
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.domain.booking import hooks as booking_hooks
from app.domain.catalog import service as catalog
from app.domain.clinical import policies
from app.domain.clinical.builtin_consents import BUILTIN_CONSENTS
from app.domain.clinical.consent_models import (
    ConsentTemplate,
    ConsentWithdrawal,
    RequiredBefore,
    ServiceConsentRequirement,
    SignedConsent,
)
from app.domain.clinical.consent_pdf import ConsentDocument, render_consent_pdf
from app.domain.clinical.consent_schemas import (
    ConsentOut,
    ConsentSign,
    ConsentTemplateCreate,
    ConsentTemplateOut,
    ConsentTemplateVersionCreate,
    ConsentWithdraw,
    ConsentWithdrawalOut,
    PatientConsentSign,
    ServiceConsentRequirementOut,
    ServiceConsentRequirementSet,
)
from app.domain.clinical.events import CONSENT_SIGNED, CONSENT_WITHDRAWN
from app.domain.iam import service as iam
from app.domain.members import service as members
from app.domain.members.schemas import TimelineItem

MAX_SIGNATURE_BYTES = 200 * 1024
MAX_SIGNATURE_SIDE = 2000
MIN_SIGNATURE_SIDE = 16
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def canonical_json(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------- templates


def signed_text(template: ConsentTemplate) -> str:
    """Exactly what is shown and signed: the title, a blank line, the body."""
    return f"{template.title}\n\n{template.body}"


def present_template(template: ConsentTemplate) -> ConsentTemplateOut:
    return ConsentTemplateOut(id=template.id, code=template.code, version=template.version, title=template.title,
                              body=template.body, builtin=template.builtin,
                              text_sha256=_sha256(signed_text(template)), created_at=template.created_at)


async def install_builtin_consents(session: AsyncSession, tenant_id: UUID) -> int:
    """Version 1 of each built-in consent the tenant does not have yet; idempotent. Called at tenant
    creation; the migration did the same for tenants that existed."""
    added = 0
    for builtin in BUILTIN_CONSENTS:
        inserted = await session.execute(pg_insert(ConsentTemplate).values(
            tenant_id=tenant_id, id=new_id(), created_at=utcnow(), code=builtin["code"], version=1,
            title=builtin["title"], body=builtin["body"], builtin=True,
        ).on_conflict_do_nothing(index_elements=["tenant_id", "code", "version"]).returning(ConsentTemplate.id))
        added += inserted.scalar_one_or_none() is not None
    return added


def _may_read_templates(actor: Actor) -> None:
    # Patients read the text they are asked to sign; staff need clinical:read.
    if actor.kind != "patient":
        actor.require("clinical:read")


async def list_templates(session: AsyncSession, actor: Actor, *, code: str | None = None,
                         all_versions: bool = False) -> list[ConsentTemplate]:
    """The latest version of each consent (every version with `all_versions`), by code."""
    _may_read_templates(actor)
    stmt = select(ConsentTemplate).where(ConsentTemplate.tenant_id == actor.tenant_id)
    if code is not None:
        stmt = stmt.where(ConsentTemplate.code == code)
    rows = list((await session.execute(stmt.order_by(ConsentTemplate.code,
                                                     ConsentTemplate.version.desc()))).scalars())
    if all_versions:
        return rows
    latest: dict[str, ConsentTemplate] = {}
    for row in rows:
        latest.setdefault(row.code, row)
    return list(latest.values())


async def get_template(session: AsyncSession, actor: Actor, template_id: UUID) -> ConsentTemplate:
    _may_read_templates(actor)
    return await get_or_404(session, ConsentTemplate, actor.tenant_id, template_id,
                            code="consent_template_not_found")


async def _latest(session: AsyncSession, tenant_id: UUID, code: str) -> ConsentTemplate | None:
    stmt = (select(ConsentTemplate).where(ConsentTemplate.tenant_id == tenant_id, ConsentTemplate.code == code)
            .order_by(ConsentTemplate.version.desc()).limit(1))
    return (await session.execute(stmt)).scalars().first()


async def create_template(session: AsyncSession, actor: Actor, data: ConsentTemplateCreate) -> ConsentTemplate:
    policies.require_template_admin(actor)
    if await _latest(session, actor.tenant_id, data.code) is not None:
        raise Conflict(f"a consent template with code {data.code!r} exists: add a version to it",
                       code="consent_template_exists")
    template = ConsentTemplate(tenant_id=actor.tenant_id, code=data.code, version=1, title=data.title,
                               body=data.body, created_by_id=actor.id)
    session.add(template)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a consent template with code {data.code!r} was just created",
                       code="consent_template_exists") from None
    audit.record(session, "consent_template.created", "consent_template", template.id, code=template.code,
                 version=1, text_sha256=_sha256(signed_text(template)))
    return template


async def create_template_version(session: AsyncSession, actor: Actor, template_id: UUID,
                                  data: ConsentTemplateVersionCreate) -> ConsentTemplate:
    """The next version of the consent `template_id` is a version of; signed consents keep theirs. Of two
    concurrent edits the second finds its version number taken: 409 `consent_template_edited`."""
    policies.require_template_admin(actor)
    base = await get_or_404(session, ConsentTemplate, actor.tenant_id, template_id,
                            code="consent_template_not_found")
    latest = await _latest(session, actor.tenant_id, base.code)
    assert latest is not None  # noqa: S101 - `base` itself is a version of the code
    template = ConsentTemplate(tenant_id=actor.tenant_id, code=base.code, version=latest.version + 1,
                               title=data.title or latest.title, body=data.body, builtin=latest.builtin,
                               created_by_id=actor.id)
    session.add(template)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("the consent template was edited at the same time: load it again and retry",
                       code="consent_template_edited") from None
    audit.record(session, "consent_template.versioned", "consent_template", template.id, code=template.code,
                 version=template.version, previous_id=str(latest.id), text_sha256=_sha256(signed_text(template)))
    return template


# ---------------------------------------------------------------- the signature image


def check_signature(raw: str, field: str = "signature_png") -> bytes:
    """The PNG bytes of a base64 signature, or 422 naming `field`: not base64, not a PNG, over 200 KB or
    2000×2000 px, damaged, or blank. The size is read from the header before any pixel is decoded, so an
    image that would decompress to gigabytes is refused unread."""
    text = raw.strip()
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if head.lower().replace(" ", "") != "data:image/png;base64":
            raise invalid(field, "must be a PNG image (data:image/png;base64,…)")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(field, "is not valid base64") from None
    if len(data) > MAX_SIGNATURE_BYTES:
        raise invalid(field, f"is {len(data)} bytes; a signature may be at most {MAX_SIGNATURE_BYTES} bytes")
    if not data.startswith(PNG_MAGIC):
        raise invalid(field, "is not a PNG image")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as probe:
            width, height = probe.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise invalid(field, "is not a readable PNG image") from None
    if width > MAX_SIGNATURE_SIDE or height > MAX_SIGNATURE_SIDE:
        raise invalid(field, f"is {width}×{height} px; at most {MAX_SIGNATURE_SIDE}×{MAX_SIGNATURE_SIDE}")
    if width < MIN_SIGNATURE_SIDE or height < MIN_SIGNATURE_SIDE:
        raise invalid(field, f"is {width}×{height} px; too small to hold a signature")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()  # decodes every pixel: a truncated or corrupt PNG fails here
            blank = _is_blank(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise invalid(field, "is a damaged PNG image") from None
    if blank:
        raise invalid(field, "is blank: nothing was signed")
    return data


def _is_blank(image: Image.Image) -> bool:
    """One colour everywhere (a white or transparent canvas nobody wrote on)."""
    rgba = image.convert("RGBA")
    alpha_low, alpha_high = rgba.getchannel("A").getextrema()
    if alpha_high == 0:
        return True
    if alpha_low != alpha_high:
        return False
    low, high = rgba.convert("L").getextrema()
    return low == high


# ---------------------------------------------------------------- who may act on whose consents


async def _reach(session: AsyncSession, actor: Actor, member_id: UUID | None, permission: str, *, action: str,
                 consent_id: UUID | None = None) -> UUID:
    """The member the actor acts on: a patient themselves or a member of the family they head (anyone else
    404); staff with `permission` and the care relationship (refusal 403 `not_in_care`, audited by the
    router)."""
    if actor.kind == "patient":
        target = member_id or actor.id
        await members.get_member_row(session, actor, target)
        return target
    if actor.kind == "integration" and permission == "clinical:write":
        raise Forbidden("consents are signed by the patient or recorded by staff", code="permission_denied")
    if member_id is None:
        raise invalid("member_id", "required")
    await policies.require_clinical_access(session, actor, member_id, permission, action=action,
                                           record_id=consent_id)
    return member_id


async def _consent(session: AsyncSession, actor: Actor, consent_id: UUID, permission: str, action: str,
                   ) -> SignedConsent:
    consent = await get_or_404(session, SignedConsent, actor.tenant_id, consent_id, code="consent_not_found")
    try:
        await _reach(session, actor, consent.member_id, permission, action=action, consent_id=consent.id)
    except NotFound:
        # Another family's consent does not exist for this patient.
        raise NotFound("consent not found", code="consent_not_found") from None
    return consent


# ---------------------------------------------------------------- signing


def _signer_kind(actor: Actor) -> str:
    return "patient" if actor.kind == "patient" else "staff"


def consent_hash(consent: SignedConsent, device: dict[str, Any]) -> str:
    return _sha256(canonical_json({
        "consent_id": str(consent.id), "member_id": str(consent.member_id), "template_id": str(consent.template_id),
        "template_code": consent.template_code, "template_version": consent.template_version,
        "text_hash": consent.text_hash, "signature_hash": consent.signature_hash, "device": device,
        "signed_by_kind": consent.signed_by_kind, "signed_by_id": str(consent.signed_by_id),
        "signed_at": consent.signed_at.astimezone(UTC).isoformat(timespec="microseconds")}))


def withdrawal_hash(prev_hash: str, withdrawal: ConsentWithdrawal, reason: str, at: datetime) -> str:
    return _sha256(prev_hash + canonical_json({
        "consent_id": str(withdrawal.consent_id), "withdrawn_by_kind": withdrawal.withdrawn_by_kind,
        "withdrawn_by_id": str(withdrawal.withdrawn_by_id), "reason": reason,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds")}))


def _seal(text: str) -> str:
    sealed = crypto.encrypt(text)
    assert sealed is not None  # noqa: S101 - a string in, a string out
    return sealed


async def sign(session: AsyncSession, actor: Actor, data: PatientConsentSign | ConsentSign, *,
               request_device: dict[str, Any]) -> SignedConsent:
    """A consent signed by the patient (for themselves or their family) or recorded by staff (a tablet at the
    desk: `clinical:write` and the care relationship). `request_device`: what the request itself showed
    (user agent, address), kept next to what the client said."""
    png = check_signature(data.signature_png)
    member_id = await _reach(session, actor, data.member_id, "clinical:write", action="consent_sign")
    template = await session.get(ConsentTemplate, (actor.tenant_id, data.template_id))
    if template is None:
        raise invalid("template_id", "no such consent template")
    latest = await _latest(session, actor.tenant_id, template.code)
    if latest is not None and latest.id != template.id:
        raise Conflict(f"version {template.version} of {template.code!r} was replaced by version {latest.version}: "
                       "show and sign the current text", code="consent_template_superseded",
                       template_id=str(latest.id), version=latest.version)
    text_hash = _sha256(signed_text(template))
    if data.text_sha256 is not None and data.text_sha256 != text_hash:
        raise invalid("text_sha256", "does not match the template's text: the text shown is not the one stored")
    device = {"client": data.device.model_dump(exclude_none=True) if data.device else {},
              "request": {k: v for k, v in request_device.items() if v}}
    consent = SignedConsent(
        tenant_id=actor.tenant_id, id=new_id(), member_id=member_id, template_id=template.id,
        template_code=template.code, template_version=template.version, text_hash=text_hash,
        signature_encrypted=_seal(base64.b64encode(png).decode()), signature_hash=_sha256(png),
        device_encrypted=_seal(canonical_json(device)), signed_by_kind=_signer_kind(actor), signed_by_id=actor.id,
        signed_at=utcnow(), content_hash="")
    consent.created_at = consent.signed_at
    consent.content_hash = consent_hash(consent, device)
    session.add(consent)
    await session.flush()
    audit.record(session, "consent.signed", "consent", consent.id, member_id=str(member_id),
                 template_code=template.code, template_version=template.version, text_hash=text_hash,
                 content_hash=consent.content_hash)
    await emit(session, CONSENT_SIGNED, {
        "consent_id": str(consent.id), "member_id": str(member_id), "template_code": template.code,
        "template_version": template.version, "text_hash": text_hash, "signed_by_kind": consent.signed_by_kind,
        "signed_by_id": str(actor.id)})
    return consent


async def withdraw(session: AsyncSession, actor: Actor, consent_id: UUID, data: ConsentWithdraw) -> SignedConsent:
    """Withdraw a consent: the patient (theirs or their family's) or staff (`clinical:write`, care). The
    consent stays as signed; one withdrawal row is appended (a second is 409 `consent_withdrawn`, also when
    two arrive at once: the unique key decides)."""
    consent = await _consent(session, actor, consent_id, "clinical:write", "consent_withdraw")
    at = utcnow()
    withdrawal = ConsentWithdrawal(tenant_id=actor.tenant_id, id=new_id(), created_at=at, consent_id=consent.id,
                                   withdrawn_by_kind=_signer_kind(actor), withdrawn_by_id=actor.id,
                                   reason_encrypted=_seal(data.reason), prev_hash=consent.content_hash, hash="")
    withdrawal.hash = withdrawal_hash(consent.content_hash, withdrawal, data.reason, at)
    inserted = await session.execute(pg_insert(ConsentWithdrawal).values(
        tenant_id=withdrawal.tenant_id, id=withdrawal.id, created_at=at, consent_id=consent.id,
        withdrawn_by_kind=withdrawal.withdrawn_by_kind, withdrawn_by_id=withdrawal.withdrawn_by_id,
        reason_encrypted=withdrawal.reason_encrypted, prev_hash=withdrawal.prev_hash, hash=withdrawal.hash,
    ).on_conflict_do_nothing(index_elements=["tenant_id", "consent_id"]).returning(ConsentWithdrawal.id))
    if inserted.scalar_one_or_none() is None:
        raise Conflict("this consent is already withdrawn", code="consent_withdrawn")
    audit.record(session, "consent.withdrawn", "consent", consent.id, member_id=str(consent.member_id),
                 withdrawal_id=str(withdrawal.id), hash=withdrawal.hash)
    await emit(session, CONSENT_WITHDRAWN, {
        "consent_id": str(consent.id), "member_id": str(consent.member_id), "template_code": consent.template_code,
        "withdrawn_by_kind": withdrawal.withdrawn_by_kind, "withdrawn_by_id": str(actor.id)})
    return consent


# ---------------------------------------------------------------- reading


def _device(consent: SignedConsent) -> dict[str, Any]:
    return json.loads(crypto.decrypt(consent.device_encrypted) or "{}")


def _signature_png(consent: SignedConsent) -> bytes:
    return base64.b64decode(crypto.decrypt(consent.signature_encrypted) or "")


async def _withdrawals(session: AsyncSession, tenant_id: UUID,
                       consent_ids: list[UUID]) -> dict[UUID, ConsentWithdrawal]:
    if not consent_ids:
        return {}
    rows = (await session.execute(select(ConsentWithdrawal).where(
        ConsentWithdrawal.tenant_id == tenant_id, ConsentWithdrawal.consent_id.in_(consent_ids)))).scalars()
    return {w.consent_id: w for w in rows}


async def _titles(session: AsyncSession, tenant_id: UUID, template_ids: set[UUID]) -> dict[UUID, ConsentTemplate]:
    if not template_ids:
        return {}
    rows = (await session.execute(select(ConsentTemplate).where(
        ConsentTemplate.tenant_id == tenant_id, ConsentTemplate.id.in_(template_ids)))).scalars()
    return {t.id: t for t in rows}


def verify(consent: SignedConsent, withdrawal: ConsentWithdrawal | None) -> bool:
    """Whether the consent (signature and device decrypted) and its withdrawal still match their hashes."""
    if _sha256(_signature_png(consent)) != consent.signature_hash:
        return False
    if consent_hash(consent, _device(consent)) != consent.content_hash:
        return False
    if withdrawal is None:
        return True
    reason = crypto.decrypt(withdrawal.reason_encrypted) or ""
    return (withdrawal.prev_hash == consent.content_hash
            and withdrawal_hash(consent.content_hash, withdrawal, reason, withdrawal.created_at) == withdrawal.hash)


def _present(consent: SignedConsent, template: ConsentTemplate | None,
             withdrawal: ConsentWithdrawal | None) -> ConsentOut:
    return ConsentOut(
        id=consent.id, member_id=consent.member_id, template_id=consent.template_id,
        template_code=consent.template_code, template_version=consent.template_version,
        title=template.title if template else consent.template_code,
        status="withdrawn" if withdrawal else "signed", text_hash=consent.text_hash,
        signature_sha256=consent.signature_hash, signed_at=consent.signed_at, signed_by_kind=consent.signed_by_kind,
        signed_by_id=consent.signed_by_id, device=_device(consent), content_hash=consent.content_hash,
        hash_verified=verify(consent, withdrawal),
        withdrawal=ConsentWithdrawalOut(
            withdrawn_at=withdrawal.created_at, withdrawn_by_kind=withdrawal.withdrawn_by_kind,
            withdrawn_by_id=withdrawal.withdrawn_by_id, reason=crypto.decrypt(withdrawal.reason_encrypted) or "",
            hash=withdrawal.hash) if withdrawal else None)


async def present(session: AsyncSession, consent: SignedConsent) -> ConsentOut:
    withdrawal = (await _withdrawals(session, consent.tenant_id, [consent.id])).get(consent.id)
    template = await session.get(ConsentTemplate, (consent.tenant_id, consent.template_id))
    return _present(consent, template, withdrawal)


async def get_consent(session: AsyncSession, actor: Actor, consent_id: UUID) -> ConsentOut:
    """One consent with its withdrawal, if any; the read is audited."""
    consent = await _consent(session, actor, consent_id, "clinical:read", "consent_read")
    await audit.record_read(session, "consent.read", "consent", consent.id, member_id=str(consent.member_id))
    return await present(session, consent)


async def list_consents(session: AsyncSession, actor: Actor, member_id: UUID | None,
                        params: PageParams) -> tuple[list[ConsentOut], str | None]:
    """A member's consents, newest first (a patient: their own, or a family member's); audited as a read."""
    target = await _reach(session, actor, member_id, "clinical:read", action="consent_list")
    stmt = select(SignedConsent).where(SignedConsent.tenant_id == actor.tenant_id,
                                       SignedConsent.member_id == target)
    rows, cursor = await paginate(session, stmt, SignedConsent.id, params, descending=True)
    withdrawals = await _withdrawals(session, actor.tenant_id, [c.id for c in rows])
    templates = await _titles(session, actor.tenant_id, {c.template_id for c in rows})
    await audit.record_read(session, "consent.list", "member", target, consent_ids=[str(c.id) for c in rows])
    return [_present(c, templates.get(c.template_id), withdrawals.get(c.id)) for c in rows], cursor


@dataclass(frozen=True)
class ConsentPdf:
    filename: str
    content: bytes


async def consent_pdf(session: AsyncSession, actor: Actor, consent_id: UUID) -> ConsentPdf:
    """The signed consent as a PDF (text, signer, time, version, hashes, signature); the read is audited."""
    consent = await _consent(session, actor, consent_id, "clinical:read", "consent_pdf")
    await audit.record_read(session, "consent.download", "consent", consent.id, member_id=str(consent.member_id))
    template = await session.get(ConsentTemplate, (consent.tenant_id, consent.template_id))
    assert template is not None  # noqa: S101 - a foreign key
    withdrawal = (await _withdrawals(session, consent.tenant_id, [consent.id])).get(consent.id)
    names = await members.member_names(session, actor.tenant_id, {consent.member_id, consent.signed_by_id})

    async def who(kind: str, person_id: UUID) -> str:
        if kind == "patient":
            if person_id not in names:
                names.update(await members.member_names(session, actor.tenant_id, {person_id}))
            return names.get(person_id, "患者")
        staff = await iam.staff_row(session, actor.tenant_id, person_id)
        return staff.display_name if staff is not None else "员工"

    device = _device(consent)
    client, request = device.get("client", {}), device.get("request", {})
    device_summary = " · ".join(str(v) for v in (client.get("device_model"), client.get("system"),
                                                 client.get("platform"), request.get("user_agent")) if v)
    document = ConsentDocument(
        consent_id=str(consent.id), title=template.title, body=template.body, template_code=consent.template_code,
        template_version=consent.template_version, member_name=names.get(consent.member_id, ""),
        signer_name=await who(consent.signed_by_kind, consent.signed_by_id), signer_kind=consent.signed_by_kind,
        signed_at=consent.signed_at, text_hash=consent.text_hash, content_hash=consent.content_hash,
        signature_png=_signature_png(consent), device_summary=device_summary,
        withdrawn_at=withdrawal.created_at if withdrawal else None,
        withdrawn_by=await who(withdrawal.withdrawn_by_kind, withdrawal.withdrawn_by_id) if withdrawal else None,
        withdrawal_reason=crypto.decrypt(withdrawal.reason_encrypted) if withdrawal else None)
    return ConsentPdf(filename=f"consent-{consent.template_code}-{consent.id}.pdf",
                      content=render_consent_pdf(document))


# ---------------------------------------------------------------- services that need a consent


def _requirement_out(row: ServiceConsentRequirement) -> ServiceConsentRequirementOut:
    return ServiceConsentRequirementOut(service_id=row.service_id, template_code=row.template_code,
                                        required_before=row.required_before, updated_at=row.updated_at)


async def set_requirement(session: AsyncSession, actor: Actor, service_id: UUID,
                          data: ServiceConsentRequirementSet) -> ServiceConsentRequirementOut:
    """Which consent the service needs (replacing any earlier setting): clinical:write + members.health:all."""
    policies.require_template_admin(actor)
    await catalog.get_service_row(session, actor, service_id)
    if await _latest(session, actor.tenant_id, data.template_code) is None:
        raise invalid("template_code", "no such consent template")
    now = utcnow()
    values = {"template_code": data.template_code, "required_before": data.required_before, "updated_at": now,
              "updated_by_id": actor.id}
    await session.execute(pg_insert(ServiceConsentRequirement).values(
        tenant_id=actor.tenant_id, service_id=service_id, **values,
    ).on_conflict_do_update(index_elements=["tenant_id", "service_id"], set_=values))
    audit.record(session, "service.consent_requirement_set", "service", service_id,
                 template_code=data.template_code, required_before=data.required_before)
    return ServiceConsentRequirementOut(service_id=service_id, template_code=data.template_code,
                                        required_before=data.required_before, updated_at=now)


async def get_requirement(session: AsyncSession, actor: Actor, service_id: UUID) -> ServiceConsentRequirementOut:
    if actor.kind != "patient":
        actor.require("catalog:read")
    row = await session.get(ServiceConsentRequirement, (actor.tenant_id, service_id))
    if row is None:
        raise NotFound("this service needs no consent", code="consent_requirement_not_found")
    return _requirement_out(row)


async def remove_requirement(session: AsyncSession, actor: Actor, service_id: UUID) -> None:
    policies.require_template_admin(actor)
    row = await session.get(ServiceConsentRequirement, (actor.tenant_id, service_id))
    if row is None:
        raise NotFound("this service needs no consent", code="consent_requirement_not_found")
    await session.delete(row)
    await session.flush()
    audit.record(session, "service.consent_requirement_removed", "service", service_id,
                 template_code=row.template_code)


# One indexed prepared statement (it runs on every booking and completion): the service's requirement
# (primary key) and whether the member holds a signed, not withdrawn consent of that code. No row: the
# service needs nothing (the common case).
_REQUIREMENT = """
SELECT r.template_code, r.required_before,
       EXISTS (SELECT 1 FROM signed_consents c
                WHERE c.tenant_id = r.tenant_id AND c.member_id = $2 AND c.template_code = r.template_code
                  AND NOT EXISTS (SELECT 1 FROM consent_withdrawals w
                                   WHERE w.tenant_id = c.tenant_id AND w.consent_id = c.id)) AS signed
  FROM service_consent_requirements r
 WHERE r.tenant_id = $1 AND r.service_id = $3
"""


async def _require_consent(session: AsyncSession, actor: Actor, member_id: UUID, service_id: UUID,
                           stage: str) -> None:
    rows = await fetch(session, _REQUIREMENT, actor.tenant_id, member_id, service_id)
    if not rows:
        return
    code, required_before, signed = rows[0]
    if stage == RequiredBefore.BOOKING and required_before != RequiredBefore.BOOKING:
        return
    if not signed:
        raise Conflict(f"this service needs the member's signed consent {code!r} before it is {stage_word(stage)}",
                       code="consent_required", template_code=code, required_before=required_before)


def stage_word(stage: str) -> str:
    return "booked" if stage == RequiredBefore.BOOKING else "completed"


@booking_hooks.booking_requirement
async def _consent_before_booking(session: AsyncSession, actor: Actor, member_id: UUID, service_id: UUID) -> None:
    await _require_consent(session, actor, member_id, service_id, RequiredBefore.BOOKING)


@booking_hooks.completion_requirement
async def _consent_before_completion(session: AsyncSession, actor: Actor, member_id: UUID,
                                     service_id: UUID) -> None:
    await _require_consent(session, actor, member_id, service_id, RequiredBefore.COMPLETION)


# ---------------------------------------------------------------- timeline


@members.timeline_source("consent")
async def _consents_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                             before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    """Signed consents at their signing time, withdrawals at theirs (no text, signature or reason)."""
    stmt = select(SignedConsent).where(SignedConsent.tenant_id == tenant_id, SignedConsent.member_id == member_id)
    if before is not None:
        stmt = stmt.where(members.before_clause(SignedConsent.signed_at, SignedConsent.id, before, "consent:"))
    signed = list((await session.execute(stmt.order_by(SignedConsent.signed_at.desc(), SignedConsent.id.desc())
                                         .limit(limit))).scalars())
    wstmt = (select(ConsentWithdrawal, SignedConsent).join(SignedConsent, and_(
        SignedConsent.tenant_id == ConsentWithdrawal.tenant_id, SignedConsent.id == ConsentWithdrawal.consent_id))
        .where(ConsentWithdrawal.tenant_id == tenant_id, SignedConsent.member_id == member_id))
    if before is not None:
        wstmt = wstmt.where(members.before_clause(ConsentWithdrawal.created_at, ConsentWithdrawal.id, before,
                                                  "consent_withdrawal:"))
    withdrawn = (await session.execute(wstmt.order_by(ConsentWithdrawal.created_at.desc(),
                                                      ConsentWithdrawal.id.desc()).limit(limit))).all()
    templates = await _titles(session, tenant_id, {c.template_id for c in signed} | {c.template_id
                                                                                     for _, c in withdrawn})

    def title(c: SignedConsent) -> str:
        t = templates.get(c.template_id)
        return t.title if t else c.template_code

    items = [TimelineItem(type="consent", occurred_at=c.signed_at, id=f"consent:{c.id}", title=f"签署 · {title(c)}",
                          data={"consent_id": str(c.id), "event": "signed", "template_code": c.template_code,
                                "template_version": c.template_version, "signed_by_kind": c.signed_by_kind})
             for c in signed]
    items += [TimelineItem(type="consent", occurred_at=w.created_at, id=f"consent_withdrawal:{w.id}",
                           title=f"撤回 · {title(c)}",
                           data={"consent_id": str(c.id), "event": "withdrawn", "template_code": c.template_code,
                                 "template_version": c.template_version, "withdrawn_by_kind": w.withdrawn_by_kind})
              for w, c in withdrawn]
    return items
