"""What a rule run does: send a message template, create a follow-up task, issue a coupon, change tags.

Each action runs inside the transaction that also marks it done on the run (see engine.execute_run),
and reports an outcome: done (with what it made), skipped (with why: e.g. the message template is not
configured yet, or the member gave no subscription consent) or, through an AppError, failed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import clock
from app.core.actor import Actor
from app.core.errors import AppError
from app.domain.care.models import AutomationRule, RuleRun, Task, TaskStatus
from app.domain.care.schemas import Action, ChangeTag, CreateTask, IssueCoupon, SendMessage
from app.domain.iam.models import Role, Staff, StaffRole, StaffStore
from app.domain.members.models import Member
from app.domain.tenancy.models import Store


class _SafeVars(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


async def variables_for(session: AsyncSession, run: RuleRun, member: Member | None) -> dict[str, Any]:
    """What a message template or task title may use: the member, the store, and the cause's details."""
    payload = run.context.get("payload", {})
    store = await session.get(Store, (run.tenant_id, run.store_id)) if run.store_id else None
    zone = ZoneInfo(store.timezone if store else "Asia/Shanghai")
    values: dict[str, Any] = {k: v for k, v in payload.items() if isinstance(v, str | int | float) and v is not None}
    values["member_name"] = member.name if member else ""
    values["store_name"] = store.name if store else ""
    values["store_phone"] = (store.phone or "") if store else ""
    for key in ("starts_at", "completed_at", "expires_at"):
        if isinstance(payload.get(key), str):
            values[key] = datetime.fromisoformat(payload[key]).astimezone(zone).strftime("%Y-%m-%d %H:%M")
    visit = run.context.get("visit")
    if visit:
        values["starts_at"] = datetime.fromisoformat(visit["starts_at"]).astimezone(zone).strftime("%Y-%m-%d %H:%M")
    return values


async def _least_busy(session: AsyncSession, tenant_id: UUID, role: str, store_id: UUID | None) -> UUID | None:
    """An active staff member with the role — in the store when anyone there has it — with the fewest
    open tasks, so rule-made work spreads over the team."""
    open_tasks = (select(func.count()).select_from(Task).where(
        Task.tenant_id == tenant_id, Task.assignee_id == Staff.id, Task.status == TaskStatus.OPEN)
        .correlate(Staff).scalar_subquery())
    base = (select(Staff.id).join(StaffRole, and_(StaffRole.tenant_id == Staff.tenant_id,
                                                  StaffRole.staff_id == Staff.id))
            .join(Role, and_(Role.tenant_id == StaffRole.tenant_id, Role.id == StaffRole.role_id))
            .where(Staff.tenant_id == tenant_id, Staff.active, Role.name == role)
            .order_by(open_tasks, Staff.id).limit(1))
    if store_id is not None:
        here = (await session.execute(base.join(StaffStore, and_(
            StaffStore.tenant_id == Staff.tenant_id, StaffStore.staff_id == Staff.id,
            StaffStore.store_id == store_id)))).scalar_one_or_none()
        if here is not None:
            return here
    return (await session.execute(base)).scalar_one_or_none()


async def _active_staff(session: AsyncSession, tenant_id: UUID, staff_id: Any) -> UUID | None:
    if not staff_id:
        return None
    staff = await session.get(Staff, (tenant_id, UUID(str(staff_id))))
    return staff.id if staff is not None and staff.active else None


async def _has_role(session: AsyncSession, tenant_id: UUID, staff_id: UUID, role: str) -> bool:
    return (await session.execute(select(Role.id).join(StaffRole, and_(
        StaffRole.tenant_id == Role.tenant_id, StaffRole.role_id == Role.id)).where(
        Role.tenant_id == tenant_id, StaffRole.staff_id == staff_id, Role.name == role))).first() is not None


async def resolve_assignee(session: AsyncSession, run: RuleRun, member: Member | None, assignee: str) -> UUID | None:
    """owner: the member's own staff contact; consultant: that contact if a consultant, else the store's
    least busy consultant; therapist: who served the member in the cause; role:<name>: the store's least
    busy holder of the role. Nobody found: the owner contact, then a store manager, then unassigned."""
    tenant_id = run.tenant_id
    owner = await _active_staff(session, tenant_id, member.owner_staff_id if member else None)
    chosen: UUID | None = None
    if assignee == "owner":
        chosen = owner
    elif assignee == "consultant":
        if owner is not None and await _has_role(session, tenant_id, owner, "consultant"):
            chosen = owner
        else:
            chosen = await _least_busy(session, tenant_id, "consultant", run.store_id)
    elif assignee == "therapist":
        chosen = await _active_staff(session, tenant_id, run.context.get("payload", {}).get("staff_id"))
    elif assignee.startswith("role:"):
        chosen = await _least_busy(session, tenant_id, assignee.removeprefix("role:"), run.store_id)
    return chosen or owner or await _least_busy(session, tenant_id, "store_manager", run.store_id)


def messaging_sender():
    """messaging.send_template (a seam, so tests can watch what the engine asks it to send)."""
    from app.domain.messaging.service import send_template

    return send_template


async def perform(session: AsyncSession, run: RuleRun, index: int, action: Action) -> dict[str, Any]:
    actor = Actor.system(run.tenant_id)
    rule = await session.get(AutomationRule, (run.tenant_id, run.rule_id))
    member = await session.get(Member, (run.tenant_id, run.member_id)) if run.member_id else None
    if isinstance(action, SendMessage):
        from app.domain.care.engine import message_cause

        try:
            message = await messaging_sender()(
                session, actor, template_key=action.template_key, member_id=run.member_id, channel=action.channel,
                variables=await variables_for(session, run, member), cause=message_cause(rule.id, run.cause_key))
        except AppError as exc:
            if exc.status == 404:  # the tenant has not configured this template yet
                return {"status": "skipped", "reason": exc.code}
            raise
        reason = getattr(message, "reason", None)
        return {"status": "skipped" if message.status == "skipped" else "done", "message_id": str(message.id),
                **({"reason": reason} if reason else {})}
    if isinstance(action, CreateTask):
        now = clock.utcnow()
        title = action.title.format_map(_SafeVars(await variables_for(session, run, member)))
        task = Task(tenant_id=run.tenant_id, kind=action.kind, member_id=run.member_id, store_id=run.store_id,
                    assignee_id=await resolve_assignee(session, run, member, action.assignee), title=title[:200],
                    due_at=now + timedelta(hours=action.due_in_hours), rule_id=run.rule_id, run_id=run.id,
                    action_index=index, cause_key=run.cause_key, created_by_kind="rule", updated_at=now)
        session.add(task)
        await session.flush()
        return {"status": "done", "task_id": str(task.id),
                "assignee_id": str(task.assignee_id) if task.assignee_id else None}
    if isinstance(action, IssueCoupon):
        if action.coupon_template_id is None:
            return {"status": "skipped", "reason": "coupon_template_not_configured"}
        from app.domain.loyalty import service as loyalty

        coupon = await loyalty.issue_coupon(session, actor, template_id=action.coupon_template_id,
                                            member_id=run.member_id, reason=f"自动化规则：{rule.name}")
        return {"status": "done", "coupon_id": str(coupon.id)}
    if isinstance(action, ChangeTag):
        from app.domain.members import service as members
        from app.domain.members.schemas import TagChange

        change = TagChange(add=[action.tag]) if action.type == "add_tag" else TagChange(remove=[action.tag])
        tags = await members.change_tags(session, actor, run.member_id, change, source="rule")
        return {"status": "done", "tags": tags}
    raise AppError(f"unknown action {action!r}", code="unknown_action", status=422)
