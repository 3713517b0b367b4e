"""Shared assertions and token builders for the IAM tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
from jose import jwt

from app.core.security import signing_keys
from app.core.settings import get_settings
from tests.factories import PASSWORD

PROBLEM_JSON = "application/problem+json"


def assert_problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status (and code); 401s also challenge the client."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON), r.headers["content-type"]
    body = r.json()
    assert body["status"] == status
    assert body["code"], body
    if code is not None:
        assert body["code"] == code, body
    if status == 401:
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), r.headers
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sign_in(client: httpx.AsyncClient, tenant: str, username: str, password: str = PASSWORD) -> dict:
    """A full token response (access and refresh token) for a staff sign-in."""
    r = await client.post("/api/v1/auth/token", json={"tenant": tenant, "username": username, "password": password})
    assert r.status_code == 200, r.text
    return r.json()


def claims(*, sub: str, tid: str, aud: str = "staff", ttl: int = 300, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": get_settings().jwt_issuer, "sub": sub, "aud": aud, "tid": tid, "iat": now, "nbf": now,
            "exp": now + ttl, "jti": str(uuid.uuid4()), **extra}


def sign_rs256(payload: dict[str, Any]) -> str:
    """A token signed with the real private key (a token only the server could have made)."""
    return jwt.encode(payload, signing_keys().private_pem, algorithm="RS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(obj: dict[str, Any]) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def sign_unsecured(payload: dict[str, Any]) -> str:
    """`alg: none`: no signature at all."""
    return f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(payload)}."


def sign_hs256_with_public_key(payload: dict[str, Any]) -> str:
    """The algorithm-confusion attack: HMAC keyed with the (public) RSA key PEM."""
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT'})}.{_segment(payload)}"
    key = signing_keys().public_pem.encode()
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def tamper_payload(token: str, **changes: Any) -> str:
    """Rewrite claims but keep the original signature."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{_segment(decoded | changes)}.{signature}"
