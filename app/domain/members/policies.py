"""Who may see which part of a member.

- Contact data (phone, ID number, address) needs `members.contact:read`; others see masked values.
- Health data needs `members.health:read`; roles without `members.health:all` (therapists, doctors)
  see it only for members in their care (an appointment, now or past, or owning the relationship).
- Health-flagged custom fields follow the health rule.
- Patients see themselves, and a family head sees the family's members.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.errors import Forbidden
from app.domain.members.hooks import RELATIONSHIP_CHECKS
from app.domain.members.models import Member


async def patient_may_access(session: AsyncSession, actor: Actor, member: Member) -> bool:
    if actor.id == member.id:
        return True
    if member.family_group_id is None:
        return False
    own = await session.get(Member, (actor.tenant_id, actor.id))
    return own is not None and own.family_role == "head" and own.family_group_id == member.family_group_id


async def in_care_of(session: AsyncSession, actor: Actor, member: Member) -> bool:
    if member.owner_staff_id == actor.id:
        return True
    for check in RELATIONSHIP_CHECKS:
        if await check(session, actor, member.id):
            return True
    return False


def can_see_contact(actor: Actor) -> bool:
    return actor.kind == "patient" or actor.can("members.contact:read")


async def can_see_health(session: AsyncSession, actor: Actor, member: Member) -> bool:
    if actor.kind == "patient":
        return True  # patients reach only themselves and their family (checked when loading)
    if not actor.can("members.health:read"):
        return False
    return actor.can("members.health:all") or await in_care_of(session, actor, member)


async def require_health_write(session: AsyncSession, actor: Actor, member: Member | None) -> None:
    actor.require("members.health:write")
    if member is None or actor.can("members.health:all"):
        return
    if not await in_care_of(session, actor, member):
        raise Forbidden("health data of this member is only for staff caring for them", code="not_in_care")
