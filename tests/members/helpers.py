"""Shared builders and assertions for the members tests."""

from __future__ import annotations

import itertools
import random
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import text

from app.core import audit
from app.core.db import session_scope
from app.core.security import issue_token
from tests.factories import TenantKit

PROBLEM_JSON = "application/problem+json"
# A valid resident ID (check digit X) and one with a wrong check digit.
VALID_ID = "11010519491231002X"
BAD_CHECK_DIGIT_ID = "110105194912310021"

_serial = itertools.count(random.randrange(10_000_000))


def new_phone() -> str:
    """A mainland mobile number no other test of this run uses."""
    return f"139{next(_serial) % 100_000_000:08d}"


def assert_problem(r: httpx.Response, status: int, code: str | None = None, field: str | None = None) -> dict:
    """An RFC 9457 answer with this status (and code); `field` must be named by `field`, `errors[]` or `detail`."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON), r.headers["content-type"]
    body = r.json()
    assert body["status"] == status and body["code"], body
    if code is not None:
        assert body["code"] == code, body
    if field is not None:
        assert names_field(body, field), body
    return body


def problem_fields(body: dict[str, Any]) -> set[str]:
    named = {e["field"] for e in body.get("errors") or []}
    if body.get("field"):
        named.add(body["field"])
    return named


def names_field(body: dict[str, Any], field: str) -> bool:
    """The problem names `field` itself or a part of it (`tags.0` names `tags`)."""
    return any(f == field or f.startswith(f"{field}.") for f in problem_fields(body)) \
        or body.get("detail", "").startswith(f"{field}:")


async def patch(kit: TenantKit, path: str, json: Any, token: str | None = None) -> httpx.Response:
    return await kit.client.patch(f"/api/v1{path}", json=json, headers=kit.auth(token))


async def delete(kit: TenantKit, path: str, token: str | None = None) -> httpx.Response:
    return await kit.client.delete(f"/api/v1{path}", headers=kit.auth(token))


async def make_member(kit: TenantKit, name: str = "张三", token: str | None = None, **fields: Any) -> dict:
    body = {"name": name, "phone": fields.pop("phone", None) or new_phone(), **fields}
    r = await kit.post("/members", body, token=token)
    assert r.status_code == 201, r.text
    return r.json()


async def all_pages(kit: TenantKit, path: str, token: str | None = None, **params: Any) -> list[dict]:
    """Every item of a cursor-paginated list, following next_cursor."""
    items, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = await kit.get(path, token=token, params=query)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


async def search_ids(kit: TenantKit, token: str | None = None, **params: Any) -> list[str]:
    return [m["id"] for m in await all_pages(kit, "/members", token=token, limit=200, **params)]


async def audit_entries(kit: TenantKit, **params: Any) -> list[dict]:
    """The tenant's audit chain, once the reads recorded so far are sealed into it (as the worker does)."""
    await audit.seal_pending(session_scope)
    return await all_pages(kit, "/audit", limit=200, **params)


def patient_token(kit: TenantKit, member_id: str) -> str:
    token, _ = issue_token(subject=str(member_id), tenant_id=kit.tenant_id, audience="patient", ttl_seconds=600)
    return token


async def member_row(member_id: str) -> dict[str, Any]:
    """The raw members row, read as the table owner (no masking, no decryption)."""
    async with session_scope(system=True) as session:
        row = (await session.execute(text("SELECT * FROM members WHERE id = :id"), {"id": UUID(member_id)})).one()
    return dict(row._mapping)


async def execute_as_owner(sql: str, **params: Any) -> list[Any]:
    async with session_scope(system=True) as session:
        result = await session.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []


async def table_counts(tenant_id: str, tables: tuple[str, ...]) -> dict[str, int]:
    async with session_scope(system=True) as session:
        return {t: (await session.execute(text(f"SELECT count(*) FROM {t} WHERE tenant_id = :t"),
                                          {"t": UUID(tenant_id)})).scalar_one() for t in tables}
