"""Builders for the growth (channels, leads, assignment, intake) tests."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from typing import Any

import httpx
from sqlalchemy import text

from app.core.db import session_scope
from app.domain.growth.intake import sign
from tests.factories import TenantKit, new_tenant

_serial = itertools.count(random.randrange(10_000_000))


def phone() -> str:
    return f"136{next(_serial) % 100_000_000:08d}"


async def owner_sql(sql: str, **params: Any) -> list[Any]:
    async with session_scope(system=True) as session:
        result = await session.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []


async def channel(kit: TenantKit, name: str = "抖音", kind: str = "platform", **extra: Any) -> str:
    r = await kit.post("/channels", {"name": name, "kind": kind, **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def campaign(kit: TenantKit, channel_id: str, code: str | None = None, **extra: Any) -> dict:
    code = code or f"c{uuid.uuid4().hex[:10]}"
    r = await kit.post("/campaign-codes", {"channel_id": channel_id, "code": code, "name": "双十二投放", **extra})
    assert r.status_code == 201, r.text
    return r.json()


async def rule(kit: TenantKit, **body: Any) -> dict:
    r = await kit.post("/assignment-rules", {"name": "新线索轮流分配", **body})
    assert r.status_code == 201, r.text
    return r.json()


async def secret(kit: TenantKit) -> str:
    r = await kit.post("/lead-intake-secret", {})
    assert r.status_code == 201, r.text
    return r.json()["secret"]


async def intake(client: httpx.AsyncClient, tenant_code: str, key: str, body: dict, *,
                 timestamp: int | None = None, headers: dict | None = None) -> httpx.Response:
    raw = json.dumps(body, ensure_ascii=False).encode()
    signed = sign(key, raw, timestamp) | {"Content-Type": "application/json"} | (headers or {})
    return await client.post(f"/api/v1/lead-intake/{tenant_code}", content=raw, headers=signed)


async def shop(client: httpx.AsyncClient, consultants: int = 3) -> tuple[TenantKit, str, list[dict]]:
    """A tenant with a store and its consultants (each signed in)."""
    kit = await new_tenant(client)
    store_id = await kit.store()
    staff = [await kit.staff(["consultant"], [store_id]) for _ in range(consultants)]
    return kit, store_id, staff
