"""A local fake of WeChat Pay API v3, served over real HTTP (uvicorn in a background thread): by the tests,
and by `careloop fake-wechat` next to the fake WeChat/WeCom server so the payment flow can be tried offline.

It behaves like WeChat where our code can tell the difference: it verifies our `Authorization` signature with
the merchant public key (401 SIGN_ERROR, unsigned, otherwise), keeps orders and refunds in memory, signs every
answer with its own platform key, and builds encrypted + signed notifications for tests to POST to us.
Keys are RSA-2048 made at test time (once per process, to keep the suite fast).

Use in a test:

    from tests.fakes import FakeWeChatPay, running_fake_pay, pay_settings, use_fake_pay

    async def test_checkout_with_wechat(client, monkeypatch):
        async with running_fake_pay() as fake:          # or a module-scoped fixture around it
            use_fake_pay(monkeypatch, fake, notify_url="https://careloop.test/api/v1/...")
            # get_settings() now carries the fake's WECHAT_PAY_* values, so code that calls
            # get_pay_client(get_settings()) at request time talks to the fake.
            ... create the order through the API; the mini-program params come back ...
            fake.pay(out_trade_no)                       # the patient paid: query shows SUCCESS
            headers, body = fake.notification(out_trade_no)
            r = await client.post("/api/v1/...notify", content=body, headers=headers)

`pay_settings(fake)` is the same as a dict of Settings field names -> values (for `Settings(**…)`,
`settings.model_copy(update=…)`, or env vars via `name.upper()`); `fake.pay_config()` gives a PayConfig
directly. Knobs: `fake.tamper_responses = True` (answers carry a signature that does not verify),
`fake.fail_next(400, "PARAM_ERROR", "…")` (the next API call fails with that signed error),
`fake.complete_refund(out_refund_no)`, `fake.requests` (what we sent, for assertions).
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.integrations.local_server import ThreadedServer
from app.integrations.wechat.pay import (
    AUTH_SCHEMA,
    MAX_CLOCK_SKEW_SECONDS,
    PayConfig,
    encrypt_resource,
    new_nonce,
    pay_config,
    request_message,
    response_message,
    rfc3339,
    sign,
    verify,
)


@lru_cache(maxsize=4)
def _key(name: str) -> RSAPrivateKey:
    # Generating RSA-2048 costs ~0.1 s; one key per role per process is enough for isolation by ids.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key: RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _now_rfc3339() -> str:
    return rfc3339(datetime.now(UTC))


class _Fail(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message


class FakeWeChatPay:
    def __init__(self, *, mchid: str = "1900000109", appid: str = "wxd678efh567hg6787") -> None:
        self.mchid, self.appid = mchid, appid
        self.merchant_key = _key("merchant")
        self.merchant_serial_no = "5157F09EFDC096DE15EBE81A47057A72" + secrets.token_hex(4).upper()
        self.platform_key = _key("platform")
        self.platform_serial_no = "PUB_KEY_ID_0119000010920250101" + secrets.token_hex(4).upper()
        self.api_v3_key = secrets.token_hex(16)  # 32 ASCII characters, like the merchant-console key
        self.orders: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []  # every authenticated call: method, path, json
        self.tamper_responses = False
        self._failures: list[_Fail] = []
        self._lock = threading.Lock()
        self._server: ThreadedServer | None = None
        self.port: int | None = None
        self.host = "127.0.0.1"

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        assert self.port, "the fake is not running"
        return f"http://{self.host}:{self.port}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeWeChatPay:
        """Serve on `host`:`port` (0: a free port)."""
        self._server = ThreadedServer(self._app(), "fake-wechat-pay")
        self.port = self._server.start(host, port)
        self.host = host
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    def __enter__(self) -> FakeWeChatPay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ what tests configure us with

    def settings(self, *, notify_url: str = "https://careloop.test/api/v1/payments/wechat/notify") -> dict[str, Any]:
        return {
            "wechat_pay_base_url": self.base_url,
            "wechat_pay_mchid": self.mchid,
            "wechat_pay_appid": self.appid,
            "wechat_pay_serial_no": self.merchant_serial_no,
            "wechat_pay_private_key": private_pem(self.merchant_key),
            "wechat_pay_private_key_file": None,
            "wechat_pay_api_v3_key": self.api_v3_key,
            "wechat_pay_platform_certs": f"{self.platform_serial_no}:{public_pem(self.platform_key)}",
            "wechat_pay_notify_url": notify_url,
        }

    def pay_config(self, **kwargs: Any) -> PayConfig:
        from app.core.settings import get_settings

        config = pay_config(get_settings().model_copy(update=self.settings(**kwargs)))
        assert config is not None
        return config

    # ------------------------------------------------------------------ test controls

    def fail_next(self, status: int = 400, code: str = "PARAM_ERROR", message: str = "参数错误") -> None:
        with self._lock:
            self._failures.append(_Fail(status, code, message))

    def pay(self, out_trade_no: str, *, openid: str | None = None) -> dict[str, Any]:
        """The patient paid: the order becomes SUCCESS with a transaction id (as query_order will show)."""
        with self._lock:
            order = self.orders[out_trade_no]
            if order["trade_state"] != "SUCCESS":
                order.update(trade_state="SUCCESS", trade_state_desc="支付成功", bank_type="OTHERS",
                             transaction_id="4200001234" + time.strftime("%Y%m%d") + secrets.token_hex(5),
                             success_time=_now_rfc3339())
                order["amount"]["payer_total"] = order["amount"]["total"]
                if openid:
                    order["payer"] = {"openid": openid}
            return self._order_view(order)

    def complete_refund(self, out_refund_no: str, status: str = "SUCCESS") -> dict[str, Any]:
        with self._lock:
            refund = self.refunds[out_refund_no]
            refund["status"] = status
            if status == "SUCCESS":
                refund["success_time"] = _now_rfc3339()
            return dict(refund)

    def notification(self, out_trade_no: str, *, event_type: str = "TRANSACTION.SUCCESS",
                     amount: int | None = None, timestamp: int | None = None, tamper: bool = False,
                     bad_signature: bool = False, serial: str | None = None) -> tuple[dict[str, str], bytes]:
        """A payment notification as WeChat would POST it. A known order is marked paid first (WeChat
        notifies after payment); an unknown one needs `amount`. `amount` overrides the notified total
        (forgery tests), `timestamp` the signed time (unix seconds), `tamper` corrupts the ciphertext
        (still correctly signed, so only decryption fails), `bad_signature` signs with another key,
        `serial` names another platform key."""
        if out_trade_no in self.orders and event_type == "TRANSACTION.SUCCESS":
            resource = self.pay(out_trade_no)
        elif out_trade_no in self.orders:
            with self._lock:
                resource = self._order_view(self.orders[out_trade_no])
        else:
            if amount is None:
                raise KeyError(f"unknown order {out_trade_no}: pass amount=")
            resource = {"appid": self.appid, "mchid": self.mchid, "out_trade_no": out_trade_no,
                        "transaction_id": "4200009999" + secrets.token_hex(6), "trade_type": "JSAPI",
                        "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
                        "attach": "", "success_time": _now_rfc3339(), "payer": {"openid": "o-unknown"},
                        "amount": {"total": amount, "payer_total": amount, "currency": "CNY",
                                   "payer_currency": "CNY"}}
        if amount is not None:
            resource["amount"] = dict(resource["amount"], total=amount, payer_total=amount)
        return self._notify(event_type, "transaction", "支付成功", resource, timestamp=timestamp,
                            tamper=tamper, bad_signature=bad_signature, serial=serial)

    def refund_notification(self, out_refund_no: str, *, event_type: str = "REFUND.SUCCESS",
                            timestamp: int | None = None, tamper: bool = False, bad_signature: bool = False,
                            serial: str | None = None) -> tuple[dict[str, str], bytes]:
        """A refund result notification; the refund is first moved to the state the event names."""
        status = {"REFUND.SUCCESS": "SUCCESS", "REFUND.ABNORMAL": "ABNORMAL", "REFUND.CLOSED": "CLOSED"}[event_type]
        refund = self.complete_refund(out_refund_no, status)
        resource = {"mchid": self.mchid, "out_trade_no": refund["out_trade_no"],
                    "transaction_id": refund["transaction_id"], "out_refund_no": out_refund_no,
                    "refund_id": refund["refund_id"], "refund_status": status,
                    "success_time": refund.get("success_time"),
                    "user_received_account": refund["user_received_account"],
                    "amount": {k: refund["amount"][k] for k in ("total", "refund", "payer_total", "payer_refund")}}
        return self._notify(event_type, "refund", "退款成功" if status == "SUCCESS" else "退款异常", resource,
                            timestamp=timestamp, tamper=tamper, bad_signature=bad_signature, serial=serial)

    def sign_response(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """WeChat's signature headers for any body (for hand-made notifications)."""
        ts, nonce = str(timestamp if timestamp is not None else int(time.time())), new_nonce()
        return {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce, "Wechatpay-Serial": self.platform_serial_no,
                "Wechatpay-Signature": sign(self.platform_key, response_message(ts, nonce, body)),
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}

    # ------------------------------------------------------------------ internals

    def _notify(self, event_type: str, original_type: str, summary: str, resource: dict[str, Any], *,
                timestamp: int | None, tamper: bool, bad_signature: bool,
                serial: str | None) -> tuple[dict[str, str], bytes]:
        encrypted = encrypt_resource(self.api_v3_key.encode(), json.dumps(resource, ensure_ascii=False).encode(),
                                     associated_data=original_type, original_type=original_type)
        if tamper:
            raw = bytearray(base64.b64decode(encrypted["ciphertext"]))
            raw[0] ^= 0x01
            encrypted["ciphertext"] = base64.b64encode(bytes(raw)).decode()
        envelope = {"id": str(uuid.uuid4()), "create_time": _now_rfc3339(), "resource_type": "encrypt-resource",
                    "event_type": event_type, "summary": summary, "resource": encrypted}
        body = json.dumps(envelope, ensure_ascii=False).encode()
        headers = self.sign_response(body, timestamp=timestamp)
        headers["Content-Type"] = "application/json"
        if bad_signature:
            ts, nonce = headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"]
            headers["Wechatpay-Signature"] = sign(_key("intruder"), response_message(ts, nonce, body))
        if serial is not None:
            headers["Wechatpay-Serial"] = serial
        return headers, body

    def _order_view(self, order: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in order.items() if k not in ("prepay_id", "description", "notify_url",
                                                             "time_expire", "refunded")}
        view["amount"] = dict(order["amount"])
        return json.loads(json.dumps(view))  # a deep copy the test may mutate

    def _signed(self, status: int, payload: Any | None) -> Response:
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        headers = self.sign_response(body)
        if self.tamper_responses:
            # Signed over something other than what is sent, as a man in the middle would produce.
            headers["Wechatpay-Signature"] = sign(self.platform_key, response_message(
                headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], body + b" "))
        headers["Request-ID"] = uuid.uuid4().hex
        return Response(body, status_code=status, headers=headers,
                        media_type="application/json" if body else None)

    def _authenticate(self, request: Request, body: bytes) -> str | None:
        """None when our request signature is right, else why not."""
        auth = request.headers.get("authorization", "")
        schema, _, params = auth.partition(" ")
        if schema != AUTH_SCHEMA:
            return "Authorization schema is not " + AUTH_SCHEMA
        fields: dict[str, str] = {}
        for part in params.split(","):
            name, _, value = part.strip().partition("=")
            fields[name] = value.strip('"')
        if set(fields) != {"mchid", "nonce_str", "signature", "timestamp", "serial_no"}:
            return "Authorization parameters are incomplete"
        if fields["mchid"] != self.mchid or fields["serial_no"] != self.merchant_serial_no:
            return "mchid or serial_no does not match"
        if not fields["timestamp"].isdigit() or abs(time.time() - int(fields["timestamp"])) > MAX_CLOCK_SKEW_SECONDS:
            return "timestamp expired"
        path = request.scope["raw_path"].decode()
        if request.scope["query_string"]:
            path += "?" + request.scope["query_string"].decode()
        message = request_message(request.method, path, fields["timestamp"], fields["nonce_str"], body)
        if not verify(self.merchant_key.public_key(), message, fields["signature"]):
            return "签名错误 (signature does not verify)"
        if not request.headers.get("user-agent"):
            return "User-Agent is required"
        return None

    def _app(self) -> Starlette:
        def endpoint(handler):
            async def run(request: Request) -> Response:
                body = await request.body()
                reason = self._authenticate(request, body)
                if reason:
                    # WeChat leaves its answer unsigned when it cannot tell who is asking.
                    return Response(json.dumps({"code": "SIGN_ERROR", "message": reason}, ensure_ascii=False),
                                    status_code=401, media_type="application/json")
                try:
                    payload = json.loads(body) if body else None
                except ValueError:
                    return self._signed(400, {"code": "PARAM_ERROR", "message": "body is not JSON"})
                with self._lock:
                    self.requests.append({"method": request.method, "path": request.url.path, "json": payload})
                    try:
                        if self._failures:
                            raise self._failures.pop(0)
                        status, answer = handler(request, payload)
                    except _Fail as fail:
                        return self._signed(fail.status, {"code": fail.code, "message": fail.message})
                return self._signed(status, answer)
            return run

        return Starlette(routes=[
            Route("/v3/pay/transactions/jsapi", endpoint(self._jsapi), methods=["POST"]),
            Route("/v3/pay/transactions/out-trade-no/{otn}", endpoint(self._query), methods=["GET"]),
            Route("/v3/pay/transactions/out-trade-no/{otn}/close", endpoint(self._close), methods=["POST"]),
            Route("/v3/refund/domestic/refunds", endpoint(self._refund), methods=["POST"]),
            Route("/v3/refund/domestic/refunds/{orn}", endpoint(self._query_refund), methods=["GET"]),
            # Not WeChat: lets a person trying CareLoop offline "pay" from the command line.
            Route("/__fake__/pay/{otn}", self._pay_and_notify, methods=["POST"]),
        ])

    async def _pay_and_notify(self, request: Request) -> Response:
        """Mark the order paid and deliver the signed notification to the notify_url it was created with."""
        import httpx

        out_trade_no = request.path_params["otn"]
        with self._lock:
            order = self.orders.get(out_trade_no)
        if order is None:
            return Response(json.dumps({"code": "ORDER_NOT_EXIST"}), status_code=404, media_type="application/json")
        headers, body = self.notification(out_trade_no)
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(order["notify_url"], content=body, headers=headers)
        return Response(json.dumps({"notified": order["notify_url"], "status": answer.status_code}),
                        media_type="application/json")

    # Handlers run under self._lock and return (status, json or None).

    def _jsapi(self, request: Request, p: Any) -> tuple[int, Any]:
        p = p if isinstance(p, dict) else {}
        amount, payer = p.get("amount") or {}, p.get("payer") or {}
        for name in ("appid", "mchid", "description", "out_trade_no", "notify_url"):
            if not isinstance(p.get(name), str) or not p[name]:
                raise _Fail(400, "PARAM_ERROR", f"输入源“/body/{name}”映射到字段“{name}”必填性规则校验失败")
        total = amount.get("total")
        if isinstance(total, bool) or not isinstance(total, int) or total <= 0:
            raise _Fail(400, "PARAM_ERROR", "amount.total must be a positive integer")
        if amount.get("currency", "CNY") != "CNY" or not payer.get("openid"):
            raise _Fail(400, "PARAM_ERROR", "currency must be CNY and payer.openid is required")
        if p["appid"] != self.appid or p["mchid"] != self.mchid:
            raise _Fail(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        existing = self.orders.get(p["out_trade_no"])
        if existing:
            if existing["trade_state"] == "SUCCESS":
                raise _Fail(400, "ORDERPAID", "该订单已支付")
            if existing["trade_state"] == "CLOSED":
                raise _Fail(400, "ORDERCLOSED", "该订单已关闭")
            if existing["amount"]["total"] != total or existing["description"] != p["description"]:
                raise _Fail(400, "INVALID_REQUEST", "201 商户订单号重复")
            return 200, {"prepay_id": existing["prepay_id"]}
        order = {"appid": self.appid, "mchid": self.mchid, "out_trade_no": p["out_trade_no"],
                 "trade_type": "JSAPI", "trade_state": "NOTPAY", "trade_state_desc": "订单未支付",
                 "payer": {"openid": payer["openid"]}, "amount": {"total": total, "currency": "CNY"},
                 "prepay_id": "wx" + time.strftime("%d%H%M%S") + secrets.token_hex(12),
                 "description": p["description"], "notify_url": p["notify_url"],
                 "time_expire": p.get("time_expire"), "refunded": 0}
        self.orders[p["out_trade_no"]] = order
        return 200, {"prepay_id": order["prepay_id"]}

    def _order(self, otn: str) -> dict[str, Any]:
        if otn not in self.orders:
            raise _Fail(404, "ORDER_NOT_EXIST", "订单不存在")
        return self.orders[otn]

    def _query(self, request: Request, _p: Any) -> tuple[int, Any]:
        if request.query_params.get("mchid") != self.mchid:
            raise _Fail(400, "PARAM_ERROR", "mchid is required and must match")
        return 200, self._order_view(self._order(request.path_params["otn"]))

    def _close(self, request: Request, p: Any) -> tuple[int, Any]:
        if not isinstance(p, dict) or p.get("mchid") != self.mchid:
            raise _Fail(400, "PARAM_ERROR", "mchid is required and must match")
        order = self._order(request.path_params["otn"])
        if order["trade_state"] in ("SUCCESS", "REFUND"):
            raise _Fail(400, "ORDERPAID", "订单已支付")
        order.update(trade_state="CLOSED", trade_state_desc="订单已关闭")
        return 204, None

    def _refund(self, request: Request, p: Any) -> tuple[int, Any]:
        p = p if isinstance(p, dict) else {}
        amount = p.get("amount") or {}
        if not p.get("out_trade_no") or not p.get("out_refund_no"):
            raise _Fail(400, "PARAM_ERROR", "out_trade_no and out_refund_no are required")
        refund_fen, total = amount.get("refund"), amount.get("total")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (refund_fen, total)) \
                or amount.get("currency") != "CNY":
            raise _Fail(400, "PARAM_ERROR", "amount.refund, amount.total (fen) and currency CNY are required")
        if p["out_trade_no"] not in self.orders:
            raise _Fail(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        order = self.orders[p["out_trade_no"]]
        existing = self.refunds.get(p["out_refund_no"])
        if existing:
            if existing["out_trade_no"] != p["out_trade_no"] or existing["amount"]["refund"] != refund_fen:
                raise _Fail(400, "INVALID_REQUEST", "退款单号重复且参数不一致")
            return 200, dict(existing)
        if order["trade_state"] not in ("SUCCESS", "REFUND"):
            raise _Fail(400, "INVALID_REQUEST", "订单未支付")
        if total != order["amount"]["total"]:
            raise _Fail(400, "INVALID_REQUEST", "订单金额与原订单不一致")
        if order["refunded"] + refund_fen > total:
            raise _Fail(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        order["refunded"] += refund_fen
        order.update(trade_state="REFUND", trade_state_desc="转入退款")
        refund = {"refund_id": "50300" + secrets.token_hex(10), "out_refund_no": p["out_refund_no"],
                  "transaction_id": order.get("transaction_id"), "out_trade_no": p["out_trade_no"],
                  "channel": "ORIGINAL", "user_received_account": "支付用户零钱", "create_time": _now_rfc3339(),
                  "status": "PROCESSING", "funds_account": "AVAILABLE", "reason": p.get("reason"),
                  "notify_url": p.get("notify_url"),
                  "amount": {"total": total, "refund": refund_fen, "payer_total": total,
                             "payer_refund": refund_fen, "settlement_total": total,
                             "settlement_refund": refund_fen, "discount_refund": 0, "currency": "CNY"}}
        self.refunds[p["out_refund_no"]] = refund
        return 200, dict(refund)

    def _query_refund(self, request: Request, _p: Any) -> tuple[int, Any]:
        refund = self.refunds.get(request.path_params["orn"])
        if refund is None:
            raise _Fail(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return 200, dict(refund)


# ---------------------------------------------------------------------- helpers for other tests


@contextlib.asynccontextmanager
async def running_fake_pay(**kwargs: Any) -> AsyncIterator[FakeWeChatPay]:
    """`async with running_fake_pay() as fake:` — a started fake, stopped afterwards."""
    import asyncio

    fake = FakeWeChatPay(**kwargs)
    await asyncio.to_thread(fake.start)
    try:
        yield fake
    finally:
        await asyncio.to_thread(fake.stop)


def pay_settings(fake: FakeWeChatPay, **kwargs: Any) -> dict[str, Any]:
    """Settings field name -> value that point the app at `fake` (kwargs: notify_url)."""
    return fake.settings(**kwargs)


def use_fake_pay(monkeypatch: Any, fake: FakeWeChatPay, settings: Any = None, **kwargs: Any) -> None:
    """Point the process-wide settings (get_settings(), or `settings`) at the fake for one test;
    monkeypatch restores them afterwards."""
    if settings is None:
        from app.core.settings import get_settings

        settings = get_settings()
    for name, value in pay_settings(fake, **kwargs).items():
        monkeypatch.setattr(settings, name, value)


@contextlib.contextmanager
def fake_pay_thread(**kwargs: Any) -> Iterator[FakeWeChatPay]:
    """The same as running_fake_pay for synchronous (e.g. module-scoped) fixtures."""
    with FakeWeChatPay(**kwargs) as fake:
        yield fake
