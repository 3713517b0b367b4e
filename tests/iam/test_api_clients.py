"""Integration clients: OAuth2 client credentials, scopes as permissions, revocation."""

from __future__ import annotations

import pytest

from app.core.settings import get_settings
from tests.factories import new_tenant
from tests.iam.helpers import assert_problem, bearer

OAUTH = "/api/v1/oauth/token"


async def _create_client(kit, scopes: list[str], **extra) -> dict:
    r = await kit.post("/api-clients", {"name": "HIS 对接", "scopes": scopes, **extra})
    assert r.status_code == 201, r.text
    return r.json()


async def _token_response(client, creds: dict, *, scope: str | None = None, secret: str | None = None,
                          grant_type: str = "client_credentials"):
    form = {"grant_type": grant_type, "client_id": creds["client_id"],
            "client_secret": secret if secret is not None else creds["client_secret"]}
    if scope is not None:
        form["scope"] = scope
    return await client.post(OAUTH, data=form)


async def _token(client, creds: dict, **kw) -> str:
    r = await _token_response(client, creds, **kw)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


async def test_client_lifecycle(client):
    kit = await new_tenant(client)
    store_id = await kit.store()
    creds = await _create_client(kit, ["stores:read", "members:read"])
    assert creds["client_id"].startswith(f"{kit.code}.")
    assert len(creds["client_secret"]) >= 32
    assert creds["scopes"] == ["members:read", "stores:read"] and creds["active"] is True

    # The secret is shown once: listings never carry it.
    listed = (await kit.get("/api-clients")).json()
    assert [c["id"] for c in listed] == [creds["id"]]
    assert "client_secret" not in listed[0] and creds["client_secret"] not in str(listed)

    r = await _token_response(client, creds)
    assert r.status_code == 200, r.text
    issued = r.json()
    assert issued["token_type"] == "bearer"
    assert issued["expires_in"] == get_settings().integration_token_ttl_seconds
    assert sorted(issued["scope"].split()) == ["members:read", "stores:read"]
    assert issued.get("refresh_token") is None

    r = await client.get("/api/v1/stores", headers=bearer(issued["access_token"]))
    assert r.status_code == 200 and [s["id"] for s in r.json()["items"]] == [store_id], r.text
    me = (await client.get("/api/v1/me", headers=bearer(issued["access_token"]))).json()
    assert me["kind"] == "integration" and me["id"] == creds["id"]
    assert sorted(me["permissions"]) == ["members:read", "stores:read"]


async def test_scopes_bound_what_the_client_may_do(client):
    kit = await new_tenant(client)
    no_stores = await _create_client(kit, ["members:read"])
    token = await _token(client, no_stores)
    body = assert_problem(await client.get("/api/v1/stores", headers=bearer(token)), 403, "permission_denied")
    assert body["missing_permissions"] == ["stores:read"]

    reader = await _create_client(kit, ["stores:read", "staff:read"])
    token = await _token(client, reader)
    assert (await client.get("/api/v1/stores", headers=bearer(token))).status_code == 200
    assert (await client.get("/api/v1/staff", headers=bearer(token))).status_code == 200
    assert_problem(await client.post("/api/v1/stores", json={"name": "x"}, headers=bearer(token)),
                   403, "permission_denied")
    assert_problem(await client.get("/api/v1/outbox", headers=bearer(token)), 403, "permission_denied")

    # A token asked for a narrower scope carries only that scope.
    narrow = await _token(client, reader, scope="stores:read")
    assert (await client.get("/api/v1/stores", headers=bearer(narrow))).status_code == 200
    assert_problem(await client.get("/api/v1/staff", headers=bearer(narrow)), 403, "permission_denied")


async def test_integration_token_is_refused_on_staff_only_endpoints(client):
    kit = await new_tenant(client)
    creds = await _create_client(kit, ["api_clients:write", "audit:read", "stores:read"])
    token = await _token(client, creds)
    for method, path in (("POST", "/api/v1/api-clients"), ("GET", "/api/v1/api-clients"),
                         ("POST", "/api/v1/auth/logout"), ("GET", "/api/v1/audit")):
        r = await client.request(method, path, headers=bearer(token), json={"name": "x", "scopes": ["stores:read"]})
        assert_problem(r, 401, "wrong_audience")


async def test_asking_for_a_scope_not_granted(client):
    kit = await new_tenant(client)
    creds = await _create_client(kit, ["stores:read"])
    r = await _token_response(client, creds, scope="stores:read stores:write")
    body = assert_problem(r, 403, "invalid_scope")
    assert "stores:write" in body["detail"]


