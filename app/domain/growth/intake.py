"""The public lead-intake endpoint's checks: the per-tenant secret, the signature, the time window, the rate.

Ad platforms and landing pages POST to `/api/v1/lead-intake/{tenant_code}` with the headers our outgoing
webhooks use (`app.domain.webhooks.signing`), in the other direction:

    X-CareLoop-Timestamp: 1732780800                       (seconds since 1970, within 5 minutes of ours)
    X-CareLoop-Signature: sha256=<hex HMAC-SHA256(secret, "1732780800" + "." + raw body)>

The secret is created (and rotated) by the owner and shown once; it is stored encrypted with the field keys
(`app.core.crypto`), because verifying an HMAC needs it back. Requests are counted per tenant code and
client address before anything is checked, as sign-in attempts are (`iam`), so a flood of forged requests
is refused without a database round trip per request.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from datetime import datetime
from uuid import UUID

from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.db import set_tenant
from app.core.errors import NotFound, TooManyRequests, Unauthorized
from app.core.redis import rkey
from app.domain.growth.models import IntakeSecret
from app.domain.tenancy import service as tenancy
from app.domain.webhooks import signing

TIMESTAMP_HEADER = "x-careloop-timestamp"
SIGNATURE_HEADER = "x-careloop-signature"
WINDOW_SECONDS = 300
# Requests per tenant code and client address per minute; a landing page posts once per visitor, an ad
# platform pushes in bursts from a few addresses.
RATE_PER_MINUTE = 300

# Counts a request and starts the key's one-minute window in one step (see iam's sign-in counting).
_COUNT = """
local n = redis.call('incr', KEYS[1])
if redis.call('ttl', KEYS[1]) < 0 then redis.call('expire', KEYS[1], ARGV[1]) end
return n
"""


async def rotate_secret(session: AsyncSession, actor: Actor) -> tuple[str, datetime]:
    """A new intake secret (the old one stops working at once); shown once."""
    actor.require("growth:admin")
    secret = "lisec_" + secrets.token_urlsafe(32)
    now = utcnow()
    row = await session.get(IntakeSecret, actor.tenant_id, with_for_update=True)
    if row is None:
        session.add(IntakeSecret(tenant_id=actor.tenant_id, secret_encrypted=crypto.encrypt(secret),
                                 rotated_at=now, rotated_by_id=actor.id))
    else:
        row.secret_encrypted, row.rotated_at, row.rotated_by_id = crypto.encrypt(secret), now, actor.id
    await session.flush()
    audit.record(session, "growth.intake_secret.rotate", "tenant", actor.tenant_id)
    return secret, now


async def count_request(redis: Redis, tenant_code: str, ip: str | None) -> None:
    minute = int(time.time() // 60)
    key = rkey("lead_intake", tenant_code.lower(), ip or "-", minute)
    if int(await redis.eval(_COUNT, 1, key, 90)) > RATE_PER_MINUTE:
        raise TooManyRequests("too many lead-intake requests; try again in a minute", code="intake_rate_limited",
                              retry_after=60 - int(time.time()) % 60)


async def authenticate(session: AsyncSession, redis: Redis, tenant_code: str, headers: Mapping[str, str],
                       body: bytes, ip: str | None, *, now: float | None = None) -> UUID:
    """Rate, tenant, time window and signature, in that order; the tenant's id (set on the session)."""
    await count_request(redis, tenant_code, ip)
    tenant = await tenancy.get_tenant_by_code(session, tenant_code)
    if tenant is None or not tenant.active:
        raise NotFound("no such tenant", code="tenant_not_found")
    await set_tenant(session, tenant.id)
    stored = await session.get(IntakeSecret, tenant.id)
    if stored is None:
        raise Unauthorized("lead intake is not enabled: the owner creates an intake secret first",
                           code="intake_not_enabled")
    timestamp, signature = headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
    if not timestamp or not signature:
        raise Unauthorized(f"sign the request: send {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}",
                           code="signature_missing")
    try:
        sent = int(timestamp)
    except ValueError as exc:
        raise Unauthorized("the timestamp is not whole seconds since 1970", code="stale_timestamp") from exc
    if abs((now if now is not None else time.time()) - sent) > WINDOW_SECONDS:
        raise Unauthorized("the timestamp is more than 5 minutes from ours", code="stale_timestamp")
    secret = crypto.decrypt(stored.secret_encrypted) or ""
    if not signing.verify(secret, timestamp, body, signature):
        raise Unauthorized("the signature does not match the body", code="invalid_signature")
    return tenant.id


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers a sender puts on an intake request (for tests, the demo and documentation)."""
    ts = str(timestamp if timestamp is not None else int(time.time()))
    return {"X-CareLoop-Timestamp": ts, "X-CareLoop-Signature": signing.signature(secret, ts, body)}
