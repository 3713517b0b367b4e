"""Rule and task schemas. A rule's trigger, conditions, delay, quiet hours and actions are JSON the
tenant edits; they are validated here (by `parse_rule_parts`) into typed parts, and a refusal names
the offending field as a dotted path (`trigger.topic`, `actions.1.assignee`)."""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from app.core.errors import Unprocessable
from app.core.schemas import Name as PlainName
from app.core.schemas import Strict, Timestamp
from app.domain.care.catalogue import SCHEDULE_KINDS, TOPICS
from app.domain.care.models import TASK_KINDS
from app.domain.messaging.schemas import ChannelName

Name = Annotated[PlainName, Field(min_length=1, max_length=200)]
TagName = Annotated[PlainName, Field(min_length=1, max_length=40)]
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
ASSIGNEE = re.compile(r"^(owner|consultant|therapist|role:[A-Za-z0-9_.-]{1,60})$")
TaskKind = Literal["renewal", "follow_up", "wake_up", "care", "custom"]
assert set(TaskKind.__args__) == set(TASK_KINDS)  # noqa: S101 - the DB check and the API agree


def _hhmm(value: str) -> str:
    if not HHMM.match(value):
        raise ValueError("must be a local time HH:MM, e.g. 10:00")
    return value


def parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


# ---------------------------------------------------------------- triggers

FilterValue = str | int | float | bool | list[str | int | float] | dict[str, int | float]
FILTER_OPERATORS = {"eq", "lt", "lte", "gt", "gte", "in"}


class EventTrigger(Strict):
    type: Literal["event"]
    topic: str = Field(description="An outbox topic of the catalogue (GET /automation-rules/catalogue)")
    filter: dict[str, FilterValue] = Field(
        default_factory=dict, description="Payload fields the event must match: a value (equals), a list "
                                          "(one of), or {lte|lt|gte|gt|eq: number}")

    @field_validator("topic")
    @classmethod
    def _known_topic(cls, value: str) -> str:
        if value not in TOPICS:
            raise ValueError(f"unknown topic; known: {', '.join(sorted(TOPICS))}")
        return value

    @model_validator(mode="after")
    def _known_fields(self) -> EventTrigger:
        allowed = TOPICS[self.topic].fields
        for key, value in self.filter.items():
            if key not in allowed:
                raise ValueError(f"filter.{key}: {self.topic} cannot be filtered on {key!r}; "
                                 f"known: {', '.join(sorted(allowed)) or 'none'}")
            if isinstance(value, dict) and (not value or set(value) - FILTER_OPERATORS):
                raise ValueError(f"filter.{key}: operators are {', '.join(sorted(FILTER_OPERATORS))}")
        return self


class ScheduleTrigger(Strict):
    type: Literal["schedule"]
    kind: str = Field(description="inactive_days | birthday | before_next_visit")
    days: int = Field(0, ge=0, le=3650)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule kind; known: {', '.join(SCHEDULE_KINDS)}")
        return value

    @model_validator(mode="after")
    def _days_needed(self) -> ScheduleTrigger:
        if self.kind == "inactive_days" and self.days < 1:
            raise ValueError("days: inactive_days needs days >= 1")
        return self


# ---------------------------------------------------------------- conditions, delay, quiet hours


class FieldCondition(Strict):
    key: str = Field(min_length=1, max_length=64)
    equals: str | int | float | bool | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_test(self) -> FieldCondition:
        if self.equals is None and self.min is None and self.max is None:
            raise ValueError("give equals, or min and/or max")
        return self


class Conditions(Strict):
    tags_any: list[TagName] = Field(default_factory=list, max_length=50, description="holds at least one")
    tags_all: list[TagName] = Field(default_factory=list, max_length=50, description="holds every one")
    tags_none: list[TagName] = Field(default_factory=list, max_length=50, description="holds none")
    tiers: list[TagName] = Field(default_factory=list, max_length=20,
                                 description="membership tier tags (e.g. 金卡会员): holds one of them")
    store_ids: list[UUID] = Field(default_factory=list, max_length=200,
                                  description="the event's store, else the member's home store, is one of these")
    custom_fields: list[FieldCondition] = Field(default_factory=list, max_length=20)
    card_balance_lte: int | None = Field(None, ge=0, description="stored value (fen) on active cards at most this")


