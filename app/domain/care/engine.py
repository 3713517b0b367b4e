"""The rules engine: events and time become rule runs; due runs execute their actions.

1. An event of a catalogued topic reaches `handlers.evaluate_event`. Each enabled rule on that topic whose
   filter and member conditions match gets a `rule_runs` row keyed by the event's cause
   (`INSERT … ON CONFLICT DO NOTHING`: the same cause never makes a second run) and a delayed
   `care.rule_due` outbox event at the run's time (delay, store-local "at", quiet hours).
2. The schedule job (`jobs.run_care_schedules`, hourly with catch-up) does the same for inactive members,
   birthdays and visits a few days ahead, with date-based cause keys.
3. `care.rule_due` executes the run (`execute_run`). Each action commits in its own short transaction
   together with a progress mark on the run, so a job that crashes mid-way is retried by the outbox and
   resumes after the last committed action: nothing is sent or issued twice. A run that is not
   `scheduled` any more is left alone.

Members, stores, appointments, cards and services are read through their contexts' read APIs.
Time comes from `clock.utcnow()` (looked up on the module, so tests can freeze it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import clock, retry
from app.core.db import SessionFactory
from app.core.errors import AppError
from app.core.events import emit
from app.core.ids import new_id
from app.domain.booking import service as booking
from app.domain.cards import service as cards
from app.domain.care import actions
from app.domain.care.events import RULE_DUE
from app.domain.care.models import AutomationRule, RuleRun, RuleRunLog, RunStatus
from app.domain.care.schemas import (
    Action,
    ChangeTag,
    Conditions,
    CreateTask,
    Delay,
    EventTrigger,
    IssueCoupon,
    QuietHours,
    RuleParts,
    ScheduleTrigger,
    SendMessage,
    parse_hhmm,
    parse_rule_parts,
)
from app.domain.catalog import service as catalog
from app.domain.members import service as members
from app.domain.tenancy import service as tenancy

if TYPE_CHECKING:
    from app.domain.members.models import Member

log = logging.getLogger("careloop.care")

CATCH_UP_DAYS = 3  # a missed cron day is made up this many days later at most (then the moment has passed)
BATCH = 1000


# ---------------------------------------------------------------- time


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), zone)


def apply_delay(base: datetime, delay: Delay, zone: ZoneInfo) -> datetime:
    """`minutes` after the cause; with `at`, the store-local day `days` later at that time (moved to the
    next day when that moment is not after the cause, e.g. "at 10:00" for a cause at 15:00)."""
    start = base + timedelta(minutes=delay.minutes)
    if delay.at is None:
        return start + timedelta(days=delay.days)
    local = start.astimezone(zone)
    target = datetime.combine(local.date() + timedelta(days=delay.days), parse_hhmm(delay.at), zone)
    if target <= start:
        target = datetime.combine(target.date() + timedelta(days=1), parse_hhmm(delay.at), zone)
    return target


def apply_quiet_hours(at: datetime, quiet: QuietHours | None, zone: ZoneInfo) -> datetime:
    """A moment inside the store-local quiet window (which may wrap midnight) moves to its end."""
    if quiet is None or quiet.start == quiet.end:
        return at
    start, end = parse_hhmm(quiet.start), parse_hhmm(quiet.end)
    local = at.astimezone(zone)
    now_t = local.time().replace(tzinfo=None)
    if start < end:
        inside, day = start <= now_t < end, local.date()
    else:
        inside = now_t >= start or now_t < end
        day = local.date() + timedelta(days=1) if now_t >= start else local.date()
    return datetime.combine(day, end, zone) if inside else at


def run_time(base: datetime, parts: RuleParts, zone: ZoneInfo, now: datetime) -> datetime:
    """When a run executes: the delay from its cause, never in the past, then out of quiet hours."""
    return apply_quiet_hours(max(apply_delay(base, parts.delay, zone), now), parts.quiet_hours, zone)


async def store_zone(session: AsyncSession, tenant_id: UUID, store_id: UUID | None) -> ZoneInfo:
    """The store's time zone (the default one without a store)."""
    store = await tenancy.store_row(session, tenant_id, store_id) if store_id else None
    return tenancy.store_zone(store)


