"""Access tokens and JS-SDK tickets for WeChat and WeCom, shared by every process through Redis.

WeChat and WeCom limit how often a token may be fetched, and each fetch of the mini-program token
invalidates the previous one after a grace period, so every API process and worker must use one cached
token instead of each fetching its own. The cache lives in Redis under the app's key prefix; when it is
missing (or about to expire: it is stored with a margin), exactly one caller fetches a new one while
holding a short Redis lock and the others wait for it to appear.

When WeChat answers 40001/42001/40014 (token invalid, expired or not the latest), `call_with_token`
refreshes the token once — unless another caller already replaced the stale one — and retries once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from redis.asyncio import Redis

from app.core.redis import rkey

log = logging.getLogger("careloop.wechat")

# Invalid credential, expired, invalid access_token: the cached token is no good any more.
TOKEN_ERRCODES = frozenset({40001, 42001, 40014})
# Stored for (expires_in - margin) so a token is replaced before WeChat stops accepting it.
EXPIRY_MARGIN_SECONDS = 300
LOCK_SECONDS = 15  # longer than one HTTP timeout, so a slow fetch is not joined by a second one
WAIT_STEP_SECONDS = 0.02

# Compare-and-delete: release the lock only if it is still ours (it may have expired and been retaken).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class WeChatError(Exception):
    """WeChat or WeCom answered with a non-zero errcode (or not at all)."""

    def __init__(self, errcode: int, errmsg: str = "", *, api: str = "") -> None:
        super().__init__(f"{api or 'wechat'}: errcode {errcode}: {errmsg}")
        self.errcode, self.errmsg, self.api = errcode, errmsg, api


class WeChatNotConfigured(Exception):
    """The settings for this integration are missing (names the missing settings)."""


# errcode for "could not reach WeChat / not JSON": not a WeChat code, so it never matches one.
TRANSPORT_ERRCODE = -2


async def request_json(http: httpx.AsyncClient, method: str, url: str, *, api: str, **kwargs: Any) -> dict[str, Any]:
    """One HTTP call answered with JSON; transport failures become WeChatError(TRANSPORT_ERRCODE)."""
    try:
        response = await http.request(method, url, **kwargs)
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise WeChatError(TRANSPORT_ERRCODE, f"{type(exc).__name__}: {exc}", api=api) from exc
    if not isinstance(data, dict):
        raise WeChatError(TRANSPORT_ERRCODE, "answer is not a JSON object", api=api)
    return data


def check(data: dict[str, Any], *, api: str) -> dict[str, Any]:
    errcode = int(data.get("errcode") or 0)
    if errcode != 0:
        raise WeChatError(errcode, str(data.get("errmsg", "")), api=api)
    return data


@dataclass(frozen=True)
class Credential:
    value: str
    expires_in: int


Fetch = Callable[[], Awaitable[Credential]]


class TokenCache:
    """One cached secret (a token or ticket) per `name`, fetched at most once at a time across processes."""

    def __init__(self, redis: Redis, *, wait_seconds: float = 20.0) -> None:
        self.redis = redis
        self.wait_seconds = wait_seconds

    @staticmethod
    def key(name: str) -> str:
        return rkey("wechat", "token", name)

    async def get(self, name: str, fetch: Fetch, *, stale: str | None = None) -> str:
        """The cached value, fetching it when missing. With `stale`, the caller knows that value is
        rejected: a different cached value is returned as is, otherwise a new one is fetched."""
        key, lock = self.key(name), self.key(name) + ":lock"
        deadline = time.monotonic() + self.wait_seconds
        while True:
            cached = await self.redis.get(key)
            if cached and cached != stale:
                return cached
            owner = secrets.token_hex(8)
            if await self.redis.set(lock, owner, nx=True, ex=LOCK_SECONDS):
                try:
                    # Someone may have stored a fresh value between our read and taking the lock.
                    cached = await self.redis.get(key)
                    if cached and cached != stale:
                        return cached
                    credential = await fetch()
                    ttl = max(credential.expires_in - EXPIRY_MARGIN_SECONDS, 60)
                    await self.redis.set(key, credential.value, ex=ttl)
                    log.info("fetched a new %s (valid %ss)", name, credential.expires_in)
                    return credential.value
                finally:
                    await self.redis.eval(_RELEASE, 1, lock, owner)
            # Another caller is fetching: wait for its value (or for its lock to lapse, then try again).
            if time.monotonic() > deadline:
                raise WeChatError(TRANSPORT_ERRCODE, f"timed out waiting for {name}", api="token")
            await asyncio.sleep(WAIT_STEP_SECONDS)

    async def forget(self, name: str) -> None:
        await self.redis.delete(self.key(name))


async def call_with_token(
    cache: TokenCache, name: str, fetch: Fetch, call: Callable[[str], Awaitable[dict[str, Any]]], *, api: str
) -> dict[str, Any]:
    """Run `call(token)`; when WeChat says the token is bad, refresh it once and retry once.
    Returns the answer of the last attempt (errcode not checked, so callers can act on specific codes)."""
    token = await cache.get(name, fetch)
    data = await call(token)
    if int(data.get("errcode") or 0) in TOKEN_ERRCODES:
        log.warning("%s rejected the cached %s (errcode %s); refreshing", api, name, data.get("errcode"))
        token = await cache.get(name, fetch, stale=token)
        data = await call(token)
    return data
