"""Encryption of personal data at rest (AES-256-GCM with key ids) and HMAC blind indexes.

Ciphertext is stored as "<kid>:<base64(nonce || ciphertext+tag)>". The first configured key encrypts;
every configured key decrypts, so a new key is rolled out by prepending it and re-encrypting old rows
(`careloop rotate-keys`). Exact lookups use a blind index, HMAC-SHA256 of the normalized value under
a separate key, so the database can find "13812345678" without holding it in clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.core.settings import Settings, get_settings


class CryptoError(Exception):
    pass


@dataclass(frozen=True)
class FieldKeys:
    active_kid: str
    keys: dict[str, bytes]
    index_key: bytes


def _parse_keys(spec: str) -> tuple[str, dict[str, bytes]]:
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for part in spec.split(","):
        kid, _, b64 = part.strip().partition(":")
        try:
            key = base64.b64decode(b64, validate=True)
        except binascii.Error as exc:
            raise CryptoError(f"encryption key {kid!r} is not base64") from exc
        if not kid or len(key) != 32:
            raise CryptoError(f"encryption key {kid!r} must be 32 bytes (base64)")
        keys[kid] = key
        order.append(kid)
    if not order:
        raise CryptoError("no field encryption key configured")
    return order[0], keys


def _dev_secret(settings: Settings, name: str, make) -> str:
    path = Path(settings.data_dir) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def load_field_keys(settings: Settings) -> FieldKeys:
    if not (settings.field_encryption_keys and settings.blind_index_key):
        settings.require_production_ready()  # production never encrypts with a generated key
    spec = settings.field_encryption_keys or _dev_secret(
        settings, "field-keys.txt", lambda: "k1:" + base64.b64encode(os.urandom(32)).decode())
    index = settings.blind_index_key or _dev_secret(
        settings, "blind-index-key.txt", lambda: base64.b64encode(os.urandom(32)).decode())
    active, keys = _parse_keys(spec)
    return FieldKeys(active_kid=active, keys=keys, index_key=index.encode())


@lru_cache
def field_keys() -> FieldKeys:
    return load_field_keys(get_settings())


def encrypt(plaintext: str | None, *, keys: FieldKeys | None = None) -> str | None:
    if plaintext is None:
        return None
    keys = keys or field_keys()
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(keys.keys[keys.active_kid]).encrypt(nonce, plaintext.encode(), keys.active_kid.encode())
    return f"{keys.active_kid}:{base64.b64encode(nonce + sealed).decode()}"


def decrypt(ciphertext: str | None, *, keys: FieldKeys | None = None) -> str | None:
    if ciphertext is None:
        return None
    keys = keys or field_keys()
    kid, _, b64 = ciphertext.partition(":")
    key = keys.keys.get(kid)
    if key is None:
        raise CryptoError(f"no key {kid!r} to decrypt with")
    raw = base64.b64decode(b64)
    try:
        return AESGCM(key).decrypt(raw[:12], raw[12:], kid.encode()).decode()
    except InvalidTag as exc:
        raise CryptoError("ciphertext was altered or the key is wrong") from exc


def key_id(ciphertext: str | None) -> str | None:
    return None if ciphertext is None else ciphertext.partition(":")[0]


def blind_index(normalized: str | None, *, purpose: str, keys: FieldKeys | None = None) -> str | None:
    """Deterministic HMAC of a normalized value; `purpose` keeps phone and ID indexes unrelated."""
    if normalized is None:
        return None
    keys = keys or field_keys()
    return hmac.new(keys.index_key, f"{purpose}:{normalized}".encode(), hashlib.sha256).hexdigest()
