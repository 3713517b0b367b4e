"""Assignment rules: round robin and least open leads among the store's consultants, filters, on shift
only, 50 concurrent intakes, and the first-contact deadline's escalation (once per lead)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from uuid import UUID

from app.core.clock import utcnow
from app.core.db import session_scope
from app.domain.growth import jobs
from app.domain.growth.leads import escalate_due
from tests.growth.lead_helpers import channel, intake, owner_sql, phone, rule, secret, shop

CLIENTS = 50


async def test_fifty_concurrent_intakes_assign_each_lead_once_and_round_robin_stays_even(client):
    kit, store_id, staff = await shop(client, consultants=3)
    await rule(kit, store_id=store_id, strategy="round_robin")
    key = await secret(kit)
    responses = await asyncio.gather(*(
        intake(client, kit.code, key, {"name": f"客户{i}", "phone": phone(), "store_id": store_id})
        for i in range(CLIENTS)))
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses if r.status_code != 201]
    rows = await owner_sql("SELECT assignee_id FROM growth_leads WHERE tenant_id = :t", t=kit.tenant_id)
    assert len(rows) == CLIENTS and all(r[0] is not None for r in rows)
    counts = Counter(str(r[0]) for r in rows)
    assert set(counts) == {s["id"] for s in staff}
    assert max(counts.values()) - min(counts.values()) <= 1
    # Exactly once: one `assigned` history row and one lead.assigned event per lead.
    history = await owner_sql("SELECT lead_id, count(*) FROM growth_lead_history WHERE tenant_id = :t "
                              "AND change = 'assigned' GROUP BY lead_id", t=kit.tenant_id)
    assert len(history) == CLIENTS and all(n == 1 for _, n in history)
    events = await owner_sql("SELECT count(*) FROM outbox WHERE tenant_id = :t AND topic = 'lead.assigned'",
                             t=kit.tenant_id)
    assert events[0][0] == CLIENTS
    assert (await owner_sql("SELECT assigned_count FROM growth_assignment_rules WHERE tenant_id = :t",
                            t=kit.tenant_id))[0][0] == CLIENTS


async def test_round_robin_order_least_open_and_filters(client):
    kit, store_id, staff = await shop(client, consultants=3)
    ordered = sorted(s["id"] for s in staff)
    xhs = await channel(kit, "小红书", "platform")
    ads = await channel(kit, "朋友圈广告", "paid_ads")
    # A paid-ads rule for one store, least open; a general round-robin rule behind it.
    general = await rule(kit, store_id=store_id, strategy="round_robin", priority=200)
    paid = await rule(kit, store_id=store_id, strategy="least_open", channel_kind="paid_ads", priority=10,
                      first_contact_minutes=15)
    got = []
    for _ in range(4):
        r = await kit.post("/leads", {"name": "周婷", "phone": phone(), "store_id": store_id, "channel_id": xhs})
        assert r.status_code == 201
        got.append(r.json())
    assert [g["assignee_id"] for g in got] == [ordered[0], ordered[1], ordered[2], ordered[0]]
    assert all(g["rule_id"] == general["id"] and g["contact_due_at"] is None for g in got)
    # Least open: ordered[0] holds 2 open leads, the others 1 each → ordered[1] (first after the cursor of equals).
    r = await kit.post("/leads", {"name": "吴倩", "phone": phone(), "store_id": store_id, "channel_id": ads})
    lead = r.json()
    assert lead["rule_id"] == paid["id"] and lead["assignee_id"] == ordered[1] and lead["contact_due_at"]
    # Close ordered[2]'s lead: it has fewest open now.
    third = next(g for g in got if g["assignee_id"] == ordered[2])
    r = await client.patch(f"/api/v1/leads/{third['id']}", json={"status": "lost", "lost_reason": "已在别家做"},
                           headers=kit.auth())
    assert r.status_code == 200
    r = await kit.post("/leads", {"name": "郑洁", "phone": phone(), "store_id": store_id, "channel_id": ads})
    assert r.json()["assignee_id"] == ordered[2]
    # An interest filter: only leads with that interest.
    tagged = await rule(kit, store_id=store_id, interest_tag="水光针", priority=5)
    r = await kit.post("/leads", {"name": "孙悦", "phone": phone(), "store_id": store_id, "interests": ["水光针"]})
    assert r.json()["rule_id"] == tagged["id"]
    # No rule for a lead without a store (the rules are the store's): unassigned.
    r = await kit.post("/leads", {"name": "钱琳", "phone": phone()})
    assert r.json()["assignee_id"] is None
    # A rule needing on-shift staff must name a store.
    r = await kit.post("/assignment-rules", {"name": "x", "on_shift_only": True})
    assert r.status_code == 422


async def test_on_shift_only_gives_leads_to_consultants_working_now(client):
    kit, store_id, staff = await shop(client, consultants=3)
    now = utcnow()
    working = staff[1]["id"]
    r = await kit.post("/shifts", {"staff_id": working, "store_id": store_id,
                                   "starts_at": (now - timedelta(hours=1)).isoformat(),
                                   "ends_at": (now + timedelta(hours=3)).isoformat()})
    assert r.status_code == 201, r.text
    r = await kit.post("/shifts", {"staff_id": staff[2]["id"], "store_id": store_id,
                                   "starts_at": (now + timedelta(hours=5)).isoformat(),
                                   "ends_at": (now + timedelta(hours=8)).isoformat()})
    assert r.status_code == 201, r.text
    await rule(kit, store_id=store_id, on_shift_only=True)
    for _ in range(3):
        r = await kit.post("/leads", {"name": "冯雪", "phone": phone(), "store_id": store_id})
        assert r.json()["assignee_id"] == working


async def test_uncontacted_lead_is_escalated_to_the_store_manager_once(client):
    kit, store_id, staff = await shop(client, consultants=1)
    manager = await kit.staff(["store_manager"], [store_id])
    await rule(kit, store_id=store_id, first_contact_minutes=30)
    late = (await kit.post("/leads", {"name": "韩梅", "phone": phone(), "store_id": store_id})).json()
    contacted = (await kit.post("/leads", {"name": "李雷", "phone": phone(), "store_id": store_id})).json()
    r = await client.patch(f"/api/v1/leads/{contacted['id']}", json={"status": "contacted"},
                           headers=kit.auth(staff[0]["token"]))
    assert r.status_code == 200
    tenant = UUID(kit.tenant_id)
    async with session_scope(tenant) as session:
        assert await escalate_due(session, tenant) == 0  # not due yet
    later = utcnow() + timedelta(minutes=31)
    async with session_scope(tenant) as session:
        assert await escalate_due(session, tenant, now=later) == 1
    async with session_scope(tenant) as session:
        assert await escalate_due(session, tenant, now=later + timedelta(minutes=5)) == 0  # once per lead
    await jobs.run_lead_escalation(session_scope)  # the scheduled job finds nothing more
    tasks = (await kit.get(f"/tasks?assignee_id={manager['id']}", manager["token"])).json()["items"]
    assert len(tasks) == 1 and tasks[0]["kind"] == "follow_up" and "韩梅" in tasks[0]["title"]
    # The task's assignment is what tells the manager in WeCom (messaging's task_assigned staff alert).
    announced = await owner_sql("SELECT payload->>'assignee_id' FROM outbox WHERE tenant_id = :t "
                                "AND topic = 'task.assigned'", t=kit.tenant_id)
    assert [row[0] for row in announced] == [manager["id"]]
    body = (await kit.get(f"/leads/{late['id']}")).json()
    assert body["escalated_at"] and body["history"][-1]["change"] == "escalated"
    assert (await kit.get(f"/leads/{contacted['id']}")).json()["escalated_at"] is None
