"""Webhook subscriptions and the delivery log.

A delivery is one event for one subscription (unique per tenant, subscription and event, so an event
handled twice is delivered once); it carries its own retry state (`attempts`, `next_attempt_at`) because
one slow or failing receiver must not hold up the event's other handlers or other receivers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, Boolean, CheckConstraint, Column, DateTime, Index, Integer, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from app.core.clock import utcnow
from app.core.models import TENANT_TABLES, TenantRow, tenant_fk, timestamp_field


class DeliveryStatus:
    PENDING = "pending"  # not yet sent, or failed and waiting for next_attempt_at
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the last attempt failed; another is scheduled (kept apart from pending for the log)
    DEAD = "dead"  # gave up after webhook_max_attempts; replay sends it again
    ALL = (PENDING, SUCCEEDED, FAILED, DEAD)


class WebhookSubscription(TenantRow, table=True):
    __tablename__ = "webhook_subscriptions"
    __table_args__ = (Index("ix_webhook_subscriptions_active", "tenant_id", postgresql_where=text("active")),)

    url: str = Field(sa_type=Text)
    event_types: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    description: str | None = Field(default=None, sa_type=Text)
    # The signing secret, encrypted with the field keys (app.core.crypto); shown once, when created.
    secret_encrypted: str = Field(sa_type=Text)
    active: bool = Field(default=True, sa_type=Boolean)
    created_by: UUID | None = None
    updated_at: datetime | None = timestamp_field()


class WebhookDelivery(TenantRow, table=True):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "subscription_id", "event_id"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'dead')", name="status_known"),
        tenant_fk(["subscription_id"], "webhook_subscriptions", ondelete="CASCADE"),
        Index("ix_webhook_deliveries_subscription", "tenant_id", "subscription_id", "id"),
        # What the retry cron looks for.
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status IN ('pending', 'failed')")),
    )

    subscription_id: UUID
    event_id: UUID  # the outbox event (not a foreign key: delivered events outlive the outbox's 30 days)
    topic: str = Field(sa_type=Text)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    event_created_at: datetime | None = timestamp_field()
    status: str = Field(default=DeliveryStatus.PENDING, sa_type=Text)
    attempts: int = Field(default=0, sa_type=Integer)
    response_code: int | None = Field(default=None, sa_type=Integer)
    next_attempt_at: datetime | None = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    last_error: str | None = Field(default=None, sa_type=Text)
    delivered_at: datetime | None = timestamp_field()
    updated_at: datetime | None = timestamp_field()


TENANT_TABLES.update({"webhook_subscriptions", "webhook_deliveries"})
