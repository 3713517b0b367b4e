from tests.factories import new_tenant


async def test_healthz(client):
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert r.headers["x-request-id"]


async def test_owner_creates_store_and_staff(client):
    kit = await new_tenant(client)
    store_id = await kit.store("静安旗舰店")
    r = await kit.get(f"/stores/{store_id}")
    assert r.status_code == 200 and r.json()["timezone"] == "Asia/Shanghai"
    therapist = await kit.staff(["therapist"], [store_id])
    me = await kit.get("/me", token=therapist["token"])
    assert me.json()["roles"] == ["therapist"]
    assert me.json()["store_ids"] == [store_id]
