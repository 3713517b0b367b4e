"""Outgoing webhooks: subscriptions, fan-out from the outbox, signed delivery with retries, replay.

Flow:
1. Every outbox event reaches `fan_out` (registered with `@on("*")`). For a topic in WEBHOOK_TOPICS it
   inserts one delivery per active subscription that wants the topic (`ON CONFLICT DO NOTHING` on
   (tenant, subscription, event): a redelivered event makes no second delivery) and emits
   `webhooks.dispatch` in the same transaction, so the sending starts as soon as that commits.
2. `deliver()` sends one delivery: it claims the row (attempts + 1 and a lease on `next_attempt_at`) in a
   short transaction, POSTs with no transaction open, and records the answer in another. 2xx succeeds;
   anything else schedules the next attempt with exponential backoff, until `webhook_max_attempts`,
   then the delivery is dead.
3. Retries are the deliveries' own (`next_attempt_at` + the `run_webhook_deliveries` cron every minute),
   not the outbox's: a failing receiver must not re-run the event's other handlers, nor hold up the
   other receivers of the same event, and its log (attempts, response code, last error) is per receiver.

Delivery is at least once (a crash after the POST and before recording it sends again); receivers
dedupe on `X-CareLoop-Delivery`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import any_, text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.context import RequestContext, reset_context, set_context
from app.core.db import session_scope
from app.core.errors import NotFound
from app.core.ids import new_id
from app.core.outbox import OutboxEvent, emit
from app.core.pagination import PageParams, paginate
from app.core.settings import get_settings
from app.domain.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from app.domain.webhooks.schemas import SubscriptionCreate, SubscriptionUpdate
from app.domain.webhooks.signing import signature
from app.domain.webhooks.topics import WEBHOOK_TOPICS
from app.workers.registry import WILDCARD, on

log = logging.getLogger("careloop.webhooks")

DISPATCH_TOPIC = "webhooks.dispatch"
PERMISSION = "api_clients:write"  # connecting an outside system: the same trust as creating API clients
USER_AGENT = "CareLoop-Webhooks/1.0"
CRON_BATCH = 200
CONCURRENCY = 10


def backoff_seconds(attempts: int) -> float:
    settings = get_settings()
    return min(settings.webhook_backoff_base_seconds * (2 ** max(attempts - 1, 0)),
               settings.webhook_backoff_max_seconds)


# --------------------------------------------------------------------------------- subscriptions


async def create_subscription(session: AsyncSession, actor: Actor,
                              data: SubscriptionCreate) -> tuple[WebhookSubscription, str]:
    actor.require(PERMISSION)
    secret = "whsec_" + secrets.token_urlsafe(32)
    sub = WebhookSubscription(tenant_id=actor.tenant_id, url=data.url, event_types=data.event_types,
                              description=data.description, active=data.active,
                              secret_encrypted=crypto.encrypt(secret), created_by=actor.id, updated_at=utcnow())
    session.add(sub)
    await session.flush()
    audit.record(session, "webhook_subscription.create", "webhook_subscription", sub.id, url=sub.url,
                 event_types=sub.event_types, active=sub.active)
    return sub, secret


async def _subscription(session: AsyncSession, actor: Actor, sub_id: UUID, *, for_update: bool = False):
    sub = await session.get(WebhookSubscription, (actor.tenant_id, sub_id), with_for_update=for_update)
    if sub is None:
        raise NotFound("webhook subscription not found", code="webhook_subscription_not_found")
    return sub


async def get_subscription(session: AsyncSession, actor: Actor, sub_id: UUID) -> WebhookSubscription:
    actor.require(PERMISSION)
    return await _subscription(session, actor, sub_id)


async def list_subscriptions(session: AsyncSession, actor: Actor, params: PageParams):
    actor.require(PERMISSION)
    stmt = select(WebhookSubscription).where(WebhookSubscription.tenant_id == actor.tenant_id)
    return await paginate(session, stmt, WebhookSubscription.id, params)


async def update_subscription(session: AsyncSession, actor: Actor, sub_id: UUID,
                              data: SubscriptionUpdate) -> WebhookSubscription:
    actor.require(PERMISSION)
    sub = await _subscription(session, actor, sub_id, for_update=True)
    changes = {k: v for k, v in data.model_dump(exclude_unset=True).items()
               if v is not None or k == "description"}
    for key, value in changes.items():
        setattr(sub, key, value)
    sub.updated_at = utcnow()
    session.add(sub)
    await session.flush()
    audit.record(session, "webhook_subscription.update", "webhook_subscription", sub.id,
                 **{k: v for k, v in changes.items()})
    return sub


def event_types() -> list[tuple[str, str]]:
    return sorted(WEBHOOK_TOPICS.items())


# --------------------------------------------------------------------------------- delivery log


async def list_deliveries(session: AsyncSession, actor: Actor, sub_id: UUID, params: PageParams,
                          *, status: str | None = None):
    actor.require(PERMISSION)
    await _subscription(session, actor, sub_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.tenant_id == actor.tenant_id,
                                         WebhookDelivery.subscription_id == sub_id)
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    return await paginate(session, stmt, WebhookDelivery.id, params, descending=True)


async def replay_delivery(session: AsyncSession, actor: Actor, delivery_id: UUID) -> WebhookDelivery:
    """Send a delivery again, whatever its state (a receiver that lost one asks for it): the same
    delivery id and payload, a fresh timestamp and signature, a fresh count of attempts."""
    actor.require(PERMISSION)
    delivery = await session.get(WebhookDelivery, (actor.tenant_id, delivery_id), with_for_update=True)
    if delivery is None:
        raise NotFound("webhook delivery not found", code="webhook_delivery_not_found")
    previous = delivery.status
    delivery.status, delivery.attempts, delivery.last_error = DeliveryStatus.PENDING, 0, None
    delivery.next_attempt_at = delivery.updated_at = utcnow()
    session.add(delivery)
    await session.flush()
    await emit(session, DISPATCH_TOPIC, {"delivery_ids": [str(delivery.id)]})
    audit.record(session, "webhook_delivery.replay", "webhook_delivery", delivery.id, previous_status=previous,
                 topic=delivery.topic)
    return delivery


# --------------------------------------------------------------------------------- fan-out


@on(WILDCARD)
async def fan_out(session: AsyncSession, event: OutboxEvent) -> None:
    if event.topic not in WEBHOOK_TOPICS:
        return  # internal topics (and our own dispatch events) cost nothing more than this check
    subs = (await session.exec(select(WebhookSubscription.id).where(
        WebhookSubscription.tenant_id == event.tenant_id, WebhookSubscription.active,
        event.topic == any_(WebhookSubscription.event_types)))).all()
    if not subs:
        return
    now = utcnow()
    rows = [{"tenant_id": event.tenant_id, "id": new_id(), "subscription_id": sub_id, "event_id": event.id,
             "topic": event.topic, "payload": event.payload, "event_created_at": event.created_at,
             "status": DeliveryStatus.PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now,
             "updated_at": now} for sub_id in subs]
    created = (await session.execute(
        insert(WebhookDelivery).values(rows)
        .on_conflict_do_nothing(index_elements=["tenant_id", "subscription_id", "event_id"])
        .returning(WebhookDelivery.id))).scalars().all()
    if created:
        await emit(session, DISPATCH_TOPIC, {"delivery_ids": [str(i) for i in created]})


@on(DISPATCH_TOPIC)
async def dispatch(session: AsyncSession, event: OutboxEvent) -> None:
    """Send the deliveries now. A receiver's failure is the delivery's to retry, never the event's."""
    ids = [UUID(i) for i in event.payload.get("delivery_ids", [])]
    await _deliver_many([(event.tenant_id, i) for i in ids])


