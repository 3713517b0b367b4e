"""Demo message templates for a new tenant (called from app/seed.py).

The keys are the ones the built-in automation rules send (app/domain/care/seed_rules.py), and the
variables are the ones the rules engine supplies (`member_name`, `store_name`, `starts_at`, the event's
`service_name`, …), so the seed rules send real messages once enabled. Patient-facing care texts go by
SMS, which without SMS_GATEWAY_URL is only logged (the message is recorded as `skipped`, reason
`no_sms_gateway`), so the demo works without any vendor; the appointment
reminder is a mini-program subscribe message (replace its WeChat template id with the one assigned to
your mini-program; the fake WeChat server accepts any).
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.db import SessionFactory
from app.core.outbox import OutboxEvent, OutboxStatus
from app.core.pagination import PageParams
from app.domain.care import handlers as care_handlers
from app.domain.care import service as care
from app.domain.care.schemas import RuleCreate, TaskCreate
from app.domain.iam import service as iam
from app.domain.iam.schemas import StaffUpdate
from app.domain.members import service as members
from app.domain.messaging import alerts, service
from app.domain.messaging import handlers as messaging_handlers
from app.domain.messaging.channels import WeComStaffChannel, channels
from app.domain.messaging.schemas import AlertSettingsUpdate, TemplateCreate
from app.integrations.wechat.fake_server import FakeWeChat
from app.integrations.wechat.wecom import WeComClient, WeComConfig

DEMO_TEMPLATES: list[dict] = [
    {"key": "care_after_treatment", "name": "护理关怀", "channel": "sms",
     "body": "{{member_name}}您好，今天的{{service_name}}后注意保暖，24小时内避免冷水，多喝温水、早点休息。"
             "如有任何不适，请随时联系我们。",
     "variables": ["member_name", "service_name"]},
    {"key": "appointment_reminder", "name": "预约提醒", "channel": "mini_program_subscribe",
     "wechat_template_id": "demo-appointment-reminder", "page": "pages/appointments/index",
     "body": "{{member_name}}您好，您在{{store_name}}的预约将于{{starts_at}}开始，请提前10分钟到店。",
     "variables": ["member_name", "store_name", "starts_at"],
     "wechat_fields": {"thing1": "{{store_name}}", "time2": "{{starts_at}}",
                       "thing3": "请提前10分钟到店，如需改期请提前告知"}},
    {"key": "renewal_reminder", "name": "续卡提醒", "channel": "wecom_staff",
     "body": "续卡提醒：会员{{member_name}}的{{service_name}}只剩{{remaining}}次，请在两天内联系TA沟通续卡。",
     "variables": ["member_name", "service_name", "remaining"]},
    {"key": "birthday", "name": "生日祝福", "channel": "sms",
     "body": "{{member_name}}，生日快乐！愿您健康常伴、笑容常在。生日礼券已放入您的会员卡包，期待您来店里坐坐。",
     "variables": ["member_name"]},
    {"key": "wake_up", "name": "久未到店关怀", "channel": "sms",
     "body": "{{member_name}}您好，好久不见！换季时节注意调养身体，我们为您准备了一张到店优惠券，期待您回来放松一下。",
     "variables": ["member_name"]},
]


async def seed_messaging(session: AsyncSession, actor: Actor) -> list[str]:
    """Create the demo templates the tenant does not have yet (by key); existing ones stay as edited."""
    created = []
    for spec in DEMO_TEMPLATES:
        if await service.find_template(session, actor.tenant_id, spec["key"]) is not None:
            continue
        template = await service.create_template(session, actor, TemplateCreate(**spec))
        created.append(f"message template {template.key} ({template.name}, {template.channel})")
    return created


# ---------------------------------------------------------------- alerts to staff

# The store manager's WeCom account (the sidebar demo gives the therapists and the consultant theirs); the
# front desk has none yet, so the demo also shows how an alert to such a colleague is recorded: skipped.
DEMO_ALERT_WECOM_USERIDS = {"manager": "LiXiuYing"}
# (assignee, title, member) of the tasks the store manager hands out in the demo
DEMO_ALERT_TASKS = [("consultant.zhao", "回访张伟：颈椎推拿后的感受，约下一次疗程", "张伟"),
                    ("frontdesk", "为王芳开具上月储值充值的发票", "王芳")]
# A chain that reorders centrally: its stores' managers need no low-stock alerts.
DEMO_ALERT_SETTINGS = {"low_stock": False}
DEMO_RENEWAL_RULE = {
    "key": "renewal_reminder_wecom", "name": "次卡剩余2次提醒顾问（企业微信）", "enabled": True,
    "description": "A WeCom message to the member's consultant when a card item has 2 or fewer sessions left.",
    "trigger": {"type": "event", "topic": "card.sessions_low", "filter": {"remaining": {"lte": 2}}},
    "actions": [{"type": "send_message", "template_key": "renewal_reminder", "channel": "wecom_staff",
                 "recipient": "consultant"}]}


class _ProcessTokens:
    """The WeCom client's token cache for the demo's one delivery run: a dict in this process, so seeding
    needs no Redis (the API and the worker share theirs through Redis)."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self._values.get(key)

    async def set(self, key: str, value: str, *, nx: bool = False, ex: int | None = None) -> bool:
        if nx and key in self._values:
            return False
        self._values[key] = value
        return True

    async def eval(self, script: str, numkeys: int, key: str, owner: str) -> int:
        return 1 if self._values.get(key) == owner and self._values.pop(key) else 0

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)


