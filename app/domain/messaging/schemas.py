"""Request and response models of messaging."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, field_validator

from app.core.schemas import Strict

ChannelName = Literal["mini_program_subscribe", "wecom_staff", "sms"]
StatusName = Literal["queued", "sending", "sent", "failed", "dead", "skipped"]

# Keys are snake_case identifiers (with optional dots): no hyphens, so they can never be mistaken for ids.
KEY_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
VARIABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
TemplateKey = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                               pattern=KEY_PATTERN)]
VariableName = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=VARIABLE_PATTERN)]
# WeChat subscribe keywords: thing1, time2, character_string3, phrase4, …
WeChatKeyword = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z_]+[0-9]+$")]
VariableValue = Annotated[str, StringConstraints(max_length=500)]


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may not be null; leave the field out to keep its value")
    return value


class TemplateCreate(Strict):
    key: TemplateKey = Field(description="Stable name used by rules and senders, e.g. `care_after_service`")
    name: str = Field(min_length=1, max_length=100, description="e.g. 护理关怀")
    channel: ChannelName
    wechat_template_id: str | None = Field(None, min_length=1, max_length=128,
                                           description="The subscribe template id WeChat assigned "
                                                       "(mini_program_subscribe only, required there)")
    body: str = Field(min_length=1, max_length=2000,
                      description="Text with `{{variable}}` placeholders; every placeholder must be declared")
    variables: list[VariableName] = Field(default_factory=list, max_length=30,
                                          description="Variables a sender must supply")
    wechat_fields: dict[WeChatKeyword, Annotated[str, StringConstraints(max_length=200)]] = Field(
        default_factory=dict, max_length=20,
        description='Subscribe message keyword data, e.g. {"thing1": "{{service}}", "time2": "{{time}}"}')
    page: str | None = Field(None, max_length=512, description="Mini-program page opened from the message")
    active: bool = True


class TemplateUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=100)
    channel: ChannelName | None = None
    wechat_template_id: str | None = Field(None, min_length=1, max_length=128)
    body: str | None = Field(None, min_length=1, max_length=2000)
    variables: list[VariableName] | None = Field(None, max_length=30)
    wechat_fields: dict[WeChatKeyword, Annotated[str, StringConstraints(max_length=200)]] | None = Field(
        None, max_length=20)
    page: str | None = Field(None, max_length=512)
    active: bool | None = None

    _required = field_validator("name", "channel", "body", "variables", "wechat_fields", "active")(_not_null)


class TemplateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    key: str
    name: str
    channel: str
    wechat_template_id: str | None
    body: str
    variables: list[str]
    wechat_fields: dict[str, str]
    page: str | None
    active: bool
    created_at: datetime | None
    updated_at: datetime | None


class ConsentReport(Strict):
    template_ids: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]] = \
        Field(min_length=1, max_length=20, description="WeChat template ids the user accepted in "
                                                       "`wx.requestSubscribeMessage` (one message each)")


class ConsentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    wechat_template_id: str
    granted: int = Field(description="Messages of this template the member still allows")


class MessageSend(Strict):
    template_key: TemplateKey
    member_id: UUID | None = Field(None, description="Recipient member (exactly one of member_id, staff_id)")
    staff_id: UUID | None = Field(None, description="Recipient staff member (wecom_staff)")
    channel: ChannelName | None = Field(None, description="Defaults to the template's channel")
    variables: dict[VariableName, VariableValue] = Field(default_factory=dict, max_length=30)


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    member_id: UUID | None
    staff_id: UUID | None
    channel: str
    template_key: str
    content: str
    variables: dict[str, Any]
    status: str
    reason: str | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    provider_msg_id: str | None
    cause: str
    sent_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None


# ---------------------------------------------------------------- alerts to staff


class AlertSettingOut(BaseModel):
    kind: str = Field(description="task_assigned, task_overdue, refund_pending_approval, low_stock, "
                                  "order_completion_failed")
    name: str
    enabled: bool
    recipients: str = Field(description="Who is told")
    template_key: str = Field(description="The message template the alert renders (editable)")
    updated_at: datetime | None


class AlertSettingsOut(BaseModel):
    items: list[AlertSettingOut]


class AlertSettingsUpdate(Strict):
    """Kinds to switch on (true) or off (false); kinds left out stay as they are."""

    task_assigned: StrictBool | None = None
    task_overdue: StrictBool | None = None
    refund_pending_approval: StrictBool | None = None
    low_stock: StrictBool | None = None
    order_completion_failed: StrictBool | None = None

    _given = field_validator("task_assigned", "task_overdue", "refund_pending_approval", "low_stock",
                             "order_completion_failed")(_not_null)
