"""WeChat Pay API v3 client: JSAPI (mini-program) prepay, query, close, refunds and notifications.

Protocol (https://pay.weixin.qq.com/doc/v3/merchant/):

* Every request carries `Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",signature="…",
  timestamp="…",serial_no="…"`; the signature is RSA-SHA256 (PKCS#1 v1.5) with the merchant private key over
  `METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n`, base64.
* Every response and every notification is signed by WeChat: headers `Wechatpay-Timestamp`, `Wechatpay-Nonce`,
  `Wechatpay-Signature`, `Wechatpay-Serial` over `TIMESTAMP\\nNONCE\\nBODY\\n`, verified with the platform
  public key named by the serial. Unknown serial, a bad signature or a timestamp more than 5 minutes off is
  refused: a 2xx answer that fails this raises `PayError` (we never act on an unverified success).
* Notifications carry `resource = {"algorithm": "AEAD_AES_256_GCM", "ciphertext", "nonce",
  "associated_data"}`, decrypted with the 32-byte APIv3 key.

Decisions callers rely on:

* Payment notifications go to `notify_url`; refund notifications to `notify_url + "/refund"`
  (`PayConfig.refund_notify_url`). WeChat forbids query strings in notify URLs, so appending is safe.
  `parse_notification` handles both kinds (tell them apart by `event_type`: TRANSACTION.SUCCESS vs
  REFUND.SUCCESS / REFUND.ABNORMAL / REFUND.CLOSED, or by `resource["refund_status"]`).
* `parse_notification` proves origin and freshness only. Idempotency (WeChat re-sends the same notification
  until we answer 2xx, and a replay within 5 minutes verifies) and the amount/order checks belong to the
  caller: key on `resource["out_trade_no"]` / `resource["out_refund_no"]` with a unique constraint, and
  compare `resource["amount"]["total"]` with the order. Answer non-2xx on `NotificationRejected`.
* A `PayError` from a timeout or a 5xx leaves the outcome unknown: retry with the same `out_trade_no` /
  `out_refund_no` (WeChat treats both as idempotency keys) or `query_order` before deciding.
  `PayError.wechat_code` is WeChat's error code (`ORDERPAID`, `ORDER_NOT_EXIST`, `PARAM_ERROR`, …);
  act on it only when `PayError.verified` is true (the error answer was signed; WeChat leaves its
  answer to a request it could not authenticate, e.g. 401 SIGN_ERROR, unsigned).
* Platform keys are static configuration (certificates or the newer 微信支付公钥); a rotated key needs a
  configuration change (downloading /v3/certificates is not implemented).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.core.errors import AppError

log = logging.getLogger(__name__)

AUTH_SCHEMA = "WECHATPAY2-SHA256-RSA2048"
MAX_CLOCK_SKEW_SECONDS = 300
USER_AGENT = "careloop-wechatpay/1.0 (+httpx)"  # WeChat rejects requests without a User-Agent
CHINA_TZ = ZoneInfo("Asia/Shanghai")
# WeChat's own limits; checked here so an id can never smuggle "/" or "?" into the signed path.
_OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
_OUT_REFUND_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")


# --------------------------------------------------------------------------- configuration


class PayConfigError(RuntimeError):
    """WeChat Pay is configured half-way or with unreadable keys (a deployment error, not a request error)."""


@dataclass(frozen=True)
class PayConfig:
    base_url: str
    mchid: str
    appid: str
    merchant_serial_no: str
    merchant_private_key: RSAPrivateKey = field(repr=False)
    api_v3_key: bytes = field(repr=False)
    platform_public_keys: dict[str, RSAPublicKey] = field(repr=False)  # serial_key(serial) -> key
    notify_url: str
    order_timeout_minutes: int = 15
    timeout_seconds: float = 10.0

    @property
    def refund_notify_url(self) -> str:
        return self.notify_url.rstrip("/") + "/refund"


def pay_config(settings: Any) -> PayConfig | None:
    """The WeChat Pay configuration from settings; None when WECHAT_PAY_MCHID is unset (Pay switched off)."""
    if not settings.wechat_pay_mchid:
        return None
    key_file = settings.wechat_pay_private_key_file
    return _build_config(
        settings.wechat_pay_base_url,
        settings.wechat_pay_mchid,
        settings.wechat_pay_appid,
        settings.wechat_pay_serial_no,
        settings.wechat_pay_private_key,
        str(key_file) if key_file else None,
        settings.wechat_pay_api_v3_key,
        settings.wechat_pay_platform_certs,
        settings.wechat_pay_notify_url,
        settings.wechat_pay_order_timeout_minutes,
    )


def get_pay_client(settings: Any) -> WeChatPayClient | None:
    """A client for the configured merchant, or None when WeChat Pay is not configured. Cheap to call per
    request (key parsing is cached); each call without `http` opens short-lived connections."""
    config = pay_config(settings)
    return WeChatPayClient(config) if config else None


# Keyed on the raw setting values so changed settings (tests, reloads) give a fresh config, while the
# RSA/PEM parsing runs once per distinct configuration.
@lru_cache(maxsize=8)
def _build_config(base_url: str, mchid: str, appid: str | None, serial_no: str | None,
                  private_key: str | None, private_key_file: str | None, api_v3_key: str | None,
                  platform_certs: str | None, notify_url: str | None, timeout_minutes: int) -> PayConfig:
    missing = [name for name, value in (
        ("WECHAT_PAY_APPID", appid), ("WECHAT_PAY_SERIAL_NO", serial_no),
        ("WECHAT_PAY_PRIVATE_KEY or WECHAT_PAY_PRIVATE_KEY_FILE", private_key or private_key_file),
        ("WECHAT_PAY_API_V3_KEY", api_v3_key), ("WECHAT_PAY_PLATFORM_CERTS", platform_certs),
        ("WECHAT_PAY_NOTIFY_URL", notify_url),
    ) if not value]
    if missing:
        raise PayConfigError("WECHAT_PAY_MCHID is set but these are not: " + ", ".join(missing))
    assert appid and serial_no and api_v3_key and platform_certs and notify_url  # narrowed by `missing`
    pem = _pem_text(private_key).encode() if private_key else Path(private_key_file or "").read_bytes()
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise PayConfigError("WeChat Pay merchant private key is not an unencrypted PEM key") from exc
    if not isinstance(key, RSAPrivateKey):
        raise PayConfigError("WeChat Pay merchant private key must be RSA")
    v3_key = api_v3_key.encode()
    if len(v3_key) != 32:
        raise PayConfigError("WECHAT_PAY_API_V3_KEY must be 32 bytes")
    return PayConfig(
        base_url=base_url.rstrip("/"), mchid=mchid, appid=appid, merchant_serial_no=serial_no,
        merchant_private_key=key, api_v3_key=v3_key,
        platform_public_keys=parse_platform_keys(platform_certs), notify_url=notify_url,
        order_timeout_minutes=timeout_minutes,
    )


def _pem_text(value: str) -> str:
    # A PEM pasted into a .env file often arrives with literal "\n" sequences instead of newlines.
    return value.strip().replace("\\n", "\n")


def serial_key(serial: str) -> str:
    """How a platform key is looked up. A certificate serial is a number written in hex, with or without
    leading zeros or in either case (`0A1B…` and `a1b…` name one certificate): compare it as a number.
    A public-key id (`PUB_KEY_ID_…`) is not hex and is compared as upper-case text."""
    text = serial.strip().upper()
    try:
        return format(int(text, 16), "X")
    except ValueError:
        return text


def parse_platform_keys(spec: str) -> dict[str, RSAPublicKey]:
    """`serial:PEM-file-or-text[,…]`; an X.509 certificate may omit `serial:` (its serial number is used)."""
    keys: dict[str, RSAPublicKey] = {}
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        serial, sep, source = entry.partition(":")
        if not sep or serial.lstrip().startswith("-----BEGIN"):
            serial, source = "", entry
        text = _pem_text(source)
        try:
            pem = text.encode() if text.startswith("-----BEGIN") else Path(text).read_bytes()
        except OSError as exc:
            raise PayConfigError(f"WeChat Pay platform key file {text!r} is unreadable") from exc
        try:
            if b"BEGIN CERTIFICATE" in pem:
                cert = x509.load_pem_x509_certificate(pem)
                public = cert.public_key()
                serial = serial or format(cert.serial_number, "X")
            else:
                public = serialization.load_pem_public_key(pem)
        except ValueError as exc:
            raise PayConfigError(f"WeChat Pay platform key {serial or text!r} is not a PEM key") from exc
        if not isinstance(public, RSAPublicKey):
            raise PayConfigError(f"WeChat Pay platform key {serial!r} must be RSA")
        if not serial:
            raise PayConfigError("a WeChat Pay platform public key needs its serial: 'PUB_KEY_ID_…:path'")
        keys[serial_key(serial)] = public
    if not keys:
        raise PayConfigError("WECHAT_PAY_PLATFORM_CERTS names no key")
    return keys


# --------------------------------------------------------------------------- errors


# WeChat answers that mean "not now" rather than "no" (rate limited, a fault on WeChat's side, the merchant
# account short of funds until it is topped up): the same request, with the same number, may succeed later.
RETRY_LATER_CODES = frozenset({"FREQUENCY_LIMITED", "SYSTEM_ERROR", "NOT_ENOUGH"})


class PayError(AppError):
    """WeChat Pay refused the call, was unreachable, or answered something we could not verify."""

    code, status, title = "wechat_pay_error", 502, "WeChat Pay error"

    def __init__(self, detail: str, *, wechat_code: str | None = None, wechat_message: str | None = None,
                 http_status: int | None = None, verified: bool = False, request_id: str | None = None) -> None:
        super().__init__(detail, wechat_code=wechat_code, wechat_message=wechat_message)
        self.wechat_code = wechat_code
        self.wechat_message = wechat_message
        self.http_status = http_status  # WeChat's status (None: no answer)
        self.verified = verified  # the error answer carried a valid WeChat signature
        self.request_id = request_id  # WeChat's Request-ID, for its support desk

    @property
    def refused(self) -> bool:
        """A definitive refusal: a client error WeChat signed, other than those that mean "try again later".
        Anything else (no answer, a 5xx, an unverifiable answer, a retry-later code) leaves the outcome open."""
        return (self.verified and self.http_status is not None and 400 <= self.http_status < 500
                and self.wechat_code not in RETRY_LATER_CODES)


_REJECT_STATUS = {"bad_signature": 401, "unknown_serial": 401, "stale_timestamp": 401,
                  "undecryptable": 400, "malformed": 400}


class NotificationRejected(AppError):
    """A notification that is not provably from WeChat, is too old, or cannot be read."""

    code, status, title = "malformed", 400, "Notification rejected"

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail, code=code, status=_REJECT_STATUS[code])


# --------------------------------------------------------------------------- primitives (shared with the test fake)


def new_nonce() -> str:
    return secrets.token_hex(16)  # 32 characters, WeChat's maximum nonce length


def sign(private_key: RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(public_key: RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def request_message(method: str, path_with_query: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return f"{method.upper()}\n{path_with_query}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def authorization_header(mchid: str, serial_no: str, private_key: RSAPrivateKey, method: str,
                         path_with_query: str, body: bytes, *, timestamp: str | None = None,
                         nonce: str | None = None) -> str:
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or new_nonce()
    signature = sign(private_key, request_message(method, path_with_query, timestamp, nonce, body))
    return (f'{AUTH_SCHEMA} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial_no}"')


def verify_wechat_signature(public_keys: Mapping[str, RSAPublicKey], headers: Mapping[str, str], body: bytes,
                            *, now: datetime | None = None) -> None:
    """Check WeChat's signature on a response or notification; raises NotificationRejected with the reason.
    Serial first (which key), then the signature, then freshness, so `stale_timestamp` means "authentic
    but old" (a replay or a badly skewed clock)."""
    h = {k.lower(): v for k, v in headers.items()}
    timestamp, nonce = h.get("wechatpay-timestamp"), h.get("wechatpay-nonce")
    signature, serial = h.get("wechatpay-signature"), h.get("wechatpay-serial")
    if not (timestamp and nonce and signature and serial):
        raise NotificationRejected("bad_signature", "WeChat Pay signature headers are missing")
    key = public_keys.get(serial_key(serial))
    if key is None:
        raise NotificationRejected("unknown_serial", f"unknown WeChat Pay platform key serial {serial!r}")
    if not verify(key, response_message(timestamp, nonce, body), signature):
        raise NotificationRejected("bad_signature", "WeChat Pay signature does not verify")
    try:
        sent = int(timestamp)
    except ValueError:
        raise NotificationRejected("bad_signature", "Wechatpay-Timestamp is not a number") from None
    current = (now or datetime.now(UTC)).timestamp()
    if abs(current - sent) > MAX_CLOCK_SKEW_SECONDS:
        raise NotificationRejected("stale_timestamp", "WeChat Pay timestamp is more than 5 minutes off")


