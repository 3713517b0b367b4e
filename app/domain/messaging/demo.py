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

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.domain.messaging import service
from app.domain.messaging.schemas import TemplateCreate

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
