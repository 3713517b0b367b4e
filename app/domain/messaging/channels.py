"""Delivery channels: how an outbound message leaves CareLoop.

A `Channel` takes one queued message and either returns a `Delivery` (sent) or raises one of
`SkipDelivery` (nobody to send to: no openid, no WeCom user id, no phone), `PermanentDeliveryError`
(the provider refused for good: not retried) or `TransientDeliveryError` (try again later; any other
exception counts as transient too). `delivery.py` turns those into the message's status, attempts and
backoff; channels hold no retry logic of their own.

Channels are looked up by name in `channels` (a `ChannelRegistry`), so tests and local setups swap a
channel for a fake with `channels.override(...)` instead of patching internals.

SMS: no specific Chinese SMS vendor (Aliyun, Tencent Cloud, …) is integrated. `HttpSmsProvider` posts
HMAC-signed JSON to one configurable gateway URL (a small adapter in front of the vendor of the
clinic's choice); without SMS_GATEWAY_URL, `LoggingSmsProvider` only logs what it would have sent, and the
message is `skipped` (`no_sms_gateway`), never `sent`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.redis import create_redis
from app.core.settings import get_settings
from app.domain.iam import service as iam
from app.domain.members import service as members
from app.domain.messaging.models import MessageChannel, OutboundMessage
from app.domain.wechat_links import service as wechat_links
from app.integrations.wechat.mini_program import SUBSCRIBE_REFUSED, MiniProgramClient, MiniProgramConfig
from app.integrations.wechat.tokens import WeChatError, WeChatNotConfigured
from app.integrations.wechat.wecom import WeComClient, WeComConfig

log = logging.getLogger("careloop.messaging")


# ---------------------------------------------------------------- the interface


@dataclass(frozen=True)
class Delivery:
    provider_msg_id: str | None = None


class SkipDelivery(Exception):
    """There is no address to deliver to; the message is `skipped` with `reason`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


