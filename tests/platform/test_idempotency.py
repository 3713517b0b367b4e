"""Invariant 6: `Idempotency-Key` turns at-least-once client retries into exactly-once effects."""

from __future__ import annotations

import asyncio
import uuid
from uuid import UUID

from sqlalchemy import text

from app.core.db import session_scope
from app.core.idempotency import MAX_KEY_LENGTH
from tests.factories import new_tenant, seal_audit


async def _count(tenant_id: str, table: str, where: str = "true", **params) -> int:
    async with session_scope(UUID(tenant_id)) as session:
        return (await session.execute(text(f"SELECT count(*) FROM {table} WHERE {where}"), params)).scalar_one()


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"k-{uuid.uuid4()}"}


async def test_repeat_returns_the_first_answer_and_does_nothing_twice(client):
    kit = await new_tenant(client)
    headers = _key()
    first = await kit.post("/stores", {"name": "静安店"}, headers=headers)
    second = await kit.post("/stores", {"name": "静安店"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"]
    assert second.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert await _count(kit.tenant_id, "stores") == 1
    await seal_audit()  # what the worker does every two seconds
    assert await _count(kit.tenant_id, "audit_log", "action = 'store.create'") == 1

    # The key does not stop new work under another key.
    third = await kit.post("/stores", {"name": "静安店"}, headers=_key())
    assert third.status_code == 201 and third.json()["id"] != first.json()["id"]
    assert await _count(kit.tenant_id, "stores") == 2


async def test_same_key_with_another_body_is_refused(client):
    kit = await new_tenant(client)
    headers = _key()
    assert (await kit.post("/stores", {"name": "静安店"}, headers=headers)).status_code == 201
    reused = await kit.post("/stores", {"name": "徐汇店"}, headers=headers)
    assert reused.status_code == 422
    assert reused.headers["content-type"].startswith("application/problem+json")
    assert reused.json()["code"] == "idempotency_key_reused"
    assert await _count(kit.tenant_id, "stores") == 1


async def test_same_key_on_another_endpoint_is_refused(client):
    kit = await new_tenant(client)
    headers = _key()
    assert (await kit.post("/stores", {"name": "静安店"}, headers=headers)).status_code == 201
    staff = await kit.post("/staff", {"username": "x1", "password": "long-enough-pw", "display_name": "x",
                                      "roles": ["therapist"], "store_ids": []}, headers=headers)
    assert staff.status_code == 422 and staff.json()["code"] == "idempotency_key_reused"
    assert await _count(kit.tenant_id, "staff", "username = 'x1'") == 0


async def test_concurrent_requests_with_one_key_do_the_work_once(client):
    kit = await new_tenant(client)
    headers = _key()
    answers = await asyncio.gather(*[kit.post("/stores", {"name": "并发店"}, headers=headers) for _ in range(10)])
    assert {r.status_code for r in answers} == {201}
    assert len({r.content for r in answers}) == 1, "every caller gets the same answer"
    assert sum(r.headers.get("idempotent-replayed") != "true" for r in answers) == 1
    assert await _count(kit.tenant_id, "stores") == 1
    await seal_audit()  # what the worker does every two seconds
    assert await _count(kit.tenant_id, "audit_log", "action = 'store.create'") == 1


async def test_a_failed_request_does_not_burn_the_key(client):
    kit = await new_tenant(client)
    headers = _key()
    bad = await kit.post("/stores", {"name": "静安店", "timezone": "Mars/Olympus"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    # Nothing was done, so nothing is remembered: the corrected request runs under the same key...
    assert await _count(kit.tenant_id, "idempotency_keys") == 0
    fixed = await kit.post("/stores", {"name": "静安店"}, headers=headers)
    assert fixed.status_code == 201
    assert "idempotent-replayed" not in fixed.headers
    # ...and from then on the key belongs to the successful request.
    again = await kit.post("/stores", {"name": "静安店"}, headers=headers)
    assert again.json() == fixed.json() and again.headers.get("idempotent-replayed") == "true"
    stale = await kit.post("/stores", {"name": "静安店", "timezone": "Mars/Olympus"}, headers=headers)
    assert stale.status_code == 422 and stale.json()["code"] == "idempotency_key_reused"
    assert await _count(kit.tenant_id, "stores") == 1


async def test_a_forbidden_request_does_not_burn_the_key(client):
    kit = await new_tenant(client)
    therapist = await kit.staff(["therapist"])
    headers = _key()
    denied = await kit.post("/stores", {"name": "越权店"}, token=therapist["token"], headers=headers)
    assert denied.status_code == 403 and denied.json()["code"] == "permission_denied"
    assert await _count(kit.tenant_id, "idempotency_keys") == 0
    assert await _count(kit.tenant_id, "stores") == 0


async def test_keys_are_per_caller(client):
    kit = await new_tenant(client)
    manager_a = await kit.staff(["owner"])
    manager_b = await kit.staff(["owner"])
    headers = {"Idempotency-Key": "shared-key-1"}
    a = await kit.post("/stores", {"name": "同名店"}, token=manager_a["token"], headers=headers)
    b = await kit.post("/stores", {"name": "同名店"}, token=manager_b["token"], headers=headers)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert "idempotent-replayed" not in b.headers
    assert await _count(kit.tenant_id, "stores") == 2
    # And across tenants: the same caller name ("owner") and key in another tenant is another key.
    other = await new_tenant(client)
    o = await other.post("/stores", {"name": "同名店"}, headers=headers)
    assert o.status_code == 201 and "idempotent-replayed" not in o.headers


async def test_key_length_is_limited(client):
    kit = await new_tenant(client)
    longest = await kit.post("/stores", {"name": "a"}, headers={"Idempotency-Key": "k" * MAX_KEY_LENGTH})
    assert longest.status_code == 201
    too_long = await kit.post("/stores", {"name": "b"}, headers={"Idempotency-Key": "k" * (MAX_KEY_LENGTH + 1)})
    assert too_long.status_code == 400
    assert too_long.json()["code"] == "invalid_idempotency_key"
    empty = await kit.post("/stores", {"name": "c"}, headers={"Idempotency-Key": ""})
    assert empty.status_code == 400
    assert await _count(kit.tenant_id, "stores") == 1
