"""Outgoing webhooks: subscriptions, fan-out from the outbox, signed delivery with retries, replay.

Flow:
1. Every outbox event reaches `handlers.fan_out` (registered with `@on("*")`). For a topic in
   WEBHOOK_TOPICS it inserts one delivery per active subscription that wants the topic (`ON CONFLICT DO
   NOTHING` on (tenant, subscription, event): a redelivered event makes no second delivery) and emits
   `webhooks.dispatch` in the same transaction, so the sending starts as soon as that commits.
2. `deliver()` sends one delivery: it claims the row (attempts + 1 and a lease on `next_attempt_at`) in a
   short transaction, POSTs with no transaction open, and records the answer in another. The URL is resolved
   and checked again before the POST, which goes to the checked address (`targets.pin`: no loopback, private
   or other non-public address unless allowed, whatever the name resolves to now); a refused target is a
   failed attempt whose `last_error` says why. 2xx succeeds; anything else schedules the next attempt by the
   webhook retry policy (`app.core.retry`, `webhook_*` settings), until `webhook_max_attempts`, then the
   delivery is dead.
3. Retries are the deliveries' own (`next_attempt_at` + the `jobs.run_webhook_deliveries` cron every
   minute), not the outbox's: a failing receiver must not re-run the event's other handlers, nor hold up
   the other receivers of the same event, and its log (attempts, response code, last error) is per receiver.

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
from uuid import UUID

import httpx
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto, retry
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.db import SessionFactory
from app.core.errors import Unprocessable
from app.core.events import emit
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.core.settings import get_settings
from app.domain.webhooks import targets
from app.domain.webhooks.events import WEBHOOKS_DISPATCH
from app.domain.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from app.domain.webhooks.schemas import SubscriptionCreate, SubscriptionUpdate
from app.domain.webhooks.signing import signature
from app.domain.webhooks.topics import WEBHOOK_TOPICS

log = logging.getLogger("careloop.webhooks")

PERMISSION = "api_clients:write"  # connecting an outside system: the same trust as creating API clients
USER_AGENT = "CareLoop-Webhooks/1.0"
CONCURRENCY = 10


# --------------------------------------------------------------------------------- subscriptions


async def _check_target(url: str) -> None:
    """Where the URL's name points now (the schema checked everything that needs no DNS): 422 on `url`."""
    try:
        await targets.check_on_save(url)
    except ValueError as exc:  # TargetRefused
        raise Unprocessable(f"url: {exc}", code="validation_error", field="url",
                            errors=[{"field": "url", "message": str(exc), "type": "value_error"}]) from exc


async def create_subscription(session: AsyncSession, actor: Actor,
                              data: SubscriptionCreate) -> tuple[WebhookSubscription, str]:
    actor.require(PERMISSION)
    await _check_target(data.url)
    secret = "whsec_" + secrets.token_urlsafe(32)
    sub = WebhookSubscription(tenant_id=actor.tenant_id, url=data.url, event_types=data.event_types,
                              description=data.description, active=data.active,
                              secret_encrypted=crypto.encrypt(secret), created_by=actor.id, updated_at=utcnow())
    session.add(sub)
    await session.flush()
    audit.record(session, "webhook_subscription.create", "webhook_subscription", sub.id, url=sub.url,
                 event_types=sub.event_types, active=sub.active)
    return sub, secret


async def _subscription(session: AsyncSession, actor: Actor, sub_id: UUID, *,
                        for_update: bool = False) -> WebhookSubscription:
    return await get_or_404(session, WebhookSubscription, actor.tenant_id, sub_id,
                            code="webhook_subscription_not_found", lock=for_update)


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
    if "url" in changes:
        await _check_target(changes["url"])
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
    delivery = await get_or_404(session, WebhookDelivery, actor.tenant_id, delivery_id,
                                code="webhook_delivery_not_found", lock=True)
    previous, now = delivery.status, utcnow()
    retry.revive(delivery, status=DeliveryStatus.PENDING, due_at=now)
    delivery.updated_at = now
    session.add(delivery)
    await session.flush()
    await emit(session, WEBHOOKS_DISPATCH, {"delivery_ids": [str(delivery.id)]})
    audit.record(session, "webhook_delivery.replay", "webhook_delivery", delivery.id, previous_status=previous,
                 topic=delivery.topic)
    return delivery


# --------------------------------------------------------------------------------- sending


# The transport every delivery's client uses; None is httpx's own (tests put a MockTransport here).
TRANSPORT: httpx.AsyncBaseTransport | None = None


def _client() -> httpx.AsyncClient:
    """One client per delivery: its connections are made to the address checked for that delivery and are
    not reused for another receiver's name (a pooled connection to a shared IP was verified for another
    name). No redirects (a 3xx could point anywhere), no proxy from the environment (it would resolve the
    name itself)."""
    return httpx.AsyncClient(timeout=get_settings().webhook_timeout_seconds, follow_redirects=False,
                             trust_env=False, headers={"User-Agent": USER_AGENT}, transport=TRANSPORT)


async def deliver_many(sessions: SessionFactory, items: list[tuple[UUID, UUID]]) -> dict[str, int]:
    """Attempt these (tenant, delivery) pairs, a few at a time; returns how many came to each outcome."""
    limit = asyncio.Semaphore(CONCURRENCY)
    outcomes: dict[str, int] = {}

    async def one(tenant_id: UUID, delivery_id: UUID) -> None:
        async with limit:
            outcome = await deliver(sessions, tenant_id, delivery_id)
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


async def _post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST to the address the URL resolves to now, once it is checked (`targets.pin`): the connection goes
    to that IP, the real name is the Host header and the TLS server name. TargetRefused/TargetUnresolved
    when it may not be sent."""
    target = await targets.pin(url, resolve_within_seconds=get_settings().webhook_timeout_seconds)
    async with _client() as http:
        return await http.post(target.url, content=body, headers={**headers, **target.headers},
                               extensions=target.extensions)


async def deliver(sessions: SessionFactory, tenant_id: UUID, delivery_id: UUID) -> str:
    """Attempt one delivery if it is due; returns succeeded | failed | dead | skipped."""
    settings = get_settings()
    async with sessions(tenant_id) as session:
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
        # (the lease covers resolving the name and the POST, each bounded by the timeout)
        delivery.next_attempt_at = now + timedelta(seconds=2 * settings.webhook_timeout_seconds + 60)
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
        response = await _post(url, body, headers)
        code = response.status_code
        if not 200 <= code < 300:
            error = f"HTTP {code}: {response.text[:500]}"
    except targets.TargetRefused as exc:
        error = f"refused: {exc}"[:1000]
        log.warning("webhook target refused", extra={"delivery_id": str(delivery_id), "error": str(exc)})
    except (httpx.HTTPError, targets.TargetUnresolved) as exc:
        error = retry.error_text(exc, limit=1000)
    async with sessions(tenant_id) as session:
        delivery = await session.get(WebhookDelivery, (tenant_id, delivery_id), with_for_update=True)
        if delivery is None:
            return "skipped"
        now = utcnow()
        delivery.response_code, delivery.last_error, delivery.updated_at = code, error, now
        if error is None:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.SUCCEEDED, now, None
        elif (retry_at := retry.policy("webhook").next_attempt_at(attempts, now)) is None:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.DEAD, None
            log.error("webhook delivery dead", extra={"delivery_id": str(delivery_id), "error": error})
        else:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, retry_at
        session.add(delivery)
        return delivery.status
