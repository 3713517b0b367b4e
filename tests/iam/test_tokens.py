"""Access tokens: only our RS256 tokens, for the right audience, issuer and tenant, get in."""

from __future__ import annotations

import uuid

import pytest

from app.core.security import issue_token
from tests.factories import new_tenant
from tests.iam.helpers import (
    assert_problem,
    bearer,
    claims,
    sign_hs256_with_public_key,
    sign_rs256,
    sign_unsecured,
    tamper_payload,
)


async def _owner(kit) -> dict:
    r = await kit.get("/me")
    assert r.status_code == 200, r.text
    return r.json()


async def test_valid_token_reaches_endpoint(client):
    kit = await new_tenant(client)
    me = await _owner(kit)
    assert me["kind"] == "staff" and me["roles"] == ["owner"] and me["tenant_id"] == kit.tenant_id
    # A token the test signs itself with the same claims is accepted: the negative cases below
    # fail for the reason they name, not because the helper builds broken tokens.
    token = sign_rs256(claims(sub=me["id"], tid=kit.tenant_id))
    assert (await client.get("/api/v1/stores", headers=bearer(token))).status_code == 200


async def test_missing_token_is_not_authenticated(client):
    r = await client.get("/api/v1/stores")
    assert_problem(r, 401, "not_authenticated")


@pytest.mark.parametrize("header", ["Basic b3duZXI6cHc=", "Bearer", "Bearer   ", "Token abc"])
async def test_malformed_authorization_header(client, header):
    r = await client.get("/api/v1/stores", headers={"Authorization": header})
    assert_problem(r, 401, "invalid_token")


async def test_garbage_token_is_invalid(client):
    r = await client.get("/api/v1/stores", headers=bearer("not.a.jwt"))
    assert_problem(r, 401, "invalid_token")


async def test_expired_token_is_rejected(client):
    kit = await new_tenant(client)
    me = await _owner(kit)
    token, _ = issue_token(subject=me["id"], tenant_id=kit.tenant_id, audience="staff", ttl_seconds=-10)
    body = assert_problem(await client.get("/api/v1/stores", headers=bearer(token)), 401, "invalid_token")
    assert "expired" in body["detail"]


async def test_token_without_expiry_is_rejected(client):
    kit = await new_tenant(client)
    me = await _owner(kit)
    payload = claims(sub=me["id"], tid=kit.tenant_id)
    del payload["exp"]
    r = await client.get("/api/v1/stores", headers=bearer(sign_rs256(payload)))
    assert_problem(r, 401, "invalid_token")


async def test_not_yet_valid_token_is_rejected(client):
    kit = await new_tenant(client)
    me = await _owner(kit)
    payload = claims(sub=me["id"], tid=kit.tenant_id)
    payload["nbf"] += 3600
    r = await client.get("/api/v1/stores", headers=bearer(sign_rs256(payload)))
    assert_problem(r, 401, "invalid_token")


@pytest.mark.parametrize("audience", ["integration", "patient"])
@pytest.mark.parametrize(("method", "path"), [("POST", "/api/v1/api-clients"), ("POST", "/api/v1/auth/logout")])
async def test_staff_only_endpoints_refuse_other_audiences(client, audience, method, path):
    kit = await new_tenant(client)
    # The subject does not exist as an integration client or member: the audience alone must decide.
    token, _ = issue_token(subject=str(uuid.uuid4()), tenant_id=kit.tenant_id, audience=audience,
                           ttl_seconds=300, scope="api_clients:write stores:read")
    r = await client.request(method, path, headers=bearer(token), json={"name": "his", "scopes": ["stores:read"]})
    assert_problem(r, 401, "wrong_audience")


async def test_patient_token_cannot_list_stores(client):
    kit = await new_tenant(client)
    await kit.store()
    token, _ = issue_token(subject=str(uuid.uuid4()), tenant_id=kit.tenant_id, audience="patient", ttl_seconds=300)
    assert_problem(await client.get("/api/v1/stores", headers=bearer(token)), 401, "wrong_audience")


async def test_unknown_audience_is_rejected(client):
    kit = await new_tenant(client)
    me = await _owner(kit)
    token = sign_rs256(claims(sub=me["id"], tid=kit.tenant_id, aud="admin"))
    assert_problem(await client.get("/api/v1/stores", headers=bearer(token)), 401, "invalid_token")


