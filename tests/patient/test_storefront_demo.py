"""The demo tenant shows the mini-program's storefront: published stores with map positions, photos and hours,
services with aftercare notes, therapist profiles, cards on sale, and a member's visits with their aftercare."""

from __future__ import annotations

from app.core.security import issue_token
from app.seed import DEMO_PASSWORD, DEMO_TENANT, seed_demo
from tests.factories import login
from tests.patient.helpers import bearer


async def test_demo_storefront(client):
    await seed_demo(if_missing=True)
    owner = bearer(await login(client, DEMO_TENANT, "owner", DEMO_PASSWORD))
    found = (await client.get("/api/v1/members", headers=owner, params={"q": "张伟"})).json()["items"]
    member = next(m for m in found if m["name"] == "张伟")
    me = (await client.get("/api/v1/me", headers=owner)).json()
    token, _ = issue_token(subject=member["id"], tenant_id=me["tenant_id"], audience="patient", ttl_seconds=600)
    patient = bearer(token)

    async def get(path: str, **params) -> dict:
        r = await client.get(f"/api/v1/patient{path}", headers=patient, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    near_xuhui = (await get("/stores", latitude=31.1930, longitude=121.4380))["items"]
    assert [s["name"] for s in near_xuhui] == ["康悦堂·徐汇店", "康悦堂·静安旗舰店"]
    assert near_xuhui[0]["distance_m"] < 500 and near_xuhui[1]["distance_m"] > 3000
    flagship = near_xuhui[1]
    assert flagship["photos"] and flagship["description"] and len(flagship["hours"]) == 7

    services = (await get(f"/stores/{flagship['id']}/services"))["items"]
    assert {"推拿", "艾灸", "拔罐"} <= {s["name"] for s in services}
    assert all(s["aftercare_note"] for s in services)
    therapists = {t["name"]: t for t in (await get(f"/stores/{flagship['id']}/therapists"))["items"]}
    assert therapists["陈晓明"]["title"] == "高级推拿师" and therapists["陈晓明"]["skills"]
    cards = {c["name"] for c in (await get("/card-templates"))["items"]}
    assert {"推拿10次卡", "肩颈调理疗程卡", "储值卡 充1000送200"} <= cards and "艾灸养生月卡" not in cards

    visits = await get("/me/visits")
    assert visits["past"] and all(v["aftercare_note"] for v in visits["past"])
