"""The rules engine: events and time become rule runs; due runs execute their actions.

1. An event of a catalogued topic reaches `evaluate_event` (one handler for every topic). Each enabled
   rule on that topic whose filter and member conditions match gets a `rule_runs` row keyed by the
   event's cause (`INSERT … ON CONFLICT DO NOTHING`: the same cause never makes a second run) and a
   delayed `care.rule_due` outbox event at the run's time (delay, store-local "at", quiet hours).
2. The schedule job (`run_care_schedules`, hourly with catch-up) does the same for inactive members,
   birthdays and visits a few days ahead, with date-based cause keys.
3. `care.rule_due` executes the run. Each action commits in its own transaction together with a
   progress mark on the run, so a job that crashes mid-way is retried by the outbox and resumes after
   the last committed action: nothing is sent or issued twice. A run that is not `scheduled` any more
   is left alone.

Time comes from `clock.utcnow()` (looked up on the module, so tests can freeze it).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import clock
from app.core.context import RequestContext, reset_context, set_context
from app.core.db import session_scope
from app.core.errors import AppError
from app.core.outbox import OutboxEvent, emit
from app.core.settings import get_settings
from app.domain.care.catalogue import TOPICS
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
from app.domain.members.models import Member, MemberStatus
from app.domain.tenancy.models import Store
from app.workers.registry import on

log = logging.getLogger("careloop.care")

DUE_TOPIC = "care.rule_due"
OVERDUE_TOPIC = "task.overdue"
CATCH_UP_DAYS = 3  # a missed cron day is made up this many days later at most (then the moment has passed)
BATCH = 1000


# ---------------------------------------------------------------- time


def zone_of(name: str | None) -> ZoneInfo:
    return ZoneInfo(name or "Asia/Shanghai")


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


async def _tags(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> set[str]:
    from app.domain.members import service as members

    return set(await members.tags_of(session, tenant_id, member_id))


async def _stored_value(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> int:
    from app.domain.cards.models import Card

    total = (await session.execute(select(func.coalesce(func.sum(Card.principal_balance + Card.bonus_balance), 0))
                                   .where(Card.tenant_id == tenant_id, Card.member_id == member_id,
                                          Card.kind == "stored_value", Card.status == "active"))).scalar_one()
    return int(total)


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
        tags = await _tags(session, member.tenant_id, member.id)
        if conditions.tags_any and not tags & set(conditions.tags_any):
            return False
        if conditions.tiers and not tags & set(conditions.tiers):
            return False
        if set(conditions.tags_all) - tags or tags & set(conditions.tags_none):
            return False
    if conditions.card_balance_lte is not None:
        if await _stored_value(session, member.tenant_id, member.id) > conditions.card_balance_lte:
            return False
    return True


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
            tenant_id=rule.tenant_id, id=_new_id(), created_at=now, updated_at=now, rule_id=rule.id,
            cause_key=cause_key, member_id=member_id, store_id=store_id, source=source, event_id=event_id,
            status=RunStatus.SCHEDULED, run_at=run_at, context=context, result={}, attempts=0)
        .on_conflict_do_nothing(index_elements=["tenant_id", "rule_id", "cause_key"])
        .returning(RuleRun.id))).scalar_one_or_none()
    if inserted is None:
        return None
    run = await session.get(RuleRun, (rule.tenant_id, inserted))
    _log(session, run, RunStatus.SCHEDULED, run_at=run_at.isoformat(), cause_key=cause_key)
    await emit(session, DUE_TOPIC, {"run_id": str(run.id), "rule_id": str(rule.id)}, tenant_id=rule.tenant_id,
               available_at=run_at)
    return run


def _new_id() -> UUID:
    from app.core.ids import new_id

    return new_id()


async def _enabled_rules(session: AsyncSession, tenant_id: UUID, *, topic: str | None = None,
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


async def _store_zone(session: AsyncSession, tenant_id: UUID, store_id: UUID | None) -> ZoneInfo:
    store = await session.get(Store, (tenant_id, store_id)) if store_id else None
    return zone_of(store.timezone if store else None)


async def _enrich(session: AsyncSession, tenant_id: UUID, payload: dict[str, Any]) -> dict[str, Any]:
    """Fields rules filter on that the event does not carry (the service's category)."""
    from app.domain.catalog.models import Service

    enriched = dict(payload)
    if payload.get("service_id") and "service_category" not in payload:
        try:
            service = await session.get(Service, (tenant_id, UUID(str(payload["service_id"]))))
        except ValueError:
            service = None
        enriched["service_category"] = service.category if service else None
        enriched.setdefault("service_name", service.name if service else None)
    return enriched


async def _appointment_open(session: AsyncSession, tenant_id: UUID, appointment_id: str,
                            schedule_version: Any = None, starts_at: str | None = None) -> bool:
    from app.domain.booking.models import Appointment

    appointment = await session.get(Appointment, (tenant_id, UUID(appointment_id)))
    if appointment is None or appointment.status != "booked":
        return False
    if schedule_version is not None and appointment.schedule_version != schedule_version:
        return False
    return starts_at is None or appointment.starts_at == datetime.fromisoformat(starts_at)


@on(*TOPICS)
async def evaluate_event(session: AsyncSession, event: OutboxEvent) -> None:
    """Every enabled rule on this topic whose filter and conditions match gets its run (once per cause)."""
    rules = await _enabled_rules(session, event.tenant_id, topic=event.topic)
    if not rules or not event.payload.get("member_id"):
        return
    spec = TOPICS[event.topic]
    member = await session.get(Member, (event.tenant_id, UUID(event.payload["member_id"])))
    if member is None or member.status != MemberStatus.ACTIVE:
        return
    payload = await _enrich(session, event.tenant_id, event.payload)
    if spec.appointment_must_be_open and not await _appointment_open(
            session, event.tenant_id, payload["appointment_id"], payload.get("schedule_version")):
        return  # cancelled or moved since the reminder was scheduled: the moved one has its own
    store_id = UUID(payload["store_id"]) if payload.get("store_id") else member.home_store_id
    zone = await _store_zone(session, event.tenant_id, store_id)
    # A delayed event (reminder_due) stands for its due time; any other for the moment it happened.
    base = event.available_at if event.topic.endswith("_due") else event.created_at
    now = clock.utcnow()
    context = {"payload": payload}
    if spec.appointment_must_be_open:
        context["appointment"] = {"id": payload["appointment_id"], "schedule_version": payload.get("schedule_version")}
    for rule, parts in rules:
        if not filter_matches(parts.trigger, payload):
            continue
        if not await conditions_met(session, member, parts.conditions, store_id):
            continue
        await schedule_run(session, rule, cause_key=spec.cause(payload, event), member_id=member.id,
                           store_id=store_id, source=event.topic, event_id=event.id,
                           run_at=run_time(base, parts, zone, now), context=context)


# ---------------------------------------------------------------- schedule-triggered rules


def _birthday_in(year: int, birthday: date) -> date:
    if birthday.month == 2 and birthday.day == 29:
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 2, 28)  # celebrated on the 28th in common years
    return birthday.replace(year=year)


