"""The WeCom (企业微信) server API and callback crypto.

- OAuth: a code from the app's authorize redirect → the staff member's WeCom userid.
- Messages to staff (`message/send`, text cards), external contacts (`externalcontact/get`).
- JS-SDK: `wx.config` signs with the corp's jsapi_ticket, `wx.agentConfig` with the app's ticket;
  both are sha1("jsapi_ticket=T&noncestr=N&timestamp=S&url=U"), U without its #fragment.
- Callbacks (接收消息): signature sha1(sorted(token, timestamp, nonce, Encrypt)) and AES-256-CBC with the
  EncodingAESKey, through wechatpy's enterprise WeChatCrypto (wechatpy is synchronous; it does no I/O here).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import xmltodict
from redis.asyncio import Redis
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException, WeChatException

from app.core.settings import Settings, get_settings
from app.integrations.wechat.tokens import (
    Credential,
    TokenCache,
    WeChatError,
    WeChatNotConfigured,
    call_with_token,
    check,
    request_json,
)

# externalcontact/get: no such external contact for this corp, or not one of our staff's customers.
UNKNOWN_EXTERNAL_CONTACT = frozenset({40096, 84061})
INVALID_CODE = 40029


@dataclass(frozen=True)
class WeComConfig:
    corp_id: str
    agent_id: str
    secret: str
    base_url: str
    callback_token: str | None = None
    callback_aes_key: str | None = None
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> WeComConfig:
        """Today one corp serves every tenant (global settings); a per-tenant lookup replaces this later."""
        settings = settings or get_settings()
        missing = [n for n, v in (("WECOM_CORP_ID", settings.wecom_corp_id),
                                  ("WECOM_AGENT_ID", settings.wecom_agent_id),
                                  ("WECOM_SECRET", settings.wecom_secret)) if not v]
        if missing:
            raise WeChatNotConfigured("WeCom is not configured: set " + ", ".join(missing))
        return cls(corp_id=settings.wecom_corp_id, agent_id=str(settings.wecom_agent_id), secret=settings.wecom_secret,
                   base_url=settings.wecom_api_base_url.rstrip("/"), callback_token=settings.wecom_callback_token,
                   callback_aes_key=settings.wecom_callback_aes_key, timeout=settings.wechat_http_timeout_seconds)


@dataclass(frozen=True)
class ExternalContact:
    external_userid: str
    name: str | None
    unionid: str | None
    type: int | None  # 1 WeChat user, 2 WeCom user
    follow_userids: list[str] = field(default_factory=list)


def jsapi_signature(ticket: str, noncestr: str, timestamp: int | str, url: str) -> str:
    """The JS-SDK signature, as WeChat documents it: keys in ASCII order, values raw (not URL-encoded),
    sha1 of the joined string. The page URL is signed without its #fragment."""
    url = url.split("#", 1)[0]
    plain = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(plain.encode()).hexdigest()


