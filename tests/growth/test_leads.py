"""Leads: manual entry, phone matching (members and open leads), the funnel with its history, visibility."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from uuid import UUID

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import async_url
from app.domain.iam.permissions import PRESET_ROLES
from tests.factories import new_tenant
from tests.growth.lead_helpers import channel, owner_sql, phone, rule, shop

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "2026-12-01_growth_leads.py"


def _migration():
    spec = importlib.util.spec_from_file_location("growth_leads_migration", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_manual_lead_is_matched_assigned_and_worked_through_the_funnel(client):
    kit, store_id, staff = await shop(client, consultants=1)
    douyin = await channel(kit)
    await rule(kit, store_id=store_id)
    number = phone()
    r = await kit.post("/members", {"name": "王芳", "phone": number})
    member_id = r.json()["id"]

    r = await kit.post("/leads", {"name": "王芳", "phone": number, "channel_id": douyin, "store_id": store_id,
                                  "interests": ["光子嫩肤"]})
    assert r.status_code == 201, r.text
    lead = r.json()
    assert lead["status"] == "new" and lead["member_id"] == member_id
    assert lead["assignee_id"] == staff[0]["id"] and lead["phone"] == number

    # The phone is encrypted at rest, found by its blind index.
    rows = await owner_sql("SELECT phone_encrypted, phone_index FROM growth_leads WHERE id = :i", i=lead["id"])
    assert number not in rows[0][0] and rows[0][1]

    # A second open lead of the same phone: 409 naming the lead.
    r = await kit.post("/leads", {"name": "王芳", "phone": number})
    assert r.status_code == 409 and r.json()["code"] == "lead_exists" and r.json()["lead_id"] == lead["id"]

    token = staff[0]["token"]
    for status in ("contacted", "consultation_booked", "arrived", "consulted"):
        r = await client.patch(f"/api/v1/leads/{lead['id']}", json={"status": status}, headers=kit.auth(token))
        assert r.status_code == 200, r.text
    # Backwards is refused.
    r = await client.patch(f"/api/v1/leads/{lead['id']}", json={"status": "contacted"}, headers=kit.auth(token))
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
    r = await client.patch(f"/api/v1/leads/{lead['id']}", json={"status": "won", "comment": "签单 光子嫩肤疗程卡"},
                           headers=kit.auth(token))
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "won" and body["first_contacted_at"]
    changes = [(h["change"], h["from_status"], h["to_status"]) for h in body["history"]]
    assert changes == [("created", None, "new"), ("assigned", None, None), ("status", "new", "contacted"),
                       ("status", "contacted", "consultation_booked"), ("status", "consultation_booked", "arrived"),
                       ("status", "arrived", "consulted"), ("status", "consulted", "won")]
    assert all(h["actor_id"] == staff[0]["id"] for h in body["history"][2:])
    # Closed is final.
    r = await client.patch(f"/api/v1/leads/{lead['id']}", json={"status": "lost", "lost_reason": "x"},
                           headers=kit.auth(token))
    assert r.status_code == 409 and r.json()["code"] == "lead_closed"
    # Once won, the same phone may start a new lead.
    r = await kit.post("/leads", {"name": "王芳", "phone": number})
    assert r.status_code == 201

    events = await owner_sql("SELECT topic, count(*) FROM outbox WHERE tenant_id = :t AND topic LIKE 'lead.%' "
                             "GROUP BY topic ORDER BY topic", t=kit.tenant_id)
    assert dict(events) == {"lead.assigned": 1, "lead.created": 2, "lead.status_changed": 5}


async def test_lost_needs_a_reason_and_a_lead_needs_a_contact(client):
    kit, store_id, staff = await shop(client, consultants=1)
    r = await kit.post("/leads", {"name": "赵敏"})
    assert r.status_code == 422 and r.json()["field"] == "phone"
    r = await kit.post("/leads", {"name": "赵敏", "channel_id": "8b0b8f3e-54a4-4a59-9d42-8ef8a2b3a0c1",
                                  "phone": phone()})
    assert r.status_code == 422 and r.json()["field"] == "channel_id"
    r = await kit.post("/leads", {"name": "赵敏", "campaign_code": "nosuch", "phone": phone()})
    assert r.status_code == 422 and r.json()["field"] == "campaign_code" and "nosuch" in r.json()["detail"]
    assert (await owner_sql("SELECT count(*) FROM growth_leads WHERE tenant_id = :t", t=kit.tenant_id))[0][0] == 0

    r = await kit.post("/leads", {"name": "赵敏", "openid": "oWx123abc"})
    assert r.status_code == 201 and r.json()["has_wechat"] and r.json()["assignee_id"] is None
    lead_id = r.json()["id"]
    r = await client.patch(f"/api/v1/leads/{lead_id}", json={"status": "lost"}, headers=kit.auth())
    assert r.status_code == 422
    r = await client.patch(f"/api/v1/leads/{lead_id}", json={"status": "lost", "lost_reason": "预算不足"},
                           headers=kit.auth())
    assert r.status_code == 200 and r.json()["lost_reason"] == "预算不足"
    assert r.json()["history"][-1]["note"] == "预算不足"


async def test_consultants_see_their_store_and_own_leads_with_masked_phone_for_others(client):
    kit, store_id, staff = await shop(client, consultants=2)
    other_store = await kit.store("徐汇店")
    await rule(kit, store_id=store_id)
    number = phone()
    r = await kit.post("/leads", {"name": "陈静", "phone": number, "store_id": store_id})
    lead = r.json()
    r = await kit.post("/leads", {"name": "林晓", "phone": phone(), "store_id": other_store})
    foreign = r.json()
    r = await kit.get("/leads?mine=true", staff[0]["token"] if lead["assignee_id"] == staff[0]["id"]
                      else staff[1]["token"])
    assert [i["id"] for i in r.json()["items"]] == [lead["id"]]
    r = await kit.get(f"/leads/{foreign['id']}", staff[0]["token"])
    assert r.status_code == 404
    marketing = await kit.staff(["marketing"])
    r = await kit.get(f"/leads/{lead['id']}", marketing["token"])
    assert r.status_code == 403  # marketing holds no growth permission
    manager = await kit.staff(["store_manager"], [store_id])
    r = await kit.get(f"/leads/{lead['id']}", manager["token"])
    assert r.status_code == 200 and r.json()["phone"] == number


async def test_demo_has_channels_a_rule_and_leads_in_every_status(client):
    from tests.factories import demo_reader

    get = await demo_reader(client)
    channels = {c["name"]: c for c in (await get("/channels"))["items"]}
    assert {"抖音", "小红书", "大众点评", "老带新", "到店"} <= set(channels)
    assert (await get(f"/channels/{channels['抖音']['id']}/spend"))["items"][0]["amount"] > 0
    assert len((await get("/campaign-codes"))["items"]) >= 5
    assert (await get("/assignment-rules"))["items"][0]["strategy"] == "round_robin"
    leads = (await get("/leads", limit=200))["items"]
    assert {lead["status"] for lead in leads} >= {"new", "contacted", "consultation_booked", "arrived", "consulted",
                                                 "won", "lost"}
    assert all(lead["assignee_id"] for lead in leads)
    assert any(lead["member_id"] for lead in leads)  # 王芳 is a member: matched by phone


async def test_sidebar_sees_the_consultants_own_leads_in_graphql(client):
    kit, store_id, staff = await shop(client, consultants=2)
    await rule(kit, store_id=store_id)
    created = [(await kit.post("/leads", {"name": f"客户{i}", "phone": phone(), "store_id": store_id})).json()
               for i in range(4)]
    mine = {c["id"] for c in created if c["assignee_id"] == staff[0]["id"]}
    query = "query($s: String) { myLeads(status: $s) { items { id name status phone } nextCursor } }"

    async def gql(q: str, variables: dict, token: str) -> dict:
        r = await client.post("/graphql", json={"query": q, "variables": variables}, headers=kit.auth(token))
        assert r.status_code == 200, r.text
        return r.json()

    body = await gql(query, {}, staff[0]["token"])
    assert {i["id"] for i in body["data"]["myLeads"]["items"]} == mine and len(mine) == 2
    lead_id = next(iter(mine))
    moved = await gql('mutation($id: ID!) { moveLead(leadId: $id, status: "contacted") { status } }',
                      {"id": lead_id}, staff[0]["token"])
    assert moved["data"]["moveLead"]["status"] == "contacted"
    back = await gql('mutation($id: ID!) { moveLead(leadId: $id, status: "new") { status } }', {"id": lead_id},
                     staff[0]["token"])
    assert back["errors"][0]["extensions"]["code"] == "validation_error"
    body = await gql(query, {"s": "contacted"}, staff[0]["token"])
    assert [i["id"] for i in body["data"]["myLeads"]["items"]] == [lead_id]


async def test_the_migration_grants_growth_permissions_to_existing_presets_as_the_catalogue_does(client,
                                                                                                 database_url):
    growth = ["growth:admin", "growth:read", "growth:write"]
    assert "growth:admin" not in PRESET_ROLES["store_manager"][1]
    assert {"growth:read", "growth:write"} <= PRESET_ROLES["consultant"][1]
    kit = await new_tenant(client)
    tenant_id = UUID(kit.tenant_id)
    # The tenant as it was before this release.
    await owner_sql("UPDATE roles SET permissions = ARRAY(SELECT p FROM unnest(permissions) AS p "
                    "WHERE p <> ALL(CAST(:g AS text[]))) WHERE tenant_id = :t", g=growth, t=tenant_id)
    module = _migration()
    engine = create_async_engine(async_url(database_url))

    def grant(connection) -> None:
        with Operations.context(MigrationContext.configure(connection)):
            module.grant_permissions()

    try:
        async with engine.begin() as connection:
            await connection.run_sync(grant)
    finally:
        await engine.dispose()
    rows = await owner_sql("SELECT name, permissions FROM roles WHERE tenant_id = :t AND preset", t=tenant_id)
    presets = {name: list(permissions) for name, permissions in rows}
    for role in ("owner", "store_manager", "consultant", "therapist", "front_desk"):
        assert presets[role] == sorted(PRESET_ROLES[role][1]), role
