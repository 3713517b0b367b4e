from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from app.core.schemas import Strict
from app.domain.webhooks import targets
from app.domain.webhooks.topics import WEBHOOK_TOPICS


def check_url(value: str) -> str:
    """https only (payloads carry member data), to public addresses only (see `targets`): everything that
    needs no DNS is checked here; the service resolves the name before saving it."""
    targets.parse_url(value)
    return value


def check_event_types(value: list[str]) -> list[str]:
    unknown = sorted(set(value) - set(WEBHOOK_TOPICS))
    if unknown:
        raise ValueError(f"unknown event type {unknown[0]!r}; see GET /webhook-event-types")
    return sorted(set(value))


class SubscriptionCreate(Strict):
    url: str = Field(min_length=8, max_length=2000,
                     description="https:// endpoint that receives the POSTs, at a public address")
    event_types: list[str] = Field(min_length=1, max_length=len(WEBHOOK_TOPICS),
                                   description="Outbox topics to deliver (GET /webhook-event-types)")
    description: str | None = Field(None, max_length=500)
    active: StrictBool = True

    _url = field_validator("url")(check_url)
    _types = field_validator("event_types")(check_event_types)


class SubscriptionUpdate(Strict):
    url: str | None = Field(None, min_length=8, max_length=2000)
    event_types: list[str] | None = Field(None, min_length=1, max_length=len(WEBHOOK_TOPICS))
    description: str | None = Field(None, max_length=500)
    active: StrictBool | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_event_types(value)


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    url: str
    event_types: list[str]
    description: str | None
    active: bool
    created_at: datetime | None
    updated_at: datetime | None


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="The signing secret. Shown only now: store it; it cannot be read again")


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    subscription_id: UUID
    event_id: UUID
    topic: str
    payload: dict[str, Any]
    status: str = Field(description="pending | succeeded | failed (will retry) | dead (gave up)")
    attempts: int
    response_code: int | None
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime | None


class EventTypeOut(BaseModel):
    topic: str
    description: str
