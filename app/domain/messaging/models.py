"""Messaging: templates with `{{variable}}` placeholders, mini-program subscription consents, and every
outbound message with its delivery state.

An outbound message is written once per *cause* (`UNIQUE (tenant_id, cause)`): the rules engine, a
manual send or a retry of the caller all name the reason for the message, and the second write of the
same cause returns the first row instead of sending again.

Mini-program subscribe messages are one-time consents: each subscription the patient accepts in
`wx.requestSubscribeMessage` allows WeChat to deliver exactly one message of that template. The
`message_consents.granted` counter mirrors that: +1 per accepted subscription, −1 when a message is
queued against it, and cleared when WeChat answers 43101 (the user has no subscription left).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, CheckConstraint, Column, Index, Integer, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.models import TENANT_TABLES, TenantRow, tenant_fk, timestamp_field


class MessageChannel:
    MINI_PROGRAM_SUBSCRIBE = "mini_program_subscribe"  # 小程序订阅消息 to a member's openid
    WECOM_STAFF = "wecom_staff"  # 企业微信应用消息 to a staff member
    SMS = "sms"  # to a member's phone, through whatever gateway is configured
    ALL = (MINI_PROGRAM_SUBSCRIBE, WECOM_STAFF, SMS)
    TO_MEMBERS = (MINI_PROGRAM_SUBSCRIBE, SMS)
    TO_STAFF = (WECOM_STAFF,)


class MessageStatus:
    QUEUED = "queued"  # waiting for (another) delivery attempt
    SENDING = "sending"  # an attempt is with the provider right now
    SENT = "sent"
    FAILED = "failed"  # the provider refused for good (e.g. 43101); not retried
    DEAD = "dead"  # transient failures used up every attempt; retryable through the API
    SKIPPED = "skipped"  # never attempted: no consent, no openid, template inactive, …
    ALL = (QUEUED, SENDING, SENT, FAILED, DEAD, SKIPPED)
    FINAL = (SENT, FAILED, DEAD, SKIPPED)


class MessageTemplate(TenantRow, table=True):
    __tablename__ = "message_templates"
    __table_args__ = (
        UniqueConstraint("tenant_id", "key"),
        CheckConstraint("channel IN ('mini_program_subscribe', 'wecom_staff', 'sms')", name="channel_known"),
        # A subscribe message cannot be sent without the template WeChat assigned to the mini-program.
        CheckConstraint("channel <> 'mini_program_subscribe' OR wechat_template_id IS NOT NULL",
                        name="subscribe_needs_wechat_template"),
    )

    key: str = Field(sa_type=Text)  # stable name the rules engine refers to, e.g. care_after_service
    name: str = Field(sa_type=Text)
    channel: str = Field(sa_type=Text)
    wechat_template_id: str | None = Field(default=None, sa_type=Text)
    body: str = Field(sa_type=Text)  # the readable text (SMS, WeCom, timeline), with {{variable}} placeholders
    variables: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False,
                                                                      server_default="{}"))
    # Subscribe messages carry keyword fields, not free text: {"thing1": "{{service}}", "time2": "{{time}}"}.
    wechat_fields: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False,
                                                                               server_default="{}"))
    page: str | None = Field(default=None, sa_type=Text)  # mini-program page opened from the message
    active: bool = True
    updated_at: datetime | None = timestamp_field()


class MessageConsent(SQLModel, table=True):
    """How many subscribe messages of one WeChat template the member has allowed and not yet used."""

    __tablename__ = "message_consents"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        CheckConstraint("granted >= 0", name="granted_not_negative"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    member_id: UUID = Field(primary_key=True)
    wechat_template_id: str = Field(primary_key=True, sa_type=Text)
    granted: int = Field(default=0, sa_type=Integer)
    updated_at: datetime | None = timestamp_field()


class OutboundMessage(TenantRow, table=True):
    __tablename__ = "outbound_messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "cause"),
        tenant_fk(["member_id"], "members"),
        tenant_fk(["staff_id"], "staff"),
        Index("ix_outbound_messages_member", "tenant_id", "member_id", "created_at"),
        Index("ix_outbound_messages_status", "tenant_id", "status", "id"),
        CheckConstraint("(member_id IS NULL) <> (staff_id IS NULL)", name="one_recipient"),
        CheckConstraint("channel IN ('mini_program_subscribe', 'wecom_staff', 'sms')", name="channel_known"),
        CheckConstraint("status IN ('queued', 'sending', 'sent', 'failed', 'dead', 'skipped')", name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    )

    member_id: UUID | None = None
    staff_id: UUID | None = None
    channel: str = Field(sa_type=Text)
    template_key: str = Field(sa_type=Text)
    content: str = Field(sa_type=Text)  # the rendered body
    variables: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False,
                                                                           server_default="{}"))
    # What the channel sends besides the text: WeChat template id, keyword data and page for subscribe messages.
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False,
                                                                         server_default="{}"))
    status: str = Field(default=MessageStatus.QUEUED, sa_type=Text)
    reason: str | None = Field(default=None, sa_type=Text)  # machine-readable why, for skipped/failed/dead
    attempts: int = Field(default=0, sa_type=Integer)
    next_attempt_at: datetime | None = timestamp_field()
    last_error: str | None = Field(default=None, sa_type=Text)
    provider_msg_id: str | None = Field(default=None, sa_type=Text)
    cause: str = Field(sa_type=Text)
    # The consent this message used (subscribe only), so a refusal or a give-back finds it.
    consent_reserved: bool = False
    sent_at: datetime | None = timestamp_field()
    updated_at: datetime | None = timestamp_field()
    created_by_type: str | None = Field(default=None, sa_type=Text)
    created_by_id: UUID | None = None


TENANT_TABLES.update({"message_templates", "message_consents", "outbound_messages"})


class ConsentResult:
    """What `wx.requestSubscribeMessage` answers per template id."""

    ACCEPT = "accept"  # one message of this template may be sent
    REJECT = "reject"  # the user declined this time
    BAN = "ban"  # the user switched subscriptions off for the whole mini-program
    FILTER = "filter"  # WeChat filtered the template (title collides with another of the app's)
    ALL = (ACCEPT, REJECT, BAN, FILTER)


class MessageConsentRecord(TenantRow, table=True):
    """Append-only evidence of each answer the member gave to a subscribe-message request: which template,
    what they chose and when. `message_consents` keeps the usable count; this keeps the history."""

    __tablename__ = "message_consent_records"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        Index("ix_message_consent_records_member", "tenant_id", "member_id", "created_at"),
        CheckConstraint("result IN ('accept', 'reject', 'ban', 'filter')", name="result_known"),
    )

    member_id: UUID
    wechat_template_id: str = Field(sa_type=Text)
    result: str = Field(sa_type=Text)
    template_key: str | None = Field(default=None, sa_type=Text)  # our template using it, when one does
    scene: str | None = Field(default=None, sa_type=Text)  # where the mini-program asked (e.g. waitlist)


TENANT_TABLES.add("message_consent_records")

__all__ = ["ConsentResult", "MessageChannel", "MessageConsent", "MessageConsentRecord", "MessageStatus",
           "MessageTemplate", "OutboundMessage"]


class StaffAlertSetting(SQLModel, table=True):
    """Whether one kind of staff alert (`alerts.ALERT_KINDS`) is on for the tenant. A kind without a row is
    on: alerts work from a tenant's first day, and switching one off is an explicit, audited choice."""

    __tablename__ = "staff_alert_settings"

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    kind: str = Field(primary_key=True, sa_type=Text)
    enabled: bool = True
    updated_at: datetime | None = timestamp_field()
    updated_by_id: UUID | None = None


TENANT_TABLES.add("staff_alert_settings")
