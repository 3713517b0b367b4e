"""Who may read and write clinical records.

- `clinical:read` / `clinical:write` (by role or integration scope), and
- the care relationship, the rule members apply to health data: staff without `members.health:all`
  (therapists, doctors) reach only members in their care (an appointment, now or past, or owning the
  relationship). A refusal for that reason is 403 `not_in_care` and is audited: the audit entry is written
  in a transaction of its own (`record_refusal`, given a session factory by the router), because the
  request's transaction rolls back with the refusal.
- Editing form templates changes what every clinician fills in, so it takes `clinical:write` together with
  `members.health:all` (owner, store manager), not a therapist's bounded access.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.db import SessionFactory
from app.core.errors import Forbidden
from app.domain.members import service as members

T = TypeVar("T")


class NotInCare(Forbidden):
    """403 `not_in_care`; carries what the audit entry of the refused attempt says (`record_refusal`): the
    kind of thing refused (`subject`, e.g. clinical_record, treatment_plan), the attempt and the row."""

    def __init__(self, actor: Actor, member_id: UUID, action: str, record_id: UUID | None, *,
                 subject: str = "clinical_record") -> None:
        super().__init__("clinical records of this member are only for staff caring for them", code="not_in_care")
        self.tenant_id, self.member_id, self.action, self.record_id = actor.tenant_id, member_id, action, record_id
        self.subject = subject


async def require_clinical_access(session: AsyncSession, actor: Actor, member_id: UUID, permission: str, *,
                                  action: str, record_id: UUID | None = None,
                                  subject: str = "clinical_record") -> None:
    """`permission` and the care relationship for this member (404 for a member the actor cannot reach)."""
    actor.require(permission)
    await members.get_member_row(session, actor, member_id)
    if actor.kind == "system" or actor.can("members.health:all"):
        return
    if not await members.in_care(session, actor, member_id):
        raise NotInCare(actor, member_id, action, record_id, subject=subject)


async def record_refusal(sessions: SessionFactory, refusal: NotInCare) -> None:
    """Audit a refused attempt in a transaction of its own (`sessions` from the delivery layer): the
    request's transaction rolls back with the 403, and the attempt must stay on record."""
    async with sessions(refusal.tenant_id) as own:
        await audit.record_read(own, f"{refusal.subject}.access_refused",
                                refusal.subject if refusal.record_id else "member",
                                refusal.record_id or refusal.member_id, member_id=str(refusal.member_id),
                                attempted=refusal.action, reason="not_in_care")


async def audited(sessions: SessionFactory, call: Awaitable[T]) -> T:
    """Run a service call for the delivery layer (REST, GraphQL): a `not_in_care` refusal is audited in a
    transaction of its own (`sessions`) before it goes on to become the 403."""
    try:
        return await call
    except NotInCare as refusal:
        await record_refusal(sessions, refusal)
        raise


def require_template_admin(actor: Actor) -> None:
    actor.require("clinical:write")
    if not actor.can("members.health:all"):
        raise Forbidden("editing form templates needs clinical:write and members.health:all",
                        code="permission_denied")