class Delay(Strict):
    minutes: int = Field(0, ge=0, le=60 * 24 * 366)
    days: int = Field(0, ge=0, le=366)
    at: str | None = Field(None, description="store-local HH:MM: the local day `days` after the cause "
                                             "at this time (the next day if that has passed)")

    _at = field_validator("at")(lambda v: v if v is None else _hhmm(v))


class QuietHours(Strict):
    start: str = Field(description="store-local HH:MM")
    end: str = Field(description="store-local HH:MM; runs falling between start and end wait until end")

    _start = field_validator("start")(_hhmm)
    _end = field_validator("end")(_hhmm)


# ---------------------------------------------------------------- actions


STAFF_RECIPIENT = re.compile(r"^(owner|consultant|therapist|store_manager|role:[A-Za-z0-9_.-]{1,60})$")


class SendMessage(Strict):
    type: Literal["send_message"]
    template_key: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")
    channel: ChannelName | None = Field(
        None, description="default: the template's own; `wecom_staff` messages a staff member about the member "
                          "(then `recipient` says who)")
    recipient: str | None = Field(
        None, description="wecom_staff only: consultant (the member's consultant) | owner (the member's staff "
                          "contact) | therapist (who served the member in the cause) | store_manager | "
                          "role:<role name> (the store's least busy holder)")

    @field_validator("recipient")
    @classmethod
    def _recipient(cls, value: str | None) -> str | None:
        if value is not None and not STAFF_RECIPIENT.match(value):
            raise ValueError("must be consultant, owner, therapist, store_manager or role:<role name>")
        return value

    @model_validator(mode="after")
    def _staff_message(self) -> SendMessage:
        if self.channel == "wecom_staff" and self.recipient is None:
            raise ValueError("recipient: a wecom_staff message needs a recipient (e.g. consultant)")
        if self.recipient is not None and self.channel not in (None, "wecom_staff"):
            raise ValueError("channel: a message with a recipient goes to staff: use wecom_staff")
        return self


class CreateTask(Strict):
    type: Literal["create_task"]
    kind: TaskKind
    assignee: str = Field("owner", description="owner | consultant | therapist | role:<role name>")
    due_in_hours: int = Field(24, ge=0, le=24 * 90)
    title: Name

    @field_validator("assignee")
    @classmethod
    def _assignee(cls, value: str) -> str:
        if not ASSIGNEE.match(value):
            raise ValueError("must be owner, consultant, therapist or role:<role name>")
        return value


class IssueCoupon(Strict):
    type: Literal["issue_coupon"]
    coupon_template_id: UUID | None = Field(None, description="required before the rule is enabled")


class ChangeTag(Strict):
    type: Literal["add_tag", "remove_tag"]
    tag: TagName


ACTION_MODELS: dict[str, type[Strict]] = {"send_message": SendMessage, "create_task": CreateTask,
                                          "issue_coupon": IssueCoupon, "add_tag": ChangeTag, "remove_tag": ChangeTag}
Action = SendMessage | CreateTask | IssueCoupon | ChangeTag
TRIGGER_MODELS: dict[str, type[Strict]] = {"event": EventTrigger, "schedule": ScheduleTrigger}


class RuleParts(BaseModel):
    trigger: EventTrigger | ScheduleTrigger
    conditions: Conditions
    delay: Delay
    quiet_hours: QuietHours | None
    actions: list[Action]


def _refuse(field: str, exc: ValidationError) -> Unprocessable:
    first = exc.errors()[0]
    inner = [str(p) for p in first.get("loc", ())]
    message = first.get("msg", "invalid").removeprefix("Value error, ")
    # A model-level check names its own sub-field as "name: message".
    if not inner and re.match(r"^[a-z_][a-z0-9_.]*: ", message):
        sub, message = message.split(": ", 1)
        inner = [sub]
    path = ".".join([field, *inner])
    return Unprocessable(f"{path}: {message}", code="validation_error", field=path,
                         errors=[{"field": path, "message": message, "type": first.get("type")}])


def _typed(field: str, raw: Any, models: dict[str, type[Strict]], what: str) -> Any:
    if not isinstance(raw, dict):
        raise Unprocessable(f"{field}: must be an object", code="validation_error", field=field)
    kind = raw.get("type")
    if kind not in models:
        raise Unprocessable(f"{field}.type: unknown {what} {kind!r}; known: {', '.join(models)}",
                            code="validation_error", field=f"{field}.type")
    try:
        return models[kind].model_validate(raw)
    except ValidationError as exc:
        raise _refuse(field, exc) from exc


