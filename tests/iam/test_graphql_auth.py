"""GraphQL uses the same tokens and the same problem codes as REST."""

from __future__ import annotations

import uuid

from app.core.security import issue_token
from tests.factories import new_tenant
from tests.iam.helpers import bearer, sign_unsecured

ME = "{ me { id kind roles } }"


async def _graphql(client, query: str, token: str | None = None) -> dict:
    r = await client.post("/graphql", json={"query": query}, headers=bearer(token) if token else {})
    assert r.status_code == 200, r.text
    return r.json()


def _error_code(result: dict) -> str:
    assert result.get("data") is None, result
    (error,) = result["errors"]
    return error["extensions"]["code"]


async def test_me_with_a_staff_token(client):
    kit = await new_tenant(client)
    store_id = await kit.store()
    therapist = await kit.staff(["therapist"], [store_id])
    result = await _graphql(client, ME, therapist["token"])
    assert "errors" not in result, result
    assert result["data"]["me"] == {"id": therapist["id"], "kind": "staff", "roles": ["therapist"]}


async def test_me_without_a_token(client):
    assert _error_code(await _graphql(client, ME)) == "not_authenticated"


async def test_me_with_a_bad_token(client):
    kit = await new_tenant(client)
    me = (await kit.get("/me")).json()
    forged = sign_unsecured({"sub": me["id"], "tid": kit.tenant_id, "aud": "staff", "iss": "careloop"})
    assert _error_code(await _graphql(client, ME, forged)) == "invalid_token"
    expired, _ = issue_token(subject=me["id"], tenant_id=kit.tenant_id, audience="staff", ttl_seconds=-10)
    assert _error_code(await _graphql(client, ME, expired)) == "invalid_token"


async def test_revoked_sign_in_is_refused(client):
    kit = await new_tenant(client)
    r = await client.post("/api/v1/auth/logout", headers=kit.auth())
    assert r.status_code == 204, r.text
    assert _error_code(await _graphql(client, ME, kit.owner_token)) == "token_revoked"


async def test_permissions_apply_in_graphql(client):
    kit = await new_tenant(client)
    await kit.store()
    r = await kit.post("/roles", {"name": "no_stores", "permissions": ["staff:read"]})
    assert r.status_code == 201, r.text
    member = await kit.staff(["no_stores"], [await kit.store("二号店")])
    result = await _graphql(client, "{ stores { items { id } } }", member["token"])
    assert _error_code(result) == "permission_denied"
    result = await _graphql(client, "{ stores { items { id } } }", kit.owner_token)
    assert len(result["data"]["stores"]["items"]) == 2


async def test_patient_token_cannot_list_stores(client):
    kit = await new_tenant(client)
    token, _ = issue_token(subject=str(uuid.uuid4()), tenant_id=kit.tenant_id, audience="patient", ttl_seconds=300)
    assert _error_code(await _graphql(client, "{ stores { items { id } } }", token)) == "wrong_audience"
