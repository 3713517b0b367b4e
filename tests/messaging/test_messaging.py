"""Messaging: templates render, a cause sends once, consent gates subscribe messages, and delivery
retries with backoff into a dead letter that the API can retry. Channels are swapped for fakes through
the channel registry; the WeChat channel's own error mapping is tested with a fake client."""

from __future__ import annotations

import json
from datetime import timedelta
from uuid import UUID

import httpx
import pytest
from sqlalchemy import text

from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.db import session_scope
from app.core.settings import get_settings
from app.domain.messaging.channels import (
    HttpSmsProvider,
    MiniProgramSubscribeChannel,
    PermanentDeliveryError,
    TransientDeliveryError,
    WeComStaffChannel,
    channels,
    sign_sms_request,
    verify_sms_signature,
)
from app.domain.messaging.models import OutboundMessage
from app.domain.messaging.service import send_template
from tests.messaging.conftest import (
    CARE_TEMPLATE,
    SUBSCRIBE_TEMPLATE,
    deliver,
    member,
    pending_sends,
    template,
)


async def message(kit, message_id: str) -> dict:
    r = await kit.get(f"/messages/{message_id}")
    assert r.status_code == 200, r.text
    return r.json()


async def system_send(tenant_id: str, **kw) -> OutboundMessage:
    tenant = UUID(tenant_id)
    async with session_scope(tenant) as session:
        return await send_template(session, Actor.system(tenant), **kw)


async def test_send_renders_delivers_and_shows_on_the_timeline(kit, fake_channels):
    await template(kit, CARE_TEMPLATE)
    member_id = await member(kit)
    r = await kit.post("/messages", {"template_key": "care_after_service", "member_id": member_id,
                                     "variables": {"name": "张三", "service": "艾灸"}})
    assert r.status_code == 201, r.text
    sent = r.json()
    assert sent["status"] == "queued" and sent["channel"] == "sms"
    assert sent["content"] == "张三您好，今天的艾灸后注意保暖，24小时内避免冷水。"

    assert await deliver(kit.tenant_id) == 1
    assert [m.content for m in fake_channels["sms"].sent] == [sent["content"]]
    after = await message(kit, sent["id"])
    assert (after["status"], after["attempts"], after["provider_msg_id"]) == ("sent", 1, "fake-1")
    assert after["sent_at"] is not None
    listed = (await kit.get("/messages", params={"member_id": member_id, "status": "sent"})).json()["items"]
    assert [m["id"] for m in listed] == [sent["id"]]

    timeline = (await kit.get(f"/members/{member_id}/timeline", params={"type": "message"})).json()["items"]
    assert [(i["type"], i["title"], i["data"]["status"], i["data"]["content"]) for i in timeline] == [
        ("message", "短信 · 护理关怀", "sent", sent["content"])]

    # Without messaging:write a therapist cannot send.
    therapist = await kit.staff(["therapist"])
    r = await kit.post("/messages", {"template_key": "care_after_service", "member_id": member_id,
                                     "variables": {"name": "张三", "service": "艾灸"}}, token=therapist["token"])
    assert r.status_code == 403


async def test_same_cause_sends_once(kit, fake_channels):
    await template(kit, CARE_TEMPLATE)
    member_id = UUID(await member(kit))
    args = dict(template_key="care_after_service", member_id=member_id, variables={"name": "张三", "service": "推拿"},
                cause="rule:care24h:visit-1")
    first = await system_send(kit.tenant_id, **args)
    again = await system_send(kit.tenant_id, **{**args, "variables": {"name": "李四", "service": "拔罐"}})
    assert again.id == first.id and again.content == first.content
    assert len(await pending_sends(kit.tenant_id)) == 1
    await deliver(kit.tenant_id)
    assert len(fake_channels["sms"].sent) == 1
    assert (await system_send(kit.tenant_id, **args)).status == "sent"  # still that one, now sent
    assert await pending_sends(kit.tenant_id) == []


class FakeMiniProgram:
    def __init__(self, answers: list) -> None:
        self.answers, self.calls = answers, []

    async def send_subscribe_message(self, openid, template_id, data, page=None):
        self.calls.append((openid, template_id, data, page))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def consents(kit, member_id: str) -> dict[str, int]:
    async with session_scope(UUID(kit.tenant_id)) as session:
        rows = await session.execute(text("SELECT wechat_template_id, granted FROM message_consents "
                                          "WHERE member_id = :m"), {"m": UUID(member_id)})
        return {r.wechat_template_id: r.granted for r in rows}


