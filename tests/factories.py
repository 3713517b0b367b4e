"""Builders for test data through the real services and API."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import text

from app.core import audit
from app.core.db import session_scope
from app.seed import DEMO_PASSWORD, DEMO_TENANT, create_tenant_with_owner, seed_demo
from app.workers import dispatch as _dispatch  # noqa: F401  discovers the handlers, as the worker process does
from app.workers.dispatch import dispatch_event

PASSWORD = "correct-horse-battery"


@dataclass
class TenantKit:
    """A fresh tenant with an owner signed in, and helpers to add stores and staff."""

    client: httpx.AsyncClient
    code: str
    tenant_id: str
    owner_token: str
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.owner_token}"}

    async def post(self, path: str, json: dict, token: str | None = None, **kw) -> httpx.Response:
        headers = self.auth(token) | kw.pop("headers", {})
        return await self.client.post(f"/api/v1{path}", json=json, headers=headers, **kw)

    async def get(self, path: str, token: str | None = None, **kw) -> httpx.Response:
        return await self.client.get(f"/api/v1{path}", headers=self.auth(token), **kw)

    async def delete(self, path: str, token: str | None = None, **kw) -> httpx.Response:
        return await self.client.delete(f"/api/v1{path}", headers=self.auth(token), **kw)

    async def store(self, name: str = "静安店", **extra) -> str:
        r = await self.post("/stores", {"name": name, **extra})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    async def staff(self, roles: list[str], store_ids: list[str] | None = None, username: str | None = None) -> dict:
        username = username or f"u{uuid.uuid4().hex[:8]}"
        r = await self.post("/staff", {"username": username, "password": PASSWORD, "display_name": "测试员工",
                                       "roles": roles, "store_ids": store_ids or []})
        assert r.status_code == 201, r.text
        token = await login(self.client, self.code, username, PASSWORD)
        return {"id": r.json()["id"], "username": username, "token": token}


async def login(client: httpx.AsyncClient, tenant: str, username: str, password: str = PASSWORD) -> str:
    r = await client.post("/api/v1/auth/token", json={"tenant": tenant, "username": username, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


async def new_tenant(client: httpx.AsyncClient) -> TenantKit:
    code = f"t{uuid.uuid4().hex[:12]}"
    tenant = await create_tenant_with_owner(code=code, name="测试诊所", owner_username="owner", owner_password=PASSWORD)
    token = await login(client, code, "owner")
    return TenantKit(client=client, code=code, tenant_id=str(tenant.id), owner_token=token)


async def seal_audit() -> int:
    """What the worker does every two seconds: seal the pending audit entries into the chain."""
    return await audit.seal_pending(session_scope)


async def deliver(tenant_id: uuid.UUID | str, topic: str) -> list[str]:
    """Run the handlers of every pending event of `topic` (whatever its available_at), as the worker would;
    returns each event's outcome ("done", …)."""
    async with session_scope(system=True) as session:
        rows = (await session.execute(text(
            "SELECT id FROM outbox WHERE tenant_id = :t AND topic = :p AND status = 'pending' ORDER BY id"),
            {"t": uuid.UUID(str(tenant_id)), "p": topic})).all()
        errors = (await session.execute(text(
            "SELECT DISTINCT last_error FROM outbox WHERE tenant_id = :t AND topic = :p AND last_error IS NOT NULL"),
            {"t": uuid.UUID(str(tenant_id)), "p": topic})).scalars().all()
    results = [await dispatch_event(None, str(tenant_id), str(event_id)) for (event_id,) in rows]
    if errors:
        print("handler errors:", errors)  # shown by pytest when the test then fails
    return results


async def demo_reader(client: httpx.AsyncClient) -> Callable[..., Awaitable[dict]]:
    """The demo tenant (seeded once per test database) read as its owner: `await get("/orders", limit=5)`
    answers the JSON of a 200 (anything else fails the test)."""
    await seed_demo(if_missing=True)
    headers = {"Authorization": f"Bearer {await login(client, DEMO_TENANT, 'owner', DEMO_PASSWORD)}"}

    async def get(path: str, **params: Any) -> dict:
        r = await client.get(f"/api/v1{path}", headers=headers, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    return get
