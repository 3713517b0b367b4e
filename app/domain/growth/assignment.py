"""Assignment rules as data, and giving a new lead to a consultant inside the creating transaction.

A rule says where it applies (a store, or tenant-wide; optionally only leads of one channel kind, campaign
code or interest), who the candidates are (the active staff holding the consultant role in the store, and
with `on_shift_only` only those whose shift covers this moment, as booking's schedule knows it) and how to
choose (`round_robin`: the next consultant after the rule's cursor, in a fixed order; `least_open`: the one
with the fewest open leads, ties broken in the same round-robin order).

Concurrency: the rule's row is the cursor and is locked (SELECT … FOR UPDATE) before the candidates are
counted, so concurrent intakes take turns on it: each sees the cursor (and the open-lead counts) the
previous one committed, and no consultant is skipped or served twice in a row.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import func, or_
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.domain.booking import availability
from app.domain.growth.channels import invalid
from app.domain.growth.models import CLOSED, AssignmentRule, CampaignCode, Lead
from app.domain.growth.schemas import RuleCreate, RuleUpdate
from app.domain.iam import service as iam
from app.domain.tenancy import service as tenancy

CONSULTANT_ROLE = "consultant"


async def create_rule(session: AsyncSession, actor: Actor, data: RuleCreate) -> AssignmentRule:
    actor.require("growth:admin")
    if data.store_id is not None and await tenancy.store_row(session, actor.tenant_id, data.store_id) is None:
        raise invalid("store_id", "no store with this id")
    if data.campaign_code_id is not None and await session.get(
            CampaignCode, (actor.tenant_id, data.campaign_code_id)) is None:
        raise invalid("campaign_code_id", "no campaign code with this id")
    rule = AssignmentRule(tenant_id=actor.tenant_id, **data.model_dump(), updated_at=utcnow())
    session.add(rule)
    await session.flush()
    audit.record(session, "growth.rule.create", "assignment_rule", rule.id, strategy=rule.strategy,
                 store_id=str(rule.store_id) if rule.store_id else None)
    return rule


async def update_rule(session: AsyncSession, actor: Actor, rule_id: UUID, data: RuleUpdate) -> AssignmentRule:
    actor.require("growth:admin")
    rule = await get_or_404(session, AssignmentRule, actor.tenant_id, rule_id, code="assignment_rule_not_found",
                            lock=True)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("on_shift_only") and rule.store_id is None:
        raise invalid("on_shift_only", "on_shift_only needs a store rule: shifts are kept per store")
    for key, value in changes.items():
        if value is not None or key == "first_contact_minutes":
            setattr(rule, key, value)
    rule.updated_at = utcnow()
    await session.flush()
    audit.record(session, "growth.rule.update", "assignment_rule", rule.id, **{k: str(v) for k, v in changes.items()})
    return rule


async def get_rule(session: AsyncSession, actor: Actor, rule_id: UUID) -> AssignmentRule:
    actor.require("growth:read")
    return await get_or_404(session, AssignmentRule, actor.tenant_id, rule_id, code="assignment_rule_not_found")


async def list_rules(session: AsyncSession, actor: Actor, params: PageParams):
    actor.require("growth:read")
    return await paginate(session, select(AssignmentRule).where(AssignmentRule.tenant_id == actor.tenant_id),
                          AssignmentRule.id, params)


# ---------------------------------------------------------------- assigning


def _applies(rule: AssignmentRule, lead: Lead, channel_kind: str | None) -> bool:
    if rule.channel_kind is not None and rule.channel_kind != channel_kind:
        return False
    if rule.campaign_code_id is not None and rule.campaign_code_id != lead.campaign_code_id:
        return False
    return rule.interest_tag is None or rule.interest_tag in (lead.interests or [])


async def on_shift_now(session: AsyncSession, tenant_id: UUID, store_id: UUID, staff_ids: list[UUID],
                       now: datetime) -> list[UUID]:
    """Which of these staff are working at the store at `now` (shifts, weekly patterns, minus time off)."""
    store = await tenancy.store_row(session, tenant_id, store_id)
    if store is None or not staff_ids:
        return []
    today = now.astimezone(tenancy.store_zone(store)).date()
    spans = await availability.working_time(session, tenant_id, store=store, staff_ids=staff_ids,
                                             first=today - timedelta(days=1), last=today)
    return [s for s in staff_ids if any(start <= now < end for start, end in spans.get(s, []))]


async def candidates(session: AsyncSession, tenant_id: UUID, rule: AssignmentRule, lead: Lead,
                     now: datetime) -> list[UUID]:
    """The consultants this rule may give the lead to, in a fixed order (by id)."""
    store_id = rule.store_id or lead.store_id
    staff = await iam.active_staff_with_role(session, tenant_id, CONSULTANT_ROLE, store_id=store_id)
    if rule.on_shift_only and store_id is not None:
        staff = await on_shift_now(session, tenant_id, store_id, staff, now)
    return sorted(staff)


async def _open_counts(session: AsyncSession, tenant_id: UUID, staff_ids: list[UUID]) -> dict[UUID, int]:
    rows = (await session.execute(
        select(Lead.assignee_id, func.count()).where(Lead.tenant_id == tenant_id, Lead.assignee_id.in_(staff_ids),
                                                     Lead.status.not_in(CLOSED)).group_by(Lead.assignee_id))).all()
    return {staff_id: count for staff_id, count in rows}


def _after_cursor(ordered: list[UUID], cursor: UUID | None) -> list[UUID]:
    """`ordered` rotated to start just after the cursor: the round-robin order from here."""
    if cursor is None:
        return ordered
    later = [s for s in ordered if s > cursor]
    return later + [s for s in ordered if s <= cursor]


async def assign_by_rules(session: AsyncSession, tenant_id: UUID, lead: Lead, channel_kind: str | None, *,
                          now: datetime | None = None) -> AssignmentRule | None:
    """Give `lead` (new, flushed) to a consultant under the first rule that applies and has a candidate:
    store rules before tenant-wide ones, then by priority. Sets the lead's assignee, rule and first-contact
    deadline; returns the rule, or None when no rule assigns."""
    now = now or utcnow()
    rules = (await session.exec(
        select(AssignmentRule).where(
            AssignmentRule.tenant_id == tenant_id, AssignmentRule.active,
            or_(AssignmentRule.store_id.is_(None), AssignmentRule.store_id == lead.store_id))
        .order_by(AssignmentRule.store_id.is_(None), AssignmentRule.priority, AssignmentRule.created_at,
                  AssignmentRule.id))).all()
    for candidate_rule in rules:
        if not _applies(candidate_rule, lead, channel_kind):
            continue
        # The cursor row: every assignment under this rule waits here for the one before it to commit.
        rule = await session.get(AssignmentRule, (tenant_id, candidate_rule.id), with_for_update=True,
                                 populate_existing=True)
        if rule is None or not rule.active:
            continue
        staff = await candidates(session, tenant_id, rule, lead, now)
        if not staff:
            continue
        order = _after_cursor(staff, rule.last_assignee_id)
        if rule.strategy == "least_open":
            counts = await _open_counts(session, tenant_id, staff)
            chosen = min(order, key=lambda s: counts.get(s, 0))  # min keeps the first of equals: round robin
        else:
            chosen = order[0]
        rule.last_assignee_id = chosen
        rule.assigned_count += 1
        lead.assignee_id, lead.rule_id, lead.assigned_at = chosen, rule.id, now
        if rule.first_contact_minutes:
            lead.contact_due_at = now + timedelta(minutes=rule.first_contact_minutes)
        await session.flush()
        return rule
    return None