async def test_alg_none_is_rejected(client):
    kit = await new_tenant(client)
    me = await _owner(kit)
    token = sign_unsecured(claims(sub=me["id"], tid=kit.tenant_id))
    assert_problem(await client.get("/api/v1/stores", headers=bearer(token)), 401, "invalid_token")


async def test_hs256_signed_with_public_key_is_rejected(client):
    kit = await new_tenant(client)
    me = await _owner(kit)
    token = sign_hs256_with_public_key(claims(sub=me["id"], tid=kit.tenant_id))
    assert_problem(await client.get("/api/v1/stores", headers=bearer(token)), 401, "invalid_token")


async def test_other_issuer_is_rejected(client):
    kit = await new_tenant(client)
    me = await _owner(kit)
    token = sign_rs256(claims(sub=me["id"], tid=kit.tenant_id, iss="someone-else"))
    assert_problem(await client.get("/api/v1/stores", headers=bearer(token)), 401, "invalid_token")


async def test_tampered_payload_is_rejected(client):
    kit = await new_tenant(client)
    other = await new_tenant(client)
    # Keep the signature, move the token to another tenant and push out its expiry.
    forged = tamper_payload(kit.owner_token, tid=other.tenant_id, exp=4102444800)
    assert_problem(await client.get("/api/v1/stores", headers=bearer(forged)), 401, "invalid_token")


async def test_token_signed_by_another_key_is_rejected(client):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jose import jwt

    kit = await new_tenant(client)
    me = await _owner(kit)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    token = jwt.encode(claims(sub=me["id"], tid=kit.tenant_id), stranger.decode(), algorithm="RS256")
    assert_problem(await client.get("/api/v1/stores", headers=bearer(token)), 401, "invalid_token")


async def test_other_tenants_token_cannot_read_store(client):
    first = await new_tenant(client)
    second = await new_tenant(client)
    store_id = await first.store()
    assert (await first.get(f"/stores/{store_id}")).status_code == 200
    r = await second.get(f"/stores/{store_id}")
    assert_problem(r, 404, "store_not_found")
    listed = await second.get("/stores")
    assert listed.status_code == 200 and listed.json()["items"] == []


async def test_token_mixing_tenant_and_foreign_subject_is_refused(client):
    """Even a correctly signed token cannot pair one tenant's staff member with another tenant."""
    first = await new_tenant(client)
    second = await new_tenant(client)
    store_id = await first.store()
    owner_of_first = await _owner(first)
    token = sign_rs256(claims(sub=owner_of_first["id"], tid=second.tenant_id))
    r = await client.get(f"/api/v1/stores/{store_id}", headers=bearer(token))
    assert r.status_code in (401, 404), r.text
    assert_problem(r, r.status_code)


async def test_token_with_malformed_subject_is_refused(client):
    kit = await new_tenant(client)
    token = sign_rs256(claims(sub="not-a-uuid", tid=kit.tenant_id))
    assert_problem(await client.get("/api/v1/stores", headers=bearer(token)), 401, "invalid_token")
    token = sign_rs256(claims(sub=str(uuid.uuid4()), tid="not-a-uuid"))
    assert_problem(await client.get("/api/v1/stores", headers=bearer(token)), 401, "invalid_token")


async def test_a_changed_role_or_assignment_takes_effect_on_the_next_request(client):
    """Who a token's staff member is is kept in the process for a few seconds; a change made through this
    process is seen by the very next request (it is forgotten when the change commits)."""
    kit = await new_tenant(client)
    store = await kit.store()
    desk = await kit.staff(["front_desk"], [store])
    assert (await kit.get("/orders", token=desk["token"])).status_code == 200  # front desk reads orders
    r = await kit.client.patch(f"/api/v1/staff/{desk['id']}", json={"roles": ["therapist"]}, headers=kit.auth())
    assert r.status_code == 200, r.text
    assert (await kit.get("/orders", token=desk["token"])).status_code == 403  # a therapist does not

    created = await kit.post("/roles", {"name": "cashier", "description": "收银",
                                        "permissions": ["stores:read", "orders:read"]})
    assert created.status_code == 201, created.text
    cashier = await kit.staff(["cashier"], [store])
    assert (await kit.get("/orders", token=cashier["token"])).status_code == 200
    r = await kit.client.patch(f"/api/v1/roles/{created.json()['id']}", json={"permissions": ["stores:read"]},
                               headers=kit.auth())
    assert r.status_code == 200, r.text
    assert (await kit.get("/orders", token=cashier["token"])).status_code == 403
