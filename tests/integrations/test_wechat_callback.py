"""The WeCom callback: URL verification, events handled once, and forged, stale or replayed deliveries refused
with nothing emitted."""

from __future__ import annotations

import time
import uuid

from app.core.db import session_scope
from app.core.outbox import OutboxEvent
from app.domain.wechat_links import handlers
from app.domain.wechat_links import service as wechat_links
from app.integrations.wechat.fake_server import FakeWeChat
from app.integrations.wechat.wecom import WeComClient
from tests.factories import deliver, new_tenant
from tests.members.helpers import assert_problem, execute_as_owner, make_member, new_phone

CONTACT_API = "/cgi-bin/externalcontact/get"


async def _events(tenant_id: str, topic: str) -> list[dict]:
    rows = await execute_as_owner("SELECT id, payload FROM outbox WHERE tenant_id = :t AND topic = :topic ORDER BY "
                                  "created_at", t=uuid.UUID(tenant_id), topic=topic)
    return [{**row.payload, "_id": str(row.id)} for row in rows]


async def _tenant_id(kit) -> str:
    from tests.booking.appointment_helpers import tenant_of

    return str(tenant_of(kit))


async def test_url_verification_answers_the_decrypted_echostr(client, wechat: FakeWeChat):
    kit = await new_tenant(client)
    params = wechat.url_verification("echo-1234567890")
    r = await client.get(f"/api/v1/wecom/callback/{kit.code}", params=params)
    assert r.status_code == 200, r.text
    assert r.text == "echo-1234567890"
    bad = {**params, "nonce": "other-nonce", "msg_signature": "0" * 40}
    assert_problem(await client.get(f"/api/v1/wecom/callback/{kit.code}", params=bad), 401, "invalid_signature")


async def test_external_contact_added_is_linked_by_unionid_and_emitted_once(client, wechat: FakeWeChat, redis_url,
                                                                            monkeypatch):
    monkeypatch.setattr(wechat_links, "_redis_url", redis_url)  # the worker's Redis, for WeCom's access token
    kit = await new_tenant(client)
    tenant_id = await _tenant_id(kit)
    # A member who signed in to the mini-program (so their unionid is known).
    phone, unionid, external = new_phone(), f"u{uuid.uuid4().hex}", f"wm{uuid.uuid4().hex}"
    member = await make_member(kit, "周婷", phone=phone)
    wechat.add_login_code("cb-login", f"o{uuid.uuid4().hex}", unionid=unionid)
    wechat.add_phone_code("cb-phone", phone)
    r = await client.post("/api/v1/auth/wechat/mini-program",
                          json={"tenant": kit.code, "code": "cb-login", "phone_code": "cb-phone"})
    assert r.status_code == 200, r.text
    wechat.add_external_contact(external, "周婷", unionid=unionid, follow_userids=["therapist-li"])
    asked_wecom = wechat.calls[CONTACT_API]

    query, body = wechat.callback_request(wechat.external_contact_event("add_external_contact", external,
                                                                       "therapist-li", state="store-1"))
    url = f"/api/v1/wecom/callback/{kit.code}"
    r = await client.post(url, params=query, content=body)
    assert r.status_code == 200, r.text
    assert r.text == ""
    # Answered at once: WeCom waits 5 s at most, so the contact is not fetched while it waits.
    assert wechat.calls[CONTACT_API] == asked_wecom
    events = await _events(tenant_id, "wecom.external_contact_changed")
    assert len(events) == 1
    assert events[0]["change_type"] == "add_external_contact" and events[0]["member_id"] is None
    assert events[0]["external_userid"] == external and events[0]["state"] == "store-1"

    # The worker fetches the contact and links it by unionid, once, however often it runs.
    assert await deliver(tenant_id, "wecom.external_contact_changed") == ["done"]
    assert wechat.calls[CONTACT_API] == asked_wecom + 1
    async with session_scope(uuid.UUID(tenant_id)) as session:
        event = await session.get(OutboxEvent, (uuid.UUID(tenant_id), uuid.UUID(events[0]["_id"])))
        await handlers.fetch_added_contact(session_scope, event)  # a second run (the worker died before done)
    linked = await _events(tenant_id, "wecom.external_contact_linked")
    assert [(e["external_userid"], e["member_id"], e["source"]) for e in linked] == [
        (external, member["id"], "unionid")]
    rows = await execute_as_owner("SELECT name, unionid FROM wecom_external_contacts WHERE tenant_id = :t AND "
                                  "external_userid = :e", t=uuid.UUID(tenant_id), e=external)
    assert (rows[0].name, rows[0].unionid) == ("周婷", unionid)
    r = await kit.get(f"/wecom/external-contacts/{external}/member")
    assert r.status_code == 200 and r.json()["id"] == member["id"]

    # The same delivery again (a replay, or WeCom retrying what we already handled) changes nothing.
    assert_problem(await client.post(url, params=query, content=body), 409, "replayed_callback")
    assert len(await _events(tenant_id, "wecom.external_contact_changed")) == 1

    # The customer deletes the therapist: the contact is gone, the event says so (now with the member).
    query, body = wechat.callback_request(wechat.external_contact_event("del_follow_user", external, "therapist-li"))
    assert (await client.post(url, params=query, content=body)).status_code == 200
    rows = await execute_as_owner("SELECT status FROM wecom_external_contacts WHERE tenant_id = :t AND "
                                  "external_userid = :e", t=uuid.UUID(tenant_id), e=external)
    assert rows[0].status == "deleted"
    changes = await _events(tenant_id, "wecom.external_contact_changed")
    assert [(e["change_type"], e["member_id"]) for e in changes] == [
        ("add_external_contact", None), ("del_follow_user", member["id"])]
    assert wechat.calls[CONTACT_API] == asked_wecom + 2  # only the second run of the add fetched again


