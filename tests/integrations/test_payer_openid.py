"""The openid a patient's WeChat Pay order is charged to is the server's to know: the WeChat account bound to the
patient (the one their token was issued for), never one the mini-program names for someone else."""

from __future__ import annotations

import uuid
from uuid import UUID

import pytest

from app.core.actor import Actor
from app.core.db import session_scope
from app.core.errors import Unprocessable
from app.core.security import decode_token
from app.core.settings import get_settings
from app.domain.wechat_links import service as wechat_links
from app.integrations.wechat.fake_server import FakeWeChat
from tests.factories import new_tenant
from tests.members.helpers import make_member, new_phone

MINI_LOGIN = "/api/v1/auth/wechat/mini-program"


async def _sign_in(client, wechat: FakeWeChat, kit, phone: str, openid: str) -> dict:
    code, phone_code = f"c-{uuid.uuid4().hex[:8]}", f"p-{uuid.uuid4().hex[:8]}"
    wechat.add_login_code(code, openid)
    wechat.add_phone_code(phone_code, phone)
    r = await client.post(MINI_LOGIN, json={"tenant": kit.code, "code": code, "phone_code": phone_code})
    assert r.status_code == 200, r.text
    return r.json()


async def _payer(tenant: UUID, actor: Actor, member_id: UUID, requested: str | None) -> str:
    async with session_scope(tenant) as session:
        return await wechat_links.payer_openid(session, actor, member_id=member_id, requested=requested,
                                               field="payments.0.payer_openid")


async def test_a_patient_pays_with_their_own_bound_openid_only(client, wechat: FakeWeChat, monkeypatch):
    monkeypatch.setattr(get_settings(), "wechat_pay_appid", wechat.appid)  # the mini-program bound to the merchant
    kit = await new_tenant(client)
    tenant = UUID(kit.tenant_id)
    phone, other_phone = new_phone(), new_phone()
    me = UUID((await make_member(kit, "王芳", phone=phone))["id"])
    someone = UUID((await make_member(kit, "李雷", phone=other_phone))["id"])
    mine, theirs = f"o{uuid.uuid4().hex}", f"o{uuid.uuid4().hex}"
    login = await _sign_in(client, wechat, kit, phone, mine)
    await _sign_in(client, wechat, kit, other_phone, theirs)

    # The patient token names the WeChat account it was issued for.
    assert decode_token(login["access_token"])["openid"] == mine
    patient = Actor(tenant_id=tenant, kind="patient", id=me, roles=("patient",))

    assert await _payer(tenant, patient, me, None) == mine  # the server knows it: the client need not send it
    assert await _payer(tenant, patient, me, mine) == mine
    for foreign in (theirs, "oSomeoneElsesOpenid0000000000"):
        with pytest.raises(Unprocessable) as refused:
            await _payer(tenant, patient, me, foreign)
        assert refused.value.code == "payer_openid_not_yours"
        assert refused.value.extra["field"] == "payments.0.payer_openid"
    # A patient paying for a family member's order pays from their own account.
    assert await _payer(tenant, patient, someone, None) == mine

    # Signed in from a second WeChat account: the token's own account pays (when the token says which).
    second = f"o{uuid.uuid4().hex}"
    await _sign_in(client, wechat, kit, phone, second)
    assert await _payer(tenant, patient, me, None) == second  # the latest sign-in
    with_token = Actor(tenant_id=tenant, kind="patient", id=me, roles=("patient",), extra={"openid": mine})
    assert await _payer(tenant, with_token, me, None) == mine
    stale = Actor(tenant_id=tenant, kind="patient", id=me, roles=("patient",), extra={"openid": theirs})
    with pytest.raises(Unprocessable):  # a token whose account is no longer this patient's
        await _payer(tenant, stale, me, None)

    # A binding under another mini-program is not an openid this merchant can charge.
    monkeypatch.setattr(get_settings(), "wechat_pay_appid", "wx-another-app")
    with pytest.raises(Unprocessable) as refused:
        await _payer(tenant, patient, me, None)
    assert refused.value.code == "payer_openid_unknown"


async def test_staff_orders_default_to_the_members_bound_openid(client, wechat: FakeWeChat, monkeypatch):
    monkeypatch.setattr(get_settings(), "wechat_pay_appid", wechat.appid)
    kit = await new_tenant(client)
    tenant = UUID(kit.tenant_id)
    phone = new_phone()
    member = UUID((await make_member(kit, "赵强", phone=phone))["id"])
    staff = Actor(tenant_id=tenant, kind="staff", id=uuid.uuid4(), permissions=frozenset({"orders:write"}))
    with pytest.raises(Unprocessable) as refused:
        await _payer(tenant, staff, member, None)
    assert refused.value.code == "payer_openid_unknown"
    openid = f"o{uuid.uuid4().hex}"
    await _sign_in(client, wechat, kit, phone, openid)
    assert await _payer(tenant, staff, member, None) == openid
    assert await _payer(tenant, staff, member, "o-given-by-the-front-desk") == "o-given-by-the-front-desk"
