"""Where chat records come from: the WeCom Finance SDK behind a small interface.

WeCom's chat archive (会话内容存档) is reachable only through a native library, libWeWorkFinanceSdk_C.so.
`GetChatData(seq, limit)` returns records after `seq`, each `{seq, msgid, publickey_ver, encrypt_random_key,
encrypt_chat_msg}`. `encrypt_random_key` is RSA (PKCS#1 v1.5) encrypted with the message-encryption public
key the corp set in the admin console (version `publickey_ver`); we decrypt it with our private key
(`decrypt_random_key`), and the SDK's `DecryptData(random_key, encrypt_chat_msg)` turns the message into
JSON. The message cipher is WeCom's own and undocumented, so only the SDK can do that step.

- `CtypesFinanceSdk` loads the real library with ctypes (production, when WECOM_FINANCE_SDK_PATH is set).
  It follows the SDK's C header (WeWorkFinanceSdk_C.h) and cannot be tested here: the library is only
  distributed by WeCom and only talks to qyapi.weixin.qq.com for a corp with the archive licence.
- `app.domain.chatsync.fake.FakeChatArchiveSource` produces records encrypted with a self-made RSA key and
  its own AES-GCM message scheme (tests, `careloop fake-wechat`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ctypes
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from app.core.settings import Settings, get_settings

MAX_LIMIT = 1000  # GetChatData refuses more


class ArchiveError(Exception):
    """The archive could not be read (SDK error code, network, malformed answer)."""


class ChatDecryptError(Exception):
    """A record could not be decrypted: no private key for its version, a wrong key, or a bad cipher text."""


class ChatSyncNotConfigured(Exception):
    """No archive source is configured for this deployment (or for this tenant)."""


class ChatArchiveNotBound(ChatSyncNotConfigured):
    """The corp's archive belongs to another tenant (WECOM_MSGAUDIT_TENANT), or to none yet."""


