"""Family groups: a head and the members they may act for (cards shareable with the family use them)."""

from __future__ import annotations

from uuid import UUID

from sqlmodel import delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.errors import Conflict, NotFound
from app.core.rows import get_or_404
from app.domain.members.loading import load_member, require_active
from app.domain.members.models import FamilyGroup, Member
from app.domain.members.schemas import FamilyCreate, FamilyMemberAdd, FamilyOut


async def _family_out(session: AsyncSession, family: FamilyGroup) -> FamilyOut:
    rows = (await session.exec(select(Member).where(Member.tenant_id == family.tenant_id,
                                                    Member.family_group_id == family.id).order_by(Member.id))).all()
    return FamilyOut(id=family.id, name=family.name, head_member_id=family.head_member_id,
                     members=[{"member_id": m.id, "name": m.name, "role": m.family_role,
                               "relation": m.family_relation} for m in rows])


async def create_family(session: AsyncSession, actor: Actor, data: FamilyCreate) -> FamilyOut:
    actor.require("members:write")
    head = await load_member(session, actor, data.head_member_id, for_update=True)
    require_active(head)
    if head.family_group_id is not None:
        raise Conflict("this member already belongs to a family", code="already_in_family",
                       family_id=str(head.family_group_id))
    return await _family_out(session, await found_family(session, head, data.name))


async def found_family(session: AsyncSession, head: Member, name: str) -> FamilyGroup:
    """A new family headed by `head` (who belongs to none), audited."""
    family = FamilyGroup(tenant_id=head.tenant_id, name=name, head_member_id=head.id)
    session.add(family)
    await session.flush()
    head.family_group_id, head.family_role, head.family_relation = family.id, "head", "self"
    session.add(head)
    await session.flush()
    audit.record(session, "family.create", "family", family.id, head=str(head.id), name=name)
    return family


async def _family(session: AsyncSession, actor: Actor, family_id: UUID) -> FamilyGroup:
    return await get_or_404(session, FamilyGroup, actor.tenant_id, family_id, code="family_not_found")


async def get_family(session: AsyncSession, actor: Actor, family_id: UUID) -> FamilyOut:
    if actor.kind == "patient":
        own = await session.get(Member, (actor.tenant_id, actor.id))
        if own is None or own.family_group_id != family_id:
            raise NotFound("family not found", code="family_not_found")
    else:
        actor.require("members:read")
    return await _family_out(session, await _family(session, actor, family_id))


async def add_family_member(session: AsyncSession, actor: Actor, family_id: UUID, data: FamilyMemberAdd) -> FamilyOut:
    actor.require("members:write")
    family = await _family(session, actor, family_id)
    member = await load_member(session, actor, data.member_id, for_update=True)
    require_active(member)
    if member.family_group_id is not None:
        raise Conflict("this member already belongs to a family", code="already_in_family",
                       family_id=str(member.family_group_id))
    member.family_group_id, member.family_role, member.family_relation = family.id, "member", data.relation
    session.add(member)
    await session.flush()
    audit.record(session, "family.add_member", "family", family.id, member=str(member.id), relation=data.relation)
    return await _family_out(session, family)


async def remove_family_member(session: AsyncSession, actor: Actor, family_id: UUID, member_id: UUID) -> FamilyOut:
    actor.require("members:write")
    family = await _family(session, actor, family_id)
    member = await load_member(session, actor, member_id, for_update=True)
    if member.family_group_id != family.id:
        raise NotFound("this member is not in the family", code="not_in_family")
    if member.id == family.head_member_id:
        raise Conflict("the head cannot leave; make another member head first", code="family_head")
    member.family_group_id = member.family_role = member.family_relation = None
    # The consent to share health data was given to this family: it does not follow the member elsewhere.
    sharing_ended, member.share_health_with_family = member.share_health_with_family, False
    session.add(member)
    await session.flush()
    audit.record(session, "family.remove_member", "family", family.id, member=str(member.id),
                 **({"health_sharing_ended": True} if sharing_ended else {}))
    return await _family_out(session, family)


async def family_member_ids(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> set[UUID]:
    """The member and everyone in their family group (cards shareable with the family use this)."""
    member = await session.get(Member, (tenant_id, member_id))
    if member is None or member.family_group_id is None:
        return {member_id}
    rows = (await session.exec(select(Member.id).where(Member.tenant_id == tenant_id,
                                                       Member.family_group_id == member.family_group_id))).all()
    return set(rows) | {member_id}


async def dissolve_headed_family(session: AsyncSession, tenant_id: UUID, head_id: UUID) -> None:
    """Remove the family a departing member headed alone (callers refuse heads with others in it)."""
    await session.execute(delete(FamilyGroup).where(FamilyGroup.tenant_id == tenant_id,
                                                    FamilyGroup.head_member_id == head_id))