class WeComClient:
    def __init__(self, config: WeComConfig, redis: Redis) -> None:
        self.config, self.tokens = config, TokenCache(redis)

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.config.base_url, timeout=self.config.timeout)

    # ------------------------------------------------------------------ tokens and tickets

    @property
    def token_name(self) -> str:
        return f"wecom:{self.config.corp_id}:{self.config.agent_id}"

    async def _fetch_token(self) -> Credential:
        async with self._client() as http:
            data = check(await request_json(http, "GET", "/cgi-bin/gettoken", api="gettoken", params={
                "corpid": self.config.corp_id, "corpsecret": self.config.secret}), api="gettoken")
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

    async def _ticket(self, name: str, path: str, params: dict[str, Any] | None = None) -> str:
        async def fetch() -> Credential:
            data = check(await self._with_token("GET", path, params=params), api=path)
            return Credential(str(data["ticket"]), int(data.get("expires_in", 7200)))

        return await self.tokens.get(name, fetch)

    async def jsapi_ticket(self) -> str:
        """The corp's ticket, for `wx.config`."""
        return await self._ticket(f"wecom_jsapi:{self.config.corp_id}", "/cgi-bin/get_jsapi_ticket")

    async def agent_ticket(self) -> str:
        """The app's ticket, for `wx.agentConfig` (needed by the sidebar's contact APIs)."""
        return await self._ticket(f"wecom_agent_ticket:{self.config.corp_id}:{self.config.agent_id}",
                                  "/cgi-bin/ticket/get", {"type": "agent_config"})

    # ------------------------------------------------------------------ API calls

    async def getuserinfo(self, code: str) -> str:
        """OAuth code → the staff member's userid. A visitor who is not a member of the corp (only an
        openid/external_userid comes back) is refused like an invalid code."""
        data = check(await self._with_token("GET", "/cgi-bin/auth/getuserinfo", params={"code": code}),
                     api="auth/getuserinfo")
        userid = data.get("userid") or data.get("UserId")
        if not userid:
            raise WeChatError(INVALID_CODE, "the code belongs to someone outside the corp", api="auth/getuserinfo")
        return str(userid)

    async def send_text(self, userids: list[str], content: str) -> dict[str, Any]:
        """A text message from the app to staff members; answers WeCom's reply (invaliduser lists unknown ids)."""
        body = {"touser": "|".join(userids), "msgtype": "text", "agentid": int(self.config.agent_id),
                "text": {"content": content}, "safe": 0}
        return check(await self._with_token("POST", "/cgi-bin/message/send", json_body=body), api="message/send")

    async def send_textcard(self, userids: list[str], title: str, description: str, url: str,
                            btntxt: str = "详情") -> dict[str, Any]:
        body = {"touser": "|".join(userids), "msgtype": "textcard", "agentid": int(self.config.agent_id),
                "textcard": {"title": title, "description": description, "url": url, "btntxt": btntxt}}
        return check(await self._with_token("POST", "/cgi-bin/message/send", json_body=body), api="message/send")

    async def get_external_contact(self, external_userid: str) -> ExternalContact | None:
        """An external contact (customer) by id; None when WeCom does not know it for this corp."""
        data = await self._with_token("GET", "/cgi-bin/externalcontact/get",
                                      params={"external_userid": external_userid})
        if int(data.get("errcode") or 0) in UNKNOWN_EXTERNAL_CONTACT:
            return None
        check(data, api="externalcontact/get")
        contact = data.get("external_contact") or {}
        return ExternalContact(
            external_userid=str(contact.get("external_userid") or external_userid),
            name=contact.get("name"), unionid=contact.get("unionid") or None, type=contact.get("type"),
            follow_userids=[str(f["userid"]) for f in data.get("follow_user") or [] if f.get("userid")],
        )

    async def jssdk_config(self, url: str, *, timestamp: int | None = None, nonce: str | None = None) -> dict[str, Any]:
        """What the sidebar page passes to `wx.config` and `wx.agentConfig` (camelCase, as the JS-SDK takes it)."""
        timestamp = timestamp or int(time.time())
        nonce = nonce or secrets.token_urlsafe(12)
        corp_ticket, agent_ticket = await self.jsapi_ticket(), await self.agent_ticket()
        return {
            "config": {"beta": True, "appId": self.config.corp_id, "timestamp": timestamp, "nonceStr": nonce,
                       "signature": jsapi_signature(corp_ticket, nonce, timestamp, url)},
            "agentConfig": {"corpid": self.config.corp_id, "agentid": self.config.agent_id, "timestamp": timestamp,
                            "nonceStr": nonce, "signature": jsapi_signature(agent_ticket, nonce, timestamp, url)},
        }


# ---------------------------------------------------------------------- callbacks


class CallbackError(Exception):
    pass


class CallbackSignatureError(CallbackError):
    pass


class CallbackPayloadError(CallbackError):
    pass


