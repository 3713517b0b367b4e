"""The topics growth emits (no phone or name in a payload: subscribers read the lead through the API,
where the phone is masked for roles without `members.contact:read`)."""

from __future__ import annotations

from app.core.events import topic

LEAD_CREATED = topic(
    "lead.created", "A lead was entered by staff or arrived through the signed intake endpoint",
    "lead_id", "source", "channel_id", "campaign_code_id", "store_id", "member_id", "interests")
LEAD_ASSIGNED = topic(
    "lead.assigned", "A lead was given to a consultant (by an assignment rule, or by hand)",
    "lead_id", "assignee_id", "previous_assignee_id", "rule_id", "store_id", "contact_due_at")
LEAD_STATUS_CHANGED = topic(
    "lead.status_changed", "A lead moved along the funnel (new → contacted → … → won), or was lost",
    "lead_id", "from_status", "to_status", "assignee_id", "changed_by_id", "store_id", "channel_id")
