"""The shared Redis client (rate limits, revocations, token caches, the arq queue)."""

from __future__ import annotations

from redis.asyncio import Redis

from app.core.settings import get_settings


def create_redis(url: str) -> Redis:
    return Redis.from_url(url, decode_responses=True)


def rkey(*parts: object) -> str:
    """A namespaced key, so deployments and test runs can share one Redis."""
    return ":".join([get_settings().redis_prefix, *(str(p) for p in parts)])