def _due_day(day: date, today: date) -> bool:
    return today - timedelta(days=CATCH_UP_DAYS) <= day <= today


async def _member_rows(session: AsyncSession, tenant_id: UUID, where: str, params: dict[str, Any]) -> list[Any]:
    return list((await session.execute(text(
        "SELECT m.id, m.home_store_id, m.last_visit_at, m.birthday, s.timezone FROM members m "
        "LEFT JOIN stores s ON s.tenant_id = m.tenant_id AND s.id = m.home_store_id "
        f"WHERE m.tenant_id = :t AND m.status = 'active' AND {where} ORDER BY m.id LIMIT :limit"),
        {"t": tenant_id, "limit": BATCH * 10, **params})).all())


async def _candidates(session: AsyncSession, tenant_id: UUID, trigger: ScheduleTrigger,
                      now: datetime) -> list[dict[str, Any]]:
    """(member, cause key, store, the local day it is due, context) for one schedule rule, now."""
    found: list[dict[str, Any]] = []
    n = trigger.days
    if trigger.kind == "inactive_days":
        rows = await _member_rows(session, tenant_id, "m.last_visit_at < :upper AND m.last_visit_at >= :lower",
                                  {"upper": now - timedelta(days=n - 1),
                                   "lower": now - timedelta(days=n + CATCH_UP_DAYS + 2)})
        for member_id, store_id, last_visit, _, tz in rows:
            zone = zone_of(tz)
            visited = last_visit.astimezone(zone).date()
            day = visited + timedelta(days=n)
            if _due_day(day, now.astimezone(zone).date()):
                found.append({"member_id": member_id, "store_id": store_id, "day": day, "zone": zone,
                              # one wake-up per spell of absence: a new visit starts a new spell
                              "cause": f"member:{member_id}:inactive{n}d:since:{visited.isoformat()}",
                              "context": {"last_visit_at": last_visit.isoformat()}})
    elif trigger.kind == "birthday":
        first, last = (now - timedelta(days=CATCH_UP_DAYS + 1)).date(), (now + timedelta(days=n + 1)).date()
        pairs = {((first + timedelta(days=i)).month, (first + timedelta(days=i)).day)
                 for i in range((last - first).days + 1)}
        if (2, 28) in pairs:
            pairs.add((2, 29))
        keys = [m * 100 + d for m, d in pairs]
        rows = await _member_rows(session, tenant_id, "m.birthday IS NOT NULL AND "
                                  "(EXTRACT(MONTH FROM m.birthday) * 100 + EXTRACT(DAY FROM m.birthday))::int "
                                  "= ANY(CAST(:keys AS int[]))", {"keys": keys})
        for member_id, store_id, _, birthday, tz in rows:
            zone = zone_of(tz)
            today = now.astimezone(zone).date()
            for year in (today.year - 1, today.year, today.year + 1):
                celebrated = _birthday_in(year, birthday)
                day = celebrated - timedelta(days=n)
                if _due_day(day, today):
                    found.append({"member_id": member_id, "store_id": store_id, "day": day, "zone": zone,
                                  "cause": f"member:{member_id}:birthday:{year}", "context": {}})
    elif trigger.kind == "before_next_visit":
        rows = (await session.execute(text(
            "SELECT a.visit_id, min(a.starts_at) AS starts_at, a.member_id, a.store_id, s.timezone "
            "FROM appointments a JOIN stores s ON s.tenant_id = a.tenant_id AND s.id = a.store_id "
            "WHERE a.tenant_id = :t AND a.status = 'booked' AND a.starts_at > :now AND a.starts_at < :until "
            "GROUP BY a.visit_id, a.member_id, a.store_id, s.timezone ORDER BY 2 LIMIT :limit"),
            {"t": tenant_id, "now": now, "until": now + timedelta(days=n + 2), "limit": BATCH * 10})).all()
        for visit_id, starts_at, member_id, store_id, tz in rows:
            zone = zone_of(tz)
            visit_day = starts_at.astimezone(zone).date()
            day = visit_day - timedelta(days=n)
            if _due_day(day, now.astimezone(zone).date()):
                found.append({"member_id": member_id, "store_id": store_id, "day": day, "zone": zone,
                              # a visit moved to another day is a new cause
                              "cause": f"visit:{visit_id}:before{n}d:{visit_day.isoformat()}",
                              "context": {"visit": {"id": str(visit_id), "starts_at": starts_at.isoformat()}}})
    return found


