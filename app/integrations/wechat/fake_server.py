"""A fake WeChat (mini-program) and WeCom server on a real port, for tests and for trying CareLoop offline.

It answers the calls CareLoop makes, the way WeChat does where our code can tell the difference: tokens
must be fetched with the right secret and sent on every call (unknown tokens get 40001), codes are single
use (40029 unknown, 40163 used), a subscribe message to an openid that has not accepted the template gets
43101, external contacts it does not know get 84061. It counts every call (`calls`, `token_requests`),
can reject the next call's token once (`fail_token_once`) to exercise refresh, and builds encrypted,
signed callback requests as WeCom would send them (`callback_request`).

In tests:

    with FakeWeChat() as fake:                          # uvicorn in a thread on 127.0.0.1:<free port>
        monkeypatch.setattr(get_settings(), name, value) for name, value in fake.settings().items()
        fake.add_login_code("c1", openid="o1", unionid="u1")
        fake.add_phone_code("p1", "13800138000")

From the command line, `careloop fake-wechat [--port 9009]` serves it in the foreground in *open mode*
(any login code signs in as an openid derived from it; a phone code that is a phone number proves that
number; any WeCom code is the userid of the same name; unknown external contacts are made up) and prints
the settings that point CareLoop at it. `POST /__fake__/setup` adds codes and contacts over HTTP and
`GET /__fake__/state` shows the call counts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.integrations.local_server import ThreadedServer
from app.integrations.wechat.wecom import WeComCallbackCrypto

DEFAULT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as WeCom's console makes them


@dataclass
class _Login:
    openid: str
    session_key: str
    unionid: str | None = None


@dataclass
class _Contact:
    external_userid: str
    name: str
    unionid: str | None = None
    follow_userids: list[str] = field(default_factory=list)


def _ok(**data: Any) -> JSONResponse:
    return JSONResponse({"errcode": 0, "errmsg": "ok", **data})


def _err(errcode: int, errmsg: str) -> JSONResponse:
    return JSONResponse({"errcode": errcode, "errmsg": errmsg})


def _wxacode_png(scene: str, width: int) -> bytes:
    """A real PNG standing in for WeChat's mini-program code: a 21×21 grid drawn from the scene's hash, so
    different scenes give different images (a test can tell them apart; no phone will scan it)."""
    import io

    from PIL import Image, ImageDraw

    cells, digest = 21, hashlib.sha256(scene.encode()).digest()
    image = Image.new("RGB", (width, width), "white")
    draw, cell = ImageDraw.Draw(image), width // (cells + 2)
    for i in range(cells * cells):
        if digest[i % len(digest)] >> (i % 8) & 1:
            x, y = (i % cells + 1) * cell, (i // cells + 1) * cell
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def encrypt_phone_payload(appid: str, session_key: str, phone: str, *, country_code: str = "86",
                          iv: bytes | None = None) -> tuple[str, str]:
    """What the legacy getPhoneNumber gives the mini-program: AES-128-CBC(session_key, iv) of the JSON."""
    iv = iv or os.urandom(16)
    plain = json.dumps({"phoneNumber": phone if country_code == "86" else f"+{country_code}{phone}",
                        "purePhoneNumber": phone, "countryCode": country_code,
                        "watermark": {"appid": appid, "timestamp": int(time.time())}}).encode()
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(base64.b64decode(session_key)), modes.CBC(iv)).encryptor()
    data = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    return base64.b64encode(data).decode(), base64.b64encode(iv).decode()


class FakeWeChat:
    def __init__(self, *, appid: str = "wxfake0000000001", secret: str = "fake-mini-secret",
                 corp_id: str = "wwfakecorp000001", agent_id: str = "1000002", corp_secret: str = "fake-corp-secret",
                 callback_token: str = "fakecallbacktoken", callback_aes_key: str = DEFAULT_AES_KEY,
                 open_mode: bool = False) -> None:
        self.appid, self.secret = appid, secret
        self.corp_id, self.agent_id, self.corp_secret = corp_id, agent_id, corp_secret
        self.callback_token, self.callback_aes_key = callback_token, callback_aes_key
        self.open_mode = open_mode
        self.token_delay = 0.0  # seconds each token fetch takes (to make concurrent callers overlap)
        self.calls: Counter[str] = Counter()
        self.token_requests: Counter[str] = Counter()  # "mini" / "wecom"
        self.login_codes: dict[str, _Login] = {}
        self.used_codes: set[str] = set()
        self.phone_codes: dict[str, tuple[str, str]] = {}
        self.wecom_codes: dict[str, str] = {}
        self.external_contacts: dict[str, _Contact] = {}
        self.refused_openids: set[str] = set()
        self.subscribe_messages: list[dict[str, Any]] = []
        self.wxacodes: list[dict[str, Any]] = []  # the bodies of wxacode.getUnlimited calls answered
        self.staff_messages: list[dict[str, Any]] = []
        self._valid_tokens: dict[str, set[str]] = {"mini": set(), "wecom": set()}
        self._fail_once: dict[str, int] = {}
        self._serial = 0
        self._lock = threading.Lock()
        self._server: ThreadedServer | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ set-up from tests

    def add_login_code(self, code: str, openid: str, *, unionid: str | None = None,
                       session_key: str | None = None) -> str:
        """A wx.login() code; returns its session_key (base64 of 16 bytes, like WeChat's)."""
        session_key = session_key or base64.b64encode(os.urandom(16)).decode()
        self.login_codes[code] = _Login(openid=openid, session_key=session_key, unionid=unionid)
        return session_key

    def add_phone_code(self, code: str, phone: str, country_code: str = "86") -> None:
        self.phone_codes[code] = (phone, country_code)

    def add_wecom_code(self, code: str, userid: str) -> None:
        self.wecom_codes[code] = userid

    def add_external_contact(self, external_userid: str, name: str, *, unionid: str | None = None,
                             follow_userids: list[str] | None = None) -> None:
        self.external_contacts[external_userid] = _Contact(external_userid, name, unionid, follow_userids or [])

    def refuse_subscribe(self, openid: str) -> None:
        """This user has not accepted (or has used up) subscribe templates: sends answer 43101."""
        self.refused_openids.add(openid)

    def fail_token_once(self, kind: str = "mini", errcode: int = 40001) -> None:
        """The next API call of `kind` ("mini"/"wecom") is refused with `errcode`, and the token it
        carried stops working (as when another system fetched a new token)."""
        self._fail_once[kind] = errcode

    def settings(self) -> dict[str, Any]:
        """Settings field name → value that point CareLoop at this fake."""
        return {
            "wechat_api_base_url": self.base_url, "wecom_api_base_url": self.base_url,
            "wechat_mini_appid": self.appid, "wechat_mini_secret": self.secret,
            "wecom_corp_id": self.corp_id, "wecom_agent_id": self.agent_id, "wecom_secret": self.corp_secret,
            "wecom_callback_token": self.callback_token, "wecom_callback_aes_key": self.callback_aes_key,
        }

    # ------------------------------------------------------------------ WeCom's side of callbacks

    def callback_crypto(self) -> WeComCallbackCrypto:
        return WeComCallbackCrypto(self.callback_token, self.callback_aes_key, self.corp_id)

    def callback_request(self, xml: str, *, timestamp: int | None = None,
                         nonce: str | None = None) -> tuple[dict[str, str], bytes]:
        """(query parameters, body) of the POST WeCom makes to deliver `xml`."""
        timestamp_text, nonce = str(timestamp or int(time.time())), nonce or secrets.token_hex(8)
        body = self.callback_crypto().encrypt_message(xml, nonce, timestamp_text)
        encrypted = body.decode().split("<Encrypt><![CDATA[", 1)[1].split("]]>", 1)[0]
        signature = self.callback_crypto().signature(timestamp_text, nonce, encrypted)
        return {"msg_signature": signature, "timestamp": timestamp_text, "nonce": nonce}, body

    def url_verification(self, echo: str, *, timestamp: int | None = None,
                         nonce: str | None = None) -> dict[str, str]:
        """Query parameters of WeCom's URL verification GET whose right answer is `echo`."""
        timestamp_text, nonce = str(timestamp or int(time.time())), nonce or secrets.token_hex(8)
        crypto = self.callback_crypto()
        echostr = crypto.encrypt_echostr(echo)
        return {"msg_signature": crypto.signature(timestamp_text, nonce, echostr), "timestamp": timestamp_text,
                "nonce": nonce, "echostr": echostr}

    def external_contact_event(self, change_type: str, external_userid: str, userid: str, *,
                               state: str | None = None, welcome_code: str | None = None) -> str:
        extra = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in (("State", state), ("WelcomeCode", welcome_code))
                        if v)
        return (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]>"
                f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
                f"<Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[{change_type}]]>"
                f"</ChangeType><UserID><![CDATA[{userid}]]></UserID><ExternalUserID><![CDATA[{external_userid}]]>"
                f"</ExternalUserID>{extra}</xml>")

    def msgaudit_event(self) -> str:
        return (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]>"
                f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
                f"<AgentID>{self.agent_id}</AgentID><Event><![CDATA[msgaudit_notify]]></Event></xml>")

    def encrypt_phone(self, session_key: str, phone: str) -> tuple[str, str]:
        return encrypt_phone_payload(self.appid, session_key, phone)

    # ------------------------------------------------------------------ the server

    async def _new_token(self, kind: str) -> JSONResponse:
        with self._lock:
            self.token_requests[kind] += 1
            self._serial += 1
            token = f"fake-{kind}-token-{self._serial}-{secrets.token_hex(4)}"
        if self.token_delay:
            import asyncio

            await asyncio.sleep(self.token_delay)
        self._valid_tokens[kind].add(token)
        return _ok(access_token=token, expires_in=7200)

    def _token_problem(self, kind: str, request: Request) -> JSONResponse | None:
        token = request.query_params.get("access_token", "")
        if not token:
            return _err(41001, "access_token missing")
        with self._lock:
            errcode = self._fail_once.pop(kind, None)
            if errcode is not None:
                self._valid_tokens[kind].discard(token)
                return _err(errcode, "invalid credential, access_token is invalid or not latest")
        if token not in self._valid_tokens[kind]:
            return _err(40001, "invalid credential, access_token is invalid or not latest")
        return None

    def _count(self, request: Request) -> None:
        with self._lock:
            self.calls[request.url.path] += 1

    async def _mini_token(self, request: Request) -> JSONResponse:
        self._count(request)
        q = request.query_params
        if q.get("appid") != self.appid:
            return _err(40013, "invalid appid")
        if q.get("secret") != self.secret:
            return _err(40125, "invalid appsecret")
        return await self._new_token("mini")

    async def _code2session(self, request: Request) -> JSONResponse:
        self._count(request)
        q = request.query_params
        if q.get("appid") != self.appid or q.get("secret") != self.secret:
            return _err(40013, "invalid appid")
        code = q.get("js_code", "")
        with self._lock:
            if code in self.used_codes:
                return _err(40163, "code been used")
            login = self.login_codes.get(code)
            if login is None and self.open_mode and code:
                openid = "o" + hashlib.sha256(code.encode()).hexdigest()[:27]
                login = _Login(openid=openid, session_key=base64.b64encode(os.urandom(16)).decode())
            if login is None:
                return _err(40029, "invalid code")
            self.used_codes.add(code)
        body = {"openid": login.openid, "session_key": login.session_key}
        if login.unionid:
            body["unionid"] = login.unionid
        return JSONResponse(body)  # WeChat omits errcode on success here

    async def _phone_number(self, request: Request) -> JSONResponse:
        self._count(request)
        if problem := self._token_problem("mini", request):
            return problem
        code = (await request.json()).get("code", "")
        found = self.phone_codes.pop(code, None)
        if found is None and self.open_mode and code.isdigit():
            found = (code, "86")
        if found is None:
            return _err(40029, "invalid code")
        phone, cc = found
        return _ok(phone_info={"phoneNumber": phone if cc == "86" else f"+{cc}{phone}", "purePhoneNumber": phone,
                               "countryCode": cc, "watermark": {"timestamp": int(time.time()), "appid": self.appid}})

    async def _subscribe_send(self, request: Request) -> JSONResponse:
        self._count(request)
        if problem := self._token_problem("mini", request):
            return problem
        body = await request.json()
        if not body.get("touser") or not body.get("template_id"):
            return _err(47003, "argument invalid!")
        if body["touser"] in self.refused_openids:
            return _err(43101, "user refuse to accept the msg")
        self.subscribe_messages.append(body)
        return _ok(msgid=len(self.subscribe_messages))

    async def _wxacode_unlimited(self, request: Request) -> Response:
        self._count(request)
        if problem := self._token_problem("mini", request):
            return problem
        body = await request.json()
        scene = body.get("scene")
        # WeChat's rule for scenes: 1–32 visible characters from this set, else 40129 "invalid scene".
        allowed = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#$&'()*+,/:;=?@-._~")
        if not isinstance(scene, str) or not 1 <= len(scene) <= 32 or not set(scene) <= allowed:
            return _err(40129, "invalid scene")
        width = min(max(int(body.get("width") or 430), 280), 1280)
        self.wxacodes.append(body)
        return Response(_wxacode_png(scene, width), media_type="image/png")

    async def _wecom_token(self, request: Request) -> JSONResponse:
        self._count(request)
        q = request.query_params
        if q.get("corpid") != self.corp_id:
            return _err(40013, "invalid corpid")
        if q.get("corpsecret") != self.corp_secret:
            return _err(40001, "invalid secret")
        return await self._new_token("wecom")

    async def _getuserinfo(self, request: Request) -> JSONResponse:
        self._count(request)
        if problem := self._token_problem("wecom", request):
            return problem
        code = request.query_params.get("code", "")
        with self._lock:
            if code in self.used_codes:
                return _err(40029, "invalid code")
            userid = self.wecom_codes.get(code) or (code if self.open_mode and code else None)
            if userid is None:
                return _err(40029, "invalid code")
            self.used_codes.add(code)
        return _ok(userid=userid, user_ticket=secrets.token_hex(8))

    async def _message_send(self, request: Request) -> JSONResponse:
        self._count(request)
        if problem := self._token_problem("wecom", request):
            return problem
        body = await request.json()
        if str(body.get("agentid")) != self.agent_id:
            return _err(40056, "invalid agentid")
        self.staff_messages.append(body)
        return _ok(invaliduser="", msgid=secrets.token_hex(8))

    async def _external_contact(self, request: Request) -> JSONResponse:
        self._count(request)
        if problem := self._token_problem("wecom", request):
            return problem
        external_userid = request.query_params.get("external_userid", "")
        contact = self.external_contacts.get(external_userid)
        if contact is None and self.open_mode and external_userid:
            contact = _Contact(external_userid, f"客户{external_userid[-4:]}")
        if contact is None:
            return _err(84061, "not external contact")
        detail = {"external_userid": contact.external_userid, "name": contact.name, "type": 1}
        if contact.unionid:
            detail["unionid"] = contact.unionid
        return _ok(external_contact=detail,
                   follow_user=[{"userid": u, "remark": "", "createtime": int(time.time())}
                                for u in contact.follow_userids])

    async def _jsapi_ticket(self, request: Request) -> JSONResponse:
        self._count(request)
        if problem := self._token_problem("wecom", request):
            return problem
        return _ok(ticket=f"corp-ticket-{secrets.token_hex(6)}", expires_in=7200)

    async def _agent_ticket(self, request: Request) -> JSONResponse:
        self._count(request)
        if problem := self._token_problem("wecom", request):
            return problem
        if request.query_params.get("type") != "agent_config":
            return _err(40004, "invalid type")
        return _ok(ticket=f"agent-ticket-{secrets.token_hex(6)}", expires_in=7200)

    async def _state(self, request: Request) -> JSONResponse:
        return JSONResponse({"calls": dict(self.calls), "token_requests": dict(self.token_requests),
                             "subscribe_messages": self.subscribe_messages, "staff_messages": self.staff_messages})

    async def _setup(self, request: Request) -> JSONResponse:
        """Register codes and contacts over HTTP (for `careloop fake-wechat` users)."""
        body = await request.json()
        for item in body.get("login_codes", []):
            item["session_key"] = self.add_login_code(item["code"], item["openid"], unionid=item.get("unionid"))
        for item in body.get("phone_codes", []):
            self.add_phone_code(item["code"], item["phone"], item.get("country_code", "86"))
        for item in body.get("wecom_codes", []):
            self.add_wecom_code(item["code"], item["userid"])
        for item in body.get("external_contacts", []):
            self.add_external_contact(item["external_userid"], item.get("name", "客户"), unionid=item.get("unionid"),
                                      follow_userids=item.get("follow_userids"))
        for openid in body.get("refuse_subscribe", []):
            self.refuse_subscribe(openid)
        return _ok(**body)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/cgi-bin/token", self._mini_token),
            Route("/sns/jscode2session", self._code2session),
            Route("/wxa/business/getuserphonenumber", self._phone_number, methods=["POST"]),
            Route("/cgi-bin/message/subscribe/send", self._subscribe_send, methods=["POST"]),
            Route("/wxa/getwxacodeunlimit", self._wxacode_unlimited, methods=["POST"]),
            Route("/cgi-bin/gettoken", self._wecom_token),
            Route("/cgi-bin/auth/getuserinfo", self._getuserinfo),
            Route("/cgi-bin/user/getuserinfo", self._getuserinfo),
            Route("/cgi-bin/message/send", self._message_send, methods=["POST"]),
            Route("/cgi-bin/externalcontact/get", self._external_contact),
            Route("/cgi-bin/get_jsapi_ticket", self._jsapi_ticket),
            Route("/cgi-bin/ticket/get", self._agent_ticket),
            Route("/__fake__/state", self._state),
            Route("/__fake__/setup", self._setup, methods=["POST"]),
        ])

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the fake is not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> FakeWeChat:
        self._server = ThreadedServer(self.app(), "fake-wechat")
        self.port = self._server.start("127.0.0.1", port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    def __enter__(self) -> FakeWeChat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(host: str = "127.0.0.1", port: int = 9009) -> None:
    """`careloop fake-wechat`: the fake in open mode, in the foreground."""
    fake = FakeWeChat(open_mode=True)
    fake.port = port
    shown = {k: (v.replace("127.0.0.1", host) if isinstance(v, str) else v) for k, v in fake.settings().items()}
    print(f"Fake WeChat + WeCom on http://{host}:{port} — point CareLoop at it with:\n", flush=True)
    for name, value in shown.items():
        print(f"  export {name.upper()}={value}")
    print("\nOpen mode: any wx.login code signs in (openid derived from it); a phone code that is a phone number "
          "proves it;\nany WeCom OAuth code is the userid of that name. POST /__fake__/setup to register more; "
          "GET /__fake__/state for call counts.\n", flush=True)
    uvicorn.run(fake.app(), host=host, port=port, log_level="info")