@dataclass(frozen=True)
class RawRecord:
    seq: int
    msgid: str
    publickey_ver: int
    encrypt_random_key: str  # base64 of the RSA-encrypted random key
    encrypt_chat_msg: str

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> RawRecord:
        try:
            return cls(seq=int(item["seq"]), msgid=str(item["msgid"]), publickey_ver=int(item["publickey_ver"]),
                       encrypt_random_key=str(item["encrypt_random_key"]),
                       encrypt_chat_msg=str(item["encrypt_chat_msg"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveError(f"malformed chat record: {exc!r}") from exc


class ChatArchiveSource(Protocol):
    async def fetch(self, seq: int, limit: int) -> list[RawRecord]:
        """Records with a sequence number above `seq`, oldest first, at most `limit` (≤ 1000)."""

    def decrypt(self, random_key: bytes, encrypted_msg: str) -> dict[str, Any]:
        """The message JSON of one record, given its RSA-decrypted random key (blocking: run in a thread)."""


# ------------------------------------------------------------------------------------------- private keys


PrivateKeys = dict[int | None, rsa.RSAPrivateKey]  # None: the key for versions not listed


def _load_pem(text_or_path: str) -> rsa.RSAPrivateKey:
    text = text_or_path.strip()
    if not text.startswith("-----BEGIN"):
        text = Path(text).read_text()
    key = serialization.load_pem_private_key(text.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the message-archive private key must be an RSA key")
    return key


def parse_private_keys(spec: str) -> PrivateKeys:
    """ "3:<PEM or path>,4:<PEM or path>" → {3: key, 4: key}; a bare PEM or path serves every version."""
    keys: PrivateKeys = {}
    for part in re.split(r",(?=\s*\d+:)", spec.strip()):
        match = re.match(r"\s*(\d+):(.*)\Z", part, re.S)
        if match:
            keys[int(match.group(1))] = _load_pem(match.group(2))
        elif part.strip():
            keys[None] = _load_pem(part)
    return keys


def load_private_keys(settings: Settings | None = None) -> PrivateKeys:
    settings = settings or get_settings()
    spec = settings.wecom_msgaudit_private_key
    if spec is None and settings.wecom_msgaudit_private_key_file is not None:
        spec = str(settings.wecom_msgaudit_private_key_file)
    if not spec:
        raise ChatSyncNotConfigured("WECOM_MSGAUDIT_PRIVATE_KEY (or _FILE) is not set")
    return parse_private_keys(spec)


def decrypt_random_key(keys: PrivateKeys, record: RawRecord) -> bytes:
    """RSA PKCS#1 v1.5. A wrong key may not raise here (implicit rejection returns random bytes); the
    SDK's DecryptData then fails, and the sync reports both steps' context."""
    key = keys.get(record.publickey_ver) or keys.get(None)
    if key is None:
        raise ChatDecryptError(f"no private key configured for publickey_ver {record.publickey_ver} "
                               f"(msgid {record.msgid}); add it to WECOM_MSGAUDIT_PRIVATE_KEY")
    try:
        return key.decrypt(base64.b64decode(record.encrypt_random_key, validate=True), padding.PKCS1v15())
    except (ValueError, binascii.Error) as exc:
        raise ChatDecryptError(f"cannot decrypt the random key of msgid {record.msgid} with the key for "
                               f"publickey_ver {record.publickey_ver}: wrong private key?") from exc


# ------------------------------------------------------------------------------------------- the real SDK


class _Slice(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("len", ctypes.c_int)]


class CtypesFinanceSdk:
    """The native Finance SDK through ctypes (production only; not exercised by the test suite).

    Signatures as in WeWorkFinanceSdk_C.h:
        WeWorkFinanceSdk_t* NewSdk();
        int Init(WeWorkFinanceSdk_t* sdk, const char* corpid, const char* secret);
        int GetChatData(WeWorkFinanceSdk_t* sdk, unsigned long long seq, unsigned int limit,
                        const char* proxy, const char* passwd, int timeout, Slice_t* chatDatas);
        int DecryptData(const char* encrypt_key, const char* encrypt_msg, Slice_t* msg);
        void DestroySdk(WeWorkFinanceSdk_t* sdk);
        Slice_t* NewSlice(); void FreeSlice(Slice_t* slice);
        char* GetContentFromSlice(Slice_t* slice); int GetSliceLen(Slice_t* slice);
    Calls block (network I/O inside the library), so `fetch` runs them in a thread, one at a time: the
    header says nothing about thread safety. Non-zero return codes are the SDK's (10000 bad parameter,
    10001 network, 10002 parse, 10006 decrypt failed, 10007 no private key for the version, 10009 IP not
    allowed, …); they are reported as ArchiveError / ChatDecryptError.
    """

    def __init__(self, library_path: str | Path, corp_id: str, secret: str, *, proxy: str | None = None,
                 proxy_password: str | None = None, timeout_seconds: int = 10) -> None:
        lib = ctypes.CDLL(str(library_path))
        lib.NewSdk.restype = ctypes.c_void_p
        lib.NewSdk.argtypes = []
        lib.Init.restype = ctypes.c_int
        lib.Init.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        lib.GetChatData.restype = ctypes.c_int
        lib.GetChatData.argtypes = [ctypes.c_void_p, ctypes.c_ulonglong, ctypes.c_uint, ctypes.c_char_p,
                                    ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(_Slice)]
        lib.DecryptData.restype = ctypes.c_int
        lib.DecryptData.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(_Slice)]
        lib.NewSlice.restype = ctypes.POINTER(_Slice)
        lib.NewSlice.argtypes = []
        lib.FreeSlice.restype = None
        lib.FreeSlice.argtypes = [ctypes.POINTER(_Slice)]
        lib.GetContentFromSlice.restype = ctypes.c_void_p  # not c_char_p: read exactly GetSliceLen bytes
        lib.GetContentFromSlice.argtypes = [ctypes.POINTER(_Slice)]
        lib.GetSliceLen.restype = ctypes.c_int
        lib.GetSliceLen.argtypes = [ctypes.POINTER(_Slice)]
        lib.DestroySdk.restype = None
        lib.DestroySdk.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._proxy = proxy.encode() if proxy else None
        self._passwd = proxy_password.encode() if proxy_password else None
        self._timeout = int(timeout_seconds)
        self._lock = threading.Lock()
        self._sdk = lib.NewSdk()
        if not self._sdk:
            raise ArchiveError("NewSdk returned NULL")
        rc = lib.Init(self._sdk, corp_id.encode(), secret.encode())
        if rc != 0:
            lib.DestroySdk(self._sdk)
            self._sdk = None
            raise ArchiveError(f"Finance SDK Init failed with code {rc} (check WECOM_CORP_ID and "
                               f"WECOM_MSGAUDIT_SECRET)")

    def _slice_bytes(self, piece) -> bytes:
        pointer, length = self._lib.GetContentFromSlice(piece), self._lib.GetSliceLen(piece)
        return ctypes.string_at(pointer, length) if pointer and length > 0 else b""

    def _fetch_blocking(self, seq: int, limit: int) -> list[RawRecord]:
        with self._lock:
            piece = self._lib.NewSlice()
            try:
                rc = self._lib.GetChatData(self._sdk, seq, min(limit, MAX_LIMIT), self._proxy, self._passwd,
                                           self._timeout, piece)
                if rc != 0:
                    raise ArchiveError(f"GetChatData failed with SDK code {rc}")
                raw = self._slice_bytes(piece)
            finally:
                self._lib.FreeSlice(piece)
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise ArchiveError("GetChatData answered something that is not JSON") from exc
        if answer.get("errcode", 0) != 0:
            raise ArchiveError(f"GetChatData errcode {answer.get('errcode')}: {answer.get('errmsg')}")
        return [RawRecord.from_json(item) for item in answer.get("chatdata") or []]

    async def fetch(self, seq: int, limit: int) -> list[RawRecord]:
        return await asyncio.to_thread(self._fetch_blocking, seq, limit)

    def decrypt(self, random_key: bytes, encrypted_msg: str) -> dict[str, Any]:
        with self._lock:
            piece = self._lib.NewSlice()
            try:
                rc = self._lib.DecryptData(random_key, encrypted_msg.encode(), piece)
                if rc != 0:
                    raise ChatDecryptError(f"DecryptData failed with SDK code {rc}")
                raw = self._slice_bytes(piece)
            finally:
                self._lib.FreeSlice(piece)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ChatDecryptError("DecryptData returned something that is not JSON") from exc

    def close(self) -> None:
        if self._sdk:
            self._lib.DestroySdk(self._sdk)
            self._sdk = None


_configured: CtypesFinanceSdk | None = None
_configured_lock = threading.Lock()


def configured_source(settings: Settings | None = None) -> ChatArchiveSource:
    """The production source (one SDK handle per process), or ChatSyncNotConfigured.

    One WeCom corp serves the deployment for now (like the rest of the WeCom integration), and its archive
    is one tenant's (`archive_tenant_code`); per-tenant corps would key this by tenant.
    """
    global _configured
    settings = settings or get_settings()
    if settings.wecom_finance_sdk_path is None:
        raise ChatSyncNotConfigured("WECOM_FINANCE_SDK_PATH is not set: chat-record sync is off")
    missing = [name for name, value in (("WECOM_CORP_ID", settings.wecom_corp_id),
                                        ("WECOM_MSGAUDIT_SECRET", settings.wecom_msgaudit_secret)) if not value]
    if missing:
        raise ChatSyncNotConfigured(f"chat-record sync needs {', '.join(missing)}")
    with _configured_lock:
        if _configured is None:
            _configured = CtypesFinanceSdk(settings.wecom_finance_sdk_path, settings.wecom_corp_id,
                                           settings.wecom_msgaudit_secret, proxy=settings.wecom_msgaudit_proxy,
                                           proxy_password=settings.wecom_msgaudit_proxy_password,
                                           timeout_seconds=settings.chat_sync_timeout_seconds)
        return _configured


def archive_tenant_code(settings: Settings | None = None) -> str:
    """The code of the tenant the corp's archive belongs to. The archive holds every chat of the corp, so it
    is one tenant's: copying it into each tenant that syncs would hand one chain's chats to all the others."""
    settings = settings or get_settings()
    code = (settings.wecom_msgaudit_tenant or "").strip()
    if not code:
        raise ChatArchiveNotBound("WECOM_MSGAUDIT_TENANT is not set: the WeCom chat archive is bound to no "
                                  "tenant, so none syncs it (set it to the code of the tenant whose chats it is)")
    return code
