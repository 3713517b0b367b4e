"""Outgoing webhooks: subscriptions, their delivery log, replay (see app/domain/webhooks/service.py)."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.webhooks import service
from app.domain.webhooks.schemas import (
    DeliveryOut,
    EventTypeOut,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionOut,
    SubscriptionUpdate,
)

router = APIRouter(tags=["webhooks"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
PERMISSION = service.PERMISSION


@router.get("/webhook-event-types", response_model=list[EventTypeOut], operation_id="list_webhook_event_types")
async def list_event_types(actor: Actor = require(PERMISSION)) -> list[EventTypeOut]:
    """The outbox topics a subscription may ask for."""
    return [EventTypeOut(topic=t, description=d) for t, d in service.event_types()]


@router.post("/webhook-subscriptions", status_code=201, response_model=SubscriptionCreated,
             operation_id="create_webhook_subscription")
async def create_subscription(body: SubscriptionCreate, session: AsyncSession = Depends(get_db),
                              actor: Actor = require(PERMISSION)) -> SubscriptionCreated:
    """Deliver these event types to this https URL, at a public address (loopback, private and other
    non-public addresses are refused, however spelled; `WEBHOOK_ALLOWED_PRIVATE_NETWORKS` opens an intranet
    receiver's network). Each POST is signed:
    `X-CareLoop-Signature: sha256=HMAC-SHA256(secret, X-CareLoop-Timestamp + "." + raw body)`.
    The `secret` is in this answer only."""
    sub, secret = await service.create_subscription(session, actor, body)
    return SubscriptionCreated(**SubscriptionOut.model_validate(sub).model_dump(), secret=secret)


@router.get("/webhook-subscriptions", response_model=Page[SubscriptionOut], operation_id="list_webhook_subscriptions")
async def list_subscriptions(params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                             actor: Actor = require(PERMISSION)) -> Page[SubscriptionOut]:
    rows, cursor = await service.list_subscriptions(session, actor, params)
    return Page(items=[SubscriptionOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/webhook-subscriptions/{subscription_id}", response_model=SubscriptionOut,
            operation_id="get_webhook_subscription")
async def get_subscription(subscription_id: UUID, session: AsyncSession = Depends(get_db),
                           actor: Actor = require(PERMISSION)) -> SubscriptionOut:
    return SubscriptionOut.model_validate(await service.get_subscription(session, actor, subscription_id))


@router.patch("/webhook-subscriptions/{subscription_id}", response_model=SubscriptionOut,
              operation_id="update_webhook_subscription")
async def update_subscription(subscription_id: UUID, body: SubscriptionUpdate,
                              session: AsyncSession = Depends(get_db),
                              actor: Actor = require(PERMISSION)) -> SubscriptionOut:
    """Change the URL, the event types, the description, or pause it (`active: false`: deliveries wait)."""
    return SubscriptionOut.model_validate(await service.update_subscription(session, actor, subscription_id, body))


@router.get("/webhook-subscriptions/{subscription_id}/deliveries", response_model=Page[DeliveryOut],
            operation_id="list_webhook_deliveries")
async def list_deliveries(subscription_id: UUID,
                          status: Literal["pending", "succeeded", "failed", "dead"] | None = Query(None),
                          params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                          actor: Actor = require(PERMISSION)) -> Page[DeliveryOut]:
    """The delivery log, newest first: attempts, last response code and error, next attempt."""
    rows, cursor = await service.list_deliveries(session, actor, subscription_id, params, status=status)
    return Page(items=[DeliveryOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.post("/webhook-deliveries/{delivery_id}/replay", response_model=DeliveryOut,
             operation_id="replay_webhook_delivery")
async def replay_delivery(delivery_id: UUID, session: AsyncSession = Depends(get_db),
                          actor: Actor = require(PERMISSION)) -> DeliveryOut:
    """Send a delivery again (any status): same delivery id and payload, new timestamp and signature."""
    return DeliveryOut.model_validate(await service.replay_delivery(session, actor, delivery_id))
