"""Ended sign-ins, as each process knows them: PostgreSQL is the record, memory the cache.

A sign-in (a refresh-token family; the access token's `sid`) ends by logout, by a reused refresh token, by a
disabled account or a changed password: its `refresh_tokens` rows get `revoked_at`, in PostgreSQL, so no
Redis restart or loss can bring it back. Every process keeps the families revoked within the last access-token
lifetime in memory (older ones concern only expired tokens) and reads the new ones every
`revocation_poll_seconds` with one indexed query, so checking a request's token costs no round trip at all.

The bound: a revocation takes effect at once in the process that made it, and in every other process within
`revocation_poll_seconds` (1 s by default) of its commit. When a process's knowledge is older than two poll
intervals (its poller stalled, or none runs), each check asks the database about that one sign-in, in the
request's own transaction: never stale, at the price of a round trip.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import db
from app.core.clock import utcnow
from app.core.db import SessionFactory
from app.core.settings import get_settings

log = logging.getLogger("careloop.revocations")

# Across tenants (the owner's session): revocations of the last access-token lifetime, newest last. Rows of one
# family share their revoked_at; the partial index ix_refresh_tokens_revoked keeps this cheap.
_REVOKED_SINCE = text(
    "SELECT family_id, max(revoked_at) AS revoked_at FROM refresh_tokens "
    "WHERE revoked_at IS NOT NULL AND revoked_at > :since GROUP BY family_id"
)
# A prepared statement (db.fetch): it runs on the request path whenever the poller is not fresh.
_FAMILY_REVOKED = ("SELECT 1 FROM refresh_tokens WHERE tenant_id = $1 AND family_id = CAST($2 AS uuid) "
                   "AND revoked_at IS NOT NULL LIMIT 1")
# Re-read this much before the newest revocation seen: another process's clock may run a little behind.
CLOCK_SLACK = timedelta(seconds=60)


class RevokedSessions:
    def __init__(self) -> None:
        self._revoked: dict[str, datetime] = {}  # sid -> when it was revoked
        self._newest: datetime | None = None
        self._refreshed_at: float | None = None  # monotonic time of the last successful read
        self._lock = asyncio.Lock()

    def add(self, family_ids: list[UUID] | list[str]) -> None:
        """Known at once in this process (the transaction that revoked them may still be committing)."""
        now = utcnow()
        for family_id in family_ids:
            self._revoked[str(family_id)] = now

    def is_revoked(self, sid: str) -> bool:
        return sid in self._revoked

    def fresh(self, within: float) -> bool:
        return self._refreshed_at is not None and time.monotonic() - self._refreshed_at < within

    async def refresh(self, sessions: SessionFactory) -> int:
        """Read revocations committed since the last read (the poller's step); returns how many were new."""
        async with self._lock:
            window = timedelta(seconds=get_settings().access_token_ttl_seconds + 60)
            floor = utcnow() - window
            since = max(floor, self._newest - CLOCK_SLACK) if self._newest is not None else floor
            started = time.monotonic()
            async with sessions(system=True) as session:
                rows = (await session.execute(_REVOKED_SINCE, {"since": since})).all()
            new = 0
            for family_id, revoked_at in rows:
                key = str(family_id)
                new += key not in self._revoked
                self._revoked[key] = revoked_at
                if self._newest is None or revoked_at > self._newest:
                    self._newest = revoked_at
            # Forget what only concerns expired access tokens.
            for key in [k for k, at in self._revoked.items() if at < floor]:
                del self._revoked[key]
            self._refreshed_at = started
            return new

    async def is_revoked_now(self, session: AsyncSession, tenant_id: UUID, sid: str) -> bool:
        """On the request path, in the request's own transaction: memory while the poller keeps it fresh; when
        it does not (no poller running, as in tests, or the loop stalled), one indexed lookup of this sign-in.
        Never a second connection: a request holding one must not wait for the pool to answer this."""
        if sid in self._revoked:
            return True
        if self.fresh(get_settings().revocation_poll_seconds * 2):
            return False
        found = bool(await db.fetch(session, _FAMILY_REVOKED, tenant_id, sid))
        if found:
            self._revoked[sid] = utcnow()
        return found

    async def poll(self, sessions: SessionFactory, stop: asyncio.Event) -> None:
        """Keep this process's knowledge fresh until `stop` is set (run beside the API)."""
        interval = get_settings().revocation_poll_seconds
        while not stop.is_set():
            try:
                await self.refresh(sessions)
            except Exception:  # noqa: BLE001 - keep polling; meanwhile each check asks the database
                log.warning("revocation poll failed", exc_info=True)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass


# This process's knowledge (one per process, like its engine and its signing keys).
revoked_sessions = RevokedSessions()
