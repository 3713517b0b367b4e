"""Mini-program and WeCom sign-in, the sidebar's JS-SDK signatures and external-contact lookup, over real
HTTP to the fake WeChat/WeCom server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid

import httpx
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from app.core.redis import create_redis
from app.integrations.wechat.fake_server import FakeWeChat
from app.integrations.wechat.wecom import WeComClient, WeComConfig, jsapi_signature
from tests.factories import TenantKit, new_tenant
from tests.members.helpers import assert_problem, make_member, new_phone

MINI_LOGIN = "/api/v1/auth/wechat/mini-program"


def _uid(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def _legacy_phone_payload(session_key: str, appid: str, phone: str) -> tuple[str, str]:
    """What WeChat's legacy getPhoneNumber hands the mini-program, built here independently of the fake:
    AES-128-CBC with the session key and a random IV, PKCS#7, over JSON with the app's watermark."""
    iv = os.urandom(16)
    plain = json.dumps({"phoneNumber": phone, "purePhoneNumber": phone, "countryCode": "86",
                        "watermark": {"appid": appid, "timestamp": 1700000000}}).encode()
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(base64.b64decode(session_key)), modes.CBC(iv)).encryptor()
    data = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    return base64.b64encode(data).decode(), base64.b64encode(iv).decode()


async def _me(client: httpx.AsyncClient, token: str) -> dict:
    r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


async def test_mini_program_login_with_phone_code_binds_then_openid_alone_signs_in(client, wechat: FakeWeChat):
    kit = await new_tenant(client)
    phone = new_phone()
    member = await make_member(kit, "王芳", phone=phone)
    openid, unionid = _uid("o"), _uid("u")
    wechat.add_login_code("c-first", openid, unionid=unionid)
    wechat.add_phone_code("p-first", phone)
    r = await client.post(MINI_LOGIN, json={"tenant": kit.code, "code": "c-first", "phone_code": "p-first"})
    assert r.status_code == 200, r.text
    assert r.json()["member_id"] == member["id"] and r.json()["bound"] is True
    me = await _me(client, r.json()["access_token"])
    assert (me["kind"], me["id"]) == ("patient", member["id"])

    # Later sign-ins: wx.login() alone finds the bound member.
    wechat.add_login_code("c-again", openid)
    r = await client.post(MINI_LOGIN, json={"tenant": kit.code, "code": "c-again"})
    assert r.status_code == 200, r.text
    assert r.json()["member_id"] == member["id"] and r.json()["bound"] is False
    # A code works once.
    assert_problem(await client.post(MINI_LOGIN, json={"tenant": kit.code, "code": "c-again"}), 401,
                   "invalid_wechat_code")


async def test_mini_program_login_with_legacy_encrypted_phone(client, wechat: FakeWeChat):
    kit = await new_tenant(client)
    phone = new_phone()
    member = await make_member(kit, "赵强", phone=phone)
    openid = _uid("o")
    session_key = wechat.add_login_code("c-legacy", openid)
    encrypted, iv = _legacy_phone_payload(session_key, wechat.appid, phone)
    r = await client.post(MINI_LOGIN, json={"tenant": kit.code, "code": "c-legacy", "encrypted_data": encrypted,
                                            "iv": iv})
    assert r.status_code == 200, r.text
    assert r.json()["member_id"] == member["id"]

    # A payload made for another mini-program (watermark appid) or with another session key is refused.
    for key, appid in ((session_key, "wx-some-other-app"), (base64.b64encode(os.urandom(16)).decode(), wechat.appid)):
        wechat.add_login_code("c-bad-" + appid[-4:] + key[:4], openid, session_key=session_key)
        encrypted, iv = _legacy_phone_payload(key, appid, phone)
        r = await client.post(MINI_LOGIN, json={"tenant": kit.code, "code": "c-bad-" + appid[-4:] + key[:4],
                                                "encrypted_data": encrypted, "iv": iv})
        assert_problem(r, 422, "invalid_encrypted_data")


async def test_unknown_phone_is_404_and_no_phone_without_binding_is_409(client, wechat: FakeWeChat):
    kit = await new_tenant(client)
    wechat.add_login_code("c-stranger", _uid("o"))
    wechat.add_phone_code("p-stranger", new_phone())
    r = await client.post(MINI_LOGIN, json={"tenant": kit.code, "code": "c-stranger", "phone_code": "p-stranger"})
    assert_problem(r, 404, "member_not_found")
    wechat.add_login_code("c-nophone", _uid("o"))
    assert_problem(await client.post(MINI_LOGIN, json={"tenant": kit.code, "code": "c-nophone"}), 409,
                   "phone_required")


async def test_wecom_oauth_login_signs_in_the_staff_member(client, wechat: FakeWeChat):
    kit = await new_tenant(client)
    userid = _uid("zhang")[:30]
    r = await kit.post("/staff", {"username": _uid("u")[:20], "password": "correct-horse-battery",
                                  "display_name": "张医生", "roles": ["therapist"], "wecom_userid": userid})
    assert r.status_code == 201, r.text
    staff_id = r.json()["id"]
    wechat.add_wecom_code("wc-1", userid)
    r = await client.post("/api/v1/auth/wecom", json={"tenant": kit.code, "code": "wc-1"})
    assert r.status_code == 200, r.text
    assert r.json()["refresh_token"]
    me = await _me(client, r.json()["access_token"])
    assert (me["kind"], me["id"]) == ("staff", staff_id)
    wechat.add_wecom_code("wc-2", "nobody-here")
    assert_problem(await client.post("/api/v1/auth/wecom", json={"tenant": kit.code, "code": "wc-2"}), 401,
                   "wecom_user_not_linked")


