"""Messaging use cases: templates, subscription consents, `send_template` and delivery.

`send_template` is what the rules engine, the API and any other context call to send a message. It
renders the template, decides whether the message may go out at all (consent, recipient, template
active), writes one `outbound_messages` row per cause, and for a queued message writes the outbox event
`message.send` in the same transaction. The worker's `deliver_message` handler does the sending
(`delivery.py`: attempts, backoff, dead letters; `POST /messages/{id}/retry` revives a dead one here).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, retry
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.events import emit
from app.core.ids import new_id
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.domain.iam import service as iam
from app.domain.members import service as members
from app.domain.members.schemas import TimelineItem
from app.domain.messaging import wechat_keywords
from app.domain.messaging.events import MESSAGE_SEND
from app.domain.messaging.models import (
    MessageChannel,
    MessageConsent,
    MessageStatus,
    MessageTemplate,
    OutboundMessage,
)
from app.domain.messaging.schemas import ConsentReport, MessageSend, TemplateCreate, TemplateUpdate

MAX_CAUSE_LENGTH = 200
PLACEHOLDER = wechat_keywords.PLACEHOLDER


def _invalid(field: str, message: str, code: str = "validation_error", **extra: Any) -> Unprocessable:
    return Unprocessable(f"{field}: {message}", code=code, field=field,
                         errors=[{"field": field, "message": message, "type": code}], **extra)


# ---------------------------------------------------------------- rendering


def placeholders(text_: str) -> list[str]:
    return list(dict.fromkeys(PLACEHOLDER.findall(text_)))


def render(text_: str, variables: dict[str, Any]) -> str:
    """Replace each `{{name}}`; a placeholder without a value is a 422 naming `variables.<name>`.
    Text that merely looks like a placeholder ({{7*7}}) is left as it is."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if variables.get(name) is None:
            raise _invalid(f"variables.{name}", f"the template needs the variable {name!r}",
                           code="template_variable_missing", variable=name)
        return str(variables[name])

    return PLACEHOLDER.sub(value, text_)


def render_template(template: MessageTemplate, variables: dict[str, Any]) -> tuple[str, dict[str, str], list[str]]:
    """The rendered body, the WeChat keyword data (for subscribe messages) as it would be sent, and the
    keyword values WeChat would refuse (`wechat_keywords`: only a `thing` may be shortened, with "…"; any
    other value that breaks its type's rule is named here and left as rendered)."""
    for name in template.variables:  # declared variables are the template's contract with its senders
        if variables.get(name) is None:
            raise _invalid(f"variables.{name}", f"the template needs the variable {name!r}",
                           code="template_variable_missing", variable=name)
    content = render(template.body, variables)
    data: dict[str, str] = {}
    problems: list[str] = []
    for keyword, text_ in (template.wechat_fields or {}).items():
        value = render(text_, variables)
        try:
            data[keyword] = wechat_keywords.value_for(keyword, value)
        except wechat_keywords.KeywordValueError as exc:
            data[keyword] = value
            problems.append(str(exc))
    return content, data, problems


# ---------------------------------------------------------------- templates


def _check_template(template: MessageTemplate) -> None:
    declared = set(template.variables)
    for name in placeholders(template.body):
        if name not in declared:
            raise _invalid("body", f"the placeholder {{{{{name}}}}} is not declared in variables",
                           code="template_variable_undeclared", variable=name)
    for keyword, value in (template.wechat_fields or {}).items():
        for name in placeholders(value):
            if name not in declared:
                raise _invalid(f"wechat_fields.{keyword}", f"the placeholder {{{{{name}}}}} is not declared "
                                                           "in variables", code="template_variable_undeclared",
                               variable=name)
    for keyword, value in (template.wechat_fields or {}).items():
        try:
            wechat_keywords.check_mapping(keyword, value)
        except wechat_keywords.KeywordValueError as exc:
            raise _invalid(f"wechat_fields.{keyword}", exc.message, code="invalid_wechat_field") from exc
    if template.channel == MessageChannel.MINI_PROGRAM_SUBSCRIBE:
        if not template.wechat_template_id:
            raise _invalid("wechat_template_id", "required for mini_program_subscribe templates")
        if not template.wechat_fields:
            raise _invalid("wechat_fields", "subscribe messages need their WeChat keyword data")


