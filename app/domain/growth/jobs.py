"""Growth's scheduled work: leads not contacted by their first-contact deadline are escalated."""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.db import SessionFactory
from app.core.events import scheduled
from app.core.housekeeping import for_each_due_tenant
from app.domain.growth import leads

log = logging.getLogger("careloop.growth")

# Tenants with a lead past its deadline (the partial index on contact_due_at finds them).
_DUE_TENANTS = text("SELECT DISTINCT tenant_id FROM growth_leads WHERE status = 'new' AND escalated_at IS NULL "
                    "AND contact_due_at IS NOT NULL AND contact_due_at <= :now LIMIT 500")


@scheduled(second={40})
async def run_lead_escalation(sessions: SessionFactory) -> dict[str, int]:
    """Once a minute: a follow-up task for the managers of each lead still `new` past its deadline, once per
    lead. One transaction per tenant; leads another run holds are skipped (SKIP LOCKED), and `escalated_at`
    is set with the task, so a second run escalates nothing twice."""
    async def step(session: AsyncSession, tenant_id: UUID, now: datetime) -> int:
        return await leads.escalate_due(session, tenant_id, now=now)

    return await for_each_due_tenant(sessions, _DUE_TENANTS, step, actor_id="lead-escalation", log=log,
                                     failure="escalating leads failed")
