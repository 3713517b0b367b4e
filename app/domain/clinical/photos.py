"""Clinical photos and attachments: upload, list, before/after pairs, signed downloads, the patient's view.

Uploading takes `clinical:write` and the care relationship (as writing a record does). The file is checked
first (app.domain.clinical.images: decoded by Pillow, re-encoded without EXIF, a thumbnail made; a PDF by its
header) and only then stored in the file store (app.core.files), and the metadata row is written after it:
a refused upload leaves neither a row nor a file. Should the row's insert fail, the stored files are deleted
again; should the transaction fail later, at commit, the files stay unreferenced in the store (nothing links
to them and their keys are random, so they are unreachable) until `sweep_orphans` deletes them.

Every read — a list, the pairs, one photo with its download URLs — is audited (`audit.record_read`, the
member named), like clinical records. URLs are signed and short-lived (FILE_URL_TTL_SECONDS) and are made
only after the read was authorised and recorded. A patient sees their own photos in the mini-program, except
the ones marked `staff_only`, and never the staff's note.

For other code (FHIR DocumentReference): `list_photos(session, actor, member_id, *, updated_since=None)` and
`get_photo(session, actor, photo_id)` answer `ClinicalPhotoOut`s, permission-checked and audited.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.db import SessionFactory
from app.core.errors import Forbidden, NotFound, PayloadTooLarge
from app.core.files import Disposition, FileStore, file_store
from app.core.outbox import emit
from app.core.pagination import PageParams, paginate
from app.core.settings import get_settings
from app.domain.booking import service as booking
from app.domain.clinical import policies
from app.domain.clinical.events import PHOTO_UPLOADED
from app.domain.clinical.forms import field_error
from app.domain.clinical.images import CheckedFile, check_upload
from app.domain.clinical.models import ClinicalRecord
from app.domain.clinical.photo_models import ClinicalPhoto
from app.domain.clinical.photo_schemas import AREA_LABELS, ClinicalPhotoOut, PhotoPairGroup, PhotoPairsOut, PhotoUpload
from app.domain.members import service as members
from app.domain.members.schemas import TimelineItem
from app.domain.visits import service as visits

PHASE_LABELS = {"before": "治疗前", "during": "治疗中", "after": "治疗后"}
KIND_LABELS = {"photo": "临床照片", "attachment": "临床附件"}
# Most photos listed in one answer of `list_photos` (the FHIR feed pages on top of it).
LIST_LIMIT = 1000


def upload_limit(kind: Literal["image", "pdf"]) -> int:
    settings = get_settings()
    return settings.clinical_pdf_max_bytes if kind == "pdf" else settings.clinical_image_max_bytes


def largest_upload() -> int:
    """The most bytes an upload may have (the reader stops one past it)."""
    return max(upload_limit("image"), upload_limit("pdf"))


# ---------------------------------------------------------------- upload


async def _check_links(session: AsyncSession, actor: Actor, data: PhotoUpload) -> None:
    """A linked appointment, service record or clinical record must be this member's."""
    if data.appointment_id is not None:
        appointment = await booking.appointment_of(session, actor.tenant_id, data.appointment_id)
        if appointment is None:
            raise field_error("appointment_id", "no such appointment")
        if appointment.member_id != data.member_id:
            raise field_error("appointment_id", "the appointment is another member's")
    if data.service_record_id is not None:
        try:
            record = await visits.get_record(session, actor, data.service_record_id)
        except NotFound:
            raise field_error("service_record_id", "no such service record") from None
        if record.member_id != data.member_id:
            raise field_error("service_record_id", "the service record is another member's")
    if data.clinical_record_id is not None:
        clinical = await session.get(ClinicalRecord, (actor.tenant_id, data.clinical_record_id))
        if clinical is None:
            raise field_error("clinical_record_id", "no such clinical record")
        if clinical.member_id != data.member_id:
            raise field_error("clinical_record_id", "the clinical record is another member's")


