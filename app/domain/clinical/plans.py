"""Treatment plans: a course for a member (goals, planned sessions per service, the interval between visits,
start date, responsible clinician, optional course card), its progress per visit, and the next visit offered
for booking.

Progress comes from visits: every completed service record of a planned service for the plan's member
(from the plan's start date on, while the plan is active) counts once against the earliest-started plan that
still has a session of that service left (`count_visit`, called by `handlers.py` on `service.completed`).
A reversed service record takes its count back (`uncount_visit`, on `service.reversed`), and reopens a plan
that this had completed. Delivery is at least once: the progress ledger's unique key (service record, kind)
turns a redelivered event into a no-op, and the plan row lock serialises two visits of the same plan.

Access follows clinical records: `clinical:read` / `clinical:write` and the care relationship (refusals are
403 `not_in_care`, audited by `record_refusal`); reads are audited. Patients read their own plans and their
family's (the members context's rule: anyone else is 404).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, Forbidden, NotFound, invalid
from app.core.ids import new_id
from app.core.outbox import emit
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.domain.booking import availability
from app.domain.cards import service as cards
from app.domain.catalog import service as catalog
from app.domain.clinical import policies
from app.domain.clinical.events import PLAN_CANCELLED, PLAN_COMPLETED, PLAN_CREATED, PLAN_PROGRESSED
from app.domain.clinical.plan_models import PlanStatus, TreatmentPlan, TreatmentPlanItem, TreatmentPlanProgress
from app.domain.clinical.plan_schemas import (
    NextVisitOffer,
    OfferedSlot,
    PlanItemOut,
    PlanProgressOut,
    TreatmentPlanCancel,
    TreatmentPlanCreate,
    TreatmentPlanOut,
)
from app.domain.iam import service as iam
from app.domain.members import service as members
from app.domain.members.schemas import TimelineItem
from app.domain.tenancy import service as tenancy

# How far from today a plan may start: a course is planned for now, not for years ahead or long past.
START_DATE_RANGE = timedelta(days=366)
PLAN = "treatment_plan"  # what a refusal's audit entry names (`treatment_plan.access_refused`)
# The next-visit search: days from the suggested date, and slots returned.
DEFAULT_OFFER_DAYS, MAX_OFFER_DAYS = 7, 14
DEFAULT_OFFER_SLOTS, MAX_OFFER_SLOTS = 5, 20
# A member's plans in one timeline pass: a member has a handful of courses, not hundreds.
TIMELINE_PLANS = 200


def _seal(goals: str) -> str:
    sealed = crypto.encrypt(goals)
    assert sealed is not None  # noqa: S101 - a string in, a string out
    return sealed


def goals_of(plan: TreatmentPlan) -> str:
    return crypto.decrypt(plan.goals_encrypted) or ""


# ---------------------------------------------------------------- creating and cancelling


async def _check_create(session: AsyncSession, actor: Actor, data: TreatmentPlanCreate) -> date:
    """Everything the plan points at must exist and fit; returns the start date. Bad input is 422 naming the
    field, so nothing is written."""
    member = await members.get_member_row(session, actor, data.member_id)
    if not members.is_active(member):
        raise Conflict(f"member is {member.status}", code="member_inactive")
    store = await tenancy.store_row(session, actor.tenant_id, data.store_id)
    if store is None:
        raise invalid("store_id", "no such store", type_="not_found")
    if not store.active:
        raise invalid("store_id", "this store is closed")
    seen: set[UUID] = set()
    for index, item in enumerate(data.items):
        if item.service_id in seen:
            raise invalid(f"items.{index}.service_id", "each service once (add up its sessions)", type_="duplicate")
        seen.add(item.service_id)
    services = await catalog.services_by_id(session, actor.tenant_id, seen)
    for index, item in enumerate(data.items):
        service = services.get(item.service_id)
        if service is None:
            raise invalid(f"items.{index}.service_id", "no such service", type_="not_found")
        if not service.active:
            raise invalid(f"items.{index}.service_id", "this service is no longer offered")
    found = await iam.staff_at_store(session, actor.tenant_id, data.responsible_staff_id, data.store_id)
    if found is None or not found[0].active:
        raise invalid("responsible_staff_id", "no such active staff member", type_="not_found")
    if not found[1]:
        raise invalid("responsible_staff_id", "this staff member does not work in this store")
    today = tenancy.store_today(store)
    start = data.start_date or today
    if not today - START_DATE_RANGE <= start <= today + START_DATE_RANGE:
        raise invalid("start_date", f"must be within {START_DATE_RANGE.days} days of today", type_="date_out_of_range")
    if data.card_id is not None:
        usable = {c.id for c in await cards.member_cards(session, actor, member.id) if c.status == "active"}
        if data.card_id not in usable:
            raise invalid("card_id", "not an active card of this member (or shared with them)", type_="not_found")
    return start


async def create_plan(session: AsyncSession, actor: Actor, data: TreatmentPlanCreate) -> TreatmentPlan:
    await policies.require_clinical_access(session, actor, data.member_id, "clinical:write", action="plan_create",
                                           subject=PLAN)
    start = await _check_create(session, actor, data)
    now = utcnow()
    plan = TreatmentPlan(tenant_id=actor.tenant_id, member_id=data.member_id, store_id=data.store_id,
                         title=data.title.strip(), goals_encrypted=_seal(data.goals), interval_days=data.interval_days,
                         start_date=start, responsible_staff_id=data.responsible_staff_id, card_id=data.card_id,
                         sessions_planned=sum(i.sessions for i in data.items), created_by_id=actor.id,
                         created_at=now, updated_at=now)
    session.add(plan)
    await session.flush()
    session.add_all(TreatmentPlanItem(tenant_id=actor.tenant_id, plan_id=plan.id, service_id=item.service_id,
                                      position=index, sessions_planned=item.sessions)
                    for index, item in enumerate(data.items))
    await session.flush()
    audit.record(session, "treatment_plan.created", "treatment_plan", plan.id, member_id=str(plan.member_id),
                 sessions_planned=plan.sessions_planned)
    await emit(session, PLAN_CREATED, {
        "plan_id": str(plan.id), "member_id": str(plan.member_id), "store_id": str(plan.store_id),
        "responsible_staff_id": str(plan.responsible_staff_id),
        "card_id": str(plan.card_id) if plan.card_id else None, "sessions_planned": plan.sessions_planned,
        "items": [{"service_id": str(i.service_id), "sessions": i.sessions} for i in data.items]})
    return plan


async def _plan(session: AsyncSession, actor: Actor, plan_id: UUID, permission: str, action: str, *,
                lock: bool = False) -> TreatmentPlan:
    plan = await get_or_404(session, TreatmentPlan, actor.tenant_id, plan_id, code="treatment_plan_not_found",
                            lock=lock)
    if actor.kind == "patient":
        # Their own or their family's plan; anyone else's does not exist for them (404).
        try:
            await members.get_member_row(session, actor, plan.member_id)
        except NotFound:
            raise NotFound("treatment plan not found", code="treatment_plan_not_found") from None
        return plan
    await policies.require_clinical_access(session, actor, plan.member_id, permission, action=action,
                                           record_id=plan.id, subject=PLAN)
    return plan


async def cancel_plan(session: AsyncSession, actor: Actor, plan_id: UUID, data: TreatmentPlanCancel) -> TreatmentPlan:
    """Stop a course: active → cancelled, with the reason; later visits no longer count against it."""
    if actor.kind == "patient":
        raise Forbidden("a course is cancelled by the clinic", code="permission_denied")
    plan = await _plan(session, actor, plan_id, "clinical:write", "plan_cancel", lock=True)
    if plan.status != PlanStatus.ACTIVE:
        raise Conflict(f"the plan is {plan.status}", code="treatment_plan_not_active", status_now=plan.status)
    now = utcnow()
    plan.status, plan.cancelled_at, plan.cancelled_by_id = PlanStatus.CANCELLED, now, actor.id
    plan.cancel_reason, plan.updated_at = data.reason.strip(), now
    session.add(plan)
    await session.flush()
    audit.record(session, "treatment_plan.cancelled", "treatment_plan", plan.id, member_id=str(plan.member_id),
                 reason=plan.cancel_reason)
    await emit(session, PLAN_CANCELLED, {
        "plan_id": str(plan.id), "member_id": str(plan.member_id), "sessions_done": plan.sessions_done,
        "sessions_planned": plan.sessions_planned, "cancelled_by_id": str(actor.id)})
    return plan


# ---------------------------------------------------------------- reading


def _next_visit_date(plan: TreatmentPlan, zone: Any) -> date | None:
    if plan.status != PlanStatus.ACTIVE:
        return None
    if plan.last_visit_at is None:
        return plan.start_date
    return plan.last_visit_at.astimezone(zone).date() + timedelta(days=plan.interval_days)


async def present_many(session: AsyncSession, tenant_id: UUID, plans: list[TreatmentPlan], *,
                       with_progress: bool = False) -> list[TreatmentPlanOut]:
    """Plans with their items (and, for one plan's read, the progress ledger): one query per kind."""
    if not plans:
        return []
    ids = [p.id for p in plans]
    items = list((await session.execute(select(TreatmentPlanItem).where(
        TreatmentPlanItem.tenant_id == tenant_id, TreatmentPlanItem.plan_id.in_(ids))
        .order_by(TreatmentPlanItem.position))).scalars())
    progress: list[TreatmentPlanProgress] = []
    if with_progress:
        progress = list((await session.execute(select(TreatmentPlanProgress).where(
            TreatmentPlanProgress.tenant_id == tenant_id, TreatmentPlanProgress.plan_id.in_(ids))
            .order_by(TreatmentPlanProgress.occurred_at, TreatmentPlanProgress.created_at))).scalars())
    names = {s.id: s.name for s in (await catalog.services_by_id(
        session, tenant_id, {i.service_id for i in items})).values()}
    stores = await tenancy.stores_by_id(session, tenant_id, {p.store_id for p in plans})
    by_plan: dict[UUID, list[TreatmentPlanItem]] = {}
    for item in items:
        by_plan.setdefault(item.plan_id, []).append(item)
    service_of_item = {i.id: i.service_id for i in items}
    out = []
    for plan in plans:
        zone = tenancy.store_zone(stores.get(plan.store_id))
        out.append(TreatmentPlanOut(
            id=plan.id, member_id=plan.member_id, store_id=plan.store_id, title=plan.title, goals=goals_of(plan),
            status=plan.status, interval_days=plan.interval_days, start_date=plan.start_date,
            responsible_staff_id=plan.responsible_staff_id, card_id=plan.card_id,
            sessions_planned=plan.sessions_planned, sessions_done=plan.sessions_done,
            items=[PlanItemOut(service_id=i.service_id, service_name=names.get(i.service_id),
                               sessions_planned=i.sessions_planned, sessions_done=i.sessions_done,
                               remaining=i.sessions_planned - i.sessions_done) for i in by_plan.get(plan.id, [])],
            last_visit_at=plan.last_visit_at, next_visit_date=_next_visit_date(plan, zone),
            created_at=plan.created_at, completed_at=plan.completed_at, cancelled_at=plan.cancelled_at,
            cancel_reason=plan.cancel_reason,
            progress=[PlanProgressOut(id=e.id, kind=e.kind, delta=e.delta, service_id=service_of_item[e.item_id],
                                      service_record_id=e.service_record_id, staff_id=e.staff_id,
                                      occurred_at=e.occurred_at, reverses_id=e.reverses_id)
                      for e in progress if e.plan_id == plan.id] if with_progress else None))
    return out


async def get_plan(session: AsyncSession, actor: Actor, plan_id: UUID) -> TreatmentPlanOut:
    """One plan with its items and progress ledger; the read is audited."""
    plan = await _plan(session, actor, plan_id, "clinical:read", "plan_read")
    await audit.record_read(session, "treatment_plan.read", "treatment_plan", plan.id, member_id=str(plan.member_id))
    return (await present_many(session, actor.tenant_id, [plan], with_progress=True))[0]


def _member_plans(tenant_id: UUID, member_ids: set[UUID], status: str | None):
    stmt = select(TreatmentPlan).where(TreatmentPlan.tenant_id == tenant_id,
                                       TreatmentPlan.member_id.in_(member_ids))
    return stmt.where(TreatmentPlan.status == status) if status else stmt


async def list_plans(session: AsyncSession, actor: Actor, member_id: UUID, params: PageParams, *,
                     status: str | None = None) -> tuple[list[TreatmentPlanOut], str | None]:
    """A member's plans, newest first, with progress per service; the listing is audited as a read."""
    await policies.require_clinical_access(session, actor, member_id, "clinical:read", action="plan_list",
                                           subject=PLAN)
    rows, cursor = await paginate(session, _member_plans(actor.tenant_id, {member_id}, status), TreatmentPlan.id,
                                  params, descending=True)
    await audit.record_read(session, "treatment_plan.list", "member", member_id, plan_ids=[str(p.id) for p in rows])
    return await present_many(session, actor.tenant_id, list(rows)), cursor


async def patient_plans(session: AsyncSession, actor: Actor, member_id: UUID | None, params: PageParams, *,
                        status: str | None = None) -> tuple[list[TreatmentPlanOut], str | None]:
    """The mini-program's "my treatment plans": the patient's own (or, as the family's head, a family
    member's, by `member_id`); anyone else is 404 `member_not_found`. Audited as the staff reads are."""
    if actor.kind != "patient":
        raise Forbidden("this is the patient's own account (mini-program sign-in)", code="permission_denied")
    target = member_id or actor.id
    await members.get_member_row(session, actor, target)
    rows, cursor = await paginate(session, _member_plans(actor.tenant_id, {target}, status), TreatmentPlan.id,
                                  params, descending=True)
    await audit.record_read(session, "treatment_plan.list", "member", target, plan_ids=[str(p.id) for p in rows])
    return await present_many(session, actor.tenant_id, list(rows)), cursor


# ---------------------------------------------------------------- the next visit


async def next_visit(session: AsyncSession, actor: Actor, plan_id: UUID, *, days: int = DEFAULT_OFFER_DAYS,
                     limit: int = DEFAULT_OFFER_SLOTS, staff_id: UUID | None = None) -> NextVisitOffer:
    """The next planned visit: the suggested day (last visit + interval, or the start date), the next planned
    service (the first in plan order with sessions left), and the first bookable slots from that day (today
    when it is past) for `days` days, from booking's availability — bookable with the normal booking API.

    The offer carries no goals or notes, only what a booking shows, so the front desk (`appointments:write`,
    who books everyone but reads no health data) may ask for it as well as clinicians in the member's care
    and the patient (own and family plans)."""
    _offer_limits(days, limit)
    if _books_without_health_data(actor):
        plan = await get_or_404(session, TreatmentPlan, actor.tenant_id, plan_id, code="treatment_plan_not_found")
        await members.get_member_row(session, actor, plan.member_id)
    else:
        plan = await _plan(session, actor, plan_id, "clinical:read", "plan_next_visit")
    if plan.status != PlanStatus.ACTIVE:
        raise Conflict(f"the plan is {plan.status}: no visit is planned", code="treatment_plan_not_active",
                       status_now=plan.status)
    return await _offer(session, actor, plan, days=days, limit=limit, staff_id=staff_id)


def _books_without_health_data(actor: Actor) -> bool:
    """The front desk: books everyone (appointments:write) but reads no health data (no clinical:read)."""
    return actor.kind != "patient" and actor.can("appointments:write") and not actor.can("clinical:read")


def _offer_limits(days: int, limit: int) -> None:
    if not 1 <= days <= MAX_OFFER_DAYS:
        raise invalid("days", f"between 1 and {MAX_OFFER_DAYS}", type_="out_of_range")
    if not 1 <= limit <= MAX_OFFER_SLOTS:
        raise invalid("limit", f"between 1 and {MAX_OFFER_SLOTS}", type_="out_of_range")


async def next_visits_of_member(session: AsyncSession, actor: Actor, member_id: UUID, *,
                                days: int = DEFAULT_OFFER_DAYS,
                                limit: int = DEFAULT_OFFER_SLOTS) -> list[NextVisitOffer]:
    """The next visit of each of the member's active plans (oldest plan first) in stores the caller works in:
    how the front desk, who sees no plans, finds what to book. The same access as `next_visit`."""
    _offer_limits(days, limit)
    if actor.kind == "patient" or _books_without_health_data(actor):
        await members.get_member_row(session, actor, member_id)
    else:
        await policies.require_clinical_access(session, actor, member_id, "clinical:read", action="plan_next_visit",
                                               subject=PLAN)
    active = list((await session.execute(_member_plans(actor.tenant_id, {member_id}, PlanStatus.ACTIVE)
                                         .order_by(TreatmentPlan.start_date, TreatmentPlan.id))).scalars())
    return [await _offer(session, actor, plan, days=days, limit=limit, staff_id=None) for plan in active
            if actor.kind == "patient" or actor.can_act_in_store(plan.store_id)]


async def _offer(session: AsyncSession, actor: Actor, plan: TreatmentPlan, *, days: int, limit: int,
                 staff_id: UUID | None) -> NextVisitOffer:
    items = list((await session.execute(select(TreatmentPlanItem).where(
        TreatmentPlanItem.tenant_id == plan.tenant_id, TreatmentPlanItem.plan_id == plan.id)
        .order_by(TreatmentPlanItem.position))).scalars())
    item = next(i for i in items if i.sessions_done < i.sessions_planned)  # active: some session is left
    store = await tenancy.store_row(session, actor.tenant_id, plan.store_id)
    zone = tenancy.store_zone(store)
    suggested = _next_visit_date(plan, zone)
    assert suggested is not None  # noqa: S101 - an active plan has one
    today = utcnow().astimezone(zone).date()
    first = max(suggested, today)
    last = first + timedelta(days=days - 1)
    found = await availability.find_slots(session, actor, store_id=plan.store_id, service_id=item.service_id,
                                          day_from=first, day_to=last, staff_id=staff_id)
    service = await catalog.service_row(session, actor.tenant_id, item.service_id)
    return NextVisitOffer(
        plan_id=plan.id, member_id=plan.member_id, store_id=plan.store_id, service_id=item.service_id,
        service_name=service.name if service else None, suggested_date=suggested, searched_from=first,
        searched_to=last, slots=[OfferedSlot(starts_at=s.starts_at, ends_at=s.ends_at, staff_id=s.staff_id,
                                             resource_ids=s.resource_ids) for s in found.slots[:limit]])


# ---------------------------------------------------------------- progress from visits


@dataclass(frozen=True)
class CompletedVisit:
    """A completed service record, as visits' `service.completed` tells it."""

    service_record_id: UUID
    member_id: UUID
    service_id: UUID
    staff_id: UUID | None
    completed_at: datetime


async def _progress_event(session: AsyncSession, plan: TreatmentPlan, item: TreatmentPlanItem, service_record_id: UUID,
                          delta: int) -> None:
    await emit(session, PLAN_PROGRESSED, {
        "plan_id": str(plan.id), "member_id": str(plan.member_id), "service_id": str(item.service_id),
        "service_record_id": str(service_record_id), "delta": delta, "sessions_done": plan.sessions_done,
        "sessions_planned": plan.sessions_planned}, tenant_id=plan.tenant_id)


async def count_visit(session: AsyncSession, tenant_id: UUID, visit: CompletedVisit) -> TreatmentPlan | None:
    """Count a completed visit against the member's plan that has a session of the service left (the earliest
    started); returns the plan, or None when no plan takes it or it was counted already (a redelivery)."""
    counted = (await session.execute(select(TreatmentPlanProgress.id).where(
        TreatmentPlanProgress.tenant_id == tenant_id,
        TreatmentPlanProgress.service_record_id == visit.service_record_id,
        TreatmentPlanProgress.kind == "visit"))).first()
    if counted is not None:
        return None
    # The plans' rows are locked before their counts are read: two visits of one plan count one after the other.
    candidates = list((await session.execute(
        select(TreatmentPlan).join(TreatmentPlanItem, (TreatmentPlanItem.tenant_id == TreatmentPlan.tenant_id)
                                   & (TreatmentPlanItem.plan_id == TreatmentPlan.id))
        .where(TreatmentPlan.tenant_id == tenant_id, TreatmentPlan.member_id == visit.member_id,
               TreatmentPlan.status == PlanStatus.ACTIVE, TreatmentPlanItem.service_id == visit.service_id)
        .order_by(TreatmentPlan.start_date, TreatmentPlan.created_at, TreatmentPlan.id)
        .with_for_update(of=TreatmentPlan).execution_options(populate_existing=True))).scalars())
    if not candidates:
        return None
    stores = await tenancy.stores_by_id(session, tenant_id, {p.store_id for p in candidates})
    for plan in candidates:
        day = visit.completed_at.astimezone(tenancy.store_zone(stores.get(plan.store_id))).date()
        if plan.status != PlanStatus.ACTIVE or day < plan.start_date:
            continue
        item = (await session.execute(select(TreatmentPlanItem).where(
            TreatmentPlanItem.tenant_id == tenant_id, TreatmentPlanItem.plan_id == plan.id,
            TreatmentPlanItem.service_id == visit.service_id).execution_options(populate_existing=True))).scalar_one()
        if item.sessions_done >= item.sessions_planned:
            continue
        inserted = await session.execute(pg_insert(TreatmentPlanProgress).values(
            tenant_id=tenant_id, id=new_id(), created_at=utcnow(), plan_id=plan.id, item_id=item.id,
            service_record_id=visit.service_record_id, kind="visit", delta=1, staff_id=visit.staff_id,
            occurred_at=visit.completed_at,
        ).on_conflict_do_nothing(index_elements=["tenant_id", "service_record_id", "kind"])
            .returning(TreatmentPlanProgress.id))
        if inserted.scalar_one_or_none() is None:
            return None  # counted by a concurrent delivery of the same event
        item.sessions_done += 1
        plan.sessions_done += 1
        plan.last_visit_at = max(plan.last_visit_at or visit.completed_at, visit.completed_at)
        plan.updated_at = utcnow()
        completed = plan.sessions_done == plan.sessions_planned
        if completed:
            plan.status, plan.completed_at = PlanStatus.COMPLETED, plan.updated_at
        session.add_all([item, plan])
        await session.flush()
        audit.record(session, "treatment_plan.progressed", "treatment_plan", plan.id, tenant_id=tenant_id,
                     service_record_id=str(visit.service_record_id), sessions_done=plan.sessions_done)
        await _progress_event(session, plan, item, visit.service_record_id, 1)
        if completed:
            await emit(session, PLAN_COMPLETED, {
                "plan_id": str(plan.id), "member_id": str(plan.member_id), "sessions_done": plan.sessions_done,
                "completed_at": plan.completed_at.isoformat() if plan.completed_at else None}, tenant_id=tenant_id)
        return plan
    return None


async def uncount_visit(session: AsyncSession, tenant_id: UUID, service_record_id: UUID) -> TreatmentPlan | None:
    """A reversed service record takes its count back (a reversal entry pointing at the visit entry); a plan
    this had completed is active again. None when the visit never counted or was taken back already."""
    original = (await session.execute(select(TreatmentPlanProgress).where(
        TreatmentPlanProgress.tenant_id == tenant_id, TreatmentPlanProgress.service_record_id == service_record_id,
        TreatmentPlanProgress.kind == "visit"))).scalars().first()
    if original is None:
        return None
    plan = await session.get(TreatmentPlan, (tenant_id, original.plan_id), with_for_update=True,
                             populate_existing=True)
    item = await session.get(TreatmentPlanItem, (tenant_id, original.item_id), populate_existing=True)
    assert plan is not None and item is not None  # noqa: S101 - foreign keys
    inserted = await session.execute(pg_insert(TreatmentPlanProgress).values(
        tenant_id=tenant_id, id=new_id(), created_at=utcnow(), plan_id=plan.id, item_id=item.id,
        service_record_id=service_record_id, kind="reversal", delta=-1, reverses_id=original.id,
        staff_id=original.staff_id, occurred_at=utcnow(),
    ).on_conflict_do_nothing(index_elements=["tenant_id", "service_record_id", "kind"])
        .returning(TreatmentPlanProgress.id))
    if inserted.scalar_one_or_none() is None:
        return None
    item.sessions_done -= 1
    plan.sessions_done -= 1
    plan.updated_at = utcnow()
    if plan.status == PlanStatus.COMPLETED:
        plan.status, plan.completed_at = PlanStatus.ACTIVE, None
    # The last visit is the latest one still standing (the reversal entries were flushed above).
    plan.last_visit_at = (await session.execute(text(
        "SELECT max(v.occurred_at) FROM treatment_plan_progress v WHERE v.tenant_id = :t AND v.plan_id = :p "
        "AND v.kind = 'visit' AND NOT EXISTS (SELECT 1 FROM treatment_plan_progress r WHERE r.tenant_id = v.tenant_id "
        "AND r.reverses_id = v.id)"), {"t": tenant_id, "p": plan.id})).scalar_one_or_none()
    session.add_all([item, plan])
    await session.flush()
    audit.record(session, "treatment_plan.progress_reversed", "treatment_plan", plan.id, tenant_id=tenant_id,
                 service_record_id=str(service_record_id), sessions_done=plan.sessions_done)
    await _progress_event(session, plan, item, service_record_id, -1)
    return plan


# ---------------------------------------------------------------- plugged into members


@members.timeline_source("treatment_plan")
async def _plan_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                         before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    """A plan's start, completion and cancellation (visits are the service records' own items). No goals or
    reasons: the timeline is read with members:read, which does not open health data."""
    plans = list((await session.execute(select(TreatmentPlan).where(
        TreatmentPlan.tenant_id == tenant_id, TreatmentPlan.member_id == member_id)
        .order_by(TreatmentPlan.created_at.desc()).limit(TIMELINE_PLANS))).scalars())
    items: list[TimelineItem] = []
    for plan in plans:
        data = {"plan_id": str(plan.id), "status": plan.status, "sessions_planned": plan.sessions_planned,
                "sessions_done": plan.sessions_done}
        if plan.created_at is not None:
            items.append(TimelineItem(type="treatment_plan", occurred_at=plan.created_at,
                                      id=f"treatment_plan:{plan.id}:created", title=f"疗程开始 · {plan.title}",
                                      data=data | {"event": "created"}))
        if plan.completed_at is not None:
            items.append(TimelineItem(type="treatment_plan", occurred_at=plan.completed_at,
                                      id=f"treatment_plan:{plan.id}:completed", title=f"疗程完成 · {plan.title}",
                                      data=data | {"event": "completed"}))
        if plan.cancelled_at is not None:
            items.append(TimelineItem(type="treatment_plan", occurred_at=plan.cancelled_at,
                                      id=f"treatment_plan:{plan.id}:cancelled", title=f"疗程取消 · {plan.title}",
                                      data=data | {"event": "cancelled"}))
    if before is not None:
        items = [i for i in items if (i.occurred_at, i.id) < before]
    items.sort(key=lambda i: (i.occurred_at, i.id), reverse=True)
    return items[:limit]


@members.merge_mover("treatment_plans")
async def _move_plans(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID, survivor_id: UUID) -> dict[str, int]:
    moved = await session.execute(text(
        "UPDATE treatment_plans SET member_id = :s WHERE tenant_id = :t AND member_id = :d"),
        {"t": tenant_id, "s": survivor_id, "d": duplicate_id})
    return {"treatment_plans": moved.rowcount}