def _template_snapshot(t: MessageTemplate) -> dict[str, Any]:
    return {"name": t.name, "channel": t.channel, "wechat_template_id": t.wechat_template_id, "body": t.body,
            "variables": list(t.variables), "wechat_fields": dict(t.wechat_fields or {}), "page": t.page,
            "active": t.active}


async def create_template(session: AsyncSession, actor: Actor, data: TemplateCreate) -> MessageTemplate:
    actor.require("messaging:write")
    if await find_template(session, actor.tenant_id, data.key) is not None:
        raise Conflict(f"a template with the key {data.key!r} exists", code="template_key_taken", field="key")
    template = MessageTemplate(tenant_id=actor.tenant_id, key=data.key, name=data.name, channel=data.channel,
                               wechat_template_id=data.wechat_template_id, body=data.body,
                               variables=list(dict.fromkeys(data.variables)), wechat_fields=dict(data.wechat_fields),
                               page=data.page, active=data.active, updated_at=utcnow())
    _check_template(template)
    session.add(template)
    await session.flush()
    audit.record(session, "message_template.create", "message_template", template.id, key=template.key,
                 after=_template_snapshot(template))
    return template


async def find_template(session: AsyncSession, tenant_id: UUID, key: str, *,
                         for_update: bool = False) -> MessageTemplate | None:
    stmt = select(MessageTemplate).where(MessageTemplate.tenant_id == tenant_id, MessageTemplate.key == key)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalars().first()


async def get_template(session: AsyncSession, actor: Actor, key_or_id: str | UUID, *,
                       for_update: bool = False) -> MessageTemplate:
    """By key, or by id (a UUID: keys cannot look like one, they have no hyphens)."""
    if isinstance(key_or_id, UUID):
        return await get_or_404(session, MessageTemplate, actor.tenant_id, key_or_id, code="template_not_found",
                                detail="message template not found", lock=for_update)
    template = await find_template(session, actor.tenant_id, key_or_id, for_update=for_update)
    if template is None:
        raise NotFound("message template not found", code="template_not_found")
    return template


async def update_template(session: AsyncSession, actor: Actor, key_or_id: str | UUID,
                          data: TemplateUpdate) -> MessageTemplate:
    actor.require("messaging:write")
    template = await get_template(session, actor, key_or_id, for_update=True)
    before = _template_snapshot(template)
    changes = data.model_dump(exclude_unset=True)
    if "variables" in changes:
        changes["variables"] = list(dict.fromkeys(changes["variables"]))
    for name, value in changes.items():
        setattr(template, name, value)
    _check_template(template)
    template.updated_at = utcnow()
    session.add(template)
    await session.flush()
    audit.record(session, "message_template.update", "message_template", template.id, key=template.key,
                 before=before, after=_template_snapshot(template))
    return template


async def list_templates(session: AsyncSession, actor: Actor, params: PageParams, *, channel: str | None = None,
                         active: bool | None = None):
    actor.require("members:read")
    stmt = select(MessageTemplate).where(MessageTemplate.tenant_id == actor.tenant_id)
    if channel is not None:
        stmt = stmt.where(MessageTemplate.channel == channel)
    if active is not None:
        stmt = stmt.where(MessageTemplate.active == active)
    return await paginate(session, stmt, MessageTemplate.id, params)


# ---------------------------------------------------------------- consents


async def add_consent(session: AsyncSession, tenant_id: UUID, member_id: UUID, wechat_template_id: str,
                      count: int = 1) -> None:
    await session.execute(pg_insert(MessageConsent).values(
        tenant_id=tenant_id, member_id=member_id, wechat_template_id=wechat_template_id, granted=count,
        updated_at=utcnow(),
    ).on_conflict_do_update(
        index_elements=["tenant_id", "member_id", "wechat_template_id"],
        set_={"granted": MessageConsent.granted + count, "updated_at": utcnow()}))