async def test_a_slow_wecom_does_not_hold_up_the_callback(client, wechat: FakeWeChat, monkeypatch):
    kit = await new_tenant(client)
    external = f"wm{uuid.uuid4().hex}"
    wechat.add_external_contact(external, "慢慢", unionid=f"u{uuid.uuid4().hex}")

    async def wecom_would_hang(*args, **kwargs):
        raise AssertionError("the callback called WeCom")

    monkeypatch.setattr(WeComClient, "get_external_contact", wecom_would_hang)
    query, body = wechat.callback_request(wechat.external_contact_event("edit_external_contact", external, "li"))
    r = await client.post(f"/api/v1/wecom/callback/{kit.code}", params=query, content=body)
    assert r.status_code == 200, r.text
    assert len(await _events(await _tenant_id(kit), "wecom.external_contact_changed")) == 1


async def test_msgaudit_notify_is_emitted_for_chat_sync(client, wechat: FakeWeChat):
    kit = await new_tenant(client)
    query, body = wechat.callback_request(wechat.msgaudit_event())
    r = await client.post(f"/api/v1/wecom/callback/{kit.code}", params=query, content=body)
    assert r.status_code == 200, r.text
    events = await _events(await _tenant_id(kit), "wecom.msgaudit_notify")
    assert len(events) == 1 and events[0]["agent_id"] == wechat.agent_id


async def test_forged_stale_and_malformed_callbacks_are_refused_and_emit_nothing(client, wechat: FakeWeChat):
    kit = await new_tenant(client)
    url = f"/api/v1/wecom/callback/{kit.code}"
    event = wechat.msgaudit_event()

    query, body = wechat.callback_request(event)
    forged = {**query, "msg_signature": "f" * 40}
    assert_problem(await client.post(url, params=forged, content=body), 401, "invalid_signature")
    # Signed with another token: the signature does not verify either.
    other = FakeWeChat(corp_id=wechat.corp_id, callback_token="someone-elses-token")
    query2, body2 = other.callback_request(event)
    assert_problem(await client.post(url, params=query2, content=body2), 401, "invalid_signature")

    stale_query, stale_body = wechat.callback_request(event, timestamp=int(time.time()) - 301)
    assert_problem(await client.post(url, params=stale_query, content=stale_body), 401, "stale_timestamp")
    future_query, future_body = wechat.callback_request(event, timestamp=int(time.time()) + 301)
    assert_problem(await client.post(url, params=future_query, content=future_body), 401, "stale_timestamp")

    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><Encrypt>&a;</Encrypt></xml>'
    assert_problem(await client.post(url, params=query, content=bomb), 400, "invalid_callback")
    assert_problem(await client.post("/api/v1/wecom/callback/no-such-tenant", params=query, content=body), 404)
    assert await _events(await _tenant_id(kit), "wecom.msgaudit_notify") == []

    # The refused attempts did not use up the genuine delivery's nonce: it is still accepted, once.
    assert (await client.post(url, params=query, content=body)).status_code == 200
    assert_problem(await client.post(url, params=query, content=body), 409, "replayed_callback")
    assert len(await _events(await _tenant_id(kit), "wecom.msgaudit_notify")) == 1
