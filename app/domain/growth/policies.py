"""Who may do what in growth.

- `growth:read` / `growth:write`: consultants, store managers and owners see and work leads; `growth:admin`
  (owners) defines channels, campaign codes and assignment rules and rotates the intake secret.
- A lead of a store is reached by staff acting in that store (`Actor.can_act_in_store`) and by the
  consultant it is assigned to; a lead without a store by anyone holding `growth:read`. Others get 404, as
  for any row of another store.
- The phone is shown in full only to roles holding `members.contact:read` (as members' phones are).
"""

from __future__ import annotations

from app.core.actor import Actor
from app.core.errors import NotFound
from app.domain.growth.models import Lead


def can_see_lead(actor: Actor, lead: Lead) -> bool:
    if lead.store_id is None or actor.can_act_in_store(lead.store_id):
        return True
    return actor.kind == "staff" and lead.assignee_id == actor.id


def require_lead(actor: Actor, lead: Lead) -> None:
    if not can_see_lead(actor, lead):
        raise NotFound("lead not found", code="lead_not_found")


def can_reassign(actor: Actor) -> bool:
    """Handing a lead to someone else is a manager's call (or the owner's, who holds growth:admin)."""
    return actor.can("growth:admin") or actor.can("staff:write")


def sees_contact(actor: Actor) -> bool:
    return actor.can("members.contact:read")


def mask_phone(phone: str) -> str:
    """138****8000: enough to recognise a number, not to call it."""
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "****"
