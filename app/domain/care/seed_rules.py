"""The built-in automation rules every new tenant starts with.

Per the API contract, rules that only create staff tasks start enabled; rules that message patients (or
give coupons) start disabled, because they need the tenant's message template (and coupon template)
first. Once enabled without a configured message template, a run records the message as skipped with
the reason (`template_not_found`) instead of failing.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import clock
from app.core.ids import new_id
from app.domain.care.models import AutomationRule
from app.domain.care.schemas import parse_rule_parts

QUIET = {"start": "21:00", "end": "09:00"}
AESTHETICS = ["医美", "医疗美容", "aesthetics"]

SEED_RULES: list[dict[str, Any]] = [
    {"key": "care_after_treatment", "name": "治疗后24小时关怀消息", "enabled": False,
     "description": "A care message to the member 24 hours after a completed service.",
     "trigger": {"type": "event", "topic": "service.completed"}, "delay": {"minutes": 24 * 60},
     "quiet_hours": QUIET,
     "actions": [{"type": "send_message", "template_key": "care_after_treatment", "channel": None}]},
    {"key": "renewal_task", "name": "次卡剩余2次续卡跟进", "enabled": True,
     "description": "A renewal task for the member's consultant when a card item has 2 or fewer sessions left.",
     "trigger": {"type": "event", "topic": "card.sessions_low", "filter": {"remaining": {"lte": 2}}},
     "actions": [{"type": "create_task", "kind": "renewal", "assignee": "consultant", "due_in_hours": 48,
                  "title": "续卡跟进：{member_name}的{service_name}剩余{remaining}次"}]},
    {"key": "wake_up_30d", "name": "30天未到店唤醒（送券）", "enabled": False,
     "description": "Members without a visit for 30 days get a coupon and a message at 10:00 store time.",
     "trigger": {"type": "schedule", "kind": "inactive_days", "days": 30}, "delay": {"at": "10:00"},
     "quiet_hours": QUIET,
     "actions": [{"type": "issue_coupon", "coupon_template_id": None},
                 {"type": "send_message", "template_key": "wake_up", "channel": None}]},
    {"key": "birthday_coupon", "name": "生日券", "enabled": False,
     "description": "A birthday coupon and greeting at 09:00 on the member's birthday (store time).",
     "trigger": {"type": "schedule", "kind": "birthday"}, "delay": {"at": "09:00"}, "quiet_hours": QUIET,
     "actions": [{"type": "issue_coupon", "coupon_template_id": None},
                 {"type": "send_message", "template_key": "birthday", "channel": None}]},
    {"key": "appointment_reminder", "name": "预约前一天提醒", "enabled": False,
     "description": "A reminder at the store's reminder time before an appointment (24 h by default).",
     "trigger": {"type": "event", "topic": "appointment.reminder_due"}, "quiet_hours": {"start": "21:30",
                                                                                       "end": "08:00"},
     "actions": [{"type": "send_message", "template_key": "appointment_reminder", "channel": None}]},
    {"key": "aesthetics_follow_up_24h", "name": "医美术后24小时回访", "enabled": True,
     "description": "A follow-up call task 24 hours after an aesthetics procedure.",
     "trigger": {"type": "event", "topic": "service.completed", "filter": {"service_category": AESTHETICS}},
     "delay": {"minutes": 24 * 60}, "quiet_hours": QUIET,
     "actions": [{"type": "create_task", "kind": "follow_up", "assignee": "owner", "due_in_hours": 8,
                  "title": "术后24小时回访：{member_name}（{service_name}）"}]},
    {"key": "aesthetics_follow_up_3d", "name": "医美术后第3天回访", "enabled": True,
     "description": "A follow-up call task at 10:00 store time on the third day after an aesthetics procedure.",
     "trigger": {"type": "event", "topic": "service.completed", "filter": {"service_category": AESTHETICS}},
     "delay": {"days": 3, "at": "10:00"},
     "actions": [{"type": "create_task", "kind": "follow_up", "assignee": "owner", "due_in_hours": 8,
                  "title": "术后第3天回访：{member_name}（{service_name}）"}]},
]


async def install_seed_rules(session: AsyncSession, tenant_id: UUID) -> int:
    """Add the built-in rules the tenant does not have yet (by key); existing ones are left as edited."""
    now = clock.utcnow()
    added = 0
    for seed in SEED_RULES:
        parts = parse_rule_parts(seed["trigger"], seed.get("conditions", {}), seed.get("delay", {}),
                                 seed.get("quiet_hours"), seed["actions"])
        row = {"tenant_id": tenant_id, "id": new_id(), "created_at": now, "updated_at": now, "key": seed["key"],
               "name": seed["name"], "description": seed["description"], "enabled": seed["enabled"],
               "builtin": True, "version": 1, "trigger": parts.trigger.model_dump(mode="json"),
               "conditions": parts.conditions.model_dump(mode="json", exclude_defaults=True),
               "delay": parts.delay.model_dump(mode="json", exclude_defaults=True),
               "quiet_hours": parts.quiet_hours.model_dump(mode="json") if parts.quiet_hours else None,
               "actions": [a.model_dump(mode="json") for a in parts.actions]}
        inserted = await session.execute(pg_insert(AutomationRule).values(**row).on_conflict_do_nothing(
            index_elements=["tenant_id", "key"]).returning(AutomationRule.id))
        added += inserted.scalar_one_or_none() is not None
    return added


async def rule_summaries(session: AsyncSession, tenant_id: UUID) -> list[str]:
    rows = (await session.exec(select(AutomationRule).where(AutomationRule.tenant_id == tenant_id)
                               .order_by(AutomationRule.id))).all()
    return [f"{r.name} [{r.key}] {'enabled' if r.enabled else 'disabled'}" for r in rows]
