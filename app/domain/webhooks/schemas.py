from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from app.core.schemas import Strict
from app.core.settings import get_settings
from app.domain.webhooks.topics import WEBHOOK_TOPICS

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _allow_http_localhost() -> bool:
    settings = get_settings()
    if settings.webhook_allow_http_localhost is not None:
        return settings.webhook_allow_http_localhost
    return settings.environment == "development"


def check_url(value: str) -> str:
    """https only (payloads carry member data); plain http to localhost only when allowed (development)."""
    parts = urlsplit(value)
    host = (parts.hostname or "").lower()
    if not host or parts.scheme not in ("https", "http"):
        raise ValueError("must be an absolute https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; the signature authenticates us")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    if parts.scheme == "http" and not (host in LOCAL_HOSTS and _allow_http_localhost()):
        raise ValueError("must use https:// (plain http only to localhost in development)")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    if host not in LOCAL_HOSTS:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None and (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified):
            raise ValueError("must not point at a private or loopback address")
    return value


def check_event_types(value: list[str]) -> list[str]:
    unknown = sorted(set(value) - set(WEBHOOK_TOPICS))
    if unknown:
        raise ValueError(f"unknown event type {unknown[0]!r}; see GET /webhook-event-types")
    return sorted(set(value))


class SubscriptionCreate(Strict):
    url: str = Field(min_length=8, max_length=2000, description="https:// endpoint that receives the POSTs")
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
