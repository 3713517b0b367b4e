"""Alerts to staff: each fact reaches the right people once, as WeCom app messages that leave over real HTTP
(the real WeCom client and its shared token) to the fake WeCom server; a kind switched off sends nothing; a
failing send is retried; staff without a WeCom user id are skipped visibly; rules message staff
(`wecom_staff`); bad settings input is a 422."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from app.core.db import session_scope
from app.core.events import emit
from app.core.outbox import OutboxEvent
from app.core.redis import create_redis
from app.core.settings import get_settings
from app.domain.care.handlers import alert_task_assignee
from app.domain.care.jobs import announce_overdue_tasks
from app.domain.checkout.events import ORDER_COMPLETION_FAILED
from app.domain.messaging.channels import WeComStaffChannel, channels
from app.integrations.wechat.fake_server import FakeWeChat
from app.integrations.wechat.wecom import WeComClient, WeComConfig
from tests.cards.helpers import assert_problem, complete_direct, count_card, make_clinic, owner_sql
from tests.factories import PASSWORD, TenantKit, deliver, login, seal_audit
from tests.messaging.conftest import deliver as deliver_messages
from tests.messaging.conftest import member, pending_sends


@pytest.fixture(scope="module")
def fake_wecom() -> Iterator[FakeWeChat]:
    with FakeWeChat() as fake:
        yield fake


@pytest.fixture
async def wecom(fake_wecom: FakeWeChat, monkeypatch: pytest.MonkeyPatch, redis_url: str):
    """The fake WeCom, with the settings and the WeCom channel pointed at it for this test."""
    for name, value in fake_wecom.settings().items():
        monkeypatch.setattr(get_settings(), name, value)
    fake_wecom.staff_messages.clear()
    redis = create_redis(redis_url)
    with channels.override(WeComStaffChannel(client_factory=lambda: WeComClient(WeComConfig.from_settings(),
                                                                                 redis))):
        yield fake_wecom
    await redis.aclose()


async def person(kit: TenantKit, roles: list[str], stores: list[str], userid: str | None = None) -> dict:
    username = f"u{uuid.uuid4().hex[:8]}"
    body = {"username": username, "password": PASSWORD, "display_name": username, "roles": roles,
            "store_ids": stores}
    if userid:
        body["wecom_userid"] = userid
    r = await kit.post("/staff", body)
    assert r.status_code == 201, r.text
    return {"id": r.json()["id"], "userid": userid, "token": await login(kit.client, kit.code, username)}


def received(fake: FakeWeChat) -> list[tuple[str, str]]:
    """(WeCom user id, text) of every app message the fake received."""
    return [(userid, m["text"]["content"]) for m in fake.staff_messages for userid in m["touser"].split("|")]


async def run(tenant_id: str, *topics: str) -> None:
    """The worker's part: the events' handlers, then the delivery of the messages they queued."""
    for topic in topics:
        assert set(await deliver(tenant_id, topic)) <= {"done"}
    await deliver_messages(tenant_id)


async def alert_rows(tenant_id: str, kind: str) -> list[tuple[str, str, str | None]]:
    rows = await owner_sql("SELECT staff_id, status, reason FROM outbound_messages WHERE tenant_id = :t "
                           "AND template_key = :k ORDER BY created_at, id", t=UUID(tenant_id), k=f"alert.{kind}")
    return [(str(s), st, r) for s, st, r in rows]


def soon(hours: int = 24) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


# ---------------------------------------------------------------- tasks


async def test_a_task_assigned_or_reassigned_tells_its_new_assignee_once(kit, wecom):
    store = await kit.store()
    manager = await person(kit, ["store_manager"], [store], "LiJingLi")
    zhao = await person(kit, ["consultant"], [store], "ZhaoLi")
    qian = await person(kit, ["consultant"], [store], "QianWei")
    member_id = await member(kit, "张伟")
    r = await kit.post("/tasks", {"kind": "follow_up", "title": "术后回访", "member_id": member_id,
                                  "assignee_id": zhao["id"], "due_at": soon()}, token=manager["token"])
    assert r.status_code == 201, r.text
    task = r.json()
    await run(kit.tenant_id, "task.assigned")
    [(userid, text)] = received(wecom)
    assert userid == "ZhaoLi" and "术后回访" in text and "张伟" in text

    # The same event again (a redelivery): the message exists for this cause, nobody is told twice.
    async with session_scope(UUID(kit.tenant_id)) as session:
        event = (await owner_sql("SELECT id FROM outbox WHERE tenant_id = :t AND topic = 'task.assigned'",
                                 t=UUID(kit.tenant_id)))[0][0]
        await alert_task_assignee(session, await session.get(OutboxEvent, (UUID(kit.tenant_id), event)))
    await deliver_messages(kit.tenant_id)
    assert len(received(wecom)) == 1

    # Reassigned by the manager: the new assignee is told; a task the consultant gives themselves is not news.
    r = await kit.client.patch(f"/api/v1/tasks/{task['id']}", json={"assignee_id": qian["id"]},
                               headers=kit.auth(manager["token"]))
    assert r.status_code == 200, r.text
    r = await kit.post("/tasks", {"title": "自己的备忘", "due_at": soon()}, token=zhao["token"])
    assert r.status_code == 201, r.text
    await run(kit.tenant_id, "task.assigned")
    assert [u for u, _ in received(wecom)] == ["ZhaoLi", "QianWei"]
    assert [(s, st) for s, st, _ in await alert_rows(kit.tenant_id, "task_assigned")] == [
        (zhao["id"], "sent"), (qian["id"], "sent")]


async def test_an_overdue_task_tells_the_assignee_and_the_store_manager_once(kit, wecom):
    store, other_store = await kit.store(), await kit.store("徐汇店")
    manager = await person(kit, ["store_manager"], [store], "LiXiuYing")
    await person(kit, ["store_manager"], [other_store], "WangXuHui")  # another store's: not told
    therapist = await person(kit, ["therapist"], [store], "ChenXiaoMing")
    r = await kit.post("/tasks", {"kind": "follow_up", "title": "回访：肩颈推拿后感受", "store_id": store,
                                  "assignee_id": therapist["id"], "due_at": soon(-2)}, token=manager["token"])
    assert r.status_code == 201, r.text

    assert await announce_overdue_tasks(session_scope, datetime.now(UTC)) >= 1
    assert await announce_overdue_tasks(session_scope, datetime.now(UTC)) == 0  # once per due time
    await run(kit.tenant_id, "task.assigned", "task.overdue")
    overdue = [(u, t) for u, t in received(wecom) if "逾期" in t]
    assert sorted(u for u, _ in overdue) == ["ChenXiaoMing", "LiXiuYing"]
    assert all("回访：肩颈推拿后感受" in t for _, t in overdue)
    assert sorted(s for s, _, _ in await alert_rows(kit.tenant_id, "task_overdue")) == sorted(
        [therapist["id"], manager["id"]])

    # Announced again for the same due time (the job's claim lost, say): the messages are unique on the task
    # and due time, so nobody is told twice.
    await owner_sql("UPDATE tasks SET overdue_notified_at = NULL WHERE tenant_id = :t", t=UUID(kit.tenant_id))
    assert await announce_overdue_tasks(session_scope, datetime.now(UTC)) >= 1
    await run(kit.tenant_id, "task.overdue")
    assert len([t for _, t in received(wecom) if "逾期" in t]) == 2
    assert len(await alert_rows(kit.tenant_id, "task_overdue")) == 2


# ---------------------------------------------------------------- refunds, stock, orders


async def cash_order(kit: TenantKit, store: str, token: str | None = None) -> dict:
    r = await kit.post("/services", {"name": f"推拿{uuid.uuid4().hex[:4]}", "duration_minutes": 60, "price": 60000})
    assert r.status_code == 201, r.text
    r = await kit.post("/orders", {"member_id": await member(kit, "王芳"), "store_id": store,
                                   "lines": [{"type": "service", "service_id": r.json()["id"]}],
                                   "payments": [{"method": "cash", "amount": 60000}]}, token=token)
    assert r.status_code == 201, r.text
    return r.json()


async def test_a_refund_waiting_for_approval_tells_the_approvers_of_each_level(kit, wecom):
    store, other_store = await kit.store(), await kit.store("徐汇店")
    manager = await person(kit, ["store_manager"], [store], "LiXiuYing")
    await person(kit, ["store_manager"], [other_store], "WangXuHui")  # cannot decide this store's refunds
    await person(kit, ["finance"], [], "WuJing")
    desk = await person(kit, ["front_desk"], [store], "SunYue")
    r = await kit.client.put("/api/v1/checkout/settings", headers=kit.auth(), json={
        "refund_approval_threshold": 10000, "approval_levels": [["store_manager"], ["finance"]]})
    assert r.status_code == 200, r.text
    paid = await cash_order(kit, store)
    r = await kit.post(f"/orders/{paid['id']}/refunds", {"amount": 50000, "reason": "疗效不满意"}, token=desk["token"])
    assert r.status_code == 201, r.text
    refund = r.json()
    await run(kit.tenant_id, "refund.requested")
    [(userid, text)] = received(wecom)
    assert userid == "LiXiuYing" and paid["order_no"] in text and "500.00" in text and "第1级" in text

    r = await kit.post(f"/refunds/{refund['id']}/approve", {"note": "同意"}, token=manager["token"])
    assert r.status_code == 200, r.text
    await run(kit.tenant_id, "refund.requested", "refund.level_approved")
    assert [u for u, _ in received(wecom)] == ["LiXiuYing", "WuJing"]  # finance (every store) for level 2
    assert "第2级" in received(wecom)[1][1]


async def test_low_stock_tells_the_store_manager(kit, wecom):
    store = await kit.store()
    await person(kit, ["store_manager"], [store], "LiXiuYing")
    await person(kit, ["therapist"], [store], "ChenXiaoMing")
    moxa = (await kit.post("/consumables", {"name": "艾条", "unit": "根"})).json()["id"]
    assert (await kit.post("/inventory/movements", {"store_id": store, "consumable_id": moxa, "kind": "receive",
                                                    "quantity": 20})).status_code == 201
    r = await kit.client.put("/api/v1/inventory/thresholds", headers=kit.auth(),
                             json={"store_id": store, "consumable_id": moxa, "low_stock_threshold": 10})
    assert r.status_code == 200, r.text
    r = await kit.post("/inventory/movements", {"store_id": store, "consumable_id": moxa, "kind": "adjust",
                                                "quantity": -12, "reason": "盘点损耗"})
    assert r.status_code == 201, r.text
    await run(kit.tenant_id, "inventory.low_stock")
    [(userid, text)] = received(wecom)
    assert userid == "LiXiuYing" and "艾条只剩8根" in text and "预警线10根" in text


async def test_an_order_that_could_not_be_completed_tells_the_front_desk(kit, wecom):
    store = await kit.store()
    desk = await person(kit, ["front_desk"], [store], "SunYue")
    await person(kit, ["front_desk"], [await kit.store("徐汇店")], "ZhouTing")  # another store's desk
    paid = await cash_order(kit, store)
    # What checkout emits when WeChat's money arrived for an order it could not complete.
    async with session_scope(UUID(kit.tenant_id)) as session:
        await emit(session, ORDER_COMPLETION_FAILED, {"order_id": paid["id"], "payment_id": str(uuid.uuid4()),
                                                      "error": "card_template_inactive",
                                                      "detail": "卡项已下架"})
    await run(kit.tenant_id, "order.completion_failed")
    assert [(u, paid["order_no"] in t and "卡项已下架" in t) for u, t in received(wecom)] == [("SunYue", True)]
    assert [s for s, _, _ in await alert_rows(kit.tenant_id, "order_completion_failed")] == [desk["id"]]


# ---------------------------------------------------------------- settings, skips, retries


async def test_a_kind_switched_off_sends_nothing_and_the_switch_is_audited(kit, wecom):
    store = await kit.store()
    manager = await person(kit, ["store_manager"], [store], "LiXiuYing")
    zhao = await person(kit, ["consultant"], [store], "ZhaoLi")
    r = await kit.get("/staff-alert-settings")
    assert r.status_code == 200, r.text
    assert {i["kind"]: i["enabled"] for i in r.json()["items"]} == {
        "task_assigned": True, "task_overdue": True, "refund_pending_approval": True, "low_stock": True,
        "order_completion_failed": True}
    # Tenant-wide: a store manager may read it but not change it.
    assert (await kit.get("/staff-alert-settings", token=manager["token"])).status_code == 200
    assert_problem(await kit.client.patch("/api/v1/staff-alert-settings", json={"task_assigned": False},
                                          headers=kit.auth(manager["token"])), 403)

    r = await kit.client.patch("/api/v1/staff-alert-settings", json={"task_assigned": False},
                               headers=kit.auth())
    assert r.status_code == 200, r.text
    assert {i["kind"]: i["enabled"] for i in r.json()["items"]}["task_assigned"] is False
    r = await kit.post("/tasks", {"title": "续卡跟进", "assignee_id": zhao["id"], "due_at": soon()},
                       token=manager["token"])
    assert r.status_code == 201, r.text
    await run(kit.tenant_id, "task.assigned")
    assert received(wecom) == [] and await alert_rows(kit.tenant_id, "task_assigned") == []

    r = await kit.client.patch("/api/v1/staff-alert-settings", json={"task_assigned": True}, headers=kit.auth())
    assert r.status_code == 200, r.text
    r = await kit.post("/tasks", {"title": "续卡跟进", "assignee_id": zhao["id"], "due_at": soon()},
                       token=manager["token"])
    await run(kit.tenant_id, "task.assigned")
    assert [u for u, _ in received(wecom)] == ["ZhaoLi"]

    await seal_audit()
    audited = await owner_sql("SELECT summary FROM audit_log WHERE tenant_id = :t AND action = "
                              "'staff_alert_settings.update' ORDER BY seq", t=UUID(kit.tenant_id))
    assert [(s["before"]["task_assigned"], s["after"]["task_assigned"]) for (s,) in audited] == [
        (True, False), (False, True)]


@pytest.mark.parametrize("body, field", [
    ({"task_assigned": "no"}, "task_assigned"),
    ({"task_assigned": 0}, "task_assigned"),
    ({"task_assigned": None}, "task_assigned"),
    ({"birthday": False}, "birthday"),
    ({}, "body"),
])
async def test_bad_settings_input_is_a_422_naming_the_field(kit, body, field):
    r = await kit.client.patch("/api/v1/staff-alert-settings", json=body, headers=kit.auth())
    problem = assert_problem(r, 422)
    assert field in [e["field"] for e in problem["errors"]] or problem.get("field") == field, problem
    assert await owner_sql("SELECT 1 FROM staff_alert_settings WHERE tenant_id = :t",
                           t=UUID(kit.tenant_id)) == []


async def test_staff_without_a_wecom_user_id_are_skipped_visibly_and_not_retried(kit, wecom):
    store = await kit.store()
    manager = await person(kit, ["store_manager"], [store], "LiXiuYing")
    newcomer = await person(kit, ["consultant"], [store])  # no WeCom account yet
    r = await kit.post("/tasks", {"title": "新客回访", "assignee_id": newcomer["id"], "due_at": soon()},
                       token=manager["token"])
    assert r.status_code == 201, r.text
    await run(kit.tenant_id, "task.assigned")
    assert received(wecom) == []
    assert await alert_rows(kit.tenant_id, "task_assigned") == [(newcomer["id"], "skipped", "no_wecom_userid")]
    assert await pending_sends(kit.tenant_id) == []
    listed = (await kit.get("/messages", params={"staff_id": newcomer["id"]})).json()["items"]
    assert [(m["status"], m["reason"], m["attempts"]) for m in listed] == [("skipped", "no_wecom_userid", 1)]


async def test_a_failing_send_is_retried_until_wecom_answers(kit, redis_url, monkeypatch):
    monkeypatch.setattr(get_settings(), "message_backoff_base_seconds", 0.0)
    store = await kit.store()
    manager = await person(kit, ["store_manager"], [store], "LiXiuYing")
    zhao = await person(kit, ["consultant"], [store], "ZhaoLi")
    redis = create_redis(redis_url)
    fake = FakeWeChat(corp_id=f"ww{uuid.uuid4().hex[:14]}").start()
    port = fake.port
    try:
        for name, value in fake.settings().items():
            monkeypatch.setattr(get_settings(), name, value)
        with channels.override(WeComStaffChannel(client_factory=lambda: WeComClient(WeComConfig.from_settings(),
                                                                                     redis))):
            r = await kit.post("/tasks", {"title": "续卡跟进", "assignee_id": zhao["id"], "due_at": soon()},
                               token=manager["token"])
            assert r.status_code == 201, r.text
            assert await deliver(kit.tenant_id, "task.assigned") == ["done"]
            fake.stop()  # WeCom cannot be reached
            await deliver_messages(kit.tenant_id, rounds=1)
            [message] = (await kit.get("/messages", params={"staff_id": zhao["id"]})).json()["items"]
            assert (message["status"], message["attempts"]) == ("queued", 1)
            assert message["last_error"] and message["next_attempt_at"]
            fake.start(port)  # back
            await deliver_messages(kit.tenant_id)
    finally:
        fake.stop()
        await redis.aclose()
    after = (await kit.get(f"/messages/{message['id']}")).json()
    assert (after["status"], after["attempts"]) == ("sent", 2)
    assert [m["touser"] for m in fake.staff_messages] == ["ZhaoLi"]


# ---------------------------------------------------------------- rules message staff


async def test_a_rule_messages_the_members_consultant_through_wecom(client, wecom):
    clinic = await make_clinic(client)
    kit = clinic.kit
    consultant = await person(kit, ["consultant"], [clinic.store], "ZhaoLi")
    r = await kit.client.patch(f"/api/v1/members/{clinic.member}", json={"owner_staff_id": consultant["id"]},
                               headers=kit.auth())
    assert r.status_code == 200, r.text
    r = await kit.post("/message-templates", {
        "key": "renewal_reminder", "name": "续卡提醒", "channel": "wecom_staff",
        "body": "续卡提醒：会员{{member_name}}的{{service_name}}只剩{{remaining}}次，请在两天内联系TA沟通续卡。",
        "variables": ["member_name", "service_name", "remaining"]})
    assert r.status_code == 201, r.text
    rule = {"key": "renewal_wecom", "name": "续卡提醒（企业微信）", "enabled": True,
            "trigger": {"type": "event", "topic": "card.sessions_low", "filter": {"remaining": {"lte": 2}}},
            "actions": [{"type": "send_message", "template_key": "renewal_reminder", "channel": "wecom_staff"}]}
    problem = assert_problem(await kit.post("/automation-rules", rule), 422)
    assert problem["field"] == "actions.0.recipient"
    problem = assert_problem(await kit.post("/automation-rules", {**rule, "actions": [
        {**rule["actions"][0], "channel": "sms", "recipient": "consultant"}]}), 422)
    assert problem["field"] == "actions.0.channel"
    rule["actions"][0]["recipient"] = "consultant"
    r = await kit.post("/automation-rules", rule)
    assert r.status_code == 201, r.text

    card = await count_card(clinic, 3)
    await complete_direct(clinic, card["id"])  # 2 sessions left
    await run(kit.tenant_id, "card.sessions_low", "care.rule_due")
    texts = [t for u, t in received(wecom) if u == "ZhaoLi" and t.startswith("续卡提醒")]
    assert len(texts) == 1 and "只剩2次" in texts[0], received(wecom)
    [(staff_id, status, _)] = await alert_rows_by_key(kit.tenant_id, "renewal_reminder")
    assert (staff_id, status) == (consultant["id"], "sent")


async def alert_rows_by_key(tenant_id: str, key: str) -> list[tuple[str, str, str | None]]:
    rows = await owner_sql("SELECT staff_id, status, reason FROM outbound_messages WHERE tenant_id = :t "
                           "AND template_key = :k ORDER BY created_at, id", t=UUID(tenant_id), k=key)
    return [(str(s), st, r) for s, st, r in rows]
