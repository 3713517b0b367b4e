"""Growth: channels, campaign codes and their QR codes, spend; leads, intake and assignment rules.

This module is the context's public face: the use cases live in `channels`, `leads`, `assignment` and
`intake` and are re-exported here for the routers, GraphQL and other contexts; the functions other contexts
read through without a permission check are under the read API banner at the end.
"""

from __future__ import annotations

from uuid import UUID

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.growth.assignment import create_rule, get_rule, list_rules, on_shift_now, update_rule
from app.domain.growth.channels import (
    add_spend,
    campaign_qr_png,
    create_campaign_code,
    create_channel,
    get_campaign_code,
    get_channel,
    list_campaign_codes,
    list_channels,
    list_spend,
    update_channel,
)
from app.domain.growth.intake import authenticate as authenticate_intake
from app.domain.growth.intake import rotate_secret as rotate_intake_secret
from app.domain.growth.leads import (
    create_lead,
    escalate_due,
    get_lead,
    intake_lead,
    list_leads,
    present,
    update_lead,
)
from app.domain.growth.models import CLOSED, Lead

__all__ = [
    "add_spend", "campaign_qr_png", "create_campaign_code", "create_channel", "get_campaign_code", "get_channel",
    "list_campaign_codes", "list_channels", "list_spend", "update_channel",
    "create_rule", "get_rule", "list_rules", "on_shift_now", "update_rule",
    "authenticate_intake", "rotate_intake_secret",
    "create_lead", "escalate_due", "get_lead", "intake_lead", "list_leads", "present", "update_lead",
    "open_lead_ids_of_member",
]


# ---------------------------------------------------------------- read API (for other contexts)
# Other contexts read this one only through the functions below (never its models, never raw SQL on its tables).


async def open_lead_ids_of_member(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> list[UUID]:
    """The member's open leads (matched by phone at intake), oldest first. No permission check."""
    return list((await session.exec(select(Lead.id).where(
        Lead.tenant_id == tenant_id, Lead.member_id == member_id, Lead.status.not_in(CLOSED))
        .order_by(Lead.created_at))).all())
