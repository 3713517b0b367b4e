"""The signed public intake endpoint: signature, time window, rate limit, bad input (nothing stored), one
lead per person under concurrent intakes, members matched by phone."""

from __future__ import annotations

import asyncio
import json
import time

from app.domain.growth import intake as intake_module
from tests.growth.lead_helpers import campaign, channel, intake, owner_sql, phone, rule, secret, shop


async def _lead_count(tenant_id: str) -> int:
    return (await owner_sql("SELECT count(*) FROM growth_leads WHERE tenant_id = :t", t=tenant_id))[0][0]


async def test_signed_intake_creates_a_lead_from_a_campaign_code_and_touches_it_again(client):
    kit, store_id, staff = await shop(client, consultants=2)
    douyin = await channel(kit, "抖音", "platform", code="douyin")
    code = await campaign(kit, douyin, "DY1212", store_id=store_id)
    await rule(kit, store_id=store_id)
    key = await secret(kit)
    number = phone()
    member = (await kit.post("/members", {"name": "刘洋", "phone": number})).json()["id"]

    r = await intake(client, kit.code, key, {"name": "刘洋", "phone": number, "campaign_code": "DY1212",
                                             "interests": ["热玛吉"]})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["created"] and first["member_id"] == member and first["assignee_id"] in {s["id"] for s in staff}
    lead = (await kit.get(f"/leads/{first['lead_id']}")).json()
    assert lead["channel_id"] == douyin and lead["campaign_code_id"] == code["id"] and lead["store_id"] == store_id
    assert lead["source"] == "intake"

    # The same phone again (another channel): the same lead, a new touch, no second assignment.
    r = await intake(client, kit.code, key, {"phone": number, "channel_code": "douyin"})
    assert r.status_code == 200 and r.json()["lead_id"] == first["lead_id"] and not r.json()["created"]
    assert (await kit.get(f"/leads/{first['lead_id']}")).json()["touches"] == 2
    assert await _lead_count(kit.tenant_id) == 1
    touches = await owner_sql("SELECT count(*) FROM growth_lead_touches WHERE lead_id = :l", l=first["lead_id"])
    assert touches[0][0] == 2
    # A WeChat identity alone is enough.
    r = await intake(client, kit.code, key, {"unionid": "uWx9988", "channel_code": "douyin"})
    assert r.status_code == 201


async def test_bad_signature_stale_timestamp_and_bad_input_store_nothing(client):
    kit, store_id, staff = await shop(client, consultants=1)
    await channel(kit, "小红书", "platform", code="xhs")
    body = {"name": "黄蓉", "phone": phone(), "channel_code": "xhs"}
    r = await intake(client, kit.code, "lisec_wrong", body)
    assert r.status_code == 401 and r.json()["code"] == "intake_not_enabled"
    key = await secret(kit)
    r = await intake(client, kit.code, "lisec_wrong", body)
    assert r.status_code == 401 and r.json()["code"] == "invalid_signature"
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await intake(client, kit.code, key, body, timestamp=int(time.time()) - 301)
    assert r.status_code == 401 and r.json()["code"] == "stale_timestamp"
    raw = json.dumps(body).encode()
    r = await client.post(f"/api/v1/lead-intake/{kit.code}", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and r.json()["code"] == "signature_missing"
    # A body tampered after signing.
    signed = intake_module.sign(key, raw)
    r = await client.post(f"/api/v1/lead-intake/{kit.code}", content=raw.replace(b"xhs", b"xhx"), headers=signed)
    assert r.status_code == 401
    r = await intake(client, "nosuchtenant", key, body)
    assert r.status_code == 404

    r = await intake(client, kit.code, key, {"name": "黄蓉", "channel_code": "xhs"})
    assert r.status_code == 422 and r.json()["field"] == "phone"
    r = await intake(client, kit.code, key, {"phone": phone(), "channel_code": "weibo"})
    assert r.status_code == 422 and r.json()["field"] == "channel_code" and "weibo" in r.json()["detail"]
    r = await intake(client, kit.code, key, {"phone": phone(), "campaign_code": "NOPE1"})
    assert r.status_code == 422 and r.json()["field"] == "campaign_code" and "NOPE1" in r.json()["detail"]
    r = await intake(client, kit.code, key, {"phone": "12", "channel_code": "xhs"})
    assert r.status_code == 422
    r = await intake(client, kit.code, key, {"phone": phone(), "unknown_field": 1})
    assert r.status_code == 422 and "unknown_field" in r.text
    assert await _lead_count(kit.tenant_id) == 0

    # Rotating the secret retires the old one.
    new_key = await secret(kit)
    assert (await intake(client, kit.code, key, body)).status_code == 401
    assert (await intake(client, kit.code, new_key, body)).status_code == 201


async def test_over_the_rate_is_429_and_stores_nothing(client, monkeypatch):
    kit, store_id, staff = await shop(client, consultants=1)
    key = await secret(kit)
    monkeypatch.setattr(intake_module, "RATE_PER_MINUTE", 3)
    # The window is the minute: 4 requests hit it unless the minute turns over mid-run, hence up to 8.
    results = []
    for _ in range(8):
        results.append(await intake(client, kit.code, key, {"phone": phone()}))
        if results[-1].status_code == 429:
            break
    limited = results[-1]
    assert limited.status_code == 429, [r.status_code for r in results]
    assert limited.json()["code"] == "intake_rate_limited" and "retry-after" in limited.headers
    # A forged request counts too (it is refused before its signature is looked at).
    assert (await intake(client, kit.code, "lisec_forged", {"phone": phone()})).status_code in (401, 429)
    assert await _lead_count(kit.tenant_id) == sum(r.status_code == 201 for r in results)


async def test_concurrent_intakes_of_one_phone_make_one_lead(client):
    kit, store_id, staff = await shop(client, consultants=2)
    await rule(kit, store_id=store_id)
    key = await secret(kit)
    number = phone()
    responses = await asyncio.gather(*(intake(client, kit.code, key, {"phone": number, "store_id": store_id})
                                       for _ in range(20)))
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    assert [r.status_code for r in responses].count(201) == 1
    assert len({r.json()["lead_id"] for r in responses}) == 1
    rows = await owner_sql("SELECT touches, assignee_id FROM growth_leads WHERE tenant_id = :t", t=kit.tenant_id)
    assert len(rows) == 1 and rows[0][0] == 20 and rows[0][1] is not None
    assigned = await owner_sql("SELECT count(*) FROM growth_lead_history WHERE tenant_id = :t AND change = 'assigned'",
                               t=kit.tenant_id)
    assert assigned[0][0] == 1