def _check_size(content: bytes) -> None:
    kind: Literal["image", "pdf"] = "pdf" if content.startswith(b"%PDF-") else "image"
    limit = upload_limit(kind)
    if len(content) > limit:
        what = "a PDF" if kind == "pdf" else "an image"
        raise PayloadTooLarge(f"the file is larger than {limit} bytes, the most {what} may have",
                              code="file_too_large", errors=[{"field": "file", "message": f"over {limit} bytes",
                                                              "type": "file_too_large"}])


async def upload_photo(session: AsyncSession, actor: Actor, data: PhotoUpload, *, content: bytes,
                       content_type: str | None, filename: str | None,
                       store: FileStore | None = None) -> ClinicalPhoto:
    """Check, store and record one photo or attachment of a member."""
    await policies.require_clinical_access(session, actor, data.member_id, "clinical:write", action="upload_photo")
    if data.treatment_area not in AREA_LABELS:
        raise field_error("treatment_area", "unknown treatment area code")
    await _check_links(session, actor, data)
    _check_size(content)
    checked: CheckedFile = await asyncio.to_thread(check_upload, content, content_type=content_type,
                                                   filename=filename, kind=data.kind)
    store = store or file_store()
    prefix = f"{actor.tenant_id.hex}/clinical/{data.member_id.hex}"
    stored: list[str] = []
    try:
        stored.append(await store.put(checked.data, content_type=checked.content_type, prefix=prefix,
                                      extension=checked.extension))
        if checked.thumbnail is not None:
            stored.append(await store.put(checked.thumbnail, content_type="image/jpeg", prefix=f"{prefix}/thumbs",
                                          extension=".jpg"))
        photo = ClinicalPhoto(
            tenant_id=actor.tenant_id, member_id=data.member_id, kind=data.kind, treatment_area=data.treatment_area,
            phase=data.phase, taken_on=data.taken_on, appointment_id=data.appointment_id,
            service_record_id=data.service_record_id, clinical_record_id=data.clinical_record_id,
            staff_only=data.staff_only, note_encrypted=crypto.encrypt(data.note),
            filename_encrypted=crypto.encrypt(filename[:255] if filename else None),
            content_type=checked.content_type, size_bytes=len(checked.data), sha256=checked.sha256,
            width=checked.width, height=checked.height, storage_key=stored[0],
            thumbnail_key=stored[1] if len(stored) > 1 else None,
            uploaded_by_id=actor.id if actor.kind != "system" else None)
        session.add(photo)
        await session.flush()
    except BaseException:
        # Nothing of a refused or failed upload stays behind: the files go with the row that never was.
        for key in stored:
            try:
                await store.delete(key)
            except Exception:  # noqa: BLE001, S110 - the original failure is the one to report
                pass
        raise
    audit.record(session, "clinical_photo.uploaded", "clinical_photo", photo.id, member_id=str(photo.member_id),
                 kind=photo.kind, treatment_area=photo.treatment_area, phase=photo.phase, sha256=photo.sha256,
                 size_bytes=photo.size_bytes)
    await emit(session, PHOTO_UPLOADED, {
        "photo_id": str(photo.id), "member_id": str(photo.member_id), "kind": photo.kind,
        "treatment_area": photo.treatment_area, "phase": photo.phase, "taken_on": photo.taken_on.isoformat(),
        "content_type": photo.content_type, "uploaded_by_id": str(photo.uploaded_by_id) if photo.uploaded_by_id
        else None, "appointment_id": str(photo.appointment_id) if photo.appointment_id else None,
        "service_record_id": str(photo.service_record_id) if photo.service_record_id else None,
        "clinical_record_id": str(photo.clinical_record_id) if photo.clinical_record_id else None})
    return photo


# ---------------------------------------------------------------- presenting


