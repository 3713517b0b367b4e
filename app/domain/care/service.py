"""Automation rules (editable per tenant) and follow-up tasks: the use cases the REST and GraphQL layers call."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import or_, update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, clock
from app.core.actor import Actor
from app.core.errors import AppError, Conflict, Forbidden, NotFound, Unprocessable
from app.core.events import emit
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.domain.care.catalogue import SCHEDULE_KINDS, TOPICS
from app.domain.care.events import TASK_ASSIGNED
from app.domain.care.models import AutomationRule, RuleRun, Task, TaskStatus
from app.domain.care.schemas import (
    ACTION_MODELS,
    CatalogueOut,
    CreateTask,
    IssueCoupon,
    RuleCreate,
    RuleParts,
    RuleUpdate,
    SendMessage,
    TaskCreate,
    TaskOut,
    TaskUpdate,
    TopicOut,
    parse_rule_parts,
)
from app.domain.iam import service as iam
from app.domain.loyalty import service as loyalty
from app.domain.members import service as members
from app.domain.members.schemas import TimelineItem

RULES_PERMISSION = "automation:write"
MAX_RESULT_NOTE = 4000  # as TaskUpdate.result_note allows

# ---------------------------------------------------------------- rules


def catalogue() -> CatalogueOut:
    return CatalogueOut(
        topics=[TopicOut(topic=s.topic, description=s.description, filter_fields=sorted(s.fields))
                for s in TOPICS.values()],
        schedule_kinds=SCHEDULE_KINDS, actions=list(ACTION_MODELS))


async def _check_enable(session: AsyncSession, tenant_id: UUID, parts: RuleParts) -> None:
    """An enabled rule must be able to act: its coupon templates and roles exist."""
    template_ids = {a.coupon_template_id for a in parts.actions
                    if isinstance(a, IssueCoupon) and a.coupon_template_id is not None}
    templates = await loyalty.coupon_templates_by_id(session, tenant_id, template_ids)
    wants_roles = any((isinstance(a, CreateTask) and a.assignee.startswith("role:"))
                      or (isinstance(a, SendMessage) and (a.recipient or "").startswith("role:"))
                      for a in parts.actions)
    roles = await iam.role_names(session, tenant_id) if wants_roles else set()
    for index, action in enumerate(parts.actions):
        if isinstance(action, IssueCoupon):
            field = f"actions.{index}.coupon_template_id"
            if action.coupon_template_id is None:
                raise Unprocessable(f"{field}: choose a coupon template before enabling the rule",
                                    code="validation_error", field=field)
            if action.coupon_template_id not in templates:
                raise Unprocessable(f"{field}: no such coupon template", code="validation_error", field=field)
        if isinstance(action, CreateTask) and action.assignee.startswith("role:"):
            name = action.assignee.removeprefix("role:")
            if name not in roles:
                field = f"actions.{index}.assignee"
                raise Unprocessable(f"{field}: no role named {name!r}", code="validation_error", field=field)
        if isinstance(action, SendMessage) and (action.recipient or "").startswith("role:"):
            name = (action.recipient or "").removeprefix("role:")
            if name not in roles:
                field = f"actions.{index}.recipient"
                raise Unprocessable(f"{field}: no role named {name!r}", code="validation_error", field=field)


def _dump(parts: RuleParts) -> dict[str, Any]:
    return {"trigger": parts.trigger.model_dump(mode="json"),
            "conditions": parts.conditions.model_dump(mode="json", exclude_defaults=True),
            "delay": parts.delay.model_dump(mode="json", exclude_defaults=True),
            "quiet_hours": parts.quiet_hours.model_dump(mode="json") if parts.quiet_hours else None,
            "actions": [a.model_dump(mode="json") for a in parts.actions]}


async def create_rule(session: AsyncSession, actor: Actor, data: RuleCreate) -> AutomationRule:
    actor.require(RULES_PERMISSION)
    parts = parse_rule_parts(data.trigger, data.conditions, data.delay, data.quiet_hours, data.actions)
    if data.enabled:
        await _check_enable(session, actor.tenant_id, parts)
    taken = (await session.exec(select(AutomationRule.id).where(AutomationRule.tenant_id == actor.tenant_id,
                                                                AutomationRule.key == data.key))).first()
    if taken is not None:
        raise Conflict(f"a rule with key {data.key!r} exists", code="rule_key_taken", field="key")
    rule = AutomationRule(tenant_id=actor.tenant_id, key=data.key, name=data.name, description=data.description,
                          enabled=data.enabled, updated_at=clock.utcnow(), **_dump(parts))
    session.add(rule)
    await session.flush()
    audit.record(session, "automation_rule.create", "automation_rule", rule.id, key=rule.key, enabled=rule.enabled)
    return rule


async def get_rule(session: AsyncSession, actor: Actor, rule_id: UUID, *, for_update: bool = False) -> AutomationRule:
    actor.require(RULES_PERMISSION)
    return await get_or_404(session, AutomationRule, actor.tenant_id, rule_id, code="rule_not_found",
                            detail="automation rule not found", lock=for_update)


async def update_rule(session: AsyncSession, actor: Actor, rule_id: UUID, data: RuleUpdate) -> AutomationRule:
    rule = await get_rule(session, actor, rule_id, for_update=True)
    given = data.model_dump(exclude_unset=True)
    for name in ("trigger", "actions"):
        if name in given and given[name] is None:
            raise Unprocessable(f"{name}: cannot be null", code="validation_error", field=name)
    merged = {k: given.get(k, getattr(rule, k)) for k in ("trigger", "conditions", "delay", "quiet_hours", "actions")}
    parts = parse_rule_parts(merged["trigger"], merged["conditions"], merged["delay"], merged["quiet_hours"],
                             merged["actions"])
    enabled = given.get("enabled", rule.enabled)
    if enabled is None:
        raise Unprocessable("enabled: cannot be null", code="validation_error", field="enabled")
    if enabled:
        await _check_enable(session, actor.tenant_id, parts)
    for key, value in _dump(parts).items():
        setattr(rule, key, value)
    if given.get("name") is not None:
        rule.name = given["name"]
    if "description" in given:
        rule.description = given["description"]
    rule.enabled = enabled
    rule.version += 1
    rule.updated_at = clock.utcnow()
    session.add(rule)
    await session.flush()
    audit.record(session, "automation_rule.update", "automation_rule", rule.id, fields=sorted(given),
                 enabled=rule.enabled, version=rule.version)
    return rule


async def list_rules(session: AsyncSession, actor: Actor, params: PageParams, *, enabled: bool | None = None):
    actor.require(RULES_PERMISSION)
    stmt = select(AutomationRule).where(AutomationRule.tenant_id == actor.tenant_id)
    if enabled is not None:
        stmt = stmt.where(AutomationRule.enabled == enabled)
    return await paginate(session, stmt, AutomationRule.id, params)


async def list_runs(session: AsyncSession, actor: Actor, rule_id: UUID, params: PageParams, *,
                    status: str | None = None, member_id: UUID | None = None):
    rule = await get_rule(session, actor, rule_id)
    stmt = select(RuleRun).where(RuleRun.tenant_id == actor.tenant_id, RuleRun.rule_id == rule.id)
    if status is not None:
        stmt = stmt.where(RuleRun.status == status)
    if member_id is not None:
        stmt = stmt.where(RuleRun.member_id == member_id)
    return await paginate(session, stmt, RuleRun.id, params, descending=True)


# ---------------------------------------------------------------- tasks


def is_manager(actor: Actor) -> bool:
    """Managers see everyone's tasks and the overdue list, and reassign: whoever manages staff
    (owners and store managers by preset), and the system."""
    return actor.kind == "system" or actor.can("staff:write")


async def announce_assignment(session: AsyncSession, task: Task, *, previous: UUID | None,
                              by: UUID | None) -> None:
    """`task.assigned` when the task has a (new) assignee: staff alerts tell them."""
    if task.assignee_id is None or task.assignee_id == previous:
        return
    await emit(session, TASK_ASSIGNED, {
        "task_id": str(task.id), "assignee_id": str(task.assignee_id),
        "previous_assignee_id": str(previous) if previous else None, "assigned_by_id": str(by) if by else None,
        "store_id": str(task.store_id) if task.store_id else None,
        "member_id": str(task.member_id) if task.member_id else None, "kind": task.kind, "title": task.title,
        "due_at": task.due_at.isoformat()})


def present_task(task: Task, now: datetime | None = None) -> TaskOut:
    now = now or clock.utcnow()
    out = TaskOut.model_validate(task)
    out.overdue = task.status == TaskStatus.OPEN and task.due_at < now
    return out


async def _staff_ok(session: AsyncSession, actor: Actor, staff_id: UUID, field: str) -> None:
    if staff_id not in await iam.active_staff_ids(session, actor.tenant_id, {staff_id}):
        raise Unprocessable(f"{field}: no active staff member with this id", code="validation_error", field=field)


async def create_task(session: AsyncSession, actor: Actor, data: TaskCreate) -> Task:
    actor.require("tasks:write")
    store_id = data.store_id
    if data.member_id is not None:
        member = await members.get_member_row(session, actor, data.member_id)
        store_id = store_id or member.home_store_id
    if store_id is not None:
        actor.require_store(store_id)
    assignee = data.assignee_id or (actor.id if actor.kind == "staff" else None)
    if assignee is not None and assignee != actor.id:
        await _staff_ok(session, actor, assignee, "assignee_id")
    now = clock.utcnow()
    task = Task(tenant_id=actor.tenant_id, kind=data.kind, title=data.title, description=data.description,
                member_id=data.member_id, assignee_id=assignee, store_id=store_id, due_at=data.due_at,
                created_by_kind=actor.kind, created_by_id=actor.id, updated_at=now)
    session.add(task)
    await session.flush()
    audit.record(session, "task.create", "task", task.id, kind=task.kind, assignee=str(assignee) if assignee else None)
    await announce_assignment(session, task, previous=None, by=actor.id if actor.kind == "staff" else None)
    return task


async def _task(session: AsyncSession, actor: Actor, task_id: UUID, *, for_update: bool = False) -> Task:
    """The task, if the actor may see it: in their stores, or assigned to them (404 otherwise)."""
    task = await get_or_404(session, Task, actor.tenant_id, task_id, code="task_not_found", lock=for_update)
    if task.store_id is not None and not actor.can_act_in_store(task.store_id) and task.assignee_id != actor.id:
        raise NotFound("task not found", code="task_not_found")
    return task


async def get_task(session: AsyncSession, actor: Actor, task_id: UUID) -> Task:
    actor.require("tasks:read")
    return await _task(session, actor, task_id)


async def update_task(session: AsyncSession, actor: Actor, task_id: UUID, data: TaskUpdate) -> Task:
    """Status and result notes: the assignee or a manager. Reassigning: managers only."""
    actor.require("tasks:write")
    return await _update_task(session, actor, task_id, data)


async def _update_task(session: AsyncSession, actor: Actor, task_id: UUID, data: TaskUpdate) -> Task:
    """`update_task` for callers that have checked `tasks:write` already."""
    task = await _task(session, actor, task_id, for_update=True)
    manager = is_manager(actor)
    if task.assignee_id != actor.id and not manager:
        raise Forbidden("only the assignee or a manager may change this task", code="not_task_assignee")
    given = data.model_dump(exclude_unset=True)
    for name in ("status", "title", "due_at"):
        if name in given and given[name] is None:
            raise Unprocessable(f"{name}: cannot be null", code="validation_error", field=name)
    previous_assignee = task.assignee_id
    if "assignee_id" in given:
        if not manager:
            raise Forbidden("only a manager may reassign a task", code="not_task_manager")
        if given["assignee_id"] is not None:
            await _staff_ok(session, actor, given["assignee_id"], "assignee_id")
        task.assignee_id = given["assignee_id"]
    now = clock.utcnow()
    status = given.get("status")
    if status is not None and status != task.status:
        if task.status != TaskStatus.OPEN and status != TaskStatus.OPEN:
            raise Conflict(f"the task is already {task.status}", code="invalid_status")
        task.status = status
        done = status == TaskStatus.DONE
        task.completed_at, task.completed_by_id = (now, actor.id) if done else (None, None)
    for name in ("result_note", "title", "due_at"):
        if name in given:
            setattr(task, name, given[name])
    if "due_at" in given:
        task.overdue_notified_at = None  # a new due time earns a new overdue notice
    task.updated_at = now
    session.add(task)
    await session.flush()
    audit.record(session, "task.update", "task", task.id, fields=sorted(given), status=task.status)
    if task.status == TaskStatus.OPEN:
        await announce_assignment(session, task, previous=previous_assignee,
                                  by=actor.id if actor.kind == "staff" else None)
    return task


async def complete_task(session: AsyncSession, actor: Actor, task_id: UUID, result_note: str | None) -> Task:
    """Done, with the result of the follow-up (the sidebar's one tap)."""
    actor.require("tasks:write")
    if result_note is not None and len(result_note) > MAX_RESULT_NOTE:
        raise AppError(f"result_note: at most {MAX_RESULT_NOTE} characters", code="validation_error", status=422,
                       field="result_note")
    return await _update_task(session, actor, task_id, TaskUpdate(status="done", result_note=result_note))


async def list_tasks(session: AsyncSession, actor: Actor, params: PageParams, *, assignee_id: UUID | None = None,
                     member_id: UUID | None = None, status: str | None = None, overdue: bool = False,
                     store_id: UUID | None = None):
    """Tasks the caller may see: a manager, their stores' (and unassigned) tasks; anyone else, the tasks
    of their stores. `overdue` (open and past due) is for managers."""
    actor.require("tasks:read")
    if status is not None and status not in TaskStatus.ALL:
        raise AppError("status must be open, done or cancelled", code="validation_error", status=422, field="status")
    stmt = select(Task).where(Task.tenant_id == actor.tenant_id)
    if overdue:
        if not is_manager(actor):
            raise Forbidden("the overdue list is for managers", code="not_task_manager")
        stmt = stmt.where(Task.status == TaskStatus.OPEN, Task.due_at < clock.utcnow())
    if store_id is not None:
        actor.require_store(store_id)
        stmt = stmt.where(Task.store_id == store_id)
    elif actor.store_ids is not None:
        stmt = stmt.where(or_(Task.store_id.in_(list(actor.store_ids)), Task.store_id.is_(None),
                              Task.assignee_id == actor.id))
    for column, value in ((Task.assignee_id, assignee_id), (Task.member_id, member_id), (Task.status, status)):
        if value is not None:
            stmt = stmt.where(column == value)
    return await paginate(session, stmt, Task.id, params, descending=True)


async def hand_over_open_tasks(session: AsyncSession, actor: Actor, from_staff_id: UUID,
                              to_staff_id: UUID) -> list[UUID]:
    """Every open task of `from_staff_id` goes to `to_staff_id` (a departing staff member's work; managers
    only): each is announced to its new assignee, and one audit entry names them all. Oldest due first."""
    actor.require("tasks:write")
    if not is_manager(actor):
        raise Forbidden("only a manager may reassign tasks", code="not_task_manager")
    await _staff_ok(session, actor, to_staff_id, "tasks_to")
    tasks = (await session.exec(select(Task).where(
        Task.tenant_id == actor.tenant_id, Task.assignee_id == from_staff_id, Task.status == TaskStatus.OPEN)
        .order_by(Task.due_at, Task.id).with_for_update())).all()
    now = clock.utcnow()
    for task in tasks:
        task.assignee_id, task.updated_at = to_staff_id, now
        session.add(task)
    await session.flush()
    by = actor.id if actor.kind == "staff" else None
    for task in tasks:
        await announce_assignment(session, task, previous=from_staff_id, by=by)
    if tasks:
        audit.record(session, "task.hand_over", "staff", from_staff_id, to_staff_id=str(to_staff_id),
                     tasks=[str(t.id) for t in tasks])
    return [t.id for t in tasks]


# ---------------------------------------------------------------- members: timeline and merge


@members.timeline_source("task", patient_visible=False)
async def _tasks_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                          before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    stmt = select(Task).where(Task.tenant_id == tenant_id, Task.member_id == member_id)
    if before is not None:
        stmt = stmt.where(members.before_clause(Task.created_at, Task.id, before, "task:"))
    rows = (await session.exec(stmt.order_by(Task.created_at.desc(), Task.id.desc()).limit(limit))).all()
    return [TimelineItem(type="task", occurred_at=t.created_at, id=f"task:{t.id}", title=t.title,
                         data={"kind": t.kind, "status": t.status, "due_at": t.due_at.isoformat(),
                               "assignee_id": str(t.assignee_id) if t.assignee_id else None,
                               "result_note": t.result_note,
                               "completed_at": t.completed_at.isoformat() if t.completed_at else None})
            for t in rows]


@members.merge_mover("care")
async def _move_care_rows(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID,
                          survivor_id: UUID) -> dict[str, int]:
    # Runs already done stay with the duplicate as history; waiting ones act on the survivor.
    tasks = await session.execute(update(Task).where(Task.tenant_id == tenant_id, Task.member_id == duplicate_id)
                                  .values(member_id=survivor_id))
    runs = await session.execute(update(RuleRun).where(RuleRun.tenant_id == tenant_id,
                                                       RuleRun.member_id == duplicate_id,
                                                       RuleRun.status == "scheduled").values(member_id=survivor_id))
    return {"tasks": tasks.rowcount, "scheduled_runs": runs.rowcount}


# ---------------------------------------------------------------- read API (for other contexts)
# Other contexts read this one only through the functions below (never its models, never raw SQL on its tables).


async def enable_rules(session: AsyncSession, tenant_id: UUID, keys: list[str]) -> None:
    """Switch the tenant's rules with these keys on as they are (no new version, not audited): for seeding a
    tenant that already has what those rules need, as the demo has their message templates."""
    await session.execute(update(AutomationRule).where(AutomationRule.tenant_id == tenant_id,
                                                       AutomationRule.key.in_(keys)).values(enabled=True))
