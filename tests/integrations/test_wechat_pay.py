"""WeChat Pay v3 client against the local fake over real HTTP: signatures both ways, notifications, errors."""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import socket
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from app.core.settings import get_settings
from app.integrations.wechat.pay import (
    NotificationRejected,
    PayConfigError,
    PayError,
    WeChatPayClient,
    authorization_header,
    get_pay_client,
    parse_platform_keys,
    pay_config,
    response_message,
    sign,
    verify_wechat_signature,
)
from tests.fakes import FakeWeChatPay, fake_pay_thread, pay_settings


@pytest.fixture(scope="module")
def fake():
    with fake_pay_thread() as f:
        yield f


@pytest.fixture
def pay(fake: FakeWeChatPay) -> WeChatPayClient:
    fake.tamper_responses = False
    return WeChatPayClient(fake.pay_config())


def _otn() -> str:
    return "T" + secrets.token_hex(8)


async def _order(pay: WeChatPayClient, total: int = 12_800) -> tuple[str, str]:
    otn = _otn()
    prepay_id = await pay.create_jsapi_order(
        out_trade_no=otn, description="理疗次卡 10 次", total_fen=total, payer_openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        expires_at=datetime.now(UTC) + timedelta(minutes=15))
    return otn, prepay_id


async def test_prepay_round_trip_and_pay_sign(fake: FakeWeChatPay, pay: WeChatPayClient) -> None:
    otn, prepay_id = await _order(pay)
    assert prepay_id.startswith("wx")
    sent = fake.requests[-1]["json"]
    assert sent["amount"] == {"total": 12_800, "currency": "CNY"}
    assert sent["payer"] == {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}
    assert sent["appid"] == fake.appid and sent["mchid"] == fake.mchid
    assert sent["time_expire"].endswith("+08:00") and sent["notify_url"] == pay.config.notify_url
    # Same out_trade_no and parameters: WeChat hands back the same prepay order.
    again = await pay.create_jsapi_order(out_trade_no=otn, description="理疗次卡 10 次", total_fen=12_800,
                                         payer_openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
                                         expires_at=datetime.now(UTC) + timedelta(minutes=15))
    assert again == prepay_id

    params = pay.mini_program_params(prepay_id)
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["package"] == f"prepay_id={prepay_id}" and params["signType"] == "RSA"
    message = f"{fake.appid}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n".encode()
    fake.merchant_key.public_key().verify(base64.b64decode(params["paySign"]), message,
                                          padding.PKCS1v15(), hashes.SHA256())

    order = await pay.query_order(otn)
    assert order["trade_state"] == "NOTPAY" and order["amount"]["total"] == 12_800
    fake.pay(otn)
    order = await pay.query_order(otn)
    assert order["trade_state"] == "SUCCESS" and order["transaction_id"]


