"""Alerts to staff: WeCom application messages that tell staff about work waiting for them.

An alert is an ordinary outbound message (channel `wecom_staff`) sent through `service._send_template`, so it
has the messaging capability's record, retries, backoff and dead letters. What is particular to alerts:

- **Kinds.** Each kind (`ALERT_KINDS`) has a default template, `alert.<kind>`, written for the tenant the first
  time the kind fires (or by the demo), so the tenant can reword it at `/message-templates/alert.<kind>`.
- **Settings.** A tenant switches a kind off (`staff_alert_settings`, `PATCH /staff-alert-settings`, audited);
  a switched-off kind writes nothing at all.
- **Who.** The context that emits the fact decides who is told (it knows what "the approvers of this refund"
  are) and calls `send_staff_alert` from its handler with the staff ids and the variables.
- **Once.** The cause of each message is `alert:<kind>:<subject>:<staff id>`, where the subject names the fact:
  the outbox event that reported it, or the fact itself where it could be announced twice (an overdue task:
  the task and its due time). A redelivered event, or two workers on it, find the message already written
  (`UNIQUE (tenant_id, cause)`), so each person is told once per fact.
- **No WeCom user id.** The message is written like any other and the WeCom channel records it `skipped` with
  reason `no_wecom_userid` at its delivery attempt (`GET /messages?staff_id=…` shows it); it is never retried.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import AppError, Unprocessable
from app.core.ids import new_id
from app.domain.messaging import service
from app.domain.messaging.models import MessageChannel, MessageTemplate, OutboundMessage, StaffAlertSetting
from app.domain.messaging.schemas import AlertSettingOut, AlertSettingsUpdate

log = logging.getLogger("careloop.messaging")

TASK_ASSIGNED = "task_assigned"
TASK_OVERDUE = "task_overdue"
REFUND_PENDING_APPROVAL = "refund_pending_approval"
LOW_STOCK = "low_stock"
ORDER_COMPLETION_FAILED = "order_completion_failed"


@dataclass(frozen=True)
class AlertKind:
    kind: str
    name: str  # as the settings page shows it
    recipients: str  # who is told, in words
    body: str  # the default template text
    variables: tuple[str, ...]

    @property
    def template_key(self) -> str:
        return f"alert.{self.kind}"


ALERT_KINDS: dict[str, AlertKind] = {a.kind: a for a in (
    AlertKind(TASK_ASSIGNED, "新任务提醒", "the task's assignee (not when they assigned it to themselves)",
              "【新任务】{{title}}，客户：{{member_name}}，门店：{{store_name}}，请在{{due_at}}前完成。",
              ("title", "member_name", "store_name", "due_at")),
    AlertKind(TASK_OVERDUE, "任务逾期提醒", "the task's assignee and the managers of the task's store",
              "【任务逾期】{{title}}（客户：{{member_name}}，负责人：{{assignee_name}}）原定{{due_at}}完成，"
              "目前仍未处理，请尽快跟进。",
              ("title", "member_name", "assignee_name", "due_at")),
    AlertKind(REFUND_PENDING_APPROVAL, "退款待审批提醒",
              "staff holding refunds:approve in the order's store with a role of the level waiting "
              "(not the requester, not who decided an earlier level)",
              "【退款待审批】{{store_name}}订单{{order_no}}申请退款¥{{amount_yuan}}（原因：{{reason}}），"
              "等待第{{level}}级审批，请在系统中处理。",
              ("store_name", "order_no", "amount_yuan", "reason", "level")),
    AlertKind(LOW_STOCK, "库存预警", "the managers of the store",
              "【库存预警】{{store_name}}的{{item_name}}只剩{{quantity}}{{unit}}（预警线{{threshold}}{{unit}}），"
              "请及时补货。",
              ("store_name", "item_name", "quantity", "unit", "threshold")),
    AlertKind(ORDER_COMPLETION_FAILED, "订单异常提醒", "the front desk of the order's store",
              "【订单异常】{{store_name}}订单{{order_no}}已付款但未能自动完成（{{error}}），请前台尽快人工处理。",
              ("store_name", "order_no", "error")),
)}

SETTINGS_READ_PERMISSION = "staff:read"
# Tenant-wide: only whoever manages staff in every store (the owner preset) switches alerts on or off.
SETTINGS_WRITE_PERMISSIONS = ("staff:write", "stores:all")


# ---------------------------------------------------------------- settings


async def _stored_settings(session: AsyncSession, tenant_id: UUID) -> dict[str, StaffAlertSetting]:
    rows = (await session.execute(select(StaffAlertSetting).where(StaffAlertSetting.tenant_id == tenant_id)
                                  .execution_options(populate_existing=True))).scalars().all()
    return {row.kind: row for row in rows}


def _present(stored: dict[str, StaffAlertSetting]) -> list[AlertSettingOut]:
    out = []
    for spec in ALERT_KINDS.values():
        row = stored.get(spec.kind)
        out.append(AlertSettingOut(kind=spec.kind, name=spec.name, enabled=row.enabled if row else True,
                                   recipients=spec.recipients, template_key=spec.template_key,
                                   updated_at=row.updated_at if row else None))
    return out


async def alert_settings(session: AsyncSession, actor: Actor) -> list[AlertSettingOut]:
    """Every alert kind and whether it is on (a kind never switched is on)."""
    actor.require(SETTINGS_READ_PERMISSION)
    return _present(await _stored_settings(session, actor.tenant_id))


async def update_alert_settings(session: AsyncSession, actor: Actor,
                                data: AlertSettingsUpdate) -> list[AlertSettingOut]:
    """Switch the named kinds on or off (the others stay as they are); audited with before and after."""
    actor.require(*SETTINGS_WRITE_PERMISSIONS)
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        raise Unprocessable("name at least one alert kind to switch on or off", code="validation_error",
                            field="body", errors=[{"field": "body", "message": "name at least one alert kind",
                                                   "type": "missing"}])
    for kind, enabled in changes.items():
        if enabled is None:
            raise Unprocessable(f"{kind}: give true or false", code="validation_error", field=kind,
                                errors=[{"field": kind, "message": "give true or false", "type": "bool_type"}])
    # Serialises concurrent changes of one tenant's settings (each sees the other's result as its "before").
    await session.execute(select(StaffAlertSetting).where(StaffAlertSetting.tenant_id == actor.tenant_id)
                          .with_for_update())
    before = {s.kind: s.enabled for s in _present(await _stored_settings(session, actor.tenant_id))}
    now = utcnow()
    for kind, enabled in changes.items():
        await session.execute(pg_insert(StaffAlertSetting).values(
            tenant_id=actor.tenant_id, kind=kind, enabled=enabled, updated_at=now,
            updated_by_id=actor.id if actor.kind == "staff" else None,
        ).on_conflict_do_update(index_elements=["tenant_id", "kind"], set_={
            "enabled": enabled, "updated_at": now, "updated_by_id": actor.id if actor.kind == "staff" else None}))
    after = _present(await _stored_settings(session, actor.tenant_id))
    audit.record(session, "staff_alert_settings.update", "staff_alert_settings", actor.tenant_id,
                 before=before, after={s.kind: s.enabled for s in after}, changed=sorted(changes))
    return after


async def alert_enabled(session: AsyncSession, tenant_id: UUID, kind: str) -> bool:
    row = await session.get(StaffAlertSetting, (tenant_id, kind))
    return True if row is None else row.enabled


# ---------------------------------------------------------------- templates


async def alert_template(session: AsyncSession, tenant_id: UUID, kind: str) -> MessageTemplate:
    """The tenant's template of the kind, written from the default the first time it is needed (a concurrent
    first use by another worker finds the same row: the key is unique)."""
    spec = ALERT_KINDS[kind]
    found = await service.find_template(session, tenant_id, spec.template_key)
    if found is not None:
        return found
    now = utcnow()
    await session.execute(pg_insert(MessageTemplate).values(
        tenant_id=tenant_id, id=new_id(), created_at=now, updated_at=now, key=spec.template_key, name=spec.name,
        channel=MessageChannel.WECOM_STAFF, wechat_template_id=None, body=spec.body, variables=list(spec.variables),
        wechat_fields={}, page=None, active=True,
    ).on_conflict_do_nothing(index_elements=["tenant_id", "key"]))
    template = await service.find_template(session, tenant_id, spec.template_key)
    assert template is not None  # inserted now, or by the transaction that beat this one to it
    return template


async def install_alert_templates(session: AsyncSession, tenant_id: UUID) -> list[str]:
    """Every kind's template, so the tenant sees (and may reword) them before the first alert."""
    return [(await alert_template(session, tenant_id, kind)).key for kind in ALERT_KINDS]


