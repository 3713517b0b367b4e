"""Password hashing, opaque secrets and JWTs.

Access tokens are RS256 JWTs (python-jose) checked against an explicit algorithm allow-list, so an
`alg: none` token or an HS256 token "signed" with our public key is refused. Each token names its
audience (`staff`, `patient`, `integration`); an endpoint accepts only the audiences it declares.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from uuid import UUID

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import JWTError, jwk, jwt

from app.core.clock import utcnow
from app.core.ids import new_id
from app.core.settings import Settings, get_settings

ALGORITHMS = ["RS256"]  # the only algorithm accepted
AUDIENCES = ("staff", "patient", "integration")

_hasher = PasswordHasher()
# Spent on unknown usernames too, so response time does not reveal which usernames exist.
_DUMMY_HASH = _hasher.hash("careloop-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def hash_token(token: str) -> str:
    """Refresh tokens and similar high-entropy secrets are stored as SHA-256 only."""
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class SigningKeys:
    private_pem: str
    public_pem: str
    # The keys as python-jose objects, parsed once: given PEM text, jose parses it on every call.
    signing_key: Any = field(repr=False, compare=False, default=None)
    verifying_key: Any = field(repr=False, compare=False, default=None)


def _generate_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def load_signing_keys(settings: Settings) -> SigningKeys:
    pem = settings.jwt_private_key
    if not pem and settings.jwt_private_key_file:
        pem = Path(settings.jwt_private_key_file).read_text()
    if not pem:
        settings.require_production_ready()  # production never signs with a generated key
        # Development and embedded mode: a key made once and kept beside the embedded data.
        path = Path(settings.data_dir) / "jwt-private.pem"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_generate_private_key_pem())
            path.chmod(0o600)
        pem = path.read_text()
    private = serialization.load_pem_private_key(pem.encode(), password=None)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return SigningKeys(private_pem=pem, public_pem=public_pem, signing_key=jwk.construct(pem, ALGORITHMS[0]),
                       verifying_key=jwk.construct(public_pem, ALGORITHMS[0]))


@lru_cache
def signing_keys() -> SigningKeys:
    return load_signing_keys(get_settings())


class TokenError(Exception):
    pass


@lru_cache(maxsize=8192)
def _verified_claims(token: str) -> dict[str, Any]:
    """The claims of a token whose header, signature, issuer and required claims check out (not cached when
    they do not: an exception is raised every time)."""
    try:
        header = jwt.get_unverified_header(token)
    except JWTError as exc:
        raise TokenError("malformed token") from exc
    if header.get("alg") not in ALGORITHMS:
        raise TokenError(f"algorithm {header.get('alg')!r} is not accepted")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            signing_keys().verifying_key,
            algorithms=ALGORITHMS,
            issuer=get_settings().jwt_issuer,
            options={"verify_aud": False, "require_exp": True, "require_iat": True},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired") from exc
    except JWTError as exc:
        raise TokenError(f"invalid token: {exc}") from exc
    if not isinstance(claims.get("exp"), int | float):
        raise TokenError("token lacks an expiry")
    return claims


def issue_token(
    *, subject: str, tenant_id: str, audience: str, ttl_seconds: int, **claims: Any
) -> tuple[str, dict[str, Any]]:
    if audience not in AUDIENCES:
        raise ValueError(f"unknown audience {audience}")
    now = utcnow()
    payload = {
        "iss": get_settings().jwt_issuer,
        "sub": subject,
        "aud": audience,
        "tid": tenant_id,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_seconds)).timestamp()),
        "jti": str(new_id()),
        **claims,
    }
    return jwt.encode(payload, signing_keys().signing_key, algorithm=ALGORITHMS[0]), payload


def decode_token(token: str, *, audiences: tuple[str, ...] = AUDIENCES) -> dict[str, Any]:
    """Verify signature, algorithm, expiry, issuer and audience; raise TokenError with the reason.

    A token's signature is verified once per process (`_verified_claims` keeps the last few thousand): the
    same bytes verify the same way every time, and expiry is checked on every call. Revocation is not a
    property of the token and is checked by the caller (`sid`)."""
    claims = dict(_verified_claims(token))
    if claims["exp"] <= time.time():
        raise TokenError("token expired")
    if claims.get("aud") not in audiences:
        raise TokenError(f"token audience {claims.get('aud')!r} is not accepted here")
    if not claims.get("sub") or not claims.get("tid"):
        raise TokenError("token lacks subject or tenant")
    # Subjects and tenants are ids; anything else would fail later as a 500, not as a bad token.
    try:
        UUID(str(claims["sub"])), UUID(str(claims["tid"]))
    except ValueError as exc:
        raise TokenError("token subject or tenant is not an id") from exc
    return claims