def parse_xml(body: bytes | str) -> dict[str, Any]:
    """The <xml> element of a callback as a dict. Entity declarations are refused outright: WeCom never
    sends them, and they are how XML bombs and external-entity reads get in."""
    raw = body.encode() if isinstance(body, str) else body
    if b"<!DOCTYPE" in raw.upper() or b"<!ENTITY" in raw.upper():
        raise CallbackPayloadError("XML with a DOCTYPE or entities is not accepted")
    try:
        parsed = xmltodict.parse(raw, disable_entities=True)
    except Exception as exc:  # expat raises its own ExpatError, plus ValueError/TypeError on odd input
        raise CallbackPayloadError("the body is not well-formed XML") from exc
    root = parsed.get("xml") if isinstance(parsed, dict) else None
    if not isinstance(root, dict):
        raise CallbackPayloadError("the body has no <xml> element")
    return root


class WeComCallbackCrypto:
    """Verify and decrypt (and, for tests and the fake, encrypt) WeCom callback messages."""

    def __init__(self, token: str, encoding_aes_key: str, corp_id: str) -> None:
        self.token, self.corp_id = token, corp_id
        self._crypto = WeChatCrypto(token, encoding_aes_key, corp_id)

    @classmethod
    def from_config(cls, config: WeComConfig) -> WeComCallbackCrypto:
        if not config.callback_token or not config.callback_aes_key:
            raise WeChatNotConfigured("WeCom callbacks are not configured: set WECOM_CALLBACK_TOKEN, "
                                      "WECOM_CALLBACK_AES_KEY")
        return cls(config.callback_token, config.callback_aes_key, config.corp_id)

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return hashlib.sha1("".join(sorted([self.token, timestamp, nonce, encrypted])).encode()).hexdigest()

    def verify_signature(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        # Constant-time, before anything is decrypted.
        if not hmac.compare_digest(self.signature(timestamp, nonce, encrypted).encode(), msg_signature.encode()):
            raise CallbackSignatureError("msg_signature does not match")

    def decrypt_echostr(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """URL verification (GET): the decrypted echostr is the answer WeCom expects."""
        self.verify_signature(msg_signature, timestamp, nonce, echostr)
        try:
            return _text(self._crypto.check_signature(msg_signature, timestamp, nonce, echostr))
        except InvalidSignatureException as exc:
            raise CallbackSignatureError("msg_signature does not match") from exc
        except (WeChatException, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise CallbackPayloadError("echostr does not decrypt for this corp") from exc

    def decrypt_message(self, body: bytes | str, msg_signature: str, timestamp: str, nonce: str) -> dict[str, Any]:
        """An event POST: the outer envelope's <Encrypt>, verified and decrypted, parsed as the inner <xml>."""
        envelope = parse_xml(body)
        encrypted = envelope.get("Encrypt")
        if not isinstance(encrypted, str) or not encrypted:
            raise CallbackPayloadError("the body has no <Encrypt>")
        self.verify_signature(msg_signature, timestamp, nonce, encrypted)
        try:
            plain = self._crypto.decrypt_message({"Encrypt": encrypted}, msg_signature, timestamp, nonce)
        except InvalidSignatureException as exc:
            raise CallbackSignatureError("msg_signature does not match") from exc
        except (WeChatException, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise CallbackPayloadError("the message does not decrypt for this corp") from exc
        return parse_xml(plain)

    def encrypt_message(self, xml: str, nonce: str, timestamp: str) -> bytes:
        """The envelope WeCom would POST for `xml` (its <MsgSignature> equals the msg_signature parameter)."""
        return _text(self._crypto.encrypt_message(xml, nonce, timestamp)).encode()

    def encrypt_echostr(self, plain: str) -> str:
        from wechatpy.enterprise.crypto import PrpCrypto

        return _text(PrpCrypto(self._crypto.key).encrypt(plain, self.corp_id))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
