"""The WeChat mini-program server API: login (`code2session`), phone numbers, subscribe messages, QR codes.

Talks to WECHAT_API_BASE_URL over async httpx; the access token is shared through `TokenCache`.
wechatpy is used only for the (synchronous) decryption of the legacy phone-number payload.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass
from typing import Any

import httpx
from redis.asyncio import Redis
from wechatpy.crypto import WeChatWxaCrypto
from wechatpy.exceptions import InvalidAppIdException

from app.core.settings import Settings, get_settings
from app.integrations.wechat.tokens import (
    TRANSPORT_ERRCODE,
    Credential,
    TokenCache,
    WeChatError,
    WeChatNotConfigured,
    call_with_token,
    check,
    request_json,
)

# The user has not accepted (or has used up) this subscribe template: not a failure to retry, but
# "no consent", which the caller records on the member.
SUBSCRIBE_REFUSED = 43101
INVALID_CODE = 40029  # unknown, expired or already used login / phone code
CODE_USED = 40163


@dataclass(frozen=True)
class MiniProgramConfig:
    appid: str
    secret: str
    base_url: str
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> MiniProgramConfig:
        settings = settings or get_settings()
        missing = [n for n, v in (("WECHAT_MINI_APPID", settings.wechat_mini_appid),
                                  ("WECHAT_MINI_SECRET", settings.wechat_mini_secret)) if not v]
        if missing:
            raise WeChatNotConfigured("mini-program is not configured: set " + ", ".join(missing))
        return cls(appid=settings.wechat_mini_appid, secret=settings.wechat_mini_secret,
                   base_url=settings.wechat_api_base_url.rstrip("/"), timeout=settings.wechat_http_timeout_seconds)


@dataclass(frozen=True)
class WxSession:
    openid: str
    session_key: str
    unionid: str | None = None


@dataclass(frozen=True)
class PhoneNumber:
    phone: str  # with a leading "+<country code>" unless the country code is 86
    pure_phone: str
    country_code: str


class PhoneDecryptError(Exception):
    """The encrypted phone payload does not decrypt with this session key, or is for another app."""


def _phone(pure: str, country_code: str) -> PhoneNumber:
    country_code = str(country_code or "86").lstrip("+")
    phone = pure if country_code == "86" else f"+{country_code}{pure}"
    return PhoneNumber(phone=phone, pure_phone=pure, country_code=country_code)


def decrypt_phone(appid: str, session_key: str, encrypted_data: str, iv: str) -> PhoneNumber:
    """The legacy `getPhoneNumber` payload: AES-128-CBC with the session key, PKCS#7, JSON with a
    watermark whose appid must be ours (so a payload made for another mini-program is refused)."""
    try:
        data = WeChatWxaCrypto(session_key, iv, appid).decrypt_message(encrypted_data)
    except InvalidAppIdException as exc:
        raise PhoneDecryptError("the phone payload was made for another mini-program") from exc
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PhoneDecryptError("the phone payload does not decrypt with this session") from exc
    pure = data.get("purePhoneNumber") or data.get("phoneNumber")
    if not isinstance(pure, str) or not pure:
        raise PhoneDecryptError("the phone payload holds no phone number")
    return _phone(pure, data.get("countryCode", "86"))


class MiniProgramClient:
    def __init__(self, config: MiniProgramConfig, redis: Redis) -> None:
        self.config, self.tokens = config, TokenCache(redis)

    @property
    def token_name(self) -> str:
        return f"mini:{self.config.appid}"

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.config.base_url, timeout=self.config.timeout)

    async def _fetch_token(self) -> Credential:
        async with self._client() as http:
            data = check(await request_json(http, "GET", "/cgi-bin/token", api="cgi-bin/token", params={
                "grant_type": "client_credential", "appid": self.config.appid, "secret": self.config.secret}),
                api="cgi-bin/token")
        return Credential(str(data["access_token"]), int(data.get("expires_in", 7200)))

    async def access_token(self) -> str:
        return await self.tokens.get(self.token_name, self._fetch_token)

    async def _with_token(self, method: str, path: str, *, json_body: Any = None,
                          params: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self._client() as http:
            async def call(token: str) -> dict[str, Any]:
                return await request_json(http, method, path, api=path, json=json_body,
                                          params={**(params or {}), "access_token": token})

            return await call_with_token(self.tokens, self.token_name, self._fetch_token, call, api=path)

    async def code2session(self, code: str) -> WxSession:
        """`wx.login()` code → openid, session_key (and unionid when the app is bound to an open platform)."""
        async with self._client() as http:
            data = check(await request_json(http, "GET", "/sns/jscode2session", api="jscode2session", params={
                "appid": self.config.appid, "secret": self.config.secret, "js_code": code,
                "grant_type": "authorization_code"}), api="jscode2session")
        if not data.get("openid") or not data.get("session_key"):
            raise WeChatError(-1, "jscode2session answered without openid/session_key", api="jscode2session")
        return WxSession(openid=data["openid"], session_key=data["session_key"], unionid=data.get("unionid") or None)

    async def phone_number(self, phone_code: str) -> PhoneNumber:
        """The phone-number component's `code` (getPhoneNumber, base library ≥ 2.21.2) → the number."""
        data = check(await self._with_token("POST", "/wxa/business/getuserphonenumber", json_body={"code": phone_code}),
                     api="getuserphonenumber")
        info = data.get("phone_info") or {}
        watermark = info.get("watermark") or {}
        if watermark.get("appid") and watermark["appid"] != self.config.appid:
            raise WeChatError(-1, "phone_info watermark names another appid", api="getuserphonenumber")
        pure = info.get("purePhoneNumber") or info.get("phoneNumber")
        if not pure:
            raise WeChatError(-1, "getuserphonenumber answered without a phone number", api="getuserphonenumber")
        return _phone(pure, info.get("countryCode", "86"))

    def decrypt_phone(self, session_key: str, encrypted_data: str, iv: str) -> PhoneNumber:
        return decrypt_phone(self.config.appid, session_key, encrypted_data, iv)

    async def send_subscribe_message(self, openid: str, template_id: str, data: dict[str, Any],
                                     page: str | None = None, *, state: str = "formal", lang: str = "zh_CN") -> int:
        """Send a subscribe message. Returns 0 when sent and SUBSCRIBE_REFUSED (43101) when the user has not
        accepted this template (no consent: the caller records that, and must not retry); any other
        errcode raises WeChatError. `data` values may be plain strings or {"value": ...} objects."""
        body: dict[str, Any] = {
            "touser": openid, "template_id": template_id, "miniprogram_state": state, "lang": lang,
            "data": {k: v if isinstance(v, dict) else {"value": str(v)} for k, v in data.items()},
        }
        if page:
            body["page"] = page
        answer = await self._with_token("POST", "/cgi-bin/message/subscribe/send", json_body=body)
        errcode = int(answer.get("errcode") or 0)
        if errcode in (0, SUBSCRIBE_REFUSED):
            return errcode
        raise WeChatError(errcode, str(answer.get("errmsg", "")), api="subscribe/send")

    async def wxacode_unlimited(self, scene: str, *, page: str | None = None, check_path: bool = True,
                                env_version: str = "release", width: int = 430) -> bytes:
        """`wxacode.getUnlimited`: a mini-program code (PNG) whose scene (≤ 32 characters) the opened page
        reads from its launch options. WeChat answers the image itself, or JSON with an errcode (40129:
        the scene is not allowed), which raises WeChatError."""
        body: dict[str, Any] = {"scene": scene, "check_path": check_path, "env_version": env_version,
                                "width": width}
        if page:
            body["page"] = page
        api = "getwxacodeunlimit"
        async with self._client() as http:
            async def call(token: str) -> dict[str, Any]:
                try:
                    response = await http.post("/wxa/getwxacodeunlimit", params={"access_token": token}, json=body)
                except httpx.HTTPError as exc:
                    raise WeChatError(TRANSPORT_ERRCODE, f"{type(exc).__name__}: {exc}", api=api) from exc
                if response.headers.get("content-type", "").startswith("image/"):
                    return {"errcode": 0, "image": response.content}
                try:
                    data = response.json()
                except ValueError as exc:
                    raise WeChatError(TRANSPORT_ERRCODE, "answer is neither an image nor JSON", api=api) from exc
                return data if isinstance(data, dict) else {"errcode": TRANSPORT_ERRCODE, "errmsg": "not an object"}

            data = await call_with_token(self.tokens, self.token_name, self._fetch_token, call, api=api)
        return bytes(check(data, api=api)["image"])
