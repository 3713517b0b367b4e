"""Refresh tokens rotate, work once, and a reused one ends the whole sign-in; logout and disabling end sign-ins."""

from __future__ import annotations

import asyncio
from uuid import UUID

from jose import jwt

from app.core.db import session_scope
from app.core.redis import create_redis
from app.core.settings import get_settings
from app.domain.iam.revocations import RevokedSessions
from tests.factories import new_tenant, seal_audit
from tests.iam.helpers import assert_problem, bearer, claims, sign_in, sign_rs256

REFRESH = "/api/v1/auth/refresh"


async def _refresh(client, token: str):
    return await client.post(REFRESH, json={"refresh_token": token})


async def _stores_status(client, access_token: str) -> int:
    return (await client.get("/api/v1/stores", headers=bearer(access_token))).status_code


async def test_refresh_rotates_and_each_token_works_once(client):
    kit = await new_tenant(client)
    first = await sign_in(client, kit.code, "owner")

    r = await _refresh(client, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["token_type"] == "bearer" and second["expires_in"] > 0
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert await _stores_status(client, second["access_token"]) == 200

    r = await _refresh(client, second["refresh_token"])
    assert r.status_code == 200, r.text
    third = r.json()
    assert await _stores_status(client, third["access_token"]) == 200


async def test_reused_refresh_token_revokes_the_whole_family(client):
    kit = await new_tenant(client)
    first = await sign_in(client, kit.code, "owner")
    other_sign_in = await sign_in(client, kit.code, "owner")

    r = await _refresh(client, first["refresh_token"])
    assert r.status_code == 200, r.text
    newest = r.json()

    # The first refresh token was copied and is presented again.
    assert_problem(await _refresh(client, first["refresh_token"]), 401, "refresh_token_reused")

    # Everything of that sign-in is dead: the newest refresh token and the access tokens issued in it.
    assert_problem(await _refresh(client, newest["refresh_token"]), 401)
    r = await client.get("/api/v1/stores", headers=bearer(newest["access_token"]))
    assert_problem(r, 401, "token_revoked")
    r = await client.get("/api/v1/stores", headers=bearer(first["access_token"]))
    assert_problem(r, 401, "token_revoked")

    # Another sign-in of the same user is a different family and keeps working.
    assert await _stores_status(client, other_sign_in["access_token"]) == 200
    assert (await _refresh(client, other_sign_in["refresh_token"])).status_code == 200


async def test_unknown_and_malformed_refresh_tokens(client):
    kit = await new_tenant(client)
    assert_problem(await _refresh(client, f"{kit.tenant_id}.not-a-real-secret-at-all"), 401, "invalid_refresh_token")
    assert_problem(await _refresh(client, "no-tenant-prefix-here"), 401, "invalid_refresh_token")
    first = await sign_in(client, kit.code, "owner")
    # A real secret claimed for another tenant is not found there.
    other = await new_tenant(client)
    moved = other.tenant_id + "." + first["refresh_token"].split(".", 1)[1]
    assert_problem(await _refresh(client, moved), 401, "invalid_refresh_token")
    # ...and that attempt did not spend or revoke the real one.
    assert (await _refresh(client, first["refresh_token"])).status_code == 200


async def test_concurrent_use_of_one_refresh_token_succeeds_at_most_once(client):
    kit = await new_tenant(client)
    tokens = await sign_in(client, kit.code, "owner")

    responses = await asyncio.gather(*(_refresh(client, tokens["refresh_token"]) for _ in range(5)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) <= 1, statuses
    assert all(s in (200, 401) for s in statuses), [r.text for r in responses]
    for r in responses:
        if r.status_code == 401:
            assert_problem(r, 401)
    # A refresh token presented more than once is treated as stolen: no pair from it survives.
    for r in responses:
        if r.status_code == 200:
            assert_problem(await _refresh(client, r.json()["refresh_token"]), 401)


async def test_logout_ends_only_that_sign_in(client):
    kit = await new_tenant(client)
    phone = await sign_in(client, kit.code, "owner")
    laptop = await sign_in(client, kit.code, "owner")

    r = await client.post("/api/v1/auth/logout", headers=bearer(phone["access_token"]))
    assert r.status_code == 204, r.text

    assert_problem(await client.get("/api/v1/stores", headers=bearer(phone["access_token"])), 401, "token_revoked")
    assert_problem(await _refresh(client, phone["refresh_token"]), 401, "refresh_token_revoked")

    assert await _stores_status(client, laptop["access_token"]) == 200
    r = await _refresh(client, laptop["refresh_token"])
    assert r.status_code == 200, r.text
    assert await _stores_status(client, r.json()["access_token"]) == 200


async def test_logout_needs_a_sign_in(client):
    assert_problem(await client.post("/api/v1/auth/logout"), 401, "not_authenticated")


async def test_disabling_staff_ends_their_tokens(client):
    kit = await new_tenant(client)
    store_id = await kit.store()
    therapist = await kit.staff(["therapist"], [store_id])
    tokens = await sign_in(client, kit.code, therapist["username"])
    assert await _stores_status(client, tokens["access_token"]) == 200

    r = await client.patch(f"/api/v1/staff/{therapist['id']}", json={"active": False}, headers=kit.auth())
    assert r.status_code == 200 and r.json()["active"] is False, r.text

    for access in (therapist["token"], tokens["access_token"]):
        body = assert_problem(await client.get("/api/v1/stores", headers=bearer(access)), 401)
        assert body["code"] in ("token_revoked", "account_disabled"), body
    # Even a token that names no sign-in to revoke stops at the disabled account.
    sessionless = sign_rs256(claims(sub=therapist["id"], tid=kit.tenant_id))
    assert_problem(await client.get("/api/v1/stores", headers=bearer(sessionless)), 401, "account_disabled")
    assert_problem(await _refresh(client, tokens["refresh_token"]), 401)
    r = await client.post("/api/v1/auth/token",
                          json={"tenant": kit.code, "username": therapist["username"], "password": "x" * 10})
    assert_problem(r, 401, "invalid_credentials")

    # Re-enabling does not bring the old refresh token back.
    r = await client.patch(f"/api/v1/staff/{therapist['id']}", json={"active": True}, headers=kit.auth())
    assert r.status_code == 200, r.text
    assert_problem(await _refresh(client, tokens["refresh_token"]), 401)
    assert await _stores_status(client, (await sign_in(client, kit.code, therapist["username"]))["access_token"]) == 200


async def test_password_change_ends_existing_sign_ins(client):
    kit = await new_tenant(client)
    store_id = await kit.store()
    therapist = await kit.staff(["therapist"], [store_id])
    tokens = await sign_in(client, kit.code, therapist["username"])

    r = await client.patch(f"/api/v1/staff/{therapist['id']}", json={"password": "a-brand-new-secret"},
                           headers=kit.auth())
    assert r.status_code == 200, r.text

    # The access token first: presenting the dead refresh token would itself end the sign-in.
    assert_problem(await client.get("/api/v1/stores", headers=bearer(tokens["access_token"])), 401, "token_revoked")
    assert_problem(await client.get("/api/v1/stores", headers=bearer(therapist["token"])), 401, "token_revoked")
    assert_problem(await _refresh(client, tokens["refresh_token"]), 401, "refresh_token_revoked")
    fresh = await sign_in(client, kit.code, therapist["username"], "a-brand-new-secret")
    assert await _stores_status(client, fresh["access_token"]) == 200


async def test_staff_requests_need_no_redis_and_ended_sign_ins_stay_ended(app, client):
    """Revocations live in PostgreSQL: with Redis unreachable, reads go on and a logout still holds."""
    kit = await new_tenant(client)
    phone = await sign_in(client, kit.code, "owner")
    working = app.state.redis
    # A real client to a port nothing listens on.
    app.state.redis = create_redis("redis://127.0.0.1:9/0")
    try:
        assert (await client.get("/api/v1/stores", headers=kit.auth())).status_code == 200
        assert (await client.post("/api/v1/auth/logout", headers=bearer(phone["access_token"]))).status_code == 204
        assert_problem(await client.get("/api/v1/stores", headers=bearer(phone["access_token"])), 401,
                       "token_revoked")
    finally:
        await app.state.redis.aclose()
        app.state.redis = working


async def test_a_process_whose_knowledge_is_stale_asks_the_database_in_the_request(client, monkeypatch):
    """A process whose poller has not run (or stalled) never trusts old knowledge: it asks the database about
    the one sign-in, inside the request's own transaction (no second connection, so a full pool cannot
    deadlock on it)."""
    kit = await new_tenant(client)
    phone = await sign_in(client, kit.code, "owner")
    sid = jwt.get_unverified_claims(phone["access_token"])["sid"]
    stale = RevokedSessions()  # never refreshed: knows nothing
    async with session_scope(UUID(kit.tenant_id)) as session:
        assert await stale.is_revoked_now(session, UUID(kit.tenant_id), sid) is False
    assert (await client.post("/api/v1/auth/logout", headers=bearer(phone["access_token"]))).status_code == 204
    async with session_scope(UUID(kit.tenant_id)) as session:
        assert await stale.is_revoked_now(session, UUID(kit.tenant_id), sid) is True
    assert stale.is_revoked(sid)  # remembered from then on


async def test_audit_tells_logout_from_theft(client):
    kit = await new_tenant(client)
    tokens = await sign_in(client, kit.code, "owner")
    assert (await client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))).status_code == 204
    assert_problem(await _refresh(client, tokens["refresh_token"]), 401, "refresh_token_revoked")

    stolen = await sign_in(client, kit.code, "owner")
    assert (await _refresh(client, stolen["refresh_token"])).status_code == 200
    assert_problem(await _refresh(client, stolen["refresh_token"]), 401, "refresh_token_reused")

    await seal_audit()  # what the worker does every two seconds
    r = await kit.get("/audit", params={"action": "auth.revoke"})
    assert r.status_code == 200, r.text
    reasons = sorted(e["summary"]["reason"] for e in r.json()["items"])
    assert reasons == ["logout", "refresh token reuse"]


async def test_ended_sign_ins_survive_losing_redis_and_reach_every_process(client, redis_url):
    """Revocations are kept in PostgreSQL: Redis restarting empty brings no ended sign-in back, and a process
    that never saw the logout (a fresh one) learns it from the database."""
    kit = await new_tenant(client)
    phone = await sign_in(client, kit.code, "owner")
    laptop = await sign_in(client, kit.code, "owner")
    assert (await client.post("/api/v1/auth/logout", headers=bearer(phone["access_token"]))).status_code == 204

    redis = create_redis(redis_url)
    try:  # what a Redis restart without persistence leaves: none of our keys
        keys = [k async for k in redis.scan_iter(match=f"{get_settings().redis_prefix}*", count=500)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()
    assert_problem(await client.get("/api/v1/stores", headers=bearer(phone["access_token"])), 401, "token_revoked")
    assert await _stores_status(client, laptop["access_token"]) == 200

    another_process = RevokedSessions()
    await another_process.refresh(session_scope)
    assert another_process.is_revoked(jwt.get_unverified_claims(phone["access_token"])["sid"])
    assert not another_process.is_revoked(jwt.get_unverified_claims(laptop["access_token"])["sid"])