async def present(photo: ClinicalPhoto, *, urls: Literal["none", "thumbnail", "all"] = "none",
                  for_patient: bool = False, store: FileStore | None = None) -> ClinicalPhotoOut:
    """The photo's metadata; with signed URLs only when asked (call it after the read was authorised)."""
    out = ClinicalPhotoOut(
        id=photo.id, member_id=photo.member_id, kind=photo.kind, treatment_area=photo.treatment_area,  # type: ignore[arg-type]
        treatment_area_label=AREA_LABELS.get(photo.treatment_area), phase=photo.phase,  # type: ignore[arg-type]
        taken_on=photo.taken_on, appointment_id=photo.appointment_id, service_record_id=photo.service_record_id,
        clinical_record_id=photo.clinical_record_id, staff_only=photo.staff_only,
        note=None if for_patient else crypto.decrypt(photo.note_encrypted),
        filename=crypto.decrypt(photo.filename_encrypted), content_type=photo.content_type,
        size_bytes=photo.size_bytes, sha256=photo.sha256, width=photo.width, height=photo.height,
        uploaded_by_id=photo.uploaded_by_id, created_at=photo.created_at)  # type: ignore[arg-type]
    if urls == "none":
        return out
    store = store or file_store()
    expires: list[datetime] = []
    if urls == "all":
        disposition: Disposition = "attachment" if photo.content_type == "application/pdf" else "inline"
        out.url, at = await store.signed_url(photo.storage_key, content_type=photo.content_type,
                                             disposition=disposition, filename=out.filename)
        expires.append(at)
    if photo.thumbnail_key:
        out.thumbnail_url, at = await store.signed_url(photo.thumbnail_key, content_type="image/jpeg")
        expires.append(at)
    out.urls_expire_at = min(expires) if expires else None
    return out


# ---------------------------------------------------------------- staff reads


def _member_photos(tenant_id: UUID, member_id: UUID | None, *, kind: str | None = None,
                   treatment_area: str | None = None, phase: str | None = None,
                   updated_since: datetime | None = None, patient_view: bool = False):  # noqa: ANN202
    stmt = select(ClinicalPhoto).where(ClinicalPhoto.tenant_id == tenant_id)
    if member_id is not None:
        stmt = stmt.where(ClinicalPhoto.member_id == member_id)
    if kind is not None:
        stmt = stmt.where(ClinicalPhoto.kind == kind)
    if treatment_area is not None:
        stmt = stmt.where(ClinicalPhoto.treatment_area == treatment_area)
    if phase is not None:
        stmt = stmt.where(ClinicalPhoto.phase == phase)
    if updated_since is not None:
        # Photos are never changed, so a photo's last update is its upload.
        stmt = stmt.where(ClinicalPhoto.created_at > updated_since)
    if patient_view:
        stmt = stmt.where(ClinicalPhoto.staff_only.is_(False))  # type: ignore[attr-defined]
    return stmt


async def page_photos(session: AsyncSession, actor: Actor, member_id: UUID, params: PageParams, *,
                      kind: str | None = None, treatment_area: str | None = None,
                      phase: str | None = None) -> tuple[list[ClinicalPhotoOut], str | None]:
    """A member's photos and attachments, newest first, with thumbnail URLs (the listing is audited)."""
    await policies.require_clinical_access(session, actor, member_id, "clinical:read", action="list_photos")
    stmt = _member_photos(actor.tenant_id, member_id, kind=kind, treatment_area=treatment_area, phase=phase)
    rows, cursor = await paginate(session, stmt, ClinicalPhoto.id, params, descending=True)
    await audit.record_read(session, "clinical_photo.list", "member", member_id, member_id=str(member_id),
                            photo_ids=[str(r.id) for r in rows])
    return [await present(r, urls="thumbnail") for r in rows], cursor


