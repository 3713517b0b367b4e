"""Clinical photos in GraphQL: the sidebar's member view shows a member's photos and their before/after
pairs (staff: clinical:read and the care relationship, refusals audited), and the mini-program shows the
patient's own (never staff-only ones or staff notes). The same service functions as REST's
`/clinical-photos` and `/patient/clinical-photos`, reads audited alike; images come as signed, short-lived
thumbnail URLs (`clinicalPhoto` gives the full-size one)."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date, datetime
from typing import TypeVar

import strawberry
from strawberry.types import Info

from app.core.db import session_scope
from app.core.pagination import PageParams
from app.domain.clinical import photos, policies
from app.domain.clinical.photo_schemas import ClinicalPhotoOut, PhotoPairGroup
from app.graphql.context import Context, page_limit, parse_id

STAFF = ("staff",)
PATIENT = ("patient",)
T = TypeVar("T")


@strawberry.type
class ClinicalPhoto:
    id: strawberry.ID
    member_id: strawberry.ID
    kind: str = strawberry.field(description="photo or attachment")
    treatment_area: str
    treatment_area_label: str | None
    phase: str = strawberry.field(description="before, during or after")
    taken_on: date
    content_type: str
    width: int | None
    height: int | None
    note: str | None = strawberry.field(description="Staff's note; null in the patient's own view")
    created_at: datetime
    url: str | None = strawberry.field(description="Signed, short-lived URL of the file (clinicalPhoto only)")
    thumbnail_url: str | None = strawberry.field(description="Signed, short-lived URL of the 320 px thumbnail")
    urls_expire_at: datetime | None

    @classmethod
    def of(cls, p: ClinicalPhotoOut) -> ClinicalPhoto:
        return cls(id=strawberry.ID(str(p.id)), member_id=strawberry.ID(str(p.member_id)), kind=p.kind,
                   treatment_area=p.treatment_area, treatment_area_label=p.treatment_area_label, phase=p.phase,
                   taken_on=p.taken_on, content_type=p.content_type, width=p.width, height=p.height, note=p.note,
                   created_at=p.created_at, url=p.url, thumbnail_url=p.thumbnail_url,
                   urls_expire_at=p.urls_expire_at)


@strawberry.type
class ClinicalPhotoPage:
    items: list[ClinicalPhoto]
    next_cursor: str | None


@strawberry.type
class ClinicalPhotoPair:
    """The photos of one treatment area on one day, by phase."""

    treatment_area: str
    treatment_area_label: str | None
    taken_on: date
    complete: bool = strawberry.field(description="Both a before and an after photo exist")
    before: list[ClinicalPhoto]
    during: list[ClinicalPhoto]
    after: list[ClinicalPhoto]

    @classmethod
    def of(cls, g: PhotoPairGroup) -> ClinicalPhotoPair:
        return cls(treatment_area=g.treatment_area, treatment_area_label=g.treatment_area_label,
                   taken_on=g.taken_on, complete=g.complete, before=[ClinicalPhoto.of(p) for p in g.before],
                   during=[ClinicalPhoto.of(p) for p in g.during], after=[ClinicalPhoto.of(p) for p in g.after])


def _audited(call: Awaitable[T]) -> Awaitable[T]:
    """A `not_in_care` refusal is audited in a transaction of its own before the 403."""
    return policies.audited(session_scope, call)


@strawberry.type
class ClinicalPhotoQueries:
    @strawberry.field(description="A member's photos and attachments, newest first (the sidebar's member view). "
                                  "clinical:read and the member in the caller's care (not_in_care, audited).")
    async def member_clinical_photos(self, info: Info[Context, None], member_id: strawberry.ID, limit: int = 20,
                                     cursor: str | None = None) -> ClinicalPhotoPage:
        actor = await info.context.actor("clinical:read", audiences=STAFF)
        items, next_cursor = await _audited(photos.page_photos(
            info.context.session, actor, parse_id(member_id, "member_id"),
            PageParams(limit=page_limit(limit), cursor=cursor)))
        return ClinicalPhotoPage(items=[ClinicalPhoto.of(p) for p in items], next_cursor=next_cursor)

    @strawberry.field(description="Before/after comparison: a member's photos per treatment area and day, newest "
                                  "day first.")
    async def clinical_photo_pairs(self, info: Info[Context, None], member_id: strawberry.ID,
                                   treatment_area: str | None = None) -> list[ClinicalPhotoPair]:
        actor = await info.context.actor("clinical:read", audiences=STAFF)
        pairs = await _audited(photos.photo_pairs(info.context.session, actor, parse_id(member_id, "member_id"),
                                                  treatment_area=treatment_area))
        return [ClinicalPhotoPair.of(g) for g in pairs.items]

    @strawberry.field(description="One photo with the signed URL of the full-size file.")
    async def clinical_photo(self, info: Info[Context, None], photo_id: strawberry.ID) -> ClinicalPhoto:
        actor = await info.context.actor("clinical:read", audiences=STAFF)
        return ClinicalPhoto.of(await _audited(photos.get_photo(info.context.session, actor,
                                                                parse_id(photo_id, "photo_id"))))

    @strawberry.field(description="The patient's own photos, newest first (not staff-only ones; no staff notes).")
    async def my_clinical_photos(self, info: Info[Context, None], limit: int = 20,
                                 cursor: str | None = None) -> ClinicalPhotoPage:
        actor = await info.context.actor(audiences=PATIENT)
        items, next_cursor = await photos.patient_photos(info.context.session, actor,
                                                         PageParams(limit=page_limit(limit), cursor=cursor))
        return ClinicalPhotoPage(items=[ClinicalPhoto.of(p) for p in items], next_cursor=next_cursor)
