"""Registering in the mini-program (issue 13, item 2), over real HTTP to the fake WeChat server: a phone no
member has becomes a member, with the privacy policy version accepted (and when), the source channel from the
launch scene or the share link's channel code, and the referrer from the share link; an unknown referrer is
ignored; bad input is a 422 naming the field with nothing created; one phone registering twice at once makes
one member."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from app.integrations.wechat.fake_server import FakeWeChat
from tests.cards.helpers import owner_sql
from tests.factories import new_tenant, seal_audit
from tests.members.helpers import assert_problem, make_member, new_phone
from tests.patient.helpers import REGISTER, bearer, sign_up, uid

MINI_LOGIN = "/api/v1/auth/wechat/mini-program"


async def _members_with_phone(kit, phone: str) -> list[dict]:
    r = await kit.get("/members", params={"q": phone})
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_an_unknown_phone_registers_with_consent_channel_and_referrer(client, wechat: FakeWeChat):
    kit = await new_tenant(client)
    referrer = await make_member(kit, "周阿姨")
    openid = uid("o")
    before = datetime.now(UTC)
    out = await sign_up(client, wechat, kit.code, openid=openid, name="林晓", scene=1007,
                        referrer_id=referrer["id"])
    assert out["registered"] is True and out["bound"] is True and out["token_type"] == "bearer"

    member = (await kit.get(f"/members/{out['member_id']}")).json()
    assert member["name"] == "林晓" and member["phone"] == out["phone"]
    assert member["source_channel"] == "mini_program_share" and member["referrer_id"] == referrer["id"]

    me = (await client.get("/api/v1/patient/me", headers=bearer(out["access_token"]))).json()
    assert me["id"] == out["member_id"] and me["phone"] == out["phone"] and me["family"] is None
    (consent,) = me["consents"]
    assert consent["kind"] == "privacy_policy" and consent["version"] == "2026-03"
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(consent["accepted_at"]) <= datetime.now(UTC)
    rows = await owner_sql("SELECT openid, channel FROM member_consents WHERE member_id = :m",
                           m=UUID(out["member_id"]))
    assert [tuple(r) for r in rows] == [(openid, "mini_program")]

    await seal_audit()
    actions = {r[0] for r in await owner_sql(
        "SELECT action FROM audit_log WHERE tenant_id = :t AND target_id = :m",
        t=UUID(kit.tenant_id), m=out["member_id"])}
    assert {"member.create", "member.register", "member.consent", "wechat.bind", "auth.login"} <= actions
    created = await owner_sql("SELECT count(*) FROM outbox WHERE tenant_id = :t AND topic = 'member.created' "
                              "AND payload ->> 'member_id' = :m", t=UUID(kit.tenant_id), m=out["member_id"])
    assert created[0][0] == 1

    # Later sign-ins need only wx.login(): the account is bound.
    wechat.add_login_code("again-" + openid, openid)
    r = await client.post(MINI_LOGIN, json={"tenant": kit.code, "code": "again-" + openid})
    assert r.status_code == 200, r.text
    assert r.json()["member_id"] == out["member_id"] and r.json()["bound"] is False


async def test_a_known_phone_signs_in_and_keeps_its_record(client, wechat: FakeWeChat):
    kit = await new_tenant(client)
    phone = new_phone()
    existing = await make_member(kit, "王芳", phone=phone, source_channel="walk_in")
    out = await sign_up(client, wechat, kit.code, phone=phone, expect=200, scene=1047, channel="douyin",
                        privacy_policy_version="v3.1")
    assert out["registered"] is False and out["member_id"] == existing["id"] and out["bound"] is True
    assert len(await _members_with_phone(kit, phone)) == 1
    member = (await kit.get(f"/members/{existing['id']}")).json()
    assert member["name"] == "王芳" and member["source_channel"] == "walk_in"
    me = (await client.get("/api/v1/patient/me", headers=bearer(out["access_token"]))).json()
    assert [c["version"] for c in me["consents"]] == ["v3.1"]
    # Accepting the same version again records nothing new; a new version is a new row.
    await sign_up(client, wechat, kit.code, phone=phone, expect=200, privacy_policy_version="v3.1")
    await sign_up(client, wechat, kit.code, phone=phone, expect=200, privacy_policy_version="v4")
    me = (await client.get("/api/v1/patient/me", headers=bearer(out["access_token"]))).json()
    assert [c["version"] for c in me["consents"]] == ["v3.1", "v4"]


async def test_channel_code_and_scene_decide_the_source_and_an_unknown_referrer_is_ignored(client, wechat):
    kit = await new_tenant(client)
    other_tenant = await new_tenant(client)
    stranger = await make_member(other_tenant, "别家会员")
    for extra, source in (
        ({"channel": "meituan", "scene": 1007, "referrer_id": str(uuid.uuid4())}, "meituan"),
        ({"scene": 1047, "referrer_id": stranger["id"]}, "mini_program_qr"),
        ({"scene": 1089}, "mini_program_other"),
        ({}, "mini_program_other"),
    ):
        out = await sign_up(client, wechat, kit.code, **extra)
        member = (await kit.get(f"/members/{out['member_id']}")).json()
        assert (member["source_channel"], member["referrer_id"]) == (source, None), extra
        # Without a name the member is called after their phone until they change it.
        assert member["name"] == f"微信用户{out['phone'][-4:]}"


@pytest.mark.parametrize("change, field", [
    ({"privacy_policy_version": None}, "privacy_policy_version"),
    ({"privacy_policy_version": "2026 年版"}, "privacy_policy_version"),
    ({"scene": 99}, "scene"),
    ({"scene": "1007"}, "scene"),
    ({"channel": "美团"}, "channel"),
    ({"channel": "x" * 33}, "channel"),
    ({"referrer_id": "周阿姨"}, "referrer_id"),
    ({"name": ""}, "name"),
    ({"phone_code": None}, "phone_code"),
    ({"encrypted_data": "AAAA"}, "iv"),
    ({"invited_by": "someone"}, "invited_by"),
])
async def test_bad_registration_input_is_422_naming_the_field_and_creates_nothing(client, wechat, change, field):
    kit = await new_tenant(client)
    phone = new_phone()
    code, phone_code = uid("c"), uid("p")
    wechat.add_login_code(code, uid("o"))
    wechat.add_phone_code(phone_code, phone)
    body = {"tenant": kit.code, "code": code, "phone_code": phone_code, "privacy_policy_version": "2026-03"}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    r = await client.post(REGISTER, json=body)
    problem = assert_problem(r, 422, "validation_error")
    assert field in r.text, problem
    assert await _members_with_phone(kit, phone) == []


async def test_unknown_tenant_and_used_codes(client, wechat):
    kit = await new_tenant(client)
    assert_problem(await client.post(REGISTER, json={"tenant": "no-such-clinic", "code": "c1", "phone_code": "p1",
                                                     "privacy_policy_version": "1"}), 404, "tenant_not_found")
    out = await sign_up(client, wechat, kit.code)
    # The same wx.login code again (a replay) is refused by WeChat, and so here.
    code = uid("c")
    wechat.add_login_code(code, uid("o"))
    wechat.add_phone_code("p-" + code, out["phone"])
    first = await client.post(REGISTER, json={"tenant": kit.code, "code": code, "phone_code": "p-" + code,
                                              "privacy_policy_version": "1"})
    assert first.status_code == 200, first.text
    again = await client.post(REGISTER, json={"tenant": kit.code, "code": code, "phone_code": "p-" + code,
                                              "privacy_policy_version": "1"})
    assert_problem(again, 401, "invalid_wechat_code")


async def test_concurrent_registrations_of_one_phone_make_one_member(client, wechat: FakeWeChat):
    kit = await new_tenant(client)
    phone = new_phone()
    bodies = []
    for _ in range(4):  # a double tap, and the same person on a second phone
        code, phone_code = uid("c"), uid("p")
        wechat.add_login_code(code, uid("o"))
        wechat.add_phone_code(phone_code, phone)
        bodies.append({"tenant": kit.code, "code": code, "phone_code": phone_code, "privacy_policy_version": "1",
                       "scene": 1007})
    answers = await asyncio.gather(*(client.post(REGISTER, json=b) for b in bodies))
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 201], [r.text for r in answers]
    assert len({r.json()["member_id"] for r in answers}) == 1
    assert len(await _members_with_phone(kit, phone)) == 1
    consents = await owner_sql("SELECT count(*) FROM member_consents WHERE member_id = :m",
                               m=UUID(answers[0].json()["member_id"]))
    assert consents[0][0] == 1
