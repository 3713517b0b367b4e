"""A member's staff contact (`owner_staff_id`: the consultant or therapist who owns the relationship), handed
over as a whole when that staff member leaves (iam's staff leave)."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.domain.members.models import Member


async def hand_over_relationships(session: AsyncSession, actor: Actor, from_staff_id: UUID,
                                  to_staff_id: UUID) -> list[UUID]:
    """Every member whose staff contact is `from_staff_id` gets `to_staff_id` instead (whatever their status:
    a returning member finds the new contact); one audit entry names them all. The caller has checked both
    staff members (iam's part). Returns the members moved, by id."""
    actor.require("members:write")
    moved = (await session.execute(
        update(Member).where(Member.tenant_id == actor.tenant_id, Member.owner_staff_id == from_staff_id)
        .values(owner_staff_id=to_staff_id, updated_at=utcnow()).returning(Member.id)
        .execution_options(synchronize_session=False))).scalars().all()
    ids = sorted(moved, key=str)
    if ids:
        audit.record(session, "member.relationships_hand_over", "staff", from_staff_id,
                     to_staff_id=str(to_staff_id), members=[str(i) for i in ids])
    return ids