async def test_subscribe_messages_need_consent_and_43101_clears_it(kit):
    from app.integrations.wechat.tokens import WeChatError

    await template(kit, SUBSCRIBE_TEMPLATE)
    member_id = await member(kit)
    variables = {"name": "张三", "service": "肩颈推拿调理（九十分钟全身深度放松舒缓套餐）", "time": "2026-12-01 10:00"}
    send = {"template_key": "appointment_reminder", "member_id": member_id, "variables": variables}

    skipped = (await kit.post("/messages", send)).json()
    assert (skipped["status"], skipped["reason"]) == ("skipped", "no_subscription_consent")
    assert await pending_sends(kit.tenant_id) == []

    r = await kit.post(f"/members/{member_id}/message-consents", {"template_ids": ["tmpl-reminder-001"] * 2})
    assert r.status_code == 200, r.text
    assert r.json() == [{"wechat_template_id": "tmpl-reminder-001", "granted": 2}]
    r = await kit.post(f"/members/{member_id}/message-consents", {"template_ids": ["someone-elses"]})
    assert r.status_code == 422 and r.json()["field"] == "template_ids.0"

    fake = FakeMiniProgram([0, WeChatError(-1, "system busy"), 43101])
    channel = MiniProgramSubscribeChannel(client_factory=lambda: fake,
                                          openid_lookup=lambda session, tenant, member: _openid())
    with channels.override(channel):
        ok = (await kit.post("/messages", send)).json()
        assert ok["status"] == "queued" and (await consents(kit, member_id))["tmpl-reminder-001"] == 1
        await deliver(kit.tenant_id)
        assert (await message(kit, ok["id"]))["status"] == "sent"
        openid, template_id, data, page = fake.calls[0]
        assert (openid, template_id, page) == ("o-openid-1", "tmpl-reminder-001", "pages/appointments/index")
        # WeChat caps a `thing` keyword at 20 characters: shortened, not refused.
        assert data == {"thing1": "肩颈推拿调理（九十分钟全身深度放松舒缓…", "time2": "2026-12-01 10:00",
                        "thing3": "请提前10分钟到店"}

        refused = (await kit.post("/messages", send)).json()  # uses the last consent
        assert (await consents(kit, member_id))["tmpl-reminder-001"] == 0
        await _grant_in_db(kit, member_id, 3)  # we believe there are more; WeChat knows better
        await deliver(kit.tenant_id)  # busy (transient), then 43101
    after = await message(kit, refused["id"])
    assert (after["status"], after["reason"], after["attempts"]) == ("failed", "subscription_refused", 2)
    assert await consents(kit, member_id) == {"tmpl-reminder-001": 0}
    assert await pending_sends(kit.tenant_id) == []  # no retry after a refusal
    assert (await kit.post(f"/messages/{refused['id']}/retry", {})).json()["code"] == "message_not_dead"


async def _openid() -> str:
    return "o-openid-1"


async def _grant_in_db(kit, member_id: str, granted: int) -> None:
    async with session_scope(UUID(kit.tenant_id)) as session:
        await session.execute(text("UPDATE message_consents SET granted = :g WHERE member_id = :m"),
                              {"g": granted, "m": UUID(member_id)})


async def test_transient_failure_is_retried_with_backoff_then_sent(kit, fake_channels, monkeypatch):
    monkeypatch.setattr(get_settings(), "message_backoff_base_seconds", 60.0)
    await template(kit, CARE_TEMPLATE)
    member_id = await member(kit)
    fake_channels["sms"].script = [TransientDeliveryError("gateway timeout")]
    queued = (await kit.post("/messages", {"template_key": "care_after_service", "member_id": member_id,
                                           "variables": {"name": "张三", "service": "刮痧"}})).json()
    before = utcnow()
    await deliver(kit.tenant_id, rounds=1)
    row = await message(kit, queued["id"])
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert row["last_error"] == "TransientDeliveryError: gateway timeout"
    next_at = row["next_attempt_at"]
    async with session_scope(system=True) as session:
        available = (await session.execute(text(
            "SELECT available_at FROM outbox WHERE tenant_id = :t AND topic = 'message.send' AND status = 'pending'"),
            {"t": UUID(kit.tenant_id)})).scalar_one()
    assert before + timedelta(seconds=55) < available < before + timedelta(seconds=65)
    assert available.isoformat().replace("+00:00", "Z")[:19] == next_at.replace("+00:00", "Z")[:19]

    await deliver(kit.tenant_id)
    row = await message(kit, queued["id"])
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)
    assert len(fake_channels["sms"].sent) == 2


