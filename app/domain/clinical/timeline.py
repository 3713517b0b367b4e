"""Clinical records on the member timeline: a summary only (form, status, signer and time), never values.

Members' timeline sources are called without the caller (`TimelineSource` takes a tenant and a member), so
who may see which records is decided from the request's context (who is acting, as the audit log reads it):

- a patient (their own timeline, or their family's): signed records only, without the staff-only keys;
- a staff member with `clinical:read` and the care relationship (or `members.health:all`): signed records
  and drafts; a staff member without them: none (that a form exists is already health information);
- the system (jobs, the seed): everything; an integration client (its token's scopes are not known here):
  none — HIS/EMR clients read records through the clinical and FHIR APIs, which check their scopes.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.context import current_context
from app.core.errors import Unauthorized
from app.domain.clinical import service as clinical
from app.domain.clinical.models import ClinicalRecord, RecordStatus
from app.domain.iam import service as iam
from app.domain.members import service as members
from app.domain.members.schemas import TimelineItem

SOURCE = "clinical_record"
STATUS_TITLES = {RecordStatus.DRAFT: "草稿", RecordStatus.SIGNED: "已签署"}


async def _visible_statuses(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> tuple[str, ...]:
    ctx = current_context()
    if ctx.actor_type == "system":
        return (RecordStatus.DRAFT, RecordStatus.SIGNED)
    if ctx.actor_type == "patient":
        return (RecordStatus.SIGNED,)
    if ctx.actor_type != "staff" or not ctx.actor_id:
        return ()
    try:
        # Cached per process for a few seconds (iam's actor cache): no round trip on a warm timeline.
        actor = await iam.load_staff_actor(session, tenant_id, UUID(ctx.actor_id), None)
    except (Unauthorized, ValueError):
        return ()
    if not actor.can("clinical:read"):
        return ()
    if not (actor.can("members.health:all") or await members.in_care(session, actor, member_id)):
        return ()
    return (RecordStatus.DRAFT, RecordStatus.SIGNED)


@members.timeline_source(SOURCE, staff_only_keys=("author_id", "signed_by_id"))
async def _clinical_records_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                                     before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    """A record sits on the timeline when it was written (the visit), newest first."""
    statuses = await _visible_statuses(session, tenant_id, member_id)
    if not statuses:
        return []
    stmt = select(ClinicalRecord).where(ClinicalRecord.tenant_id == tenant_id, ClinicalRecord.member_id == member_id,
                                        ClinicalRecord.status.in_(statuses))
    if before is not None:
        stmt = stmt.where(members.before_clause(ClinicalRecord.created_at, ClinicalRecord.id, before,
                                                f"{SOURCE}:"))
    rows = list((await session.execute(stmt.order_by(ClinicalRecord.created_at.desc(), ClinicalRecord.id.desc())
                                       .limit(limit))).scalars())
    if not rows:
        return []
    templates = await clinical.templates_by_id(session, tenant_id, {r.template_id for r in rows})
    names = ({s.id: s.display_name for s in await iam.staff_names(session, tenant_id)}
             if any(r.signed_by_id for r in rows) else {})
    items = []
    for r in rows:
        form = templates[r.template_id].name
        items.append(TimelineItem(
            type=SOURCE, occurred_at=r.created_at, id=f"{SOURCE}:{r.id}",
            title=f"{form} · {STATUS_TITLES.get(r.status, r.status)}",
            data={"record_id": str(r.id), "form_name": form, "template_code": r.template_code,
                  "template_version": r.template_version, "status": r.status,
                  "signed_at": r.signed_at.isoformat() if r.signed_at else None,
                  "signed_by_name": names.get(r.signed_by_id) if r.signed_by_id else None,
                  "signed_by_id": str(r.signed_by_id) if r.signed_by_id else None,
                  "author_id": str(r.author_id) if r.author_id else None,
                  "appointment_id": str(r.appointment_id) if r.appointment_id else None,
                  "service_record_id": str(r.service_record_id) if r.service_record_id else None}))
    return items
