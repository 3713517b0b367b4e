"""Delivering one queued message: claim the attempt, call the channel, record the outcome.

Each step is its own transaction (the `deliver_message` handler runs them in order, given a session
factory), so no row of ours is locked while the provider is being called.

Retries: the message row owns its attempts. The outbox machinery delivers each `message.send` event to
the handler once; the handler never raises for a delivery failure but records it on the row and, for a
transient one, writes a *new* `message.send` event delayed by the message retry policy
(`app.core.retry.policy("message")`, `message_*` settings). After `message_max_attempts` the message is
`dead` (listed by `GET /messages?status=dead`, re-queued by `POST /messages/{id}/retry`). Owning the
attempts here rather than re-raising into the outbox retry keeps attempts, last error and next attempt on
the message the API shows, and lets a permanent refusal (43101) stop at once instead of burning retries.

At most once towards the provider: before calling it, `claim_attempt` commits `status = sending` and the
attempt number. A delivery that finds a message still `sending` knows the previous worker died mid-call,
cannot tell whether the provider got the message, and dead-letters it (reason `interrupted`) instead of
sending a second copy; a human decides whether to retry. An event whose attempt number is not the
message's (a redelivered or superseded one) does nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import retry
from app.core.clock import utcnow
from app.core.db import SessionFactory
from app.core.events import emit
from app.core.rows import get_or_404
from app.domain.messaging.channels import PermanentDeliveryError, SkipDelivery, channels
from app.domain.messaging.events import MESSAGE_SEND
from app.domain.messaging.models import MessageStatus, OutboundMessage
from app.domain.messaging.service import clear_consent, give_back_consent

log = logging.getLogger("careloop.messaging")

INTERRUPTED = ("the worker stopped while the provider was being called; the message may or may not have been "
               "delivered (not resent automatically, to avoid a duplicate)")


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: `sent`, `skipped`, `failed` (for good) or `queued` (try again)."""

    status: str
    reason: str | None = None
    error: str | None = None
    provider_msg_id: str | None = None


async def claim_attempt(session: AsyncSession, tenant_id: UUID, message_id: UUID,
                        attempt: int) -> OutboundMessage | None:
    """Mark the message `sending` and count the attempt (the caller commits before calling the provider).
    None when there is nothing to send: already settled, superseded, or interrupted (then dead-lettered)."""
    message = await session.get(OutboundMessage, (tenant_id, message_id), with_for_update=True)
    if message is None:
        return None
    now = utcnow()
    if message.status == MessageStatus.SENDING:
        message.status, message.reason, message.next_attempt_at = MessageStatus.DEAD, "interrupted", None
        message.last_error, message.updated_at = INTERRUPTED, now
        session.add(message)
        log.error("message delivery interrupted; dead-lettered", extra={"message_id": str(message_id)})
        return None
    if message.status != MessageStatus.QUEUED or message.attempts != attempt:
        return None  # already settled, or a newer attempt supersedes this event
    message.status, message.attempts, message.updated_at = MessageStatus.SENDING, message.attempts + 1, now
    session.add(message)
    await session.flush()
    session.expunge(message)  # the caller reads it after this transaction ends
    return message


async def send(sessions: SessionFactory, message: OutboundMessage) -> Outcome:
    """Hand the claimed message to its channel. The channel looks up the address (openid, WeCom user id,
    phone) through the session it is given: a transaction of its own that holds no lock of ours."""
    try:
        async with sessions(message.tenant_id) as session:
            delivery = await channels.get(message.channel).send(session, message)
    except SkipDelivery as exc:
        return Outcome(MessageStatus.SKIPPED, exc.reason, str(exc))
    except PermanentDeliveryError as exc:
        return Outcome(MessageStatus.FAILED, exc.reason, str(exc))
    except Exception as exc:  # noqa: BLE001 - TransientDeliveryError and anything unexpected: try again later
        return Outcome(MessageStatus.QUEUED, "transient_error", retry.error_text(exc))
    return Outcome(MessageStatus.SENT, provider_msg_id=delivery.provider_msg_id)


async def record_outcome(session: AsyncSession, tenant_id: UUID, message_id: UUID, outcome: Outcome) -> None:
    """Settle the attempt on the message; a transient failure queues the next attempt (a new `message.send`
    event, delayed by the retry policy) or, when the attempts are used up, leaves the message dead."""
    message = await get_or_404(session, OutboundMessage, tenant_id, message_id, code="message_not_found", lock=True)
    now = utcnow()
    message.updated_at, message.last_error, message.reason = now, outcome.error, outcome.reason
    if outcome.status == MessageStatus.SENT:
        message.status, message.sent_at, message.next_attempt_at = outcome.status, now, None
        message.provider_msg_id = outcome.provider_msg_id
    elif outcome.status == MessageStatus.SKIPPED:
        message.status, message.next_attempt_at = outcome.status, None
        await give_back_consent(session, message)
    elif outcome.status == MessageStatus.FAILED:
        message.status, message.next_attempt_at = outcome.status, None
        if outcome.reason == "subscription_refused":
            await clear_consent(session, message)
        else:
            await give_back_consent(session, message)
    else:
        retry_at = retry.policy("message").next_attempt_at(message.attempts, now)
        if retry_at is None:
            # The consent stays reserved: WeChat has not used it, and a retry through the API sends with it.
            message.status, message.next_attempt_at = MessageStatus.DEAD, None
            log.error("message dead-lettered", extra={"message_id": str(message_id), "attempts": message.attempts,
                                                      "error": outcome.error})
        else:
            message.status, message.next_attempt_at = MessageStatus.QUEUED, retry_at
            await emit(session, MESSAGE_SEND, {"message_id": str(message_id), "attempt": message.attempts},
                       tenant_id=tenant_id, available_at=retry_at)
    session.add(message)