# ---------------------------------------------------------------- sending


def local_time(value: datetime | str | None, zone: ZoneInfo) -> str:
    """A time as staff read it: store-local, to the minute."""
    if value is None:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def alert_cause(kind: str, subject: str, staff_id: UUID) -> str:
    return f"alert:{kind}:{subject}:{staff_id}"


async def send_staff_alert(session: AsyncSession, tenant_id: UUID, kind: str, *, staff_ids: Iterable[UUID],
                           variables: dict[str, Any], subject: str) -> list[OutboundMessage]:
    """Tell each of `staff_ids` (each once, in order) about `subject` (what names the fact: see the module's
    "Once"). Nothing is written when the tenant switched the kind off or nobody is to be told. A template the
    tenant reworded so that it needs a variable alerts do not supply cannot render: that is logged, and the
    alert is dropped rather than retried forever."""
    if kind not in ALERT_KINDS:
        raise ValueError(f"unknown alert kind {kind!r}")
    recipients = list(dict.fromkeys(staff_ids))
    if not recipients:
        log.info("staff alert with nobody to tell", extra={"kind": kind, "subject": subject})
        return []
    if not await alert_enabled(session, tenant_id, kind):
        return []
    template = await alert_template(session, tenant_id, kind)
    actor = Actor.system(tenant_id)
    values = {name: ("" if value is None else value) for name, value in variables.items()}
    sent: list[OutboundMessage] = []
    for staff_id in recipients:
        try:
            async with session.begin_nested():
                sent.append(await service._send_template(  # noqa: SLF001 - the system sends on the tenant's behalf
                    session, actor, template_key=template.key, member_id=None, staff_id=staff_id,
                    channel=MessageChannel.WECOM_STAFF, variables=values,
                    cause=alert_cause(kind, subject, staff_id)))
        except AppError as exc:
            log.warning("staff alert not sent", extra={"kind": kind, "subject": subject, "staff_id": str(staff_id),
                                                       "code": exc.code, "detail": exc.detail})
    return sent


__all__ = ["ALERT_KINDS", "LOW_STOCK", "ORDER_COMPLETION_FAILED", "REFUND_PENDING_APPROVAL", "TASK_ASSIGNED",
           "TASK_OVERDUE", "alert_enabled", "alert_settings", "alert_template", "install_alert_templates",
           "local_time", "send_staff_alert", "update_alert_settings"]