async def seed_staff_alerts(sessions: SessionFactory, tenant_id: UUID, staff_ids: dict[str, UUID]) -> list[str]:
    """Alert settings, a rule that messages staff, and alerts handed out and delivered as the worker would:
    the store manager assigns two tasks; the consultant's alert leaves through the real WeCom client over
    HTTP to the local fake WeCom server (`careloop fake-wechat`'s: no real WeCom corp is configured in the
    demo), the front desk's is skipped (`no_wecom_userid`). Run after the demo tenant's transaction commits."""
    actor = Actor.system(tenant_id)
    done: list[str] = []
    async with sessions(tenant_id) as session:
        for username, userid in DEMO_ALERT_WECOM_USERIDS.items():
            await iam.update_staff(session, actor, staff_ids[username], StaffUpdate(wecom_userid=userid))
        await alerts.install_alert_templates(session, tenant_id)
        settings = await alerts.update_alert_settings(session, actor, AlertSettingsUpdate(**DEMO_ALERT_SETTINGS))
        done.append("staff alerts: " + ", ".join(f"{s.kind} {'on' if s.enabled else 'off'}" for s in settings))
        rule = await care.create_rule(session, actor, RuleCreate(**DEMO_RENEWAL_RULE))
        done.append(f"automation rule {rule.key} ({rule.name})")
        people = await members.member_ids_by_name(session, tenant_id, {m for _, _, m in DEMO_ALERT_TASKS})
        manager = await iam.load_staff_actor(session, tenant_id, staff_ids["manager"], None)
        for username, title, member_name in DEMO_ALERT_TASKS:
            await care.create_task(session, manager, TaskCreate(
                kind="follow_up", title=title, member_id=people.get(member_name), assignee_id=staff_ids[username],
                due_at=utcnow() + timedelta(days=1)))
    # What the worker does with the task.assigned events, then with the messages they queued.
    with FakeWeChat() as fake, channels.override(WeComStaffChannel(client_factory=lambda: WeComClient(
            WeComConfig(corp_id=fake.corp_id, agent_id=fake.agent_id, secret=fake.corp_secret,
                        base_url=fake.base_url), _ProcessTokens()))):
        for event in await _pending(sessions, tenant_id, "task.assigned"):
            async with sessions(tenant_id) as session:
                await care_handlers.alert_task_assignee(session, event)
        for event in await _pending(sessions, tenant_id, "message.send"):
            await messaging_handlers.deliver_message(sessions, event)
    async with sessions(tenant_id) as session:
        rows, _ = await service.list_messages(session, actor, PageParams(limit=20), template_key="alert.task_assigned")
        done += [f"alert {m.template_key} to staff {m.staff_id}: {m.status}"
                 f"{f' ({m.reason})' if m.reason else ''}" for m in rows]
    return done


async def _pending(sessions: SessionFactory, tenant_id: UUID, topic: str) -> list[OutboxEvent]:
    async with sessions(tenant_id) as session:
        events = list((await session.execute(select(OutboxEvent).where(
            OutboxEvent.tenant_id == tenant_id, OutboxEvent.topic == topic,
            OutboxEvent.status == OutboxStatus.PENDING).order_by(OutboxEvent.id))).scalars().all())
        for event in events:
            session.expunge(event)
    return events
