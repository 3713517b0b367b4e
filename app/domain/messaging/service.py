"""Messaging use cases: templates, subscription consents, `send_template` and delivery.

`send_template` is what the rules engine, the API and any other context call to send a message. It
renders the template, decides whether the message may go out at all (consent, recipient, template
active), writes one `outbound_messages` row per cause, and for a queued message writes the outbox event
`message.send` in the same transaction. The worker's `deliver_message` handler does the sending.

Retries: the message row owns its attempts. The outbox machinery delivers each `message.send` event to
the handler exactly once; the handler never raises for a delivery failure but records it on the row
and, for a transient one, writes a *new* `message.send` event delayed by exponential backoff
(`message_backoff_*` settings). After `message_max_attempts` the message is `dead` (listed by
`GET /messages?status=dead`, re-queued by `POST /messages/{id}/retry`). Owning the attempts here rather
than re-raising into the outbox retry keeps attempts, last error and next attempt on the message the
API shows, and lets a permanent refusal (43101) stop at once instead of burning retries.

At most once towards the provider: before calling it the handler commits `status = sending` in its own
transaction. A delivery that finds a message still `sending` knows the previous worker died mid-call,
cannot tell whether the provider got the message, and dead-letters it (reason `interrupted`) instead
of sending a second copy; a human decides whether to retry.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import and_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.db import session_scope
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.ids import new_id
from app.core.outbox import OutboxEvent, emit
from app.core.pagination import PageParams, paginate
from app.core.settings import get_settings
from app.domain.iam.models import Staff
from app.domain.members import service as members
from app.domain.members.models import MemberStatus
from app.domain.members.schemas import TimelineItem
from app.domain.messaging.channels import (
    PermanentDeliveryError,
    SkipDelivery,
    channels,
)
from app.domain.messaging.models import (
    MessageChannel,
    MessageConsent,
    MessageStatus,
    MessageTemplate,
    OutboundMessage,
)
from app.domain.messaging.schemas import ConsentReport, MessageSend, TemplateCreate, TemplateUpdate
from app.workers.registry import on

log = logging.getLogger("careloop.messaging")

SEND_TOPIC = "message.send"
MAX_CAUSE_LENGTH = 200
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# WeChat refuses keyword values over these lengths (errcode 47003); we shorten rather than fail.
_WECHAT_FIELD_LIMITS = {"thing": 20, "name": 10, "phrase": 5, "character_string": 32, "letter": 32,
                        "symbol": 5, "number": 32, "car_number": 8}


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


def _wechat_value(keyword: str, value: str) -> str:
    kind = keyword.rstrip("0123456789")
    limit = _WECHAT_FIELD_LIMITS.get(kind)
    if limit is not None and len(value) > limit:
        return value[: limit - 1] + "…"
    return value


def render_template(template: MessageTemplate, variables: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The rendered body and (for subscribe messages) the WeChat keyword data."""
    for name in template.variables:  # declared variables are the template's contract with its senders
        if variables.get(name) is None:
            raise _invalid(f"variables.{name}", f"the template needs the variable {name!r}",
                           code="template_variable_missing", variable=name)
    content = render(template.body, variables)
    data = {k: _wechat_value(k, render(v, variables)) for k, v in (template.wechat_fields or {}).items()}
    return content, data


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
        template = await session.get(MessageTemplate, (actor.tenant_id, key_or_id), with_for_update=for_update)
    else:
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


