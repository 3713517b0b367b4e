"""Who may see which part of a member.

- Contact data (phone, ID number, address) needs `members.contact:read`; others see masked values.
- Health data needs `members.health:read`; roles without `members.health:all` (therapists, doctors)
  see it only for members in their care (an appointment, now or past, or owning the relationship).
- Health-flagged custom fields follow the health rule.
- Patients see themselves, and a family head sees the family's members — but of another member's health
  data only a minor's (the head acting as guardian: under 18 on the member's store-local today) or an
  adult's who consented (`share_health_with_family`, set by that adult or by staff with
  members.health:write). A member whose birthday is unknown counts as an adult.
"""

from __future__ import annotations

from datetime import date

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Forbidden
from app.domain.members.hooks import RELATIONSHIP_CHECKS
from app.domain.members.models import Member
from app.domain.tenancy import service as tenancy

ADULT_AGE = 18


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


def is_minor(birthday: date | None, today: date) -> bool:
    """Under 18 on `today` (born 29 February: 18 on 1 March of a common year)."""
    if birthday is None:
        return False
    age = today.year - birthday.year - ((today.month, today.day) < (birthday.month, birthday.day))
    return age < ADULT_AGE


async def _member_today(session: AsyncSession, member: Member) -> date:
    """The date now where the member is looked after: their home store's time zone (the default without one)."""
    store = await tenancy.store_row(session, member.tenant_id, member.home_store_id) if member.home_store_id else None
    return utcnow().astimezone(tenancy.store_zone(store)).date()


async def patient_may_see_health(session: AsyncSession, actor: Actor, member: Member) -> bool:
    """Their own; in their family (as its head), a minor's, or an adult's who consented."""
    if actor.id == member.id:
        return True
    if not await patient_may_access(session, actor, member):
        return False
    return member.share_health_with_family or is_minor(member.birthday, await _member_today(session, member))


def sees_all_health(actor: Actor) -> bool:
    """Staff (or an integration) allowed every member's health data, with no care relationship to check."""
    return actor.can("members.health:read") and actor.can("members.health:all")


async def can_see_health(session: AsyncSession, actor: Actor, member: Member) -> bool:
    if actor.kind == "patient":
        return await patient_may_see_health(session, actor, member)
    if not actor.can("members.health:read"):
        return False
    return sees_all_health(actor) or await in_care_of(session, actor, member)


async def require_health_write(session: AsyncSession, actor: Actor, member: Member | None) -> None:
    actor.require("members.health:write")
    if member is None or actor.can("members.health:all"):
        return
    if not await in_care_of(session, actor, member):
        raise Forbidden("health data of this member is only for staff caring for them", code="not_in_care")


async def require_health_sharing_rights(session: AsyncSession, actor: Actor, member: Member) -> None:
    """Consenting to share health data with the family: the member themself, or staff who may write their
    health data (members.health:write, and the care relationship for roles bound to their patients). The
    head of the family may not consent for another adult."""
    if actor.kind == "patient":
        if actor.id != member.id:
            raise Forbidden("only the member themself can share their health data with the family",
                            code="permission_denied")
        return
    await require_health_write(session, actor, member)
