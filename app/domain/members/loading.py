"""What every members use case loads first: the member the actor may reach, the tenant's custom field
definitions, and members' tags. No permission checks here: the use cases check theirs."""

from __future__ import annotations

from typing import NamedTuple
from uuid import UUID

from sqlalchemy import and_
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.db import fetch
from app.core.errors import Conflict, NotFound
from app.core.rows import get_or_404, read_or_404
from app.domain.members import policies
from app.domain.members.models import CustomFieldDefinition, Member, MemberStatus, MemberTag, Tag


async def load_member(session: AsyncSession, actor: Actor, member_id: UUID, *, for_update: bool = False,
                      snapshot: bool = False) -> Member:
    """The member, 404 when there is none or when a patient may not reach it (themselves and their family).
    `snapshot`: for a caller that only reads it (`read_or_404`: one prepared statement, not saved)."""
    if snapshot and not for_update:
        member = await read_or_404(session, Member, actor.tenant_id, member_id, code="member_not_found")
    else:
        member = await get_or_404(session, Member, actor.tenant_id, member_id, code="member_not_found",
                                  lock=for_update)
    if actor.kind == "patient" and not await policies.patient_may_access(session, actor, member):
        raise NotFound("member not found", code="member_not_found")
    return member


class FieldFlags(NamedTuple):
    """What presenting a member needs of a custom field definition."""

    key: str
    active: bool
    health: bool


# The member 360 in one round trip: the row, its tag names and the tenant's field flags (the hottest read).
_MEMBER_VIEW = """
SELECT m.*,
       ARRAY(SELECT t.name FROM member_tags mt JOIN tags t ON t.tenant_id = mt.tenant_id AND t.id = mt.tag_id
             WHERE mt.tenant_id = m.tenant_id AND mt.member_id = m.id ORDER BY t.name) AS view_tags,
       (SELECT json_agg(json_build_array(d.key, d.active, d.health) ORDER BY d.position, d.key)
          FROM member_field_definitions d WHERE d.tenant_id = m.tenant_id) AS view_fields
  FROM members m WHERE m.tenant_id = $1 AND m.id = $2
"""
# The same, recording in the same statement that the member's health data was read (when it exists).
_MEMBER_VIEW_HEALTH_READ = ("WITH " + audit.read_entry_cte(
    3, when="EXISTS (SELECT 1 FROM members WHERE tenant_id = $1 AND id = $2)") + _MEMBER_VIEW)
_MEMBER_COLUMNS = frozenset(Member.model_fields)
HEALTH_READ = "member.health.read"


async def load_member_view(session: AsyncSession, actor: Actor, member_id: UUID, *,
                           record_health_read: bool = False) -> tuple[Member, list[str], list[FieldFlags]]:
    """`load_member` with the member's tags and the tenant's custom field flags, in one statement; with
    `record_health_read`, that statement also records the read of the member's health data (audit)."""
    if record_health_read:
        rows = await fetch(session, _MEMBER_VIEW_HEALTH_READ, actor.tenant_id, member_id,
                           *audit.read_entry_args(session, HEALTH_READ, "member", member_id))
    else:
        rows = await fetch(session, _MEMBER_VIEW, actor.tenant_id, member_id)
    if not rows:
        raise NotFound("member not found", code="member_not_found")
    row = dict(rows[0])
    fields = [FieldFlags(*f) for f in row["view_fields"] or []]
    tags = list(row["view_tags"])
    # A snapshot, as `read_or_404` builds them: read and presented, never added to the session.
    member = Member.model_construct(**{k: v for k, v in row.items() if k in _MEMBER_COLUMNS})
    if actor.kind == "patient" and not await policies.patient_may_access(session, actor, member):
        raise NotFound("member not found", code="member_not_found")
    return member, tags, fields


def require_active(member: Member) -> None:
    if member.status != MemberStatus.ACTIVE:
        raise Conflict(f"this member is {member.status} and cannot be changed", code="member_inactive")


async def tags_by_member(session: AsyncSession, tenant_id: UUID, member_ids: list[UUID]) -> dict[UUID, list[str]]:
    """Each member's tag names, sorted (an empty list for a member without tags)."""
    if not member_ids:
        return {}
    rows = (await session.execute(
        select(MemberTag.member_id, Tag.name)
        .join(Tag, and_(Tag.tenant_id == MemberTag.tenant_id, Tag.id == MemberTag.tag_id))
        .where(MemberTag.tenant_id == tenant_id, MemberTag.member_id.in_(member_ids))
        .order_by(Tag.name)
    )).all()
    out: dict[UUID, list[str]] = {m: [] for m in member_ids}
    for member_id, name in rows:
        out[member_id].append(name)
    return out


async def definitions_of(session: AsyncSession, tenant_id: UUID) -> list[CustomFieldDefinition]:
    """The tenant's custom field definitions (deactivated ones too), in form order."""
    stmt = select(CustomFieldDefinition).where(CustomFieldDefinition.tenant_id == tenant_id)
    return list((await session.exec(stmt.order_by(CustomFieldDefinition.position, CustomFieldDefinition.key))).all())


def health_keys(definitions: list[CustomFieldDefinition] | list[FieldFlags]) -> set[str]:
    return {d.key for d in definitions if d.health}


def phone_shown(member: Member, contact: bool) -> str | None:
    if member.phone_encrypted is None:
        return None
    return crypto.decrypt(member.phone_encrypted) if contact else member.phone_masked
