"""End to end: a subscribe message leaves over HTTP, through the real mini-program client and its
shared token, to the fake WeChat server; a user WeChat refuses (43101) loses their consent."""

from __future__ import annotations

from uuid import UUID, uuid4

from sqlalchemy import text

from app.core.db import session_scope
from app.core.redis import create_redis
from app.core.settings import get_settings
from app.domain.messaging.channels import MiniProgramSubscribeChannel, channels
from app.integrations.wechat.fake_server import FakeWeChat
from app.integrations.wechat.mini_program import MiniProgramClient, MiniProgramConfig
from tests.messaging.conftest import SUBSCRIBE_TEMPLATE, deliver, member, template


async def link_openid(kit, member_id: str, appid: str, openid: str) -> None:
    async with session_scope(UUID(kit.tenant_id)) as session:
        await session.execute(text(
            "INSERT INTO member_wechat_links (tenant_id, id, member_id, appid, openid, created_at) "
            "VALUES (:t, :i, :m, :a, :o, now())"),
            {"t": UUID(kit.tenant_id), "i": uuid4(), "m": UUID(member_id), "a": appid, "o": openid})


async def test_subscribe_message_reaches_the_fake_wechat_server(kit, redis_url, monkeypatch):
    await template(kit, SUBSCRIBE_TEMPLATE)
    accepted, refusing = await member(kit, "张三"), await member(kit, "李四")
    send = {"template_key": "appointment_reminder", "variables": {"name": "张三", "service": "艾灸",
                                                                  "time": "2026-12-01 10:00"}}
    with FakeWeChat() as fake:
        for name, value in fake.settings().items():
            monkeypatch.setattr(get_settings(), name, value)
        await link_openid(kit, accepted, fake.appid, "o-zhangsan")
        await link_openid(kit, refusing, fake.appid, "o-lisi")
        fake.refuse_subscribe("o-lisi")
        for member_id in (accepted, refusing):
            r = await kit.post(f"/members/{member_id}/message-consents", {"template_ids": ["tmpl-reminder-001"]})
            assert r.status_code == 200, r.text
        redis = create_redis(redis_url)
        channel = MiniProgramSubscribeChannel(client_factory=lambda: MiniProgramClient(
            MiniProgramConfig.from_settings(), redis))
        try:
            with channels.override(channel):
                ok = (await kit.post("/messages", {**send, "member_id": accepted})).json()
                refused = (await kit.post("/messages", {**send, "member_id": refusing})).json()
                await deliver(kit.tenant_id)
        finally:
            await redis.aclose()
        assert fake.subscribe_messages == [{
            "touser": "o-zhangsan", "template_id": "tmpl-reminder-001", "miniprogram_state": "formal",
            "lang": "zh_CN", "page": "pages/appointments/index",
            "data": {"thing1": {"value": "艾灸"}, "time2": {"value": "2026-12-01 10:00"},
                     "thing3": {"value": "请提前10分钟到店"}}}]
        assert fake.token_requests["mini"] == 1

    ok_row = (await kit.get(f"/messages/{ok['id']}")).json()
    refused_row = (await kit.get(f"/messages/{refused['id']}")).json()
    assert (ok_row["status"], ok_row["attempts"]) == ("sent", 1)
    assert (refused_row["status"], refused_row["reason"]) == ("failed", "subscription_refused")
    async with session_scope(UUID(kit.tenant_id)) as session:
        rows = await session.execute(text("SELECT member_id, granted FROM message_consents"))
        left = {r.member_id: r.granted for r in rows}
    assert left == {UUID(accepted): 0, UUID(refusing): 0}
