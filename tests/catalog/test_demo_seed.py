"""The demo tenant has a usable catalog and stock in both stores."""

from __future__ import annotations

from app.seed import DEMO_PASSWORD, DEMO_TENANT, seed_demo
from tests.factories import login


async def test_demo_catalog_and_stock(client):
    await seed_demo(if_missing=True)
    token = await login(client, DEMO_TENANT, "owner", DEMO_PASSWORD)
    headers = {"Authorization": f"Bearer {token}"}
    services = {s["name"]: s for s in (await client.get("/api/v1/services", headers=headers)).json()["items"]}
    assert {"推拿", "艾灸", "拔罐", "肩颈调理", "中医面诊"} <= set(services)
    massage = services["推拿"]
    assert massage["price"] == 19800 and massage["duration_minutes"] == 60
    assert sorted((c["name"], c["quantity"]) for c in massage["consumables"]) == [("一次性床单", 1), ("按摩精油", 10)]
    assert massage["commission"]["type"] == "percent" and massage["commission"]["value"] == 15
    assert services["艾灸"]["commission"]["levels"]["senior"] == 4000
    products = {p["name"]: p for p in (await client.get("/api/v1/products", headers=headers)).json()["items"]}
    assert products["养生茶"]["price"] == 8800 and products["艾草足浴包"]["unit"] == "盒"
    stock = (await client.get("/api/v1/inventory/stock", headers=headers)).json()["items"]
    by_store: dict[str, dict[str, int]] = {}
    for item in stock:
        by_store.setdefault(item["store_id"], {})[item["name"]] = item["quantity"]
    assert len(by_store) == 2
    assert all(levels["艾条"] > 0 and levels["养生茶"] > 0 for levels in by_store.values())