class PermanentDeliveryError(Exception):
    """The provider refused the message for good; it is `failed` with `reason` and not retried."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


class TransientDeliveryError(Exception):
    """Worth another attempt later (network, rate limits, provider busy, not configured yet)."""


class Channel(Protocol):
    name: str

    async def send(self, session: AsyncSession, message: OutboundMessage) -> Delivery: ...


class ChannelRegistry:
    """The channel instance used for each channel name; defaults are built on first use."""

    def __init__(self) -> None:
        self._defaults: dict[str, Channel] = {}
        self._overrides: dict[str, Channel] = {}

    def get(self, name: str) -> Channel:
        if name in self._overrides:
            return self._overrides[name]
        if name not in self._defaults:
            self._defaults[name] = _default_channel(name)
        return self._defaults[name]

    def register(self, channel: Channel) -> None:
        """Replace the default for `channel.name` (e.g. a deployment's own SMS provider)."""
        self._defaults[channel.name] = channel

    @contextmanager
    def override(self, channel: Channel) -> Iterator[Channel]:
        """Use `channel` inside the block (tests, demos), whatever the default is."""
        previous = self._overrides.get(channel.name)
        self._overrides[channel.name] = channel
        try:
            yield channel
        finally:
            if previous is None:
                self._overrides.pop(channel.name, None)
            else:
                self._overrides[channel.name] = previous

    def reset(self) -> None:
        self._defaults.clear()


channels = ChannelRegistry()


def _default_channel(name: str) -> Channel:
    if name == MessageChannel.MINI_PROGRAM_SUBSCRIBE:
        return MiniProgramSubscribeChannel()
    if name == MessageChannel.WECOM_STAFF:
        return WeComStaffChannel()
    if name == MessageChannel.SMS:
        return SmsChannel(default_sms_provider())
    raise ValueError(f"unknown channel {name!r}")


# ---------------------------------------------------------------- shared Redis for WeChat token caches

_redis_url: str | None = None


def configure(*, redis_url: str | None) -> None:
    """Tell the WeChat/WeCom channels which Redis holds the shared access tokens (worker start-up);
    without it they use REDIS_URL."""
    global _redis_url
    _redis_url = redis_url
    wechat_links.configure_redis(redis_url)  # the same Redis for the WeCom calls of wechat_links' handlers
    channels.reset()


def _redis():
    url = _redis_url or get_settings().redis_url
    if not url:
        raise TransientDeliveryError("no Redis configured for WeChat access tokens (set REDIS_URL)")
    return create_redis(url)


# ---------------------------------------------------------------- mini-program subscribe messages

# WeChat errcodes worth another attempt: system busy, our transport errors, rate and quota limits.
_WECHAT_TRANSIENT = frozenset({-1, -2, 45009, 45011, 45047})

OpenidLookup = Callable[[AsyncSession, UUID, UUID], Awaitable[str | None]]


async def openid_for_member(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> str | None:
    """The member's openid in the configured mini-program (see `wechat_links.mini_program_openid`)."""
    return await wechat_links.mini_program_openid(session, tenant_id, member_id,
                                                  appid=get_settings().wechat_mini_appid)


class MiniProgramSubscribeChannel:
    """小程序订阅消息 through `MiniProgramClient.send_subscribe_message`; 43101 (the user has no
    subscription for the template) is a permanent `subscription_refused`."""

    name = MessageChannel.MINI_PROGRAM_SUBSCRIBE

    def __init__(self, client_factory: Callable[[], Any] | None = None,
                 openid_lookup: OpenidLookup = openid_for_member) -> None:
        self._client_factory = client_factory
        self._client: Any = None
        self._openid_lookup = openid_lookup

    def _mini_program(self) -> Any:
        if self._client is None:
            if self._client_factory is not None:
                self._client = self._client_factory()
            else:
                try:
                    config = MiniProgramConfig.from_settings()
                except WeChatNotConfigured as exc:  # transient: sends once it is configured (or dead → retry)
                    raise TransientDeliveryError(str(exc)) from exc
                self._client = MiniProgramClient(config, _redis())
        return self._client

    async def send(self, session: AsyncSession, message: OutboundMessage) -> Delivery:
        if message.member_id is None:
            raise PermanentDeliveryError("no_member", "subscribe messages go to members")
        openid = await self._openid_lookup(session, message.tenant_id, message.member_id)
        if not openid:
            raise SkipDelivery("no_openid", "the member has not signed in to the mini-program")
        payload = message.payload
        try:
            errcode = await self._mini_program().send_subscribe_message(
                openid, payload["wechat_template_id"], payload.get("data") or {}, payload.get("page"))
        except WeChatError as exc:
            if exc.errcode in _WECHAT_TRANSIENT:
                raise TransientDeliveryError(str(exc)) from exc
            raise PermanentDeliveryError(f"wechat_{exc.errcode}", str(exc)) from exc
        if errcode == SUBSCRIBE_REFUSED:
            raise PermanentDeliveryError("subscription_refused", "WeChat errcode 43101: the user has not "
                                                                 "accepted this subscribe template")
        return Delivery()


# ---------------------------------------------------------------- WeCom messages to staff


class WeComStaffChannel:
    """企业微信 application text message to `staff.wecom_userid`, through the WeCom client."""

    name = MessageChannel.WECOM_STAFF

    def __init__(self, client_factory: Callable[[], Any] | None = None) -> None:
        self._client_factory = client_factory
        self._client: Any = None

    def _wecom(self) -> Any:
        if self._client is None:
            if self._client_factory is not None:
                self._client = self._client_factory()
            else:
                try:
                    config = WeComConfig.from_settings()
                except WeChatNotConfigured as exc:  # transient: sends once it is configured (or dead → retry)
                    raise TransientDeliveryError(str(exc)) from exc
                self._client = WeComClient(config, _redis())
        return self._client

    async def send(self, session: AsyncSession, message: OutboundMessage) -> Delivery:
        staff = await iam.staff_row(session, message.tenant_id, message.staff_id) if message.staff_id else None
        userid = staff.wecom_userid if staff is not None else None
        if not userid:
            raise SkipDelivery("no_wecom_userid", "the staff member has no WeCom user id")
        try:
            answer = await self._wecom().send_text([userid], message.content)
        except WeChatError as exc:
            if exc.errcode in _WECHAT_TRANSIENT:
                raise TransientDeliveryError(str(exc)) from exc
            raise PermanentDeliveryError(f"wecom_{exc.errcode}", str(exc)) from exc
        # WeCom answers errcode 0 even when the user is unknown to the app; it lists them in invaliduser.
        if userid in str(answer.get("invaliduser") or "").split("|"):
            raise PermanentDeliveryError("wecom_invalid_user", f"WeCom does not know the user {userid!r}")
        msgid = answer.get("msgid")
        return Delivery(provider_msg_id=str(msgid) if msgid else None)


# ---------------------------------------------------------------- SMS


class SmsProvider(Protocol):
    """Sends one text to one phone number; returns the provider's message id.
    Raises TransientDeliveryError or PermanentDeliveryError like a channel."""

    async def send(self, phone: str, content: str, *, ref: str) -> str: ...


def sign_sms_request(secret: str, timestamp: str, nonce: str, body: bytes) -> str:
    """HMAC-SHA256 over "timestamp\\nnonce\\nbody", hex: what X-CareLoop-Signature carries."""
    message = timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_sms_signature(secret: str, headers: dict[str, str], body: bytes, *, max_skew_seconds: int = 300,
                         now: float | None = None) -> bool:
    """For the gateway side (and tests): the signature matches and the timestamp is recent."""
    lower = {k.lower(): v for k, v in headers.items()}
    timestamp, nonce, signature = (lower.get("x-careloop-timestamp"), lower.get("x-careloop-nonce"),
                                   lower.get("x-careloop-signature"))
    if not (timestamp and nonce and signature) or not timestamp.isdigit():
        return False
    if abs((now or time.time()) - int(timestamp)) > max_skew_seconds:
        return False
    return hmac.compare_digest(sign_sms_request(secret, timestamp, nonce, body), signature)


class HttpSmsProvider:
    """A generic SMS gateway: `POST url` with JSON {"to", "content", "ref"}, signed with HMAC-SHA256
    (headers X-CareLoop-Key-Id, X-CareLoop-Timestamp, X-CareLoop-Nonce, X-CareLoop-Signature; see
    `sign_sms_request`). A 2xx answer may carry {"id": "..."}; 429 and 5xx are retried, other 4xx are not.
    This is not any particular vendor's API: no Chinese SMS vendor is integrated directly."""

    def __init__(self, url: str, secret: str, *, key_id: str = "careloop", timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url, self.secret, self.key_id, self.timeout, self.transport = url, secret, key_id, timeout, transport

    async def send(self, phone: str, content: str, *, ref: str) -> str:
        body = json.dumps({"to": phone, "content": content, "ref": ref}, ensure_ascii=False,
                          separators=(",", ":")).encode()
        timestamp, nonce = str(int(time.time())), secrets.token_hex(12)
        headers = {"Content-Type": "application/json; charset=utf-8", "X-CareLoop-Key-Id": self.key_id,
                   "X-CareLoop-Timestamp": timestamp, "X-CareLoop-Nonce": nonce,
                   "X-CareLoop-Signature": sign_sms_request(self.secret, timestamp, nonce, body)}
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as http:
                response = await http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(f"SMS gateway unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientDeliveryError(f"SMS gateway answered {response.status_code}")
        if response.status_code >= 400:
            raise PermanentDeliveryError(f"sms_{response.status_code}",
                                         f"SMS gateway refused: {response.status_code} {response.text[:200]}")
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        return str(answer.get("id") or ref) if isinstance(answer, dict) else ref


class LoggingSmsProvider:
    """Used when SMS_GATEWAY_URL is not set: nothing leaves the machine. The text is logged (phone masked) and
    the message is `skipped` with reason `no_sms_gateway`: the record and the member's timeline must never
    claim a delivery that did not happen."""

    async def send(self, phone: str, content: str, *, ref: str) -> str:
        log.info("SMS not configured; not sent", extra={"to": phone[:3] + "****" + phone[-4:], "ref": ref,
                                                        "content": content})
        raise SkipDelivery("no_sms_gateway", "not sent: no SMS gateway is configured (SMS_GATEWAY_URL)")


def default_sms_provider() -> SmsProvider:
    settings = get_settings()
    if settings.sms_gateway_url:
        if not settings.sms_gateway_secret:
            raise ValueError("SMS_GATEWAY_URL is set but SMS_GATEWAY_SECRET is not")
        return HttpSmsProvider(settings.sms_gateway_url, settings.sms_gateway_secret,
                               key_id=settings.sms_gateway_key_id, timeout=settings.sms_gateway_timeout_seconds)
    return LoggingSmsProvider()


class SmsChannel:
    """SMS to the member's phone (decrypted only at the moment of sending)."""

    name = MessageChannel.SMS

    def __init__(self, provider: SmsProvider) -> None:
        self.provider = provider

    async def send(self, session: AsyncSession, message: OutboundMessage) -> Delivery:
        phone = await members.member_phone(session, message.tenant_id, message.member_id) \
            if message.member_id else None
        if not phone:
            raise SkipDelivery("no_phone", "the member has no phone number")
        return Delivery(provider_msg_id=await self.provider.send(phone, message.content, ref=str(message.id)))