async def schedule_rule_runs(session: AsyncSession, rule: AutomationRule, parts: RuleParts,
                             now: datetime) -> int:
    """Runs for one schedule rule's members due today (store-local), or in the last catch-up days."""
    assert isinstance(parts.trigger, ScheduleTrigger)
    created = 0
    for candidate in await _candidates(session, rule.tenant_id, parts.trigger, now):
        member = await session.get(Member, (rule.tenant_id, candidate["member_id"]))
        if member is None or not await conditions_met(session, member, parts.conditions, candidate["store_id"]):
            continue
        base = local_midnight(candidate["day"], candidate["zone"])
        run = await schedule_run(session, rule, cause_key=candidate["cause"], member_id=member.id,
                                 store_id=candidate["store_id"], source=f"schedule:{parts.trigger.kind}",
                                 run_at=run_time(base, parts, candidate["zone"], now),
                                 context=candidate["context"])
        created += run is not None
        if created >= BATCH:
            break  # the next pass goes on where this one stopped: done causes are skipped by their key
    return created


async def run_care_schedules(ctx: dict[str, Any] | None = None, *, now: datetime | None = None) -> dict[str, int]:
    """Cron (hourly, and at start-up): schedule-triggered rules, and overdue task notices. Hourly, so
    each store's local day is seen soon after it starts, whatever its time zone; the cause keys make
    every pass after the first find nothing new."""
    token = set_context(RequestContext(actor_type="system", actor_id="care-schedules"))
    now = now or clock.utcnow()
    done = {"runs": 0, "overdue": 0}
    try:
        async with session_scope(system=True) as session:
            tenants = (await session.execute(text(
                "SELECT DISTINCT tenant_id FROM automation_rules WHERE enabled AND trigger->>'type' = 'schedule'"
            ))).scalars().all()
        for tenant_id in tenants:
            try:
                async with session_scope(tenant_id) as session:
                    for rule, parts in await _enabled_rules(session, tenant_id, schedule=True):
                        done["runs"] += await schedule_rule_runs(session, rule, parts, now)
            except Exception:  # noqa: BLE001 - one tenant's failure must not hold up the others
                log.exception("care schedules failed", extra={"tenant_id": str(tenant_id)})
        done["overdue"] = await announce_overdue_tasks(now)
        return done
    finally:
        reset_context(token)