async def test_always_failing_message_goes_dead_and_the_api_retries_it(kit, fake_channels, monkeypatch):
    monkeypatch.setattr(get_settings(), "message_max_attempts", 3)
    monkeypatch.setattr(get_settings(), "message_backoff_base_seconds", 0.0)
    await template(kit, {**CARE_TEMPLATE, "key": "renewal_staff", "channel": "wecom_staff",
                         "body": "{{member}}的疗程卡只剩{{left}}次，请跟进续卡。", "variables": ["member", "left"]})
    consultant = await kit.staff(["consultant"])
    fake_channels["wecom_staff"].always = RuntimeError("WeCom down")
    queued = (await kit.post("/messages", {"template_key": "renewal_staff", "staff_id": consultant["id"],
                                           "variables": {"member": "王女士", "left": "2"}})).json()
    await deliver(kit.tenant_id)
    dead = await message(kit, queued["id"])
    assert (dead["status"], dead["attempts"], dead["last_error"]) == ("dead", 3, "RuntimeError: WeCom down")
    assert len(fake_channels["wecom_staff"].sent) == 3 and await pending_sends(kit.tenant_id) == []
    listed = (await kit.get("/messages", params={"status": "dead"})).json()["items"]
    assert [m["id"] for m in listed] == [queued["id"]]

    therapist = await kit.staff(["therapist"])
    assert (await kit.post(f"/messages/{queued['id']}/retry", {}, token=therapist["token"])).status_code == 403
    fake_channels["wecom_staff"].always = None
    r = await kit.post(f"/messages/{queued['id']}/retry", {})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["attempts"], r.json()["last_error"]) == ("queued", 0, None)
    await deliver(kit.tenant_id)
    assert (await message(kit, queued["id"]))["status"] == "sent"
    assert (await kit.post(f"/messages/{queued['id']}/retry", {})).status_code == 409


async def test_a_send_interrupted_mid_call_is_dead_lettered_not_resent(kit, fake_channels):
    await template(kit, CARE_TEMPLATE)
    member_id = await member(kit)
    queued = (await kit.post("/messages", {"template_key": "care_after_service", "member_id": member_id,
                                           "variables": {"name": "张三", "service": "推拿"}})).json()
    # What a worker that died after claiming the attempt leaves behind; the event is delivered again.
    async with session_scope(UUID(kit.tenant_id)) as session:
        await session.execute(text("UPDATE outbound_messages SET status = 'sending', attempts = 1 WHERE id = :i"),
                              {"i": UUID(queued["id"])})
    await deliver(kit.tenant_id)
    row = await message(kit, queued["id"])
    assert (row["status"], row["reason"]) == ("dead", "interrupted") and fake_channels["sms"].sent == []


async def test_wecom_channel_sends_to_the_staff_members_wecom_user(kit):
    class FakeWeCom:
        calls: list = []

        async def send_text(self, userids, content):
            self.calls.append((userids, content))
            return {"errcode": 0, "msgid": "wecom-msg-1", "invaliduser": ""}

    fake = FakeWeCom()
    await template(kit, {**CARE_TEMPLATE, "key": "renewal_staff", "channel": "wecom_staff"})
    r = await kit.post("/staff", {"username": "consultant1", "password": "correct-horse-battery",
                                  "display_name": "李顾问", "roles": ["consultant"], "wecom_userid": "LiGuWen"})
    assert r.status_code == 201, r.text
    with channels.override(WeComStaffChannel(client_factory=lambda: fake)):
        queued = (await kit.post("/messages", {"template_key": "renewal_staff", "staff_id": r.json()["id"],
                                               "variables": {"name": "王女士", "service": "推拿"}})).json()
        await deliver(kit.tenant_id)
    assert fake.calls == [(["LiGuWen"], "王女士您好，今天的推拿后注意保暖，24小时内避免冷水。")]
    assert (await message(kit, queued["id"]))["provider_msg_id"] == "wecom-msg-1"


async def test_sms_requests_are_hmac_signed():
    captured: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(200, json={"id": "sms-42"})

    provider = HttpSmsProvider("https://sms.example.test/send", "gateway-secret",
                               transport=httpx.MockTransport(gateway))
    assert await provider.send("13900001111", "张三您好", ref="msg-1") == "sms-42"
    request = captured[0]
    assert json.loads(request.content) == {"to": "13900001111", "content": "张三您好", "ref": "msg-1"}
    headers = dict(request.headers)
    assert verify_sms_signature("gateway-secret", headers, request.content)
    assert headers["x-careloop-signature"] == sign_sms_request(
        "gateway-secret", headers["x-careloop-timestamp"], headers["x-careloop-nonce"], request.content)
    assert not verify_sms_signature("wrong-secret", headers, request.content)
    assert not verify_sms_signature("gateway-secret", headers, request.content.replace(b"13900001111", b"13900002222"))
    stale = int(headers["x-careloop-timestamp"]) + 3600
    assert not verify_sms_signature("gateway-secret", headers, request.content, now=stale)

    refused = HttpSmsProvider("https://sms.example.test/send", "s",
                              transport=httpx.MockTransport(lambda r: httpx.Response(400, text="bad number")))
    with pytest.raises(PermanentDeliveryError):
        await refused.send("1", "x", ref="m")
    busy = HttpSmsProvider("https://sms.example.test/send", "s",
                           transport=httpx.MockTransport(lambda r: httpx.Response(503)))
    with pytest.raises(TransientDeliveryError):
        await busy.send("1", "x", ref="m")