async def test_wrong_secret_and_unknown_client(client):
    kit = await new_tenant(client)
    creds = await _create_client(kit, ["stores:read"])
    assert_problem(await _token_response(client, creds, secret="not-the-secret"), 401, "invalid_client")
    unknown = {"client_id": f"{kit.code}.doesnotexist", "client_secret": creds["client_secret"]}
    assert_problem(await _token_response(client, unknown), 401, "invalid_client")
    other_tenant = {"client_id": "tnosuchtenant." + creds["client_id"].split(".", 1)[1],
                    "client_secret": creds["client_secret"]}
    assert_problem(await _token_response(client, other_tenant), 401, "invalid_client")


@pytest.mark.parametrize("grant_type", ["password", "authorization_code", "refresh_token", ""])
async def test_unsupported_grant_type(client, grant_type):
    kit = await new_tenant(client)
    creds = await _create_client(kit, ["stores:read"])
    r = await _token_response(client, creds, grant_type=grant_type)
    assert r.status_code in (400, 422), r.text
    if grant_type:
        assert_problem(r, 400, "unsupported_grant_type")


async def test_revoked_client_loses_issued_tokens(client):
    kit = await new_tenant(client)
    creds = await _create_client(kit, ["stores:read"])
    token = await _token(client, creds)
    assert (await client.get("/api/v1/stores", headers=bearer(token))).status_code == 200

    r = await kit.post(f"/api-clients/{creds['id']}/revoke", {})
    assert r.status_code == 200 and r.json()["active"] is False, r.text

    assert_problem(await client.get("/api/v1/stores", headers=bearer(token)), 401, "client_revoked")
    assert_problem(await _token_response(client, creds), 401, "invalid_client")


async def test_regular_token_requests_do_not_lock_a_client_out(client):
    kit = await new_tenant(client)
    creds = await _create_client(kit, ["stores:read"])
    for _ in range(get_settings().login_max_failures * 2):
        await _token(client, creds)


async def test_secret_guessing_locks_the_client_id(client):
    kit = await new_tenant(client)
    creds = await _create_client(kit, ["stores:read"])
    for _ in range(get_settings().login_max_failures):
        assert_problem(await _token_response(client, creds, secret="guess"), 401, "invalid_client")
    r = await _token_response(client, creds)
    assert_problem(r, 429, "login_locked")
    assert int(r.headers["retry-after"]) > 0


async def test_store_scoped_client(client):
    kit = await new_tenant(client)
    store_1, _ = await kit.store("一号店"), await kit.store("二号店")
    creds = await _create_client(kit, ["stores:read"], store_ids=[store_1])
    me = (await client.get("/api/v1/me", headers=bearer(await _token(client, creds)))).json()
    assert me["store_ids"] == [store_1]


async def test_who_may_create_clients(client):
    kit = await new_tenant(client)
    manager = await kit.staff(["store_manager"], [await kit.store()])
    r = await kit.post("/api-clients", {"name": "x", "scopes": ["stores:read"]}, token=manager["token"])
    assert_problem(r, 403, "permission_denied")

    # Holding api_clients:write does not let anyone hand an integration more than they hold.
    r = await kit.post("/roles", {"name": "integrator", "permissions": ["api_clients:write", "stores:read"]})
    assert r.status_code == 201, r.text
    integrator = await kit.staff(["integrator"], [await kit.store("二号店")])
    r = await kit.post("/api-clients", {"name": "x", "scopes": ["stores:read", "members:export"]},
                       token=integrator["token"])
    assert_problem(r, 403, "grant_exceeds_own")
    r = await kit.post("/api-clients", {"name": "x", "scopes": ["stores:read"]}, token=integrator["token"])
    assert r.status_code == 201, r.text

    assert_problem(await kit.post("/api-clients", {"name": "x", "scopes": ["stores:fly"]}), 422, "unknown_permission")


async def test_clients_are_per_tenant(client):
    first = await new_tenant(client)
    second = await new_tenant(client)
    await second.store()
    creds = await _create_client(first, ["stores:read"])
    token = await _token(client, creds)
    r = await client.get("/api/v1/stores", headers=bearer(token))
    assert r.status_code == 200 and r.json()["items"] == []
    assert_problem(await second.post(f"/api-clients/{creds['id']}/revoke", {}), 404, "api_client_not_found")