async def announce_overdue_tasks(now: datetime) -> int:
    """Once per task: `task.overdue` for the messaging capability to tell the assignee and managers."""
    async with session_scope(system=True) as session:
        rows = (await session.execute(text(
            "UPDATE tasks SET overdue_notified_at = :now WHERE (tenant_id, id) IN ("
            "  SELECT tenant_id, id FROM tasks WHERE status = 'open' AND due_at < :now "
            "  AND overdue_notified_at IS NULL ORDER BY due_at LIMIT :limit FOR UPDATE SKIP LOCKED) "
            "RETURNING tenant_id, id, assignee_id, store_id, member_id, kind, due_at"),
            {"now": now, "limit": BATCH})).all()
        for tenant_id, task_id, assignee_id, store_id, member_id, kind, due_at in rows:
            await emit(session, OVERDUE_TOPIC, {
                "task_id": str(task_id), "assignee_id": str(assignee_id) if assignee_id else None,
                "store_id": str(store_id) if store_id else None, "member_id": str(member_id) if member_id else None,
                "kind": kind, "due_at": due_at.isoformat()}, tenant_id=tenant_id)
    return len(rows)


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
    """What made the run may have changed while it waited: re-check before acting."""
    if not rule.enabled:
        raise _Skip("rule_disabled")
    if member is None or member.status != MemberStatus.ACTIVE:
        raise _Skip("member_inactive")
    appointment = run.context.get("appointment")
    if appointment and not await _appointment_open(session, run.tenant_id, appointment["id"],
                                                   appointment.get("schedule_version")):
        raise _Skip("appointment_changed")
    visit = run.context.get("visit")
    if visit:
        from app.domain.booking.models import Appointment

        still = (await session.execute(select(Appointment.id).where(
            Appointment.tenant_id == run.tenant_id, Appointment.visit_id == UUID(visit["id"]),
            Appointment.status == "booked",
            Appointment.starts_at == datetime.fromisoformat(visit["starts_at"])).limit(1))).first()
        if still is None:
            raise _Skip("appointment_changed")
    if "last_visit_at" in run.context and (
            member.last_visit_at is None or member.last_visit_at.isoformat() != run.context["last_visit_at"]):
        raise _Skip("member_visited_again")
    if not await conditions_met(session, member, parts.conditions, run.store_id):
        raise _Skip("conditions_no_longer_met")


