"""Outgoing webhooks over real HTTP: fan-out from the outbox, HMAC signatures, retries to dead, replay."""

from __future__ import annotations

import hashlib
import hmac
import json
from uuid import UUID

from sqlalchemy import text

from app.core.db import session_scope
from app.core.settings import get_settings
from app.domain.webhooks import handlers
from app.workers.dispatch import dispatch_event
from app.workers.scheduled import run_webhook_deliveries
from tests.factories import new_tenant
from tests.webhooks.receiver import Receiver


async def drain(tenant_id: str) -> None:
    """Run the tenant's due outbox events through the real dispatcher until none are left."""
    for _ in range(10):
        async with session_scope(system=True) as session:
            ids = (await session.execute(text(
                "SELECT id FROM outbox WHERE tenant_id = :t AND status IN ('pending', 'enqueued') ORDER BY id"),
                {"t": UUID(tenant_id)})).scalars().all()
        if not ids:
            return
        for event_id in ids:
            await dispatch_event(None, tenant_id, str(event_id))
    raise AssertionError("outbox did not drain")


async def subscribe(kit, receiver: Receiver, types=("member.created",)) -> dict:
    r = await kit.post("/webhook-subscriptions", {"url": receiver.url, "event_types": list(types),
                                                  "description": "HIS"})
    assert r.status_code == 201, r.text
    return r.json()


async def deliveries(kit, sub_id: str) -> list[dict]:
    r = await kit.get(f"/webhook-subscriptions/{sub_id}/deliveries")
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_signed_delivery_reaches_a_real_receiver(client, receiver, webhook_handlers_only):
    kit = await new_tenant(client)
    sub = await subscribe(kit, receiver)
    secret = sub["secret"]
    listed = (await kit.get("/webhook-subscriptions")).json()["items"]
    assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]
    async with session_scope(system=True) as session:  # stored encrypted, never in clear
        stored = (await session.execute(text("SELECT secret_encrypted FROM webhook_subscriptions WHERE id = :i"),
                                        {"i": UUID(sub["id"])})).scalar_one()
    assert secret not in stored

    member = await kit.post("/members", {"name": "张三", "phone": "13912345678"})
    assert member.status_code == 201, member.text
    await drain(kit.tenant_id)

    assert len(receiver.requests) == 1
    got = receiver.requests[0]
    headers, body = got["headers"], got["body"]
    assert got["method"] == "POST" and got["path"] == "/hooks/careloop"
    assert headers["x-careloop-event"] == "member.created"
    # The signature, computed here independently of the app's code.
    expected = hmac.new(secret.encode(), headers["x-careloop-timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert headers["x-careloop-signature"] == f"sha256={expected}"
    envelope = json.loads(body)
    assert envelope["type"] == "member.created" and envelope["id"] == headers["x-careloop-delivery"]
    assert envelope["data"]["member_id"] == member.json()["id"]

    [delivery] = await deliveries(kit, sub["id"])
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 1 and delivery["response_code"] == 200

    # The same event handled again (at-least-once) makes no second delivery.
    async with session_scope(UUID(kit.tenant_id)) as session:
        from app.core.outbox import OutboxEvent

        event = await session.get(OutboxEvent, (UUID(kit.tenant_id), UUID(delivery["event_id"])))
        await handlers.fan_out(session, event)
    assert len(await deliveries(kit, sub["id"])) == 1

    # A subscription not asking for the topic gets nothing; a paused one neither.
    other = await subscribe(kit, receiver, types=("order.paid",))
    paused = await kit.client.patch(f"/api/v1/webhook-subscriptions/{sub['id']}", json={"active": False},
                                    headers=kit.auth())
    assert paused.status_code == 200 and paused.json()["active"] is False
    await kit.post("/members", {"name": "李四", "phone": "13912345679"})
    await drain(kit.tenant_id)
    assert len(receiver.requests) == 1
    assert await deliveries(kit, other["id"]) == []


async def test_failing_receiver_is_retried_then_dead_then_replayed(client, receiver, webhook_handlers_only,
                                                                  monkeypatch):
    monkeypatch.setattr(get_settings(), "webhook_max_attempts", 3)
    monkeypatch.setattr(get_settings(), "webhook_backoff_base_seconds", 0.0)
    kit = await new_tenant(client)
    sub = await subscribe(kit, receiver)
    receiver.statuses = [500, 503, 404]
    await kit.post("/members", {"name": "王五", "phone": "13912345670"})
    await drain(kit.tenant_id)

    [delivery] = await deliveries(kit, sub["id"])
    assert delivery["status"] == "failed" and delivery["attempts"] == 1 and delivery["response_code"] == 500
    assert delivery["last_error"].startswith("HTTP 500") and delivery["next_attempt_at"] is not None

    for _ in range(2):  # the retry cron sends what is due (backoff 0 here)
        await run_webhook_deliveries()
    [delivery] = await deliveries(kit, sub["id"])
    assert delivery["status"] == "dead" and delivery["attempts"] == 3 and delivery["response_code"] == 404
    await run_webhook_deliveries()  # dead stays dead
    assert len(receiver.requests) == 3
    dead = await kit.get(f"/webhook-subscriptions/{sub['id']}/deliveries", params={"status": "dead"})
    assert [d["id"] for d in dead.json()["items"]] == [delivery["id"]]

    replay = await kit.post(f"/webhook-deliveries/{delivery['id']}/replay", {})
    assert replay.status_code == 200, replay.text
    assert replay.json()["status"] == "pending" and replay.json()["attempts"] == 0
    await drain(kit.tenant_id)
    [delivery] = await deliveries(kit, sub["id"])
    assert delivery["status"] == "succeeded" and delivery["delivered_at"] is not None
    assert len(receiver.requests) == 4
    assert len({r["headers"]["x-careloop-delivery"] for r in receiver.requests}) == 1  # the same delivery


async def test_bad_subscriptions_are_422_naming_the_field(client):
    kit = await new_tenant(client)
    cases = [({"url": "http://his.example.com/hook", "event_types": ["member.created"]}, "url"),
             ({"url": "https://10.0.0.5/hook", "event_types": ["member.created"]}, "url"),
             ({"url": "https://his.example.com/hook", "event_types": ["member.teleported"]}, "event_types"),
             ({"url": "https://his.example.com/hook", "event_types": ["wecom.msgaudit_notify"]}, "event_types"),
             ({"url": "https://his.example.com/hook", "event_types": []}, "event_types")]
    for body, field in cases:
        r = await kit.post("/webhook-subscriptions", body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["code"] == "validation_error"
        assert [e["field"] for e in r.json()["errors"]] == [field], r.text
    ok = await kit.post("/webhook-subscriptions", {"url": "https://his.example.com/hook",
                                                   "event_types": ["order.paid"]})
    assert ok.status_code == 201
    r = await kit.client.patch(f"/api/v1/webhook-subscriptions/{ok.json()['id']}",
                               json={"url": "http://his.example.com/x"}, headers=kit.auth())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "url"

    manager = await kit.staff(["store_manager"])  # integrations are the owner's (api_clients:write)
    r = await kit.get("/webhook-subscriptions", token=manager["token"])
    assert r.status_code == 403