def decrypt_resource(api_v3_key: bytes, resource: Mapping[str, Any]) -> bytes:
    """AEAD_AES_256_GCM: ciphertext is base64(ciphertext || 16-byte tag); nonce and associated_data are text."""
    if resource.get("algorithm") != "AEAD_AES_256_GCM":
        raise NotificationRejected("undecryptable", f"unsupported algorithm {resource.get('algorithm')!r}")
    try:
        data = base64.b64decode(resource["ciphertext"], validate=True)
        nonce = str(resource["nonce"]).encode()
        aad = str(resource.get("associated_data") or "").encode()
        return AESGCM(api_v3_key).decrypt(nonce, data, aad)
    except (InvalidTag, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise NotificationRejected("undecryptable", "notification resource does not decrypt") from exc


def encrypt_resource(api_v3_key: bytes, plaintext: bytes, *, associated_data: str,
                     original_type: str) -> dict[str, str]:
    """The inverse of decrypt_resource (what WeChat does); used by the test fake."""
    nonce = secrets.token_hex(6)  # WeChat uses a 12-character text nonce
    ciphertext = AESGCM(api_v3_key).encrypt(nonce.encode(), plaintext, associated_data.encode())
    return {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(ciphertext).decode(), "associated_data": associated_data,
            "nonce": nonce}


def rfc3339(moment: datetime) -> str:
    """WeChat wants `yyyy-MM-DDTHH:mm:ss+TIMEZONE`; Beijing time reads naturally in its merchant console."""
    if moment.tzinfo is None:
        raise ValueError("WeChat Pay times must be timezone-aware")
    return moment.astimezone(CHINA_TZ).isoformat(timespec="seconds")


def _dumps(payload: Any) -> bytes:
    # The exact bytes signed are the bytes sent, so serialize once.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _check_fen(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer number of fen")


def _check_out_trade_no(value: str) -> None:
    if not _OUT_TRADE_NO.fullmatch(value or ""):
        raise ValueError("out_trade_no must be 6-32 characters of letters, digits, _ - | *")


# --------------------------------------------------------------------------- client


class WeChatPayClient:
    def __init__(self, config: PayConfig, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        # A caller-owned client (connection reuse, tests) or None: a short-lived client per call, which
        # never outlives the event loop it was made on.
        self._http = http

    # -- payments

    async def create_jsapi_order(self, *, out_trade_no: str, description: str, total_fen: int,
                                 payer_openid: str, expires_at: datetime) -> str:
        """Create (or, with the same parameters, re-fetch) a JSAPI prepay order; returns the prepay_id."""
        _check_out_trade_no(out_trade_no)
        _check_fen("total_fen", total_fen)
        if not payer_openid:
            raise ValueError("payer_openid is required for JSAPI payments")
        payload = {
            "appid": self.config.appid,
            "mchid": self.config.mchid,
            "description": description,
            "out_trade_no": out_trade_no,
            "time_expire": rfc3339(expires_at),
            "notify_url": self.config.notify_url,
            "amount": {"total": total_fen, "currency": "CNY"},
            "payer": {"openid": payer_openid},
        }
        data = await self._call("POST", "/v3/pay/transactions/jsapi", payload=payload)
        prepay_id = data.get("prepay_id")
        if not isinstance(prepay_id, str) or not prepay_id:
            raise PayError("WeChat Pay answered without a prepay_id")
        return prepay_id

    def mini_program_params(self, prepay_id: str) -> dict[str, str]:
        """What `wx.requestPayment` needs; paySign covers `appId\\ntimeStamp\\nnonceStr\\npackage\\n`."""
        timestamp, nonce, package = str(int(time.time())), new_nonce(), f"prepay_id={prepay_id}"
        message = f"{self.config.appid}\n{timestamp}\n{nonce}\n{package}\n".encode()
        return {"appId": self.config.appid, "timeStamp": timestamp, "nonceStr": nonce, "package": package,
                "signType": "RSA", "paySign": sign(self.config.merchant_private_key, message)}

    async def query_order(self, out_trade_no: str) -> dict:
        _check_out_trade_no(out_trade_no)
        return await self._call("GET", f"/v3/pay/transactions/out-trade-no/{out_trade_no}",
                                query={"mchid": self.config.mchid})

    async def close_order(self, out_trade_no: str) -> None:
        """Close an unpaid order (204). A paid order answers PayError(wechat_code="ORDERPAID")."""
        _check_out_trade_no(out_trade_no)
        await self._call("POST", f"/v3/pay/transactions/out-trade-no/{out_trade_no}/close",
                         payload={"mchid": self.config.mchid})

    # -- refunds

    async def refund(self, *, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int,
                     reason: str | None) -> dict:
        """Apply for a refund; the answer's `status` is usually PROCESSING, the outcome arrives as a
        notification at `refund_notify_url` (or via `query_refund`)."""
        _check_out_trade_no(out_trade_no)
        if not _OUT_REFUND_NO.fullmatch(out_refund_no or ""):
            raise ValueError("out_refund_no must be 1-64 characters of letters, digits, _ - | * @")
        _check_fen("refund_fen", refund_fen)
        _check_fen("total_fen", total_fen)
        if refund_fen > total_fen:
            raise ValueError("refund_fen exceeds total_fen")
        payload: dict[str, Any] = {
            "out_trade_no": out_trade_no,
            "out_refund_no": out_refund_no,
            "notify_url": self.config.refund_notify_url,
            "amount": {"refund": refund_fen, "total": total_fen, "currency": "CNY"},
        }
        if reason:
            payload["reason"] = reason[:80]  # WeChat's limit; the reason is shown to the payer
        return await self._call("POST", "/v3/refund/domestic/refunds", payload=payload)

    async def query_refund(self, out_refund_no: str) -> dict:
        if not _OUT_REFUND_NO.fullmatch(out_refund_no or ""):
            raise ValueError("out_refund_no must be 1-64 characters of letters, digits, _ - | * @")
        return await self._call("GET", f"/v3/refund/domestic/refunds/{out_refund_no}")

    # -- notifications

    def parse_notification(self, headers: Mapping[str, str], body: bytes, *,
                           now: datetime | None = None) -> dict:
        """Verify and decrypt a payment or refund notification.

        Returns {"id", "event_type", "create_time", "summary", "resource_type", "resource"} where
        `resource` is the decrypted JSON object (a transaction or a refund)."""
        verify_wechat_signature(self.config.platform_public_keys, headers, body, now=now)
        try:
            envelope = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise NotificationRejected("malformed", "notification body is not JSON") from None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("resource"), dict) \
                or not isinstance(envelope.get("event_type"), str) or not isinstance(envelope.get("id"), str):
            raise NotificationRejected("malformed", "notification lacks id, event_type or resource")
        plaintext = decrypt_resource(self.config.api_v3_key, envelope["resource"])
        try:
            resource = json.loads(plaintext)
        except (ValueError, UnicodeDecodeError):
            raise NotificationRejected("malformed", "decrypted resource is not JSON") from None
        if not isinstance(resource, dict):
            raise NotificationRejected("malformed", "decrypted resource is not an object")
        if "mchid" in resource and resource["mchid"] != self.config.mchid:
            # Encrypted with our key yet for another merchant: a configuration mix-up worth refusing loudly.
            raise NotificationRejected("malformed", "notification is for another merchant")
        return {"id": envelope["id"], "event_type": envelope["event_type"],
                "create_time": envelope.get("create_time"), "summary": envelope.get("summary"),
                "resource_type": envelope.get("resource_type"), "resource": resource}

    # -- transport

    async def _call(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                    payload: Any = None) -> dict:
        url = httpx.URL(self.config.base_url + path + (f"?{urlencode(query)}" if query else ""))
        body = _dumps(payload) if payload is not None else b""
        # Sign exactly what goes on the wire: httpx's own rendering of path and query.
        signed_path = url.raw_path.decode("ascii")
        headers = {
            "Authorization": authorization_header(self.config.mchid, self.config.merchant_serial_no,
                                                  self.config.merchant_private_key, method, signed_path, body),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            if self._http is not None:
                response = await self._http.request(method, url, content=body or None, headers=headers,
                                                    timeout=self.config.timeout_seconds)
            else:
                async with httpx.AsyncClient(timeout=self.config.timeout_seconds) as http:
                    response = await http.request(method, url, content=body or None, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("wechat pay %s %s unreachable: %s", method, path, exc)
            raise PayError(f"WeChat Pay is unreachable ({type(exc).__name__})") from exc
        return self._read(method, path, response)

    def _read(self, method: str, path: str, response: httpx.Response) -> dict:
        request_id = response.headers.get("Request-ID")
        problem: NotificationRejected | None = None
        try:
            verify_wechat_signature(self.config.platform_public_keys, response.headers, response.content)
        except NotificationRejected as exc:
            problem = exc
        if response.is_success:
            if problem is not None:
                log.error("wechat pay %s %s: unverified answer (%s), request id %s",
                          method, path, problem.code, request_id)
                raise PayError(f"WeChat Pay answer failed verification: {problem.code}",
                               http_status=response.status_code, request_id=request_id)
            if not response.content:
                return {}
            try:
                data = response.json()
            except ValueError:
                raise PayError("WeChat Pay answered with invalid JSON", http_status=response.status_code,
                               request_id=request_id) from None
            if not isinstance(data, dict):
                raise PayError("WeChat Pay answered with non-object JSON", http_status=response.status_code,
                               request_id=request_id)
            return data
        try:
            data = response.json()
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        code = data.get("code") if isinstance(data.get("code"), str) else None
        message = data.get("message") if isinstance(data.get("message"), str) else None
        log.warning("wechat pay %s %s -> %s %s %s (signed: %s), request id %s", method, path,
                    response.status_code, code, message, problem is None, request_id)
        raise PayError(f"WeChat Pay refused the request: {code or response.status_code}"
                       + (f" ({message})" if message else ""),
                       wechat_code=code, wechat_message=message, http_status=response.status_code,
                       verified=problem is None, request_id=request_id)
