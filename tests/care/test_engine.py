"""A rule never fires twice for one cause, conditions pick the members, and a crash mid-run is retried
without doing anything twice."""

from __future__ import annotations

from uuid import UUID

from app.core.outbox import emit
from app.domain.care import actions
from tests.cards.helpers import assert_problem, in_tenant, make_clinic, make_member, owner_sql
from tests.care.helpers import coupon_template, coupons, deliver, runs, tasks


async def _rule(kit, **body) -> dict:
    r = await kit.post("/automation-rules", {"name": "测试规则", "enabled": True, **body})
    assert r.status_code == 201, r.text
    return r.json()


async def test_duplicate_events_make_one_run_and_conditions_filter_members(client):
    clinic = await make_clinic(client)
    kit, tenant = clinic.kit, clinic.tenant_id
    vip = await make_member(kit, "贵宾")
    r = await kit.post(f"/members/{vip}/tags", {"add": ["金卡会员"]})
    assert r.status_code in (200, 201), r.text
    await _rule(kit, key="vip_welcome", trigger={"type": "event", "topic": "member.created"},
                conditions={"tiers": ["金卡会员", "银卡会员"]},
                actions=[{"type": "create_task", "kind": "care", "assignee": "owner", "title": "欢迎{member_name}"}])
    async with in_tenant(tenant) as session:
        for member in (vip, clinic.member, vip):  # the VIP's event twice (a duplicate), one plain member
            await emit(session, "member.created", {"member_id": member, "home_store_id": None})
    await deliver(tenant, "member.created")
    [run] = await runs(tenant, "vip_welcome")
    assert run["member_id"] == vip and run["cause_key"] == f"member:{vip}:created"
    await deliver(tenant, "care.rule_due")
    await deliver(tenant, "care.rule_due")  # a second delivery of the due event finds the run done
    [task] = await tasks(tenant)
    # Nobody owns the member and the clinic has no store manager: unassigned, for managers to hand out.
    assert task["member_id"] == vip and task["title"] == "欢迎贵宾" and task["assignee_id"] is None
    log = await owner_sql("SELECT status FROM rule_run_log WHERE tenant_id = :t ORDER BY id", t=tenant)
    assert [s for (s,) in log] == ["scheduled", "started", "action:done", "done"]
    # The run log is append-only, for the owner too.
    try:
        await owner_sql("DELETE FROM rule_run_log WHERE tenant_id = :t", t=tenant)
    except Exception as exc:  # noqa: BLE001
        assert "append-only" in str(exc)
    else:
        raise AssertionError("rule_run_log accepted a DELETE")


async def test_a_crash_mid_run_is_retried_without_double_effects(client, monkeypatch):
    clinic = await make_clinic(client)
    kit, tenant = clinic.kit, clinic.tenant_id
    coupon = await coupon_template(kit)
    await _rule(kit, key="welcome_gift", trigger={"type": "event", "topic": "member.created"},
                actions=[{"type": "issue_coupon", "coupon_template_id": coupon},
                         {"type": "create_task", "kind": "care", "assignee": "owner", "title": "回访"},
                         {"type": "add_tag", "tag": "已送礼"}])
    async with in_tenant(tenant) as session:
        await emit(session, "member.created", {"member_id": clinic.member, "home_store_id": None})
    await deliver(tenant, "member.created")

    real = actions.perform
    crashes = {"left": 1}

    async def crash_once_at_the_task(session, run, index, action):
        outcome = await real(session, run, index, action)
        if index == 1 and crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("worker lost its connection")  # after the task row was written
        return outcome

    monkeypatch.setattr(actions, "perform", crash_once_at_the_task)
    assert await deliver(tenant, "care.rule_due") == ["pending"]  # retried with backoff by the outbox
    [run] = await runs(tenant, "welcome_gift")
    assert run["status"] == "scheduled" and list(run["result"]["actions"]) == ["0"]
    assert await deliver(tenant, "care.rule_due") == ["done"]
    [run] = await runs(tenant, "welcome_gift")
    assert run["status"] == "done" and set(run["result"]["actions"]) == {"0", "1", "2"}
    assert await coupons(tenant) == [clinic.member]  # issued once, before the crash, not again
    assert len(await tasks(tenant)) == 1
    tags = (await kit.get(f"/members/{clinic.member}")).json()["tags"]
    assert "已送礼" in tags


async def test_a_run_that_keeps_crashing_is_marked_failed_when_dead_lettered(client, monkeypatch):
    clinic = await make_clinic(client)
    kit, tenant = clinic.kit, clinic.tenant_id
    await _rule(kit, key="always_broken", trigger={"type": "event", "topic": "member.created"},
                actions=[{"type": "add_tag", "tag": "x"}])
    async with in_tenant(tenant) as session:
        await emit(session, "member.created", {"member_id": clinic.member, "home_store_id": None})
    await deliver(tenant, "member.created")

    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(actions, "perform", broken)
    results = [(await deliver(tenant, "care.rule_due"))[0] for _ in range(3)]  # JOB_MAX_ATTEMPTS=3 in tests
    assert results == ["pending", "pending", "dead"]
    [run] = await runs(tenant, "always_broken")
    assert run["status"] == "failed" and run["result"]["reason"] == "gave_up"


async def test_bad_rules_are_422_naming_the_field(client):
    clinic = await make_clinic(client)
    kit = clinic.kit
    task = {"type": "create_task", "kind": "care", "title": "t"}
    cases = [
        ({"trigger": {"type": "event", "topic": "member.teleported"}, "actions": [task]}, "trigger.topic"),
        ({"trigger": {"type": "event", "topic": "card.sessions_low", "filter": {"colour": "red"}}, "actions": [task]},
         "trigger.filter.colour"),
        ({"trigger": {"type": "schedule", "kind": "full_moon"}, "actions": [task]}, "trigger.kind"),
        ({"trigger": {"type": "event", "topic": "member.created"}, "actions": [task, {"type": "fax"}]},
         "actions.1.type"),
        ({"trigger": {"type": "event", "topic": "member.created"}, "actions": [{**task, "assignee": "boss"}]},
         "actions.0.assignee"),
        ({"trigger": {"type": "event", "topic": "member.created"}, "actions": [task], "delay": {"at": "25:00"}},
         "delay.at"),
        ({"trigger": {"type": "event", "topic": "member.created"}, "actions": [{"type": "issue_coupon"}]},
         "actions.0.coupon_template_id"),  # enabled without a coupon template
    ]
    for body, field in cases:
        r = await kit.post("/automation-rules", {"key": "k", "name": "n", "enabled": True, **body})
        problem = assert_problem(r, 422, "validation_error")
        assert problem["field"] == field, (field, problem)
    rule = (await kit.get("/automation-rules")).json()["items"][0]
    r = await client.patch(f"/api/v1/automation-rules/{rule['id']}", json={"actions": [{"type": "fax"}]},
                           headers=kit.auth())
    assert assert_problem(r, 422)["field"] == "actions.0.type"
    assert UUID(rule["id"])
