from tests.factories import new_tenant


async def test_create_search_and_mask(client):
    kit = await new_tenant(client)
    store = await kit.store()
    r = await kit.post("/members", {"name": "张三", "phone": "+86 138-0013-8000", "gender": "male",
                                    "birthday": "1985-03-02", "tags": ["颈椎病", "VIP"], "home_store_id": store})
    assert r.status_code == 201, r.text
    member = r.json()
    assert member["phone"] == "13800138000" and member["tags"] == ["VIP", "颈椎病"]
    dup = await kit.post("/members", {"name": "张三丰", "phone": "13800138000"})
    assert dup.status_code == 409 and dup.json()["code"] == "member_phone_exists"
    for q in ("zs", "zhangs", "张", "13800138000", "138 0013 8000"):
        found = await kit.get("/members", params={"q": q})
        assert [m["id"] for m in found.json()["items"]] == [member["id"]], q
    marketing = await kit.staff(["marketing"])
    seen = await kit.get(f"/members/{member['id']}", token=marketing["token"])
    assert seen.json()["phone"] == "138****8000" and seen.json()["health"] is None
    timeline = await kit.get(f"/members/{member['id']}/timeline")
    assert timeline.status_code == 200 and timeline.json()["items"][0]["type"] == "member"