async def _add_consent(session: AsyncSession, tenant_id: UUID, member_id: UUID, wechat_template_id: str,
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
    if member.status != MemberStatus.ACTIVE:
        raise Conflict(f"member is {member.status}", code="member_inactive")
    known = set((await session.execute(select(MessageTemplate.wechat_template_id).where(
        MessageTemplate.tenant_id == actor.tenant_id,
        MessageTemplate.channel == MessageChannel.MINI_PROGRAM_SUBSCRIBE))).scalars().all())
    for index, template_id in enumerate(data.template_ids):
        if template_id not in known:
            raise _invalid(f"template_ids.{index}", "no subscribe template of this tenant uses this WeChat "
                                                    "template id", code="unknown_wechat_template")
    for template_id in data.template_ids:
        await _add_consent(session, actor.tenant_id, member_id, template_id)
    audit.record(session, "message_consent.report", "member", member_id, template_ids=list(data.template_ids))
    return await list_consents(session, actor.tenant_id, member_id)


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
        member = await members.get_member_row(session, actor, member_id)
        if member.status != MemberStatus.ACTIVE:
            reason = "member_inactive"
    else:
        staff = await session.get(Staff, (tenant_id, staff_id))
        if staff is None:
            raise NotFound("staff member not found", code="staff_not_found")
        if not staff.active:
            reason = "staff_inactive"
    values = {k: v for k, v in (variables or {}).items() if k in template.variables}
    content, data = render_template(template, variables or {})
    if reason is None and not template.active:
        reason = "template_inactive"
    consent: MessageConsent | None = None
    payload: dict[str, Any] = {}
    if channel == MessageChannel.MINI_PROGRAM_SUBSCRIBE:
        payload = {"wechat_template_id": template.wechat_template_id, "data": data, "page": template.page}
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
        "status": MessageStatus.SKIPPED if reason else MessageStatus.QUEUED, "reason": reason,
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
        await emit(session, SEND_TOPIC, {"message_id": str(message.id), "attempt": 0}, tenant_id=tenant_id)
    await session.flush()
    return message


async def send_manual(session: AsyncSession, actor: Actor, data: MessageSend) -> OutboundMessage:
    """A staff member sends a template by hand (POST /messages); each request is its own cause
    (retries of one request are caught by Idempotency-Key)."""
    actor.require("messaging:write")
    message = await send_template(session, actor, template_key=data.template_key, member_id=data.member_id,
                                  staff_id=data.staff_id, channel=data.channel, variables=dict(data.variables),
                                  cause=f"manual:{new_id()}")
    audit.record(session, "message.send_manual", "outbound_message", message.id, template_key=message.template_key,
                 member_id=str(message.member_id) if message.member_id else None,
                 staff_id=str(message.staff_id) if message.staff_id else None, status=message.status)
    return message


async def get_message(session: AsyncSession, actor: Actor, message_id: UUID, *,
                      for_update: bool = False) -> OutboundMessage:
    actor.require("members:read")
    message = await session.get(OutboundMessage, (actor.tenant_id, message_id), with_for_update=for_update)
    if message is None:
        raise NotFound("message not found", code="message_not_found")
    return message


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
    message.status, message.attempts, message.next_attempt_at = MessageStatus.QUEUED, 0, now
    message.last_error, message.reason, message.updated_at = None, None, now
    session.add(message)
    await session.flush()
    await emit(session, SEND_TOPIC, {"message_id": str(message.id), "attempt": 0}, tenant_id=actor.tenant_id)
    audit.record(session, "message.retry", "outbound_message", message.id, before=previous)
    return message


# ---------------------------------------------------------------- delivery (worker)


def backoff_seconds(attempts: int) -> float:
    settings = get_settings()
    return min(settings.message_backoff_base_seconds * (2 ** max(attempts - 1, 0)),
               settings.message_backoff_max_seconds)


async def _give_back_consent(session: AsyncSession, message: OutboundMessage) -> None:
    """The provider did not use the consent this message reserved: the member still has it."""
    if message.consent_reserved and message.member_id is not None:
        await _add_consent(session, message.tenant_id, message.member_id, message.payload["wechat_template_id"])
        message.consent_reserved = False


async def _clear_consent(session: AsyncSession, message: OutboundMessage) -> None:
    """43101: WeChat says the user has no subscription left for this template, whatever we counted."""
    if message.member_id is not None and message.payload.get("wechat_template_id"):
        await session.execute(update(MessageConsent).where(
            MessageConsent.tenant_id == message.tenant_id, MessageConsent.member_id == message.member_id,
            MessageConsent.wechat_template_id == message.payload["wechat_template_id"],
        ).values(granted=0, updated_at=utcnow()))
    message.consent_reserved = False


async def _claim_attempt(tenant_id: UUID, message_id: UUID, attempt: int) -> OutboundMessage | None:
    """Commit `sending` (and the attempt) before the provider is called; None when there is nothing to do."""
    async with session_scope(tenant_id) as claim:
        message = await claim.get(OutboundMessage, (tenant_id, message_id), with_for_update=True)
        if message is None:
            return None
        now = utcnow()
        if message.status == MessageStatus.SENDING:
            message.status, message.reason, message.next_attempt_at = MessageStatus.DEAD, "interrupted", None
            message.last_error = ("the worker stopped while the provider was being called; the message may or "
                                  "may not have been delivered (not resent automatically, to avoid a duplicate)")
            message.updated_at = now
            claim.add(message)
            log.error("message delivery interrupted; dead-lettered", extra={"message_id": str(message_id)})
            return None
        if message.status != MessageStatus.QUEUED or message.attempts != attempt:
            return None  # already settled, or a newer attempt supersedes this event
        message.status, message.attempts, message.updated_at = MessageStatus.SENDING, message.attempts + 1, now
        claim.add(message)
        await claim.flush()
        claim.expunge(message)
        return message


@on(SEND_TOPIC)
async def deliver_message(session: AsyncSession, event: OutboxEvent) -> None:
    """One delivery attempt of one message (see the module docstring for the retry design)."""
    tenant_id, message_id = event.tenant_id, UUID(event.payload["message_id"])
    snapshot = await _claim_attempt(tenant_id, message_id, int(event.payload.get("attempt", 0)))
    if snapshot is None:
        return
    outcome, reason, error, provider_msg_id = MessageStatus.SENT, None, None, None
    try:
        delivery = await channels.get(snapshot.channel).send(session, snapshot)
        provider_msg_id = delivery.provider_msg_id
    except SkipDelivery as exc:
        outcome, reason, error = MessageStatus.SKIPPED, exc.reason, str(exc)
    except PermanentDeliveryError as exc:
        outcome, reason, error = MessageStatus.FAILED, exc.reason, str(exc)
    except Exception as exc:  # noqa: BLE001 - TransientDeliveryError and anything unexpected: try again later
        outcome, reason, error = MessageStatus.QUEUED, "transient_error", f"{type(exc).__name__}: {exc}"[:2000]

    message = await session.get(OutboundMessage, (tenant_id, message_id), with_for_update=True,
                                populate_existing=True)
    now = utcnow()
    message.updated_at, message.last_error, message.reason = now, error, reason
    if outcome == MessageStatus.SENT:
        message.status, message.sent_at, message.provider_msg_id, message.next_attempt_at = outcome, now, \
            provider_msg_id, None
    elif outcome == MessageStatus.SKIPPED:
        message.status, message.next_attempt_at = outcome, None
        await _give_back_consent(session, message)
    elif outcome == MessageStatus.FAILED:
        message.status, message.next_attempt_at = outcome, None
        if reason == "subscription_refused":
            await _clear_consent(session, message)
        else:
            await _give_back_consent(session, message)
    elif message.attempts >= get_settings().message_max_attempts:
        # The consent stays reserved: WeChat has not used it, and a retry through the API sends with it.
        message.status, message.next_attempt_at = MessageStatus.DEAD, None
        log.error("message dead-lettered", extra={"message_id": str(message_id), "attempts": message.attempts,
                                                  "error": error})
    else:
        message.status = MessageStatus.QUEUED
        message.next_attempt_at = now + timedelta(seconds=backoff_seconds(message.attempts))
        await emit(session, SEND_TOPIC, {"message_id": str(message_id), "attempt": message.attempts},
                   tenant_id=tenant_id, available_at=message.next_attempt_at)
    session.add(message)


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