async def test_fake_rejects_a_wrong_request_signature(fake: FakeWeChatPay, pay: WeChatPayClient) -> None:
    impostor = WeChatPayClient(dataclasses.replace(
        pay.config, merchant_private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    with pytest.raises(PayError) as err:
        await impostor.query_order(_otn())
    assert err.value.wechat_code == "SIGN_ERROR" and err.value.http_status == 401
    assert err.value.verified is False  # WeChat does not sign answers to requests it cannot authenticate

    # A body changed after signing fails too: the signature covers the body.
    path = "/v3/pay/transactions/out-trade-no/" + _otn() + "/close"
    auth = authorization_header(fake.mchid, fake.merchant_serial_no, fake.merchant_key, "POST", path,
                                b'{"mchid":"%s"}' % fake.mchid.encode())
    async with httpx.AsyncClient() as http:
        r = await http.post(fake.base_url + path, content=b'{"mchid":"other"}',
                            headers={"Authorization": auth, "User-Agent": "t", "Content-Type": "application/json"})
    assert r.status_code == 401 and r.json()["code"] == "SIGN_ERROR"


async def test_client_rejects_unverifiable_answers(fake: FakeWeChatPay, pay: WeChatPayClient) -> None:
    otn, _ = await _order(pay)
    fake.tamper_responses = True
    try:
        with pytest.raises(PayError) as err:
            await pay.query_order(otn)
        assert err.value.wechat_code is None and "verification" in err.value.detail
        with pytest.raises(PayError):  # an empty 204 is signed too
            await pay.close_order(otn)
    finally:
        fake.tamper_responses = False
    assert fake.orders[otn]["trade_state"] == "CLOSED"  # the call went through; only its answer was distrusted

    stranger = WeChatPayClient(dataclasses.replace(pay.config, platform_public_keys={
        "SOMEONE-ELSE": rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()}))
    with pytest.raises(PayError) as err:
        await stranger.query_order(otn)
    assert "unknown_serial" in err.value.detail


async def test_notification_is_verified_and_decrypted(fake: FakeWeChatPay, pay: WeChatPayClient) -> None:
    otn, _ = await _order(pay, total=9_900)
    headers, body = fake.notification(otn)
    parsed = pay.parse_notification(headers, body)
    assert parsed["event_type"] == "TRANSACTION.SUCCESS" and parsed["id"]
    resource = parsed["resource"]
    assert resource["out_trade_no"] == otn and resource["trade_state"] == "SUCCESS"
    assert resource["amount"]["total"] == 9_900 and resource["transaction_id"]
    # Header names are case-insensitive on the wire.
    assert pay.parse_notification({k.lower(): v for k, v in headers.items()}, body)["resource"] == resource


@pytest.mark.parametrize(("kwargs", "code", "status"), [
    ({"bad_signature": True}, "bad_signature", 401),
    ({"serial": "PUB_KEY_ID_UNKNOWN"}, "unknown_serial", 401),
    # Offsets from the moment the test runs (collection may happen minutes earlier).
    ({"timestamp_offset": -301}, "stale_timestamp", 401),
    ({"timestamp_offset": 400}, "stale_timestamp", 401),
    ({"tamper": True}, "undecryptable", 400),
])
async def test_forged_notifications_are_rejected(fake: FakeWeChatPay, pay: WeChatPayClient, kwargs, code,
                                                 status) -> None:
    otn, _ = await _order(pay)
    if "timestamp_offset" in kwargs:
        kwargs = {"timestamp": int(time.time()) + kwargs["timestamp_offset"]}
    headers, body = fake.notification(otn, **kwargs)
    with pytest.raises(NotificationRejected) as err:
        pay.parse_notification(headers, body)
    assert err.value.code == code and err.value.status == status


async def test_notification_edge_cases(fake: FakeWeChatPay, pay: WeChatPayClient) -> None:
    otn, _ = await _order(pay)
    headers, body = fake.notification(otn)
    # A body edited after signing.
    with pytest.raises(NotificationRejected) as err:
        pay.parse_notification(headers, body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCESS "))
    assert err.value.code == "bad_signature"
    # Valid now, stale when checked six minutes later (a replay).
    with pytest.raises(NotificationRejected) as err:
        pay.parse_notification(headers, body, now=datetime.now(UTC) + timedelta(minutes=6))
    assert err.value.code == "stale_timestamp"
    # Missing headers.
    with pytest.raises(NotificationRejected) as err:
        pay.parse_notification({"Content-Type": "application/json"}, body)
    assert err.value.code == "bad_signature"
    # Authentic but not a notification.
    junk = b"not json"
    with pytest.raises(NotificationRejected) as err:
        pay.parse_notification(fake.sign_response(junk), junk)
    assert err.value.code == "malformed"
    # Forged amount survives verification: checking it against the order is the caller's job.
    headers, body = fake.notification(otn, amount=1)
    assert pay.parse_notification(headers, body)["resource"]["amount"]["total"] == 1


async def test_query_and_close(fake: FakeWeChatPay, pay: WeChatPayClient) -> None:
    otn, _ = await _order(pay)
    assert await pay.close_order(otn) is None
    assert (await pay.query_order(otn))["trade_state"] == "CLOSED"

    paid, _ = await _order(pay)
    fake.pay(paid)
    with pytest.raises(PayError) as err:
        await pay.close_order(paid)
    assert err.value.wechat_code == "ORDERPAID" and err.value.verified

    with pytest.raises(PayError) as err:
        await pay.query_order(_otn())
    assert err.value.wechat_code == "ORDER_NOT_EXIST" and err.value.http_status == 404


async def test_refund_round_trip_and_notification(fake: FakeWeChatPay, pay: WeChatPayClient) -> None:
    otn, _ = await _order(pay, total=30_000)
    fake.pay(otn)
    refund = await pay.refund(out_trade_no=otn, out_refund_no="R" + otn, refund_fen=10_000, total_fen=30_000,
                              reason="疗程未完成")
    assert refund["status"] == "PROCESSING" and refund["amount"]["refund"] == 10_000
    sent = fake.requests[-1]["json"]
    assert sent["notify_url"] == pay.config.notify_url + "/refund" == pay.config.refund_notify_url
    assert sent["amount"] == {"refund": 10_000, "total": 30_000, "currency": "CNY"}

    headers, body = fake.refund_notification("R" + otn)
    parsed = pay.parse_notification(headers, body)
    assert parsed["event_type"] == "REFUND.SUCCESS"
    assert parsed["resource"]["out_refund_no"] == "R" + otn and parsed["resource"]["refund_status"] == "SUCCESS"
    assert parsed["resource"]["amount"]["refund"] == 10_000
    assert (await pay.query_refund("R" + otn))["status"] == "SUCCESS"

    with pytest.raises(PayError) as err:  # more than what is left
        await pay.refund(out_trade_no=otn, out_refund_no="R2" + otn, refund_fen=20_001, total_fen=30_000,
                         reason=None)
    assert err.value.wechat_code == "INVALID_REQUEST"


async def test_wechat_api_error_becomes_pay_error(fake: FakeWeChatPay, pay: WeChatPayClient) -> None:
    fake.fail_next(400, "PARAM_ERROR", "参数错误")
    with pytest.raises(PayError) as err:
        await _order(pay)
    e = err.value
    assert (e.status, e.code, e.wechat_code, e.wechat_message, e.http_status, e.verified) == (
        502, "wechat_pay_error", "PARAM_ERROR", "参数错误", 400, True)
    problem = e.problem()
    assert problem["code"] == "wechat_pay_error" and problem["wechat_code"] == "PARAM_ERROR"


async def test_unreachable_wechat_is_a_pay_error(pay: WeChatPayClient) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = WeChatPayClient(dataclasses.replace(pay.config, base_url=f"http://127.0.0.1:{port}"))
    with pytest.raises(PayError) as err:
        await down.query_order(_otn())
    assert err.value.wechat_code is None and "unreachable" in err.value.detail


async def test_caller_owned_http_client(fake: FakeWeChatPay, pay: WeChatPayClient) -> None:
    async with httpx.AsyncClient() as http:
        shared = WeChatPayClient(pay.config, http)
        otn, _ = await _order(shared)
        assert (await shared.query_order(otn))["out_trade_no"] == otn


async def test_bad_arguments_never_reach_wechat(pay: WeChatPayClient) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=15)
    for kwargs in ({"total_fen": 12.5}, {"total_fen": 0}, {"total_fen": True}, {"out_trade_no": "../x?y=1"},
                   {"expires_at": datetime.now() + timedelta(minutes=15)}):
        args = {"out_trade_no": _otn(), "description": "x", "total_fen": 100, "payer_openid": "o", "expires_at": soon}
        with pytest.raises(ValueError):
            await pay.create_jsapi_order(**(args | kwargs))
    with pytest.raises(ValueError):
        await pay.refund(out_trade_no=_otn(), out_refund_no="R1", refund_fen=200, total_fen=100, reason=None)


def test_settings(fake: FakeWeChatPay, tmp_path) -> None:
    base = get_settings()
    assert pay_config(base.model_copy(update={"wechat_pay_mchid": None})) is None
    assert get_pay_client(base.model_copy(update={"wechat_pay_mchid": None})) is None
    with pytest.raises(PayConfigError, match="WECHAT_PAY_API_V3_KEY"):
        pay_config(base.model_copy(update=pay_settings(fake) | {"wechat_pay_api_v3_key": None}))

    # Private key from a file; platform keys: a certificate (serial from the certificate) and a public key.
    key_file = tmp_path / "apiclient_key.pem"
    key_file.write_text(pay_settings(fake)["wechat_pay_private_key"])
    cert_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(cert_key.public_key())
            .serial_number(0x3775B6A45ACD5E2C4F7A1B).not_valid_before(datetime.now(UTC))
            .not_valid_after(datetime.now(UTC) + timedelta(days=1)).sign(cert_key, hashes.SHA256()))
    (tmp_path / "wechatpay.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "pub_key.pem").write_text(pay_settings(fake)["wechat_pay_platform_certs"].partition(":")[2])
    spec = f"{tmp_path / 'wechatpay.pem'},{fake.platform_serial_no}:{tmp_path / 'pub_key.pem'}"
    assert set(parse_platform_keys(spec)) == {"3775B6A45ACD5E2C4F7A1B", fake.platform_serial_no}
    client = get_pay_client(base.model_copy(update=pay_settings(fake) | {
        "wechat_pay_private_key": None, "wechat_pay_private_key_file": key_file, "wechat_pay_platform_certs": spec}))
    assert client is not None and client.config.order_timeout_minutes == 15
    assert client.config.api_v3_key == fake.api_v3_key.encode()


def test_fake_notification_body_is_wechat_shaped(fake: FakeWeChatPay) -> None:
    headers, body = fake.notification("U" + secrets.token_hex(8), amount=500)
    envelope = json.loads(body)
    assert envelope["resource_type"] == "encrypt-resource"
    assert set(envelope["resource"]) == {"original_type", "algorithm", "ciphertext", "associated_data", "nonce"}
    assert {"Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial"} <= set(headers)


def test_certificate_serials_match_as_numbers_whatever_their_leading_zeros(tmp_path) -> None:
    """WeChat writes a certificate serial as 40 hex digits, so one that starts with 0 arrives with its zero;
    the certificate's own number has none. Both (and any case) must name the same key."""
    platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA")])
    number = 0x0B3A5F09EFDC096DE15EBE81A47057A7232F1B8E
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(platform_key.public_key())
            .serial_number(number).not_valid_before(datetime.now(UTC))
            .not_valid_after(datetime.now(UTC) + timedelta(days=1)).sign(platform_key, hashes.SHA256()))
    pem_file = tmp_path / "wechatpay.pem"
    pem_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    as_sent = f"{number:040X}"
    assert as_sent.startswith("0B3A")

    timestamp, nonce, body = str(int(time.time())), secrets.token_hex(8), b'{"code":"SUCCESS"}'
    signature = sign(platform_key, response_message(timestamp, nonce, body))
    for spec in (str(pem_file), f"{as_sent.lower()}:{pem_file}", f"{as_sent[1:]}:{pem_file}"):
        keys = parse_platform_keys(spec)
        for header_serial in (as_sent, as_sent.lower(), as_sent[1:], f"00{as_sent}"):
            verify_wechat_signature(keys, {"Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce,
                                           "Wechatpay-Signature": signature, "Wechatpay-Serial": header_serial},
                                    body)
    with pytest.raises(NotificationRejected, match="unknown"):
        verify_wechat_signature(parse_platform_keys(str(pem_file)), {
            "Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": signature,
            "Wechatpay-Serial": f"{number + 1:040X}"}, body)
