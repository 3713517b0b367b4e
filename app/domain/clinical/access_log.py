"""Who opened my health record, and when: the patient's right to know (PIPL art. 44–45).

Built from the audit log's READ entries about the member: every entry whose subject is the member — its
target is the member (`member.health.read`, `clinical_record.list`, `member.chat_records.read`, …) or its
summary names them (`member_id`: a clinical record read, a photo, a consent …) — and whose action is a read
(`….read`, `….list`, `….download`, `….view(ed)`, `….export(ed)`). Entries are read both from the sealed
chain (`audit_log`) and from `audit_pending`, where a read is appended at once and waits a few seconds for
the sealer (DESIGN invariant 8): the patient sees a read immediately, and the read path itself is not slowed
(the index that finds a member's entries is on `audit_log` only, maintained by the background sealer).

Shown: the staff member's display name and roles, or the integration client's name (an HIS), the action
and its time, newest first. The patient's own reads are not listed; a family head's read of a child's
record is (as `family`). Only the member's own entries are ever read: the member comes from the family rule,
and the query is keyed on them. An entry has no id here: sealing gives it a new row in the chain (the pages
are keyed on the time, and on the row id only between entries of the same microsecond).
"""

from __future__ import annotations

import re
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.errors import Forbidden, NotFound
from app.core.pagination import PageParams, decode_cursor, encode_cursor
from app.domain.iam import service as iam
from app.domain.members import service as members

# The same expression as the index `ix_audit_log_member_subject` (migration 0026), so the planner uses it.
MEMBER_SUBJECT = "COALESCE(summary ->> 'member_id', CASE WHEN target_type = 'member' THEN target_id END)"
READ_ACTION = r"\.(read|list|download|downloaded|view|viewed|export|exported)$"
ACCESSORS = ("staff", "integration", "patient")

ACTION_LABELS: dict[str, str] = {
    "clinical_record.read": "查看病历", "clinical_record.list": "查看病历列表",
    "member.health.read": "查看健康档案", "member.chat_records.read": "查看会话记录",
    "consent.read": "查看知情同意书", "consent.list": "查看知情同意书列表",
    "consent.download": "下载知情同意书", "clinical_photo.read": "查看治疗照片",
    "clinical_photo.list": "查看治疗照片列表", "treatment_plan.read": "查看疗程方案",
    "treatment_plan.list": "查看疗程方案列表",
}


class AccessEntryOut(BaseModel):
    occurred_at: datetime
    action: str = Field(description="The audit action, e.g. clinical_record.read, member.health.read")
    action_label: str = Field(description="What was done, in words (Chinese)")
    target_type: str = Field(description="What was opened: member, clinical_record, …")
    accessor_type: str = Field(description="staff, integration (an HIS/EMR client) or family (the family head)")
    accessor_name: str | None = Field(description="The staff member's display name or the client's name")
    accessor_roles: list[str] = Field(default_factory=list, description="The staff member's roles (doctor, …)")


def _label(action: str) -> str:
    if action in ACTION_LABELS:
        return ACTION_LABELS[action]
    if re.search(r"\.(download|downloaded)$", action):
        return "下载资料"
    if re.search(r"\.(export|exported)$", action):
        return "导出资料"
    return "查看资料"


def _branch(table: str) -> str:
    return (f"SELECT id, occurred_at, actor_type, actor_id, action, target_type FROM {table} "
            f"WHERE tenant_id = :t AND {MEMBER_SUBJECT} = :m AND action ~ :reads "
            "AND actor_type = ANY(:accessors) AND NOT (actor_type = 'patient' AND actor_id = :m) "
            "AND (CAST(:before_at AS timestamptz) IS NULL "
            "OR (occurred_at, id) < (CAST(:before_at AS timestamptz), CAST(:before_id AS uuid)))")


_ENTRIES = text(f"({_branch('audit_log')}) UNION ALL ({_branch('audit_pending')}) "
                "ORDER BY occurred_at DESC, id DESC LIMIT :limit")


def _cursor(value: object) -> tuple[datetime, UUID]:
    at, entry_id = value  # type: ignore[misc]
    return datetime.fromisoformat(at), UUID(entry_id)


async def _names(session: AsyncSession, tenant_id: UUID, staff_ids: set[UUID],
                 client_ids: set[UUID]) -> dict[UUID, tuple[str | None, list[str]]]:
    """Display name and roles of each staff member, name of each integration client (also of those who
    left or were revoked since: the reads they made stay on record). Staff and clients are looked up as
    the clinic itself would (the system actor), for this list only."""
    system = Actor.system(tenant_id)
    found: dict[UUID, tuple[str | None, list[str]]] = {}
    for staff_id in staff_ids:
        try:
            staff = await iam.get_staff(session, system, staff_id)
        except NotFound:
            continue
        found[staff_id] = (staff.display_name, staff.roles)
    if client_ids:
        for client in await iam.list_api_clients(session, system):
            if client["id"] in client_ids:
                found[client["id"]] = (client["name"], [])
    return found


def _uuid(value: str | None) -> UUID | None:
    try:
        return UUID(value) if value else None
    except ValueError:
        return None


async def access_log(session: AsyncSession, actor: Actor, member_id: UUID | None,
                     params: PageParams) -> tuple[list[AccessEntryOut], str | None]:
    """Who read the member's health data (the patient, or a member of the family they head), newest first."""
    if actor.kind != "patient":
        raise Forbidden("this is the patient's own view (mini-program sign-in)", code="permission_denied")
    target = member_id or actor.id
    await members.get_member_row(session, actor, target)  # 404 outside the patient's family
    before_at, before_id = decode_cursor(params.cursor, _cursor) if params.cursor else (None, None)
    rows = (await session.execute(_ENTRIES, {
        "t": actor.tenant_id, "m": str(target), "reads": READ_ACTION, "accessors": list(ACCESSORS),
        "before_at": before_at, "before_id": before_id, "limit": params.limit + 1})).all()
    page, more = rows[: params.limit], len(rows) > params.limit
    staff_ids = {u for r in page if r.actor_type == "staff" and (u := _uuid(r.actor_id))}
    client_ids = {u for r in page if r.actor_type == "integration" and (u := _uuid(r.actor_id))}
    names = await _names(session, actor.tenant_id, staff_ids, client_ids)
    items = []
    for r in page:
        name, roles = names.get(_uuid(r.actor_id), (None, [])) if r.actor_type != "patient" else (None, [])
        items.append(AccessEntryOut(
            occurred_at=r.occurred_at, action=r.action, action_label=_label(r.action),
            target_type=r.target_type, accessor_type="family" if r.actor_type == "patient" else r.actor_type,
            accessor_name=name, accessor_roles=roles))
    cursor = encode_cursor([page[-1].occurred_at.isoformat(), str(page[-1].id)]) if more and page else None
    return items, cursor