def test_jssdk_signature_matches_wechat_documentation_example():
    # The worked example in WeChat's JS-SDK documentation (附录1-JS-SDK使用权限签名算法).
    ticket = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
    noncestr, timestamp, url = "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value"
    expected = "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    # Computed independently: the documented string, sha1.
    plain = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    assert hashlib.sha1(plain.encode()).hexdigest() == expected
    assert jsapi_signature(ticket, noncestr, timestamp, url) == expected
    assert jsapi_signature(ticket, noncestr, timestamp, url + "#/member/1") == expected  # fragment dropped


async def test_jssdk_config_endpoint_signs_with_corp_and_agent_tickets(client, wechat: FakeWeChat, redis_url):
    kit = await new_tenant(client)
    page = "https://sidebar.example.com/member?from=chat"
    r = await kit.get("/wecom/jssdk-config", params={"url": page + "#top"})
    assert r.status_code == 200, r.text
    config, agent = r.json()["config"], r.json()["agentConfig"]
    redis = create_redis(redis_url)
    try:  # the tickets the endpoint used are the ones cached for everyone
        wecom = WeComClient(WeComConfig.from_settings(), redis)
        corp_ticket, agent_ticket = await wecom.jsapi_ticket(), await wecom.agent_ticket()
    finally:
        await redis.aclose()
    for signed, ticket in ((config, corp_ticket), (agent, agent_ticket)):
        plain = f"jsapi_ticket={ticket}&noncestr={signed['nonceStr']}&timestamp={signed['timestamp']}&url={page}"
        assert signed["signature"] == hashlib.sha1(plain.encode()).hexdigest()
    assert config["appId"] == agent["corpid"] == wechat.corp_id and agent["agentid"] == wechat.agent_id


async def _bound_member(client, kit: TenantKit, wechat: FakeWeChat, unionid: str) -> dict:
    phone = new_phone()
    member = await make_member(kit, "钱多多", phone=phone)
    code, phone_code = _uid("c"), _uid("p")
    wechat.add_login_code(code, _uid("o"), unionid=unionid)
    wechat.add_phone_code(phone_code, phone)
    r = await client.post(MINI_LOGIN, json={"tenant": kit.code, "code": code, "phone_code": phone_code})
    assert r.status_code == 200, r.text
    return member


async def test_external_contact_resolves_by_unionid_or_manual_link(client, wechat: FakeWeChat):
    kit = await new_tenant(client)
    unionid = _uid("u")
    member = await _bound_member(client, kit, wechat, unionid)
    by_unionid, stranger, unknown = _uid("wm")[:32], _uid("wm")[:32], _uid("wm")[:32]
    wechat.add_external_contact(by_unionid, "钱多多", unionid=unionid)
    wechat.add_external_contact(stranger, "路人甲")

    r = await kit.get(f"/wecom/external-contacts/{by_unionid}/member")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == member["id"]
    assert_problem(await kit.get(f"/wecom/external-contacts/{stranger}/member"), 404, "external_contact_not_linked")
    assert_problem(await kit.get(f"/wecom/external-contacts/{unknown}/member"), 404, "external_contact_not_found")

    other = await make_member(kit, "孙悟空")
    r = await kit.client.put(f"/api/v1/wecom/external-contacts/{stranger}/member", json={"member_id": other["id"]},
                             headers=kit.auth())
    assert r.status_code == 200, r.text
    r = await kit.get(f"/wecom/external-contacts/{stranger}/member")
    assert r.status_code == 200 and r.json()["id"] == other["id"]


async def test_erasure_drops_the_wechat_binding(client, wechat: FakeWeChat):
    from app.workers.dispatch import dispatch_event
    from tests.cards.helpers import owner_sql

    kit = await new_tenant(client)
    phone = new_phone()
    member = await make_member(kit, "赵敏", phone=phone)
    openid, code, phone_code, again = _uid("o"), _uid("c-"), _uid("p-"), _uid("c-")  # the fake is shared
    wechat.add_login_code(code, openid)
    wechat.add_phone_code(phone_code, phone)
    r = await client.post(MINI_LOGIN, json={"tenant": kit.code, "code": code, "phone_code": phone_code})
    assert r.status_code == 200, r.text

    erased = await kit.post(f"/members/{member['id']}/erase", {"reason": "会员申请注销（个人信息删除）"})
    assert erased.status_code == 200, erased.text
    [(event_id,)] = await owner_sql("SELECT id FROM outbox WHERE tenant_id = :t AND topic = 'member.erased'",
                                    t=uuid.UUID(kit.tenant_id))
    assert await dispatch_event(None, kit.tenant_id, str(event_id)) == "done"
    assert await owner_sql("SELECT 1 FROM member_wechat_links WHERE openid = :o", o=openid) == []
    # The same WeChat account now starts unbound.
    wechat.add_login_code(again, openid)
    assert_problem(await client.post(MINI_LOGIN, json={"tenant": kit.code, "code": again}), 409,
                   "phone_required")
