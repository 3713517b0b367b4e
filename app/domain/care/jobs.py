"""Care's scheduled job: the runs of schedule-triggered rules, and overdue-task notices."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import text

from app.core import clock
from app.core.context import RequestContext, reset_context, set_context
from app.core.db import SessionFactory
from app.core.events import emit, scheduled
from app.domain.care import engine
from app.domain.care.events import TASK_OVERDUE

log = logging.getLogger("careloop.care")

_TENANTS_WITH_SCHEDULE_RULES = text(
    "SELECT DISTINCT tenant_id FROM automation_rules WHERE enabled AND trigger->>'type' = 'schedule'")
# Claims the overdue tasks it returns: a task is announced once per due time (a new due time re-arms it).
_CLAIM_OVERDUE = text(
    "UPDATE tasks SET overdue_notified_at = :now WHERE (tenant_id, id) IN ("
    "  SELECT tenant_id, id FROM tasks WHERE status = 'open' AND due_at < :now "
    "  AND overdue_notified_at IS NULL ORDER BY due_at LIMIT :limit FOR UPDATE SKIP LOCKED) "
    "RETURNING tenant_id, id, assignee_id, store_id, member_id, kind, due_at")


@scheduled(minute={11}, run_at_startup=True)
async def run_care_schedules(sessions: SessionFactory, *, now: datetime | None = None) -> dict[str, int]:
    """Hourly (and at start-up): schedule-triggered rules, and overdue task notices. Hourly, so each
    store's local day is seen soon after it starts, whatever its time zone; the cause keys make every
    pass after the first find nothing new."""
    token = set_context(RequestContext(actor_type="system", actor_id="care-schedules"))
    now = now or clock.utcnow()
    done = {"runs": 0, "overdue": 0}
    try:
        async with sessions(system=True) as session:
            tenants = (await session.execute(_TENANTS_WITH_SCHEDULE_RULES)).scalars().all()
        for tenant_id in tenants:
            try:
                async with sessions(tenant_id) as session:
                    done["runs"] += await engine.schedule_tenant_runs(session, tenant_id, now)
            except Exception:  # noqa: BLE001 - one tenant's failure must not hold up the others
                log.exception("care schedules failed", extra={"tenant_id": str(tenant_id)})
        done["overdue"] = await announce_overdue_tasks(sessions, now)
        return done
    finally:
        reset_context(token)


async def announce_overdue_tasks(sessions: SessionFactory, now: datetime) -> int:
    """Once per task and due time: `task.overdue`, for the assignee and managers to be told."""
    async with sessions(system=True) as session:
        rows = (await session.execute(_CLAIM_OVERDUE, {"now": now, "limit": engine.BATCH})).all()
        for tenant_id, task_id, assignee_id, store_id, member_id, kind, due_at in rows:
            await emit(session, TASK_OVERDUE, {
                "task_id": str(task_id), "assignee_id": str(assignee_id) if assignee_id else None,
                "store_id": str(store_id) if store_id else None, "member_id": str(member_id) if member_id else None,
                "kind": kind, "due_at": due_at.isoformat()}, tenant_id=tenant_id)
    return len(rows)