async def list_photos(session: AsyncSession, actor: Actor, member_id: UUID | None, *,
                      updated_since: datetime | None = None, with_urls: bool = False) -> list[ClinicalPhotoOut]:
    """A member's photos and attachments with their metadata, oldest upload first (signed URLs `with_urls`),
    at most LIST_LIMIT; `updated_since` for incremental sync. `member_id=None` lists every member's and takes
    `members.health:all` (an integration feed), as the care relationship cannot be checked per row. Audited."""
    if member_id is None:
        actor.require("clinical:read")
        if not actor.can("members.health:all"):
            raise Forbidden("listing every member's photos needs members.health:all", code="permission_denied")
    else:
        await policies.require_clinical_access(session, actor, member_id, "clinical:read", action="list_photos")
    stmt = _member_photos(actor.tenant_id, member_id, updated_since=updated_since)
    rows = list((await session.execute(stmt.order_by(ClinicalPhoto.created_at, ClinicalPhoto.id)
                                       .limit(LIST_LIMIT))).scalars())
    if member_id is not None or rows:
        await audit.record_read(session, "clinical_photo.list", "member" if member_id else "clinical_photo",
                                member_id, member_id=str(member_id) if member_id else None,
                                photo_ids=[str(r.id) for r in rows])
    return [await present(r, urls="all" if with_urls else "none") for r in rows]


async def _photo(session: AsyncSession, actor: Actor, photo_id: UUID, action: str) -> ClinicalPhoto:
    photo = await session.get(ClinicalPhoto, (actor.tenant_id, photo_id))
    if photo is None:
        actor.require("clinical:read")
        raise NotFound("no such clinical photo", code="clinical_photo_not_found")
    await policies.require_clinical_access(session, actor, photo.member_id, "clinical:read", action=action)
    return photo


async def get_photo(session: AsyncSession, actor: Actor, photo_id: UUID, *,
                    with_urls: bool = True) -> ClinicalPhotoOut:
    """One photo with signed URLs of the file and its thumbnail (the read is audited)."""
    photo = await _photo(session, actor, photo_id, "read_photo")
    await audit.record_read(session, "clinical_photo.read", "clinical_photo", photo.id,
                            member_id=str(photo.member_id))
    return await present(photo, urls="all" if with_urls else "none")


def _group(photos: list[ClinicalPhotoOut], member_id: UUID) -> PhotoPairsOut:
    groups: dict[tuple[str, object], dict[str, list[ClinicalPhotoOut]]] = defaultdict(
        lambda: {"before": [], "during": [], "after": []})
    for photo in photos:
        groups[(photo.treatment_area, photo.taken_on)][photo.phase].append(photo)
    items = [PhotoPairGroup(treatment_area=area, treatment_area_label=AREA_LABELS.get(area), taken_on=day,  # type: ignore[arg-type]
                            complete=bool(g["before"] and g["after"]), before=g["before"], during=g["during"],
                            after=g["after"]) for (area, day), g in groups.items()]
    items.sort(key=lambda g: (g.taken_on, g.treatment_area), reverse=True)
    return PhotoPairsOut(member_id=member_id, items=items)


async def photo_pairs(session: AsyncSession, actor: Actor, member_id: UUID, *,
                      treatment_area: str | None = None) -> PhotoPairsOut:
    """A member's photos (not attachments) grouped per treatment area and day into before / during / after,
    newest day first, with thumbnail URLs (audited)."""
    await policies.require_clinical_access(session, actor, member_id, "clinical:read", action="list_photos")
    stmt = _member_photos(actor.tenant_id, member_id, kind="photo", treatment_area=treatment_area)
    rows = list((await session.execute(stmt.order_by(ClinicalPhoto.created_at, ClinicalPhoto.id)
                                       .limit(LIST_LIMIT))).scalars())
    await audit.record_read(session, "clinical_photo.list", "member", member_id, member_id=str(member_id),
                            photo_ids=[str(r.id) for r in rows], view="pairs")
    return _group([await present(r, urls="thumbnail") for r in rows], member_id)


# ---------------------------------------------------------------- the patient's own


def _patient(actor: Actor) -> None:
    if actor.kind != "patient":
        raise Forbidden("this is the patient's own view", code="patient_only")


async def patient_photos(session: AsyncSession, actor: Actor, params: PageParams) -> tuple[
        list[ClinicalPhotoOut], str | None]:
    """The patient's own photos and attachments, newest first, without staff-only ones or staff notes."""
    _patient(actor)
    stmt = _member_photos(actor.tenant_id, actor.id, patient_view=True)
    rows, cursor = await paginate(session, stmt, ClinicalPhoto.id, params, descending=True)
    await audit.record_read(session, "clinical_photo.list", "member", actor.id, member_id=str(actor.id),
                            photo_ids=[str(r.id) for r in rows])
    return [await present(r, urls="thumbnail", for_patient=True) for r in rows], cursor