async def _prepare(tenant_id: UUID, run_id: UUID, now: datetime) -> list[dict[str, Any]] | None:
    """Check the run still applies and freeze its action plan (a rule edited between retries must not
    shift which actions count as done). None: nothing to execute."""
    async with session_scope(tenant_id) as session:
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
        member = await session.get(Member, (tenant_id, run.member_id)) if run.member_id else None
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


async def execute_run(tenant_id: UUID, run_id: UUID) -> str | None:
    """Execute a due run; safe to call again at any point (what is committed is not redone)."""
    now = clock.utcnow()
    plan = await _prepare(tenant_id, run_id, now)
    if plan is None:
        return None
    from app.domain.care.actions import perform

    for index, raw in enumerate(plan):
        async with session_scope(tenant_id) as session:
            run = await _locked_run(session, tenant_id, run_id)
            if run.status != RunStatus.SCHEDULED or str(index) in run.result.get("actions", {}):
                continue
            action = _action_model(raw)
            try:
                async with session.begin_nested():  # a refused action leaves the transaction usable
                    outcome = await perform(session, run, index, action)
            except AppError as exc:
                outcome = {"status": "failed", "code": exc.code, "detail": exc.detail}
            outcome = {"type": raw["type"], **outcome}
            run = await _locked_run(session, tenant_id, run_id)
            run.result = {**run.result, "actions": {**run.result.get("actions", {}), str(index): outcome}}
            run.updated_at = clock.utcnow()
            session.add(run)
            _log(session, run, f"action:{outcome['status']}", index=index, **outcome)
    async with session_scope(tenant_id) as session:
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


def _action_model(raw: dict[str, Any]) -> Action:
    return {"send_message": SendMessage, "create_task": CreateTask, "issue_coupon": IssueCoupon,
            "add_tag": ChangeTag, "remove_tag": ChangeTag}[raw["type"]].model_validate(raw)


async def _record_crash(tenant_id: UUID, run_id: UUID, exc: Exception, *, final: bool) -> None:
    async with session_scope(tenant_id) as session:
        run = await _locked_run(session, tenant_id, run_id)
        if run is None or run.status != RunStatus.SCHEDULED:
            return
        run.attempts += 1
        run.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        run.updated_at = clock.utcnow()
        session.add(run)
        if final:  # the outbox gives up on the event now: the run must not look pending forever
            _finish(session, run, RunStatus.FAILED, clock.utcnow(), reason="gave_up", error=run.last_error)
        else:
            _log(session, run, "retrying", attempt=run.attempts, error=run.last_error)


@on(DUE_TOPIC)
async def run_due_rule(session: AsyncSession, event: OutboxEvent) -> None:
    """The run's time has come. A crash is recorded on the run and re-raised: the outbox retries the
    event with backoff (and dead-letters it at the last attempt), and the retry resumes the run."""
    run_id = UUID(event.payload["run_id"])
    try:
        await execute_run(event.tenant_id, run_id)
    except Exception as exc:
        final = event.attempts + 1 >= get_settings().job_max_attempts
        try:
            await _record_crash(event.tenant_id, run_id, exc, final=final)
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            log.exception("could not record a rule run failure", extra={"run_id": str(run_id)})
        raise


def message_cause(rule_id: UUID, cause_key: str) -> str:
    """The messaging capability's once-per-cause key for a rule's message (at most 200 characters)."""
    cause = f"rule:{rule_id}:{cause_key}"
    return cause if len(cause) <= 200 else f"rule:{rule_id}:sha256:{hashlib.sha256(cause_key.encode()).hexdigest()}"