async def _store_zones(session: AsyncSession, tenant_id: UUID,
                       store_ids: set[UUID | None]) -> dict[UUID | None, ZoneInfo]:
    stores = await tenancy.stores_by_id(session, tenant_id, {s for s in store_ids if s is not None})
    return {store_id: tenancy.store_zone(stores.get(store_id) if store_id else None) for store_id in store_ids}


# ---------------------------------------------------------------- matching


def _compare(actual: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        checks = {"eq": lambda a, b: a == b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
                  "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "in": lambda a, b: a in b}
        try:
            return actual is not None and all(checks[op](actual, value) for op, value in expected.items())
        except TypeError:
            return False
    if isinstance(expected, list):
        return actual in expected or str(actual) in [str(v) for v in expected]
    return actual == expected or (actual is not None and str(actual) == str(expected))


def filter_matches(trigger: EventTrigger, payload: dict[str, Any]) -> bool:
    return all(_compare(payload.get(key), expected) for key, expected in trigger.filter.items())


def _field_ok(value: Any, low: float | None, high: float | None) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


async def conditions_met(session: AsyncSession, member: Member, conditions: Conditions,
                         store_id: UUID | None) -> bool:
    if conditions.store_ids and store_id not in conditions.store_ids:
        return False
    for cond in conditions.custom_fields:
        value = (member.custom_fields or {}).get(cond.key)
        if cond.equals is not None and value != cond.equals and not (
                isinstance(value, list) and cond.equals in value):
            return False
        if (cond.min is not None or cond.max is not None) and not _field_ok(value, cond.min, cond.max):
            return False
    if conditions.tags_any or conditions.tags_all or conditions.tags_none or conditions.tiers:
        tags = set(await members.tags_of(session, member.tenant_id, member.id))
        if conditions.tags_any and not tags & set(conditions.tags_any):
            return False
        if conditions.tiers and not tags & set(conditions.tiers):
            return False
        if set(conditions.tags_all) - tags or tags & set(conditions.tags_none):
            return False
    if conditions.card_balance_lte is not None:
        if await cards.stored_value_total(session, member.tenant_id, member.id) > conditions.card_balance_lte:
            return False
    return True


async def enrich(session: AsyncSession, tenant_id: UUID, payload: dict[str, Any]) -> dict[str, Any]:
    """Fields rules filter on that the event does not carry (the service's category)."""
    enriched = dict(payload)
    if payload.get("service_id") and "service_category" not in payload:
        try:
            service_id = UUID(str(payload["service_id"]))
        except ValueError:
            service = None
        else:
            service = await catalog.service_row(session, tenant_id, service_id)
        enriched["service_category"] = service.category if service else None
        enriched.setdefault("service_name", service.name if service else None)
    return enriched


# ---------------------------------------------------------------- scheduling runs


def _log(session: AsyncSession, run: RuleRun, state: str, **detail: Any) -> None:
    session.add(RuleRunLog(tenant_id=run.tenant_id, run_id=run.id, rule_id=run.rule_id, status=state,
                           detail=detail))


async def schedule_run(session: AsyncSession, rule: AutomationRule, *, cause_key: str, member_id: UUID | None,
                       store_id: UUID | None, source: str, run_at: datetime, context: dict[str, Any],
                       event_id: UUID | None = None) -> RuleRun | None:
    """Claim the (rule, cause) pair and put the run's due event in the outbox; None when the cause
    already had its run (the unique key decides, also between concurrent workers)."""
    now = clock.utcnow()
    inserted = (await session.execute(
        pg_insert(RuleRun).values(
            tenant_id=rule.tenant_id, id=new_id(), created_at=now, updated_at=now, rule_id=rule.id,
            cause_key=cause_key, member_id=member_id, store_id=store_id, source=source, event_id=event_id,
            status=RunStatus.SCHEDULED, run_at=run_at, context=context, result={}, attempts=0)
        .on_conflict_do_nothing(index_elements=["tenant_id", "rule_id", "cause_key"])
        .returning(RuleRun.id))).scalar_one_or_none()
    if inserted is None:
        return None
    run = await session.get(RuleRun, (rule.tenant_id, inserted))
    _log(session, run, RunStatus.SCHEDULED, run_at=run_at.isoformat(), cause_key=cause_key)
    await emit(session, RULE_DUE, {"run_id": str(run.id), "rule_id": str(rule.id)}, tenant_id=rule.tenant_id,
               available_at=run_at)
    return run


async def enabled_rules(session: AsyncSession, tenant_id: UUID, *, topic: str | None = None,
                        schedule: bool = False) -> list[tuple[AutomationRule, RuleParts]]:
    stmt = select(AutomationRule).where(AutomationRule.tenant_id == tenant_id, AutomationRule.enabled)
    if topic is not None:
        stmt = stmt.where(AutomationRule.trigger["type"].astext == "event",
                          AutomationRule.trigger["topic"].astext == topic)
    if schedule:
        stmt = stmt.where(AutomationRule.trigger["type"].astext == "schedule")
    found = []
    for rule in (await session.execute(stmt.order_by(AutomationRule.id))).scalars().all():
        try:
            found.append((rule, parse_rule_parts(rule.trigger, rule.conditions, rule.delay, rule.quiet_hours,
                                                 rule.actions)))
        except AppError as exc:  # saved before a catalogue change: leave it, say so
            log.warning("automation rule no longer valid", extra={"rule_id": str(rule.id), "error": exc.detail})
    return found


# ---------------------------------------------------------------- schedule-triggered rules


@dataclass
class _Candidate:
    """A member a schedule rule is due for: the cause, the store-local day it is due, what the run keeps."""

    member: Member | None
    store_id: UUID | None
    day: date
    zone: ZoneInfo
    cause: str
    context: dict[str, Any]


def _birthday_in(year: int, birthday: date) -> date:
    if birthday.month == 2 and birthday.day == 29:
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 2, 28)  # celebrated on the 28th in common years
    return birthday.replace(year=year)


def _due_day(day: date, today: date) -> bool:
    return today - timedelta(days=CATCH_UP_DAYS) <= day <= today


async def _inactive(session: AsyncSession, tenant_id: UUID, n: int, now: datetime) -> list[_Candidate]:
    rows = await members.members_last_visited_between(
        session, tenant_id, since=now - timedelta(days=n + CATCH_UP_DAYS + 2), before=now - timedelta(days=n - 1),
        limit=BATCH * 10)
    zones = await _store_zones(session, tenant_id, {m.home_store_id for m in rows})
    found = []
    for member in rows:
        zone = zones[member.home_store_id]
        visited = member.last_visit_at.astimezone(zone).date()
        day = visited + timedelta(days=n)
        if _due_day(day, now.astimezone(zone).date()):
            found.append(_Candidate(member, member.home_store_id, day, zone,
                                    # one wake-up per spell of absence: a new visit starts a new spell
                                    f"member:{member.id}:inactive{n}d:since:{visited.isoformat()}",
                                    {"last_visit_at": member.last_visit_at.isoformat()}))
    return found


async def _birthdays(session: AsyncSession, tenant_id: UUID, n: int, now: datetime) -> list[_Candidate]:
    first, last = (now - timedelta(days=CATCH_UP_DAYS + 1)).date(), (now + timedelta(days=n + 1)).date()
    rows = await members.members_with_birthday_between(session, tenant_id, first, last, limit=BATCH * 10)
    zones = await _store_zones(session, tenant_id, {m.home_store_id for m in rows})
    found = []
    for member in rows:
        zone = zones[member.home_store_id]
        today = now.astimezone(zone).date()
        for year in (today.year - 1, today.year, today.year + 1):
            day = _birthday_in(year, member.birthday) - timedelta(days=n)
            if _due_day(day, today):
                found.append(_Candidate(member, member.home_store_id, day, zone,
                                        f"member:{member.id}:birthday:{year}", {}))
    return found


async def _visits_ahead(session: AsyncSession, tenant_id: UUID, n: int, now: datetime) -> list[_Candidate]:
    visits = await booking.booked_visits_between(session, tenant_id, now, now + timedelta(days=n + 2),
                                                 limit=BATCH * 10)
    zones = await _store_zones(session, tenant_id, {v.store_id for v in visits})
    people = await members.members_by_id(session, tenant_id, {v.member_id for v in visits})
    found = []
    for visit in visits:
        zone = zones[visit.store_id]
        visit_day = visit.starts_at.astimezone(zone).date()
        day = visit_day - timedelta(days=n)
        if _due_day(day, now.astimezone(zone).date()):
            found.append(_Candidate(people.get(visit.member_id), visit.store_id, day, zone,
                                    # a visit moved to another day is a new cause
                                    f"visit:{visit.visit_id}:before{n}d:{visit_day.isoformat()}",
                                    {"visit": {"id": str(visit.visit_id), "starts_at": visit.starts_at.isoformat()}}))
    return found


CANDIDATES = {"inactive_days": _inactive, "birthday": _birthdays, "before_next_visit": _visits_ahead}


async def schedule_rule_runs(session: AsyncSession, rule: AutomationRule, parts: RuleParts,
                             now: datetime) -> int:
    """Runs for one schedule rule's members due today (store-local), or in the last catch-up days."""
    assert isinstance(parts.trigger, ScheduleTrigger)
    created = 0
    for candidate in await CANDIDATES[parts.trigger.kind](session, rule.tenant_id, parts.trigger.days, now):
        member = candidate.member
        if member is None or not await conditions_met(session, member, parts.conditions, candidate.store_id):
            continue
        base = local_midnight(candidate.day, candidate.zone)
        run = await schedule_run(session, rule, cause_key=candidate.cause, member_id=member.id,
                                 store_id=candidate.store_id, source=f"schedule:{parts.trigger.kind}",
                                 run_at=run_time(base, parts, candidate.zone, now), context=candidate.context)
        created += run is not None
        if created >= BATCH:
            break  # the next pass goes on where this one stopped: done causes are skipped by their key
    return created


async def schedule_tenant_runs(session: AsyncSession, tenant_id: UUID, now: datetime) -> int:
    """The runs every schedule rule of the tenant is due for now."""
    created = 0
    for rule, parts in await enabled_rules(session, tenant_id, schedule=True):
        created += await schedule_rule_runs(session, rule, parts, now)
    return created


# ---------------------------------------------------------------- executing due runs


class _Skip(Exception):  # noqa: N818 - control flow: the run has nothing left to do
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _locked_run(session: AsyncSession, tenant_id: UUID, run_id: UUID) -> RuleRun | None:
    return await session.get(RuleRun, (tenant_id, run_id), with_for_update=True, populate_existing=True)


def _finish(session: AsyncSession, run: RuleRun, final: str, now: datetime, **result: Any) -> None:
    run.status, run.finished_at, run.updated_at = final, now, now
    run.result = {**run.result, **result}
    session.add(run)
    _log(session, run, final, **result)


async def _still_applies(session: AsyncSession, run: RuleRun, rule: AutomationRule, parts: RuleParts,
                         member: Member | None) -> None:
    """What made the run may have changed while it waited: re-check before acting. `member` is None
    when the member is gone or not active any more."""
    if not rule.enabled:
        raise _Skip("rule_disabled")
    if member is None:
        raise _Skip("member_inactive")
    appointment = run.context.get("appointment")
    if appointment and not await booking.appointment_booked(session, run.tenant_id, UUID(appointment["id"]),
                                                            schedule_version=appointment.get("schedule_version")):
        raise _Skip("appointment_changed")
    visit = run.context.get("visit")
    if visit and not await booking.visit_booked_at(session, run.tenant_id, UUID(visit["id"]),
                                                   datetime.fromisoformat(visit["starts_at"])):
        raise _Skip("appointment_changed")
    if "last_visit_at" in run.context and (
            member.last_visit_at is None or member.last_visit_at.isoformat() != run.context["last_visit_at"]):
        raise _Skip("member_visited_again")
    if not await conditions_met(session, member, parts.conditions, run.store_id):
        raise _Skip("conditions_no_longer_met")


async def _prepare(sessions: SessionFactory, tenant_id: UUID, run_id: UUID,
                   now: datetime) -> list[dict[str, Any]] | None:
    """Check the run still applies and freeze its action plan (a rule edited between retries must not
    shift which actions count as done). None: nothing to execute."""
    async with sessions(tenant_id) as session:
        run = await _locked_run(session, tenant_id, run_id)
        if run is None or run.status != RunStatus.SCHEDULED:
            return None
        if "plan" in run.result:
            return run.result["plan"]
        rule = await session.get(AutomationRule, (tenant_id, run.rule_id))
        try:
            parts = parse_rule_parts(rule.trigger, rule.conditions, rule.delay, rule.quiet_hours, rule.actions)
        except AppError as exc:
            _finish(session, run, RunStatus.FAILED, now, reason="rule_invalid", detail=exc.detail)
            return None
        member = None
        if run.member_id is not None:
            active = await members.members_by_id(session, tenant_id, {run.member_id}, active_only=True)
            member = active.get(run.member_id)
        try:
            await _still_applies(session, run, rule, parts, member)
        except _Skip as skip:
            _finish(session, run, RunStatus.SKIPPED, now, reason=skip.reason)
            return None
        plan = [a.model_dump(mode="json") for a in parts.actions]
        run.result = {**run.result, "plan": plan, "actions": {}, "rule_version": rule.version}
        run.updated_at = now
        session.add(run)
        _log(session, run, "started", attempt=run.attempts + 1)
        return plan


def _action_model(raw: dict[str, Any]) -> Action:
    return {"send_message": SendMessage, "create_task": CreateTask, "issue_coupon": IssueCoupon,
            "add_tag": ChangeTag, "remove_tag": ChangeTag}[raw["type"]].model_validate(raw)


async def execute_run(sessions: SessionFactory, tenant_id: UUID, run_id: UUID) -> str | None:
    """Execute a due run, each action in a short transaction of its own that also marks it done on the
    run; safe to call again at any point (what is committed is not redone)."""
    now = clock.utcnow()
    plan = await _prepare(sessions, tenant_id, run_id, now)
    if plan is None:
        return None
    for index, raw in enumerate(plan):
        async with sessions(tenant_id) as session:
            run = await _locked_run(session, tenant_id, run_id)
            if run.status != RunStatus.SCHEDULED or str(index) in run.result.get("actions", {}):
                continue
            action = _action_model(raw)
            try:
                async with session.begin_nested():  # a refused action leaves the transaction usable
                    outcome = await actions.perform(session, run, index, action)
            except AppError as exc:
                outcome = {"status": "failed", "code": exc.code, "detail": exc.detail}
            outcome = {"type": raw["type"], **outcome}
            run = await _locked_run(session, tenant_id, run_id)
            run.result = {**run.result, "actions": {**run.result.get("actions", {}), str(index): outcome}}
            run.updated_at = clock.utcnow()
            session.add(run)
            _log(session, run, f"action:{outcome['status']}", index=index, **outcome)
    async with sessions(tenant_id) as session:
        run = await _locked_run(session, tenant_id, run_id)
        if run.status != RunStatus.SCHEDULED:
            return run.status
        statuses = [o["status"] for o in run.result.get("actions", {}).values()]
        if "failed" in statuses:
            status = RunStatus.FAILED
        elif statuses and all(s == "skipped" for s in statuses):
            status = RunStatus.SKIPPED
        else:
            status = RunStatus.DONE
        _finish(session, run, status, clock.utcnow())
        return status


async def record_crash(sessions: SessionFactory, tenant_id: UUID, run_id: UUID, exc: Exception, *,
                       final: bool) -> None:
    """Note a crashed attempt on the run; at the last attempt the run fails (the outbox gives up on its
    event now, and the run must not look pending forever)."""
    async with sessions(tenant_id) as session:
        run = await _locked_run(session, tenant_id, run_id)
        if run is None or run.status != RunStatus.SCHEDULED:
            return
        run.attempts += 1
        run.last_error = retry.error_text(exc)
        run.updated_at = clock.utcnow()
        session.add(run)
        if final:
            _finish(session, run, RunStatus.FAILED, clock.utcnow(), reason="gave_up", error=run.last_error)
        else:
            _log(session, run, "retrying", attempt=run.attempts, error=run.last_error)