async def _deliver_many(items: list[tuple[UUID, UUID]]) -> dict[str, int]:
    limit = asyncio.Semaphore(CONCURRENCY)
    outcomes: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=get_settings().webhook_timeout_seconds, follow_redirects=False,
                                 headers={"User-Agent": USER_AGENT}) as http:
        async def one(tenant_id: UUID, delivery_id: UUID) -> None:
            async with limit:
                outcome = await deliver(tenant_id, delivery_id, http=http)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1

        await asyncio.gather(*(one(t, d) for t, d in items))
    return outcomes


def envelope(delivery: WebhookDelivery) -> bytes:
    """The body: compact JSON, keys sorted, so what we sign is exactly what we send."""
    body = {"id": str(delivery.id), "event_id": str(delivery.event_id), "type": delivery.topic,
            "tenant_id": str(delivery.tenant_id),
            "created_at": delivery.event_created_at.isoformat() if delivery.event_created_at else None,
            "data": delivery.payload}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str).encode()


async def deliver(tenant_id: UUID, delivery_id: UUID, *, http: httpx.AsyncClient | None = None) -> str:
    """Attempt one delivery if it is due; returns succeeded | failed | dead | skipped."""
    settings = get_settings()
    async with session_scope(tenant_id) as session:
        delivery = (await session.exec(select(WebhookDelivery).where(
            WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.id == delivery_id)
            .with_for_update(skip_locked=True))).one_or_none()
        now = utcnow()
        if delivery is None or delivery.status not in (DeliveryStatus.PENDING, DeliveryStatus.FAILED) \
                or (delivery.next_attempt_at is not None and delivery.next_attempt_at > now):
            return "skipped"
        sub = await session.get(WebhookSubscription, (tenant_id, delivery.subscription_id))
        if sub is None or not sub.active:
            return "skipped"  # waits; reactivating the subscription (or a replay) sends it
        # Claim: count the attempt now and lease the row, so a crash mid-send is an attempt, and a
        # concurrent cron run does not send it twice meanwhile.
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(seconds=settings.webhook_timeout_seconds + 60)
        delivery.updated_at = now
        session.add(delivery)
        url, secret, body = sub.url, crypto.decrypt(sub.secret_encrypted), envelope(delivery)
        topic, attempts = delivery.topic, delivery.attempts
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-CareLoop-Event": topic,
               "X-CareLoop-Delivery": str(delivery_id), "X-CareLoop-Timestamp": timestamp,
               "X-CareLoop-Signature": signature(secret, timestamp, body)}
    code: int | None = None
    error: str | None = None
    try:
        if http is None:
            async with httpx.AsyncClient(timeout=settings.webhook_timeout_seconds, follow_redirects=False,
                                         headers={"User-Agent": USER_AGENT}) as own:
                response = await own.post(url, content=body, headers=headers)
        else:
            response = await http.post(url, content=body, headers=headers)
        code = response.status_code
        if not 200 <= code < 300:
            error = f"HTTP {code}: {response.text[:500]}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
    async with session_scope(tenant_id) as session:
        delivery = await session.get(WebhookDelivery, (tenant_id, delivery_id), with_for_update=True)
        if delivery is None:
            return "skipped"
        now = utcnow()
        delivery.response_code, delivery.last_error, delivery.updated_at = code, error, now
        if error is None:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.SUCCEEDED, now, None
        elif attempts >= settings.webhook_max_attempts:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.DEAD, None
            log.error("webhook delivery dead", extra={"delivery_id": str(delivery_id), "error": error})
        else:
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = now + timedelta(seconds=backoff_seconds(attempts))
        session.add(delivery)
        return delivery.status


_DUE = text(
    "SELECT d.tenant_id, d.id FROM webhook_deliveries d JOIN webhook_subscriptions s "
    "  ON s.tenant_id = d.tenant_id AND s.id = d.subscription_id AND s.active "
    "WHERE d.status IN ('pending', 'failed') AND d.next_attempt_at <= :now "
    "ORDER BY d.next_attempt_at LIMIT :limit")


async def run_webhook_deliveries(ctx: dict[str, Any] | None = None) -> dict[str, int]:
    """Cron (every minute): send the deliveries whose next attempt is due, across tenants."""
    token = set_context(RequestContext(actor_type="system", actor_id="webhooks"))
    try:
        async with session_scope(system=True) as session:
            due = (await session.execute(_DUE, {"now": utcnow(), "limit": CRON_BATCH})).all()
        return await _deliver_many([(row.tenant_id, row.id) for row in due]) if due else {}
    finally:
        reset_context(token)
