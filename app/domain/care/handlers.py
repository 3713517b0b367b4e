"""Care's reactions: a catalogued event schedules the runs of the rules it triggers, and a run's due
event executes the run."""

from __future__ import annotations

import logging
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import clock, retry
from app.core.db import SessionFactory
from app.core.events import OutboxEvent, on, on_outside_transaction
from app.domain.booking import service as booking
from app.domain.care import engine
from app.domain.care.catalogue import TOPICS
from app.domain.care.events import RULE_DUE, TASK_ASSIGNED, TASK_OVERDUE
from app.domain.care.models import Task, TaskStatus
from app.domain.iam import service as iam
from app.domain.members import service as members
from app.domain.messaging import alerts
from app.domain.tenancy import service as tenancy

log = logging.getLogger("careloop.care")


@on(*TOPICS)
async def evaluate_event(session: AsyncSession, event: OutboxEvent) -> None:
    """Every enabled rule on this topic whose filter and conditions match gets its run (once per cause)."""
    rules = await engine.enabled_rules(session, event.tenant_id, topic=event.topic)
    if not rules or not event.payload.get("member_id"):
        return
    spec = TOPICS[event.topic]
    member_id = UUID(event.payload["member_id"])
    member = (await members.members_by_id(session, event.tenant_id, {member_id}, active_only=True)).get(member_id)
    if member is None:
        return
    payload = await engine.enrich(session, event.tenant_id, event.payload)
    if spec.appointment_must_be_open and not await booking.appointment_booked(
            session, event.tenant_id, UUID(payload["appointment_id"]),
            schedule_version=payload.get("schedule_version")):
        return  # cancelled or moved since the reminder was scheduled: the moved one has its own
    store_id = UUID(payload["store_id"]) if payload.get("store_id") else member.home_store_id
    zone = await engine.store_zone(session, event.tenant_id, store_id)
    # A delayed event (reminder_due) stands for its due time; any other for the moment it happened.
    base = event.available_at if event.topic.endswith("_due") else event.created_at
    now = clock.utcnow()
    context = {"payload": payload}
    if spec.appointment_must_be_open:
        context["appointment"] = {"id": payload["appointment_id"], "schedule_version": payload.get("schedule_version")}
    for rule, parts in rules:
        if not engine.filter_matches(parts.trigger, payload):
            continue
        if not await engine.conditions_met(session, member, parts.conditions, store_id):
            continue
        await engine.schedule_run(session, rule, cause_key=spec.cause(payload, event), member_id=member.id,
                                  store_id=store_id, source=event.topic, event_id=event.id,
                                  run_at=engine.run_time(base, parts, zone, now), context=context)


@on_outside_transaction(RULE_DUE)
async def run_due_rule(sessions: SessionFactory, event: OutboxEvent) -> None:
    """The run's time has come. Its actions commit one by one, each with its progress mark on the run
    (that is what lets a retry resume without doing anything twice), so this handler opens its own short
    transactions. A crash is recorded on the run and re-raised: the outbox retries the event with backoff
    (and dead-letters it at the last attempt), and the retry resumes the run."""
    run_id = UUID(event.payload["run_id"])
    try:
        await engine.execute_run(sessions, event.tenant_id, run_id)
    except Exception as exc:
        final = retry.policy("job").exhausted(event.attempts + 1)
        try:
            await engine.record_crash(sessions, event.tenant_id, run_id, exc, final=final)
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            log.exception("could not record a rule run failure", extra={"run_id": str(run_id)})
        raise


# ---------------------------------------------------------------- alerts to staff (WeCom)


async def _task_alert_variables(session: AsyncSession, task: Task) -> dict[str, str]:
    store = await tenancy.store_row(session, task.tenant_id, task.store_id) if task.store_id else None
    member = (await members.member_names(session, task.tenant_id, {task.member_id})).get(task.member_id) \
        if task.member_id else None
    assignee = await iam.staff_row(session, task.tenant_id, task.assignee_id) if task.assignee_id else None
    return {"title": task.title, "member_name": member or "—", "store_name": store.name if store else "—",
            "assignee_name": assignee.display_name if assignee else "未分配",
            "due_at": alerts.local_time(task.due_at, tenancy.store_zone(store))}


@on(TASK_ASSIGNED)
async def alert_task_assignee(session: AsyncSession, event: OutboxEvent) -> None:
    """Tell the new assignee, unless they gave the task to themselves or it is no longer theirs to do."""
    payload = event.payload
    if payload.get("assigned_by_id") == payload["assignee_id"]:
        return
    task = await session.get(Task, (event.tenant_id, UUID(payload["task_id"])))
    if task is None or task.status != TaskStatus.OPEN or str(task.assignee_id) != payload["assignee_id"]:
        return  # done, cancelled or handed on again before the alert: the later assignment has its own
    await alerts.send_staff_alert(session, event.tenant_id, alerts.TASK_ASSIGNED, staff_ids=[task.assignee_id],
                                  variables=await _task_alert_variables(session, task), subject=str(event.id))


@on(TASK_OVERDUE)
async def alert_task_overdue(session: AsyncSession, event: OutboxEvent) -> None:
    """Tell the assignee and the managers of the task's store, once per task and due time (the job announces
    each due time once, and the message's cause is unique on the task and due time as well)."""
    task = await session.get(Task, (event.tenant_id, UUID(event.payload["task_id"])))
    if task is None or task.status != TaskStatus.OPEN:
        return  # finished since the job saw it
    recipients = [task.assignee_id] if task.assignee_id else []
    if task.store_id is not None:
        recipients += await iam.active_staff_with_role(session, event.tenant_id, "store_manager",
                                                       store_id=task.store_id)
    # Keyed on the fact (this task past this due time), not on the event: one alert each, however often
    # the fact is announced.
    await alerts.send_staff_alert(session, event.tenant_id, alerts.TASK_OVERDUE, staff_ids=recipients,
                                  variables=await _task_alert_variables(session, task),
                                  subject=f"{task.id}@{event.payload['due_at']}")
