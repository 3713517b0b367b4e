"""What a rule run does: send a message template, create a follow-up task, issue a coupon, change tags.

Each action runs inside the transaction that also marks it done on the run (see engine.execute_run),
and reports an outcome: done (with what it made), skipped (with why: e.g. the message template is not
configured yet, or the member gave no subscription consent) or, through an AppError, failed.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import clock
from app.core.actor import Actor
from app.core.errors import AppError
from app.domain.care import service as care_service
from app.domain.care.models import AutomationRule, RuleRun, Task, TaskStatus
from app.domain.care.schemas import Action, ChangeTag, CreateTask, IssueCoupon, SendMessage
from app.domain.iam import service as iam
from app.domain.loyalty import service as loyalty
from app.domain.members import service as members
from app.domain.members.schemas import TagChange
from app.domain.messaging import service as messaging
from app.domain.tenancy import service as tenancy

if TYPE_CHECKING:
    from app.domain.members.models import Member


class _SafeVars(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


async def variables_for(session: AsyncSession, run: RuleRun, member: Member | None) -> dict[str, Any]:
    """What a message template or task title may use: the member, the store, and the cause's details."""
    payload = run.context.get("payload", {})
    store = await tenancy.store_row(session, run.tenant_id, run.store_id) if run.store_id else None
    zone = tenancy.store_zone(store)
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
    holders = await iam.active_staff_with_role(session, tenant_id, role, store_id=store_id) if store_id else []
    if not holders:
        holders = await iam.active_staff_with_role(session, tenant_id, role)
    if not holders:
        return None
    open_tasks = dict((await session.execute(
        select(Task.assignee_id, func.count()).where(Task.tenant_id == tenant_id, Task.assignee_id.in_(holders),
                                                     Task.status == TaskStatus.OPEN)
        .group_by(Task.assignee_id))).all())
    return min(holders, key=lambda staff_id: (open_tasks.get(staff_id, 0), staff_id))


async def _active_staff(session: AsyncSession, tenant_id: UUID, raw_id: Any) -> UUID | None:
    """The staff member's id when they are active (`raw_id` may be a payload's string)."""
    if not raw_id:
        return None
    staff_id = UUID(str(raw_id))
    return staff_id if staff_id in await iam.active_staff_ids(session, tenant_id, {staff_id}) else None


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
        if owner is not None and owner in await iam.active_staff_with_role(session, tenant_id, "consultant"):
            chosen = owner
        else:
            chosen = await _least_busy(session, tenant_id, "consultant", run.store_id)
    elif assignee == "therapist":
        chosen = await _active_staff(session, tenant_id, run.context.get("payload", {}).get("staff_id"))
    elif assignee.startswith("role:"):
        chosen = await _least_busy(session, tenant_id, assignee.removeprefix("role:"), run.store_id)
    return chosen or owner or await _least_busy(session, tenant_id, "store_manager", run.store_id)


# A message's recipient in resolve_assignee's terms (the store manager is the least busy one of the store).
_ASSIGNEE_OF = {"store_manager": "role:store_manager"}


def message_cause(rule_id: UUID, cause_key: str) -> str:
    """The messaging capability's once-per-cause key for a rule's message (at most 200 characters)."""
    cause = f"rule:{rule_id}:{cause_key}"
    return cause if len(cause) <= 200 else f"rule:{rule_id}:sha256:{hashlib.sha256(cause_key.encode()).hexdigest()}"


async def perform(session: AsyncSession, run: RuleRun, index: int, action: Action) -> dict[str, Any]:
    actor = Actor.system(run.tenant_id)
    rule = await session.get(AutomationRule, (run.tenant_id, run.rule_id))
    member = None
    if run.member_id is not None:
        member = (await members.members_by_id(session, run.tenant_id, {run.member_id})).get(run.member_id)
    if isinstance(action, SendMessage):
        staff_id = None
        if action.recipient is not None:  # wecom_staff: a staff member is told about the member
            staff_id = await resolve_assignee(session, run, member, _ASSIGNEE_OF.get(action.recipient,
                                                                                     action.recipient))
            if staff_id is None:
                return {"status": "skipped", "reason": "no_recipient"}
        try:
            message = await messaging.send_template(
                session, actor, template_key=action.template_key,
                member_id=run.member_id if staff_id is None else None, staff_id=staff_id, channel=action.channel,
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
        await care_service.announce_assignment(session, task, previous=None, by=None)
        return {"status": "done", "task_id": str(task.id),
                "assignee_id": str(task.assignee_id) if task.assignee_id else None}
    if isinstance(action, IssueCoupon):
        if action.coupon_template_id is None:
            return {"status": "skipped", "reason": "coupon_template_not_configured"}
        coupon = await loyalty.issue_coupon(session, actor, template_id=action.coupon_template_id,
                                            member_id=run.member_id, reason=f"自动化规则：{rule.name}")
        return {"status": "done", "coupon_id": str(coupon.id)}
    if isinstance(action, ChangeTag):
        change = TagChange(add=[action.tag]) if action.type == "add_tag" else TagChange(remove=[action.tag])
        tags = await members.change_tags(session, actor, run.member_id, change, source="rule")
        return {"status": "done", "tags": tags}
    raise AppError(f"unknown action {action!r}", code="unknown_action", status=422)
