"""A chat archive without WeCom: records encrypted the way the real archive encrypts its random keys.

The random key of each record is RSA-encrypted (PKCS#1 v1.5) with a self-made public key, exactly as WeCom
does with the corp's key, so the sync's own RSA step is exercised for real. The message cipher of the real
SDK is WeCom's secret; the fake defines its own, which only `FakeChatArchiveSource.decrypt` understands:

    encrypt_chat_msg = base64(nonce[12] || AES-256-GCM(key=SHA-256(random_key), nonce, message JSON,
                                                      associated data=b"careloop-fake-msgaudit"))

Used by the tests and meant for `careloop fake-wechat` (configure the matching private key as
WECOM_MSGAUDIT_PRIVATE_KEY; `private_key_pem()` prints it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.domain.chatsync.archive import MAX_LIMIT, ChatDecryptError, RawRecord

FAKE_AAD = b"careloop-fake-msgaudit"


def new_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    # PKCS#1 ("BEGIN RSA PRIVATE KEY"), the form WeCom's console examples use.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


class FakeChatArchiveSource:
    def __init__(self, private_key: rsa.RSAPrivateKey | None = None, *, publickey_ver: int = 1) -> None:
        self.private_key = private_key or new_private_key()
        self.publickey_ver = publickey_ver
        self.records: list[RawRecord] = []
        self.fetches: list[tuple[int, int]] = []  # (seq, limit) of every fetch, for tests

    def private_key_pem(self) -> str:
        return pem(self.private_key)

    def add(self, message: dict[str, Any], *, seq: int | None = None) -> RawRecord:
        """Archive one message (the decrypted JSON as WeCom documents it); `seq` defaults to the next one."""
        seq = seq if seq is not None else (self.records[-1].seq + 1 if self.records else 1)
        random_key = secrets.token_hex(16).encode()  # WeCom's random keys are printable strings too
        encrypted_key = self.private_key.public_key().encrypt(random_key, padding.PKCS1v15())
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(hashlib.sha256(random_key).digest()).encrypt(
            nonce, json.dumps(message, ensure_ascii=False).encode(), FAKE_AAD)
        record = RawRecord(seq=seq, msgid=str(message.get("msgid", "")), publickey_ver=self.publickey_ver,
                           encrypt_random_key=base64.b64encode(encrypted_key).decode(),
                           encrypt_chat_msg=base64.b64encode(nonce + sealed).decode())
        self.records.append(record)
        self.records.sort(key=lambda r: r.seq)
        return record

    async def fetch(self, seq: int, limit: int) -> list[RawRecord]:
        self.fetches.append((seq, limit))
        return [r for r in self.records if r.seq > seq][: min(limit, MAX_LIMIT)]

    def decrypt(self, random_key: bytes, encrypted_msg: str) -> dict[str, Any]:
        try:
            raw = base64.b64decode(encrypted_msg)
            plain = AESGCM(hashlib.sha256(random_key).digest()).decrypt(raw[:12], raw[12:], FAKE_AAD)
        except (InvalidTag, ValueError) as exc:
            raise ChatDecryptError("DecryptData failed (fake SDK code 10006)") from exc
        return json.loads(plain)