async def list_consents(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> list[MessageConsent]:
    return list((await session.execute(select(MessageConsent).where(
        MessageConsent.tenant_id == tenant_id, MessageConsent.member_id == member_id)
        .order_by(MessageConsent.wechat_template_id))).scalars().all())


async def report_consents(session: AsyncSession, actor: Actor, member_id: UUID,
                          data: ConsentReport) -> list[MessageConsent]:
    """The mini-program reports the subscribe templates the user accepted: one more message each.

    Patients report only for themselves (the subscription belongs to the WeChat user who tapped it).
    Ids that match none of the tenant's subscribe templates are refused, so a client cannot fill the
    table with arbitrary keys."""
    if actor.kind == "patient":
        if actor.id != member_id:
            raise NotFound("member not found", code="member_not_found")
    else:
        actor.require("messaging:write")
    member = await members.get_member_row(session, actor, member_id)
    if not members.is_active(member):
        raise Conflict(f"member is {member.status}", code="member_inactive")
    known = set((await session.execute(select(MessageTemplate.wechat_template_id).where(
        MessageTemplate.tenant_id == actor.tenant_id,
        MessageTemplate.channel == MessageChannel.MINI_PROGRAM_SUBSCRIBE))).scalars().all())
    for index, template_id in enumerate(data.template_ids):
        if template_id not in known:
            raise _invalid(f"template_ids.{index}", "no subscribe template of this tenant uses this WeChat "
                                                    "template id", code="unknown_wechat_template")
    for template_id in data.template_ids:
        await add_consent(session, actor.tenant_id, member_id, template_id)
    audit.record(session, "message_consent.report", "member", member_id, template_ids=list(data.template_ids))
    return await list_consents(session, actor.tenant_id, member_id)


async def give_back_consent(session: AsyncSession, message: OutboundMessage) -> None:
    """The provider did not use the consent this message reserved: the member still has it."""
    if message.consent_reserved and message.member_id is not None:
        await add_consent(session, message.tenant_id, message.member_id, message.payload["wechat_template_id"])
        message.consent_reserved = False


async def clear_consent(session: AsyncSession, message: OutboundMessage) -> None:
    """43101: WeChat says the user has no subscription left for this template, whatever we counted."""
    if message.member_id is not None and message.payload.get("wechat_template_id"):
        await session.execute(update(MessageConsent).where(
            MessageConsent.tenant_id == message.tenant_id, MessageConsent.member_id == message.member_id,
            MessageConsent.wechat_template_id == message.payload["wechat_template_id"],
        ).values(granted=0, updated_at=utcnow()))
    message.consent_reserved = False


# ---------------------------------------------------------------- sending


async def _by_cause(session: AsyncSession, tenant_id: UUID, cause: str) -> OutboundMessage | None:
    return (await session.execute(select(OutboundMessage).where(
        OutboundMessage.tenant_id == tenant_id, OutboundMessage.cause == cause))).scalars().first()


async def send_template(session: AsyncSession, actor: Actor, *, template_key: str, member_id: UUID | None = None,
                        staff_id: UUID | None = None, channel: str | None = None, variables: dict[str, Any],
                        cause: str) -> OutboundMessage:
    """Queue one message from a template, at most once per `cause` (e.g. `rule:<rule_id>:<event_id>`).

    - The same cause again returns the first message, whatever its status; nothing new is written.
    - A declared variable without a value: 422 `template_variable_missing` naming `variables.<name>`.
    - No subscription consent for a subscribe message, an inactive template, member or staff member:
      the message is stored as `skipped` with `reason` (not an error: the caller's work is done).
    - Otherwise the message is `queued` and `message.send` is in the outbox of this transaction; a
      subscribe message uses up one consent now, so two queued messages never share one.
    Unknown template → 404 `template_not_found`; unknown member/staff → 404.
    """
    actor.require("messaging:write")
    return await _send_template(session, actor, template_key=template_key, member_id=member_id,
                                staff_id=staff_id, channel=channel, variables=variables, cause=cause)


async def _send_template(session: AsyncSession, actor: Actor, *, template_key: str, member_id: UUID | None,
                         staff_id: UUID | None, channel: str | None, variables: dict[str, Any],
                         cause: str) -> OutboundMessage:
    """`send_template` for a caller that has checked `messaging:write` already."""
    tenant_id = actor.tenant_id
    cause = (cause or "").strip()
    if not cause or len(cause) > MAX_CAUSE_LENGTH or "\x00" in cause:
        raise _invalid("cause", f"give a non-empty cause of at most {MAX_CAUSE_LENGTH} characters")
    if (member_id is None) == (staff_id is None):
        raise _invalid("member_id", "give exactly one of member_id and staff_id")
    existing = await _by_cause(session, tenant_id, cause)
    if existing is not None:
        return existing
    template = await get_template(session, actor, template_key)
    channel = channel or template.channel
    if channel not in MessageChannel.ALL:
        raise _invalid("channel", f"unknown channel {channel!r}")
    if member_id is not None and channel not in MessageChannel.TO_MEMBERS:
        raise _invalid("channel", f"{channel} messages go to staff, not to members")
    if staff_id is not None and channel not in MessageChannel.TO_STAFF:
        raise _invalid("channel", f"{channel} messages go to members, not to staff")
    if channel == MessageChannel.MINI_PROGRAM_SUBSCRIBE and not (template.wechat_template_id
                                                                and template.wechat_fields):
        raise _invalid("channel", "this template has no WeChat subscribe template to send through")

    reason: str | None = None
    if member_id is not None:
        if not members.is_active(await members.get_member_row(session, actor, member_id)):
            reason = "member_inactive"
    else:
        staff = await iam.staff_row(session, tenant_id, staff_id)
        if staff is None:
            raise NotFound("staff member not found", code="staff_not_found")
        if not staff.active:
            reason = "staff_inactive"
    values = {k: v for k, v in (variables or {}).items() if k in template.variables}
    content, data, problems = render_template(template, variables or {})
    if reason is None and not template.active:
        reason = "template_inactive"
    consent: MessageConsent | None = None
    payload: dict[str, Any] = {}
    error: str | None = None
    if channel == MessageChannel.MINI_PROGRAM_SUBSCRIBE:
        payload = {"wechat_template_id": template.wechat_template_id, "data": data, "page": template.page}
        if reason is None and problems:
            # WeChat would refuse it (47003); not sent, and the consent stays for a message that can be.
            reason, error = "invalid_wechat_value", "; ".join(problems)[:2000]
        if reason is None:
            # populate_existing: an earlier send in this transaction may have loaded (and used) it already.
            consent = await session.get(MessageConsent, (tenant_id, member_id, template.wechat_template_id),
                                        with_for_update=True, populate_existing=True)
            if consent is None or consent.granted <= 0:
                reason, consent = "no_subscription_consent", None

    now = utcnow()
    row = {
        "tenant_id": tenant_id, "id": new_id(), "created_at": now, "updated_at": now,
        "member_id": member_id, "staff_id": staff_id, "channel": channel, "template_key": template.key,
        "content": content, "variables": values, "payload": payload,
        "status": MessageStatus.SKIPPED if reason else MessageStatus.QUEUED, "reason": reason, "last_error": error,
        "attempts": 0, "next_attempt_at": None if reason else now, "cause": cause,
        "consent_reserved": consent is not None, "created_by_type": actor.kind, "created_by_id": actor.id,
    }
    # ON CONFLICT: a concurrent sender of the same cause may have inserted first; theirs stands.
    inserted = (await session.execute(pg_insert(OutboundMessage).values(**row)
                                      .on_conflict_do_nothing(index_elements=["tenant_id", "cause"])
                                      .returning(OutboundMessage.id))).scalar_one_or_none()
    if inserted is None:
        winner = await _by_cause(session, tenant_id, cause)
        assert winner is not None  # the conflicting row is committed, hence visible to this statement
        return winner
    if consent is not None:
        consent.granted -= 1
        consent.updated_at = now
        session.add(consent)
    message = await session.get(OutboundMessage, (tenant_id, inserted))
    if message.status == MessageStatus.QUEUED:
        await emit(session, MESSAGE_SEND, {"message_id": str(message.id), "attempt": 0}, tenant_id=tenant_id)
    await session.flush()
    return message


async def send_manual(session: AsyncSession, actor: Actor, data: MessageSend) -> OutboundMessage:
    """A staff member sends a template by hand (POST /messages); each request is its own cause
    (retries of one request are caught by Idempotency-Key)."""
    actor.require("messaging:write")
    message = await _send_template(session, actor, template_key=data.template_key, member_id=data.member_id,
                                  staff_id=data.staff_id, channel=data.channel, variables=dict(data.variables),
                                  cause=f"manual:{new_id()}")
    audit.record(session, "message.send_manual", "outbound_message", message.id, template_key=message.template_key,
                 member_id=str(message.member_id) if message.member_id else None,
                 staff_id=str(message.staff_id) if message.staff_id else None, status=message.status)
    return message


async def get_message(session: AsyncSession, actor: Actor, message_id: UUID, *,
                      for_update: bool = False) -> OutboundMessage:
    actor.require("members:read")
    return await get_or_404(session, OutboundMessage, actor.tenant_id, message_id, code="message_not_found",
                            lock=for_update)


async def list_messages(session: AsyncSession, actor: Actor, params: PageParams, *, member_id: UUID | None = None,
                        staff_id: UUID | None = None, status: str | None = None, template_key: str | None = None):
    """Newest first."""
    actor.require("members:read")
    stmt = select(OutboundMessage).where(OutboundMessage.tenant_id == actor.tenant_id)
    for column, value in ((OutboundMessage.member_id, member_id), (OutboundMessage.staff_id, staff_id),
                          (OutboundMessage.status, status), (OutboundMessage.template_key, template_key)):
        if value is not None:
            stmt = stmt.where(column == value)
    return await paginate(session, stmt, OutboundMessage.id, params, descending=True)


async def retry_message(session: AsyncSession, actor: Actor, message_id: UUID) -> OutboundMessage:
    """Send a dead-lettered message round again, with a fresh set of attempts."""
    actor.require("messaging:write")
    message = await get_message(session, actor, message_id, for_update=True)
    if message.status != MessageStatus.DEAD:
        raise Conflict(f"only dead messages can be retried; this one is {message.status}", code="message_not_dead")
    previous = {"attempts": message.attempts, "last_error": message.last_error, "reason": message.reason}
    now = utcnow()
    retry.revive(message, status=MessageStatus.QUEUED, due_at=now)
    message.reason, message.updated_at = None, now
    session.add(message)
    await session.flush()
    await emit(session, MESSAGE_SEND, {"message_id": str(message.id), "attempt": 0}, tenant_id=actor.tenant_id)
    audit.record(session, "message.retry", "outbound_message", message.id, before=previous)
    return message


# ---------------------------------------------------------------- plugged into members

_CHANNEL_TITLES = {MessageChannel.MINI_PROGRAM_SUBSCRIBE: "订阅消息", MessageChannel.SMS: "短信",
                   MessageChannel.WECOM_STAFF: "企业微信"}


@members.timeline_source("message", staff_only_keys=("last_error", "reason", "attempts", "cause"))
async def _message_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                            before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    stmt = (select(OutboundMessage, MessageTemplate.name)
            .outerjoin(MessageTemplate, and_(MessageTemplate.tenant_id == OutboundMessage.tenant_id,
                                             MessageTemplate.key == OutboundMessage.template_key))
            .where(OutboundMessage.tenant_id == tenant_id, OutboundMessage.member_id == member_id))
    if before is not None:
        stmt = stmt.where(members.before_clause(OutboundMessage.created_at, OutboundMessage.id, before, "message:"))
    rows = (await session.execute(stmt.order_by(OutboundMessage.created_at.desc(), OutboundMessage.id.desc())
                                  .limit(limit))).all()
    return [TimelineItem(type="message", occurred_at=m.created_at, id=f"message:{m.id}",
                         title=f"{_CHANNEL_TITLES.get(m.channel, m.channel)} · {name or m.template_key}",
                         data={"message_id": str(m.id), "channel": m.channel, "template_key": m.template_key,
                               "content": m.content, "status": m.status,
                               "sent_at": m.sent_at.isoformat() if m.sent_at else None, "reason": m.reason,
                               "last_error": m.last_error, "attempts": m.attempts, "cause": m.cause})
            for m, name in rows]


@members.merge_mover("outbound_messages")
async def _move_messages(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID,
                         survivor_id: UUID) -> dict[str, int]:
    moved = await session.execute(update(OutboundMessage).where(OutboundMessage.tenant_id == tenant_id,
                                                                OutboundMessage.member_id == duplicate_id)
                                  .values(member_id=survivor_id))
    # Consents add up: both records' subscriptions belong to the same person now.
    consents = await session.execute(text(
        "WITH gone AS (DELETE FROM message_consents WHERE tenant_id = :t AND member_id = :d "
        "              RETURNING wechat_template_id, granted) "
        "INSERT INTO message_consents (tenant_id, member_id, wechat_template_id, granted, updated_at) "
        "SELECT :t, :s, wechat_template_id, granted, now() FROM gone "
        "ON CONFLICT (tenant_id, member_id, wechat_template_id) "
        "DO UPDATE SET granted = message_consents.granted + EXCLUDED.granted, updated_at = now()"),
        {"t": tenant_id, "s": survivor_id, "d": duplicate_id})
    return {"outbound_messages": moved.rowcount, "message_consents": consents.rowcount}


__all__ = ["get_template", "list_messages", "render", "render_template", "report_consents", "retry_message",
           "send_manual", "send_template"]


# ---------------------------------------------------------------- read API (for other contexts)
# Other contexts read this one only through the functions below (never its models, never raw SQL on its tables).