async def test_bad_input_is_a_422_naming_the_field(kit):
    member_id = await member(kit)

    async def refused(path: str, body: dict, field: str, code: str = "validation_error") -> None:
        r = await kit.post(path, body)
        assert r.status_code == 422, r.text
        problem = r.json()
        assert problem["code"] == code, problem
        assert field in [e["field"] for e in problem["errors"]], problem

    await refused("/message-templates", {**CARE_TEMPLATE, "body": "{{name}}您好，{{unknown}}"}, "body",
                  "template_variable_undeclared")
    await refused("/message-templates", {**SUBSCRIBE_TEMPLATE, "wechat_template_id": None}, "wechat_template_id")
    await refused("/message-templates", {**CARE_TEMPLATE, "key": "Care-After"}, "key")
    await template(kit, CARE_TEMPLATE)
    await refused("/messages", {"template_key": "care_after_service", "member_id": member_id,
                                "variables": {"name": "张三"}}, "variables.service", "template_variable_missing")
    await refused("/messages", {"template_key": "care_after_service", "variables": {}}, "member_id")
    await refused("/messages", {"template_key": "care_after_service", "member_id": member_id,
                                "channel": "wecom_staff", "variables": {"name": "a", "service": "b"}}, "channel")
    r = await kit.client.patch("/api/v1/message-templates/care_after_service", json={"body": "{{nope}}"},
                               headers=kit.auth())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body"
    r = await kit.client.patch("/api/v1/message-templates/care_after_service", json={"active": False},
                               headers=kit.auth())
    assert r.status_code == 200 and r.json()["active"] is False
    r = await kit.post("/messages", {"template_key": "care_after_service", "member_id": member_id,
                                     "variables": {"name": "张三", "service": "推拿"}})
    assert (r.json()["status"], r.json()["reason"]) == ("skipped", "template_inactive")
    assert (await kit.post("/messages", {"template_key": "no_such", "member_id": member_id})).status_code == 404
    assert await pending_sends(kit.tenant_id) == []


async def test_merge_moves_messages_and_adds_up_consents(kit, fake_channels):
    await template(kit, SUBSCRIBE_TEMPLATE)
    survivor, duplicate = await member(kit, "张三"), await member(kit, "张叁")
    for member_id, times in ((survivor, 1), (duplicate, 2)):
        r = await kit.post(f"/members/{member_id}/message-consents", {"template_ids": ["tmpl-reminder-001"] * times})
        assert r.status_code == 200, r.text
    sent = (await kit.post("/messages", {"template_key": "appointment_reminder", "member_id": duplicate,
                                         "variables": {"name": "张叁", "service": "推拿", "time": "10:00"}})).json()
    r = await kit.post(f"/members/{survivor}/merge", {"duplicate_id": duplicate, "reason": "重复建档"})
    assert r.status_code == 200, r.text
    assert (await message(kit, sent["id"]))["member_id"] == survivor
    assert await consents(kit, survivor) == {"tmpl-reminder-001": 2}  # 1 + (2 - 1 used)


async def test_demo_templates_seed_once_and_render_with_the_rules_engines_variables(kit, fake_channels):
    from app.domain.messaging.demo import DEMO_TEMPLATES, seed_messaging

    tenant = UUID(kit.tenant_id)
    async with session_scope(tenant) as session:
        assert len(await seed_messaging(session, Actor.system(tenant))) == len(DEMO_TEMPLATES)
        assert await seed_messaging(session, Actor.system(tenant)) == []
    member_id = UUID(await member(kit))
    sent = await system_send(kit.tenant_id, template_key="care_after_treatment", member_id=member_id,
                             variables={"member_name": "张三", "service_name": "艾灸", "store_name": "静安店"},
                             cause="rule:demo:1")
    assert sent.status == "queued"
    assert sent.content.startswith("张三您好，今天的艾灸后注意保暖，24小时内避免冷水")