async def patient_photo(session: AsyncSession, actor: Actor, photo_id: UUID) -> ClinicalPhotoOut:
    """One of the patient's own photos with its download URLs (404 for anyone else's or a staff-only one)."""
    _patient(actor)
    photo = await session.get(ClinicalPhoto, (actor.tenant_id, photo_id))
    if photo is None or photo.member_id != actor.id or photo.staff_only:
        raise NotFound("no such clinical photo", code="clinical_photo_not_found")
    await audit.record_read(session, "clinical_photo.read", "clinical_photo", photo.id, member_id=str(actor.id))
    return await present(photo, urls="all", for_patient=True)


# ---------------------------------------------------------------- housekeeping


async def unreferenced_keys(session: AsyncSession, tenant_id: UUID, keys: list[str]) -> list[str]:
    """Of these stored keys, the ones no photo row refers to (files left by a transaction that failed at
    commit after its files were stored)."""
    if not keys:
        return []
    referenced = set((await session.execute(select(ClinicalPhoto.storage_key).where(
        ClinicalPhoto.tenant_id == tenant_id, ClinicalPhoto.storage_key.in_(keys)))).scalars())  # type: ignore[attr-defined]
    referenced |= set((await session.execute(select(ClinicalPhoto.thumbnail_key).where(
        ClinicalPhoto.tenant_id == tenant_id, ClinicalPhoto.thumbnail_key.in_(keys)))).scalars())  # type: ignore[union-attr]
    return [k for k in keys if k not in referenced]


# ---------------------------------------------------------------- plugged into members


@members.timeline_source("clinical_photo", patient_visible=False)
async def _photos_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                           before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    # Staff-side only: the patient's own view of photos is /patient/clinical-photos (it leaves staff-only
    # ones out, which a timeline source cannot do per row). No URLs here: opening a photo is an audited read.
    stmt = select(ClinicalPhoto).where(ClinicalPhoto.tenant_id == tenant_id, ClinicalPhoto.member_id == member_id)
    if before is not None:
        stmt = stmt.where(members.before_clause(ClinicalPhoto.created_at, ClinicalPhoto.id, before,
                                                "clinical_photo:"))
    rows = (await session.execute(stmt.order_by(ClinicalPhoto.created_at.desc(),  # type: ignore[union-attr]
                                                ClinicalPhoto.id.desc()).limit(limit))).scalars().all()
    return [TimelineItem(
        type="clinical_photo", occurred_at=p.created_at, id=f"clinical_photo:{p.id}",  # type: ignore[arg-type]
        title=f"{KIND_LABELS.get(p.kind, p.kind)} · {AREA_LABELS.get(p.treatment_area, p.treatment_area)} · "
              f"{PHASE_LABELS.get(p.phase, p.phase)}",
        data={"photo_id": str(p.id), "kind": p.kind, "treatment_area": p.treatment_area, "phase": p.phase,
              "taken_on": p.taken_on.isoformat(), "staff_only": p.staff_only}) for p in rows]


async def sweep_orphans(sessions: SessionFactory, tenant_id: UUID, *, older_than: timedelta = timedelta(hours=1),
                        store: FileStore | None = None) -> int:
    """Delete the tenant's clinical files no photo row refers to, once older than `older_than` (a younger one
    may belong to an upload whose transaction has not committed yet). Answers how many were deleted."""
    store = store or file_store()
    cutoff = utcnow() - older_than
    stale = [k.key for k in await store.list_keys(f"{tenant_id.hex}/clinical") if k.modified_at <= cutoff]
    deleted = 0
    for start in range(0, len(stale), 500):
        async with sessions(tenant_id) as session:
            orphans = await unreferenced_keys(session, tenant_id, stale[start:start + 500])
        for key in orphans:
            await store.delete(key)
            deleted += 1
    return deleted