def _plain(field: str, raw: Any, model: Any) -> Any:
    try:
        return TypeAdapter(model).validate_python(raw)
    except ValidationError as exc:
        raise _refuse(field, exc) from exc


def parse_rule_parts(trigger: Any, conditions: Any, delay: Any, quiet_hours: Any, actions: Any) -> RuleParts:
    if not isinstance(actions, list) or not actions:
        raise Unprocessable("actions: give at least one action", code="validation_error", field="actions")
    if len(actions) > 10:
        raise Unprocessable("actions: at most 10 actions", code="validation_error", field="actions")
    return RuleParts(
        trigger=_typed("trigger", trigger, TRIGGER_MODELS, "trigger type"),
        conditions=_plain("conditions", conditions or {}, Conditions),
        delay=_plain("delay", delay or {}, Delay),
        quiet_hours=None if quiet_hours is None else _plain("quiet_hours", quiet_hours, QuietHours),
        actions=[_typed(f"actions.{i}", a, ACTION_MODELS, "action") for i, a in enumerate(actions)],
    )


# ---------------------------------------------------------------- REST bodies

JsonObject = dict[str, Any]


class RuleCreate(Strict):
    key: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")
    name: Name
    description: str | None = Field(None, max_length=2000)
    enabled: bool = False
    trigger: JsonObject = Field(description="{type: event, topic, filter} or {type: schedule, kind, days}",
                                examples=[{"type": "event", "topic": "card.sessions_low",
                                           "filter": {"remaining": {"lte": 2}}}])
    conditions: JsonObject = Field(default_factory=dict, description="tags_any, tags_all, tags_none, tiers, "
                                   "store_ids, custom_fields[{key, equals|min|max}], card_balance_lte")
    delay: JsonObject = Field(default_factory=dict, description="{minutes} and/or {days, at: HH:MM}",
                              examples=[{"minutes": 1440}, {"days": 3, "at": "10:00"}])
    quiet_hours: JsonObject | None = Field(None, examples=[{"start": "21:00", "end": "09:00"}])
    actions: list[JsonObject] = Field(description="send_message{template_key, channel, recipient (wecom_staff)} | "
                                      "create_task{kind, assignee, due_in_hours, title} | "
                                      "issue_coupon{coupon_template_id} | "
                                      "add_tag{tag} | remove_tag{tag}", max_length=10)


class RuleUpdate(Strict):
    name: Name | None = None
    description: str | None = Field(None, max_length=2000)
    enabled: bool | None = None
    trigger: JsonObject | None = None
    conditions: JsonObject | None = None
    delay: JsonObject | None = None
    quiet_hours: JsonObject | None = None
    actions: list[JsonObject] | None = Field(None, max_length=10)


class RuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    key: str
    name: str
    description: str | None
    enabled: bool
    builtin: bool
    trigger: JsonObject
    conditions: JsonObject
    delay: JsonObject
    quiet_hours: JsonObject | None
    actions: list[JsonObject]
    version: int
    created_at: datetime | None
    updated_at: datetime | None


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    rule_id: UUID
    cause_key: str
    member_id: UUID | None
    store_id: UUID | None
    source: str
    event_id: UUID | None
    status: str
    run_at: datetime
    result: JsonObject
    attempts: int
    last_error: str | None
    created_at: datetime | None
    finished_at: datetime | None


class TopicOut(BaseModel):
    topic: str
    description: str
    filter_fields: list[str]


class CatalogueOut(BaseModel):
    topics: list[TopicOut]
    schedule_kinds: dict[str, str]
    actions: list[str]


class TaskCreate(Strict):
    kind: TaskKind = "custom"
    title: Name
    description: str | None = Field(None, max_length=4000)
    member_id: UUID | None = None
    assignee_id: UUID | None = Field(None, description="default: the caller")
    store_id: UUID | None = Field(None, description="default: the member's home store")
    due_at: Timestamp


class TaskUpdate(Strict):
    status: Literal["open", "done", "cancelled"] | None = None
    result_note: str | None = Field(None, max_length=4000)
    title: Name | None = None
    due_at: Timestamp | None = None
    assignee_id: UUID | None = Field(None, description="reassign (managers only)")


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    kind: str
    member_id: UUID | None
    assignee_id: UUID | None
    store_id: UUID | None
    status: str
    due_at: datetime
    title: str
    description: str | None
    result_note: str | None
    rule_id: UUID | None
    cause_key: str | None
    overdue: bool = False
    created_at: datetime | None
    completed_at: datetime | None
    completed_by_id: UUID | None
