"""Catalog over REST: the contract's shapes, strict money and quantities, deactivation, tenant isolation."""

from __future__ import annotations

import pytest

from app.domain.catalog.service import compute_commission
from tests.factories import new_tenant


async def _consumable(kit, name="按摩精油", unit="ml", **extra) -> str:
    r = await kit.post("/consumables", {"name": name, "unit": unit, **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _problem(r, status: int, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    if field is not None:
        named = [e["field"] for e in problem.get("errors", [])]
        assert field in named, f"{field} not in {named}: {problem['detail']}"
    return problem


async def test_contract_create_calls_and_reads(client):
    kit = await new_tenant(client)
    oil = await _consumable(kit)
    sheet = await _consumable(kit, "一次性床单", "张", low_stock_threshold=30)
    r = await kit.post("/services", {
        "name": "推拿", "duration_minutes": 60, "price": 19800, "resource_requirements": [{"kind": "bed"}],
        "consumables": [{"consumable_id": oil, "quantity": 10}, {"consumable_id": sheet, "quantity": 1}],
        "commission": {"type": "percent", "value": 15}})
    assert r.status_code == 201, r.text
    created = r.json()
    assert isinstance(created["id"], str) and created["price"] == 19800
    got = (await kit.get(f"/services/{created['id']}")).json()
    assert got["resource_requirements"] == [{"kind": "bed"}]
    assert sorted((c["name"], c["unit"], c["quantity"]) for c in got["consumables"]) == [
        ("一次性床单", "张", 1), ("按摩精油", "ml", 10)]
    assert got["commission"] == {"type": "percent", "value": 15, "levels": None} and got["active"] is True
    assert got["buffer_minutes"] == 0

    consumables = (await kit.get("/consumables")).json()
    assert {c["name"]: c["low_stock_threshold"] for c in consumables["items"]} == {"按摩精油": 0, "一次性床单": 30}
    assert "next_cursor" in consumables
    listed = (await kit.get("/services", params={"q": "推"})).json()["items"]
    assert [s["id"] for s in listed] == [created["id"]] and len(listed[0]["consumables"]) == 2


async def test_update_service_replaces_recipe_and_deactivates(client):
    kit = await new_tenant(client)
    oil, moxa = await _consumable(kit), await _consumable(kit, "艾条", "根")
    service_id = (await kit.post("/services", {
        "name": "艾灸", "duration_minutes": 45, "price": 16800, "consumables": [{"consumable_id": oil, "quantity": 5}],
        "commission": {"type": "fixed", "value": 3000, "levels": {"senior": 4000}}})).json()["id"]
    r = await client.patch(f"/api/v1/services/{service_id}", headers=kit.auth(), json={
        "price": 18800, "consumables": [{"consumable_id": moxa, "quantity": 2}], "commission": None,
        "resource_requirements": [{"kind": "device", "pool": "艾灸仪"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["price"] == 18800 and body["commission"] is None
    assert [(c["consumable_id"], c["quantity"]) for c in body["consumables"]] == [(moxa, 2)]
    assert body["resource_requirements"][0]["pool"] == "艾灸仪" and body["duration_minutes"] == 45
    r = await client.patch(f"/api/v1/services/{service_id}", headers=kit.auth(), json={"active": False})
    assert r.json()["active"] is False
    assert [s["id"] for s in (await kit.get("/services", params={"active": "false"})).json()["items"]] == [service_id]
    assert (await kit.get("/services", params={"active": "true"})).json()["items"] == []
    # Deactivated consumables cannot go into a recipe.
    await client.patch(f"/api/v1/consumables/{oil}", headers=kit.auth(), json={"active": False})
    r = await kit.post("/services", {"name": "推拿", "duration_minutes": 60, "price": 19800,
                                     "consumables": [{"consumable_id": oil, "quantity": 1}]})
    _problem(r, 422, "consumables.0.consumable_id")


async def test_products_with_unique_sku(client):
    kit = await new_tenant(client)
    r = await kit.post("/products", {"name": "养生茶", "unit": "罐", "price": 8800, "sku": "TEA-1",
                                     "low_stock_threshold": 10})
    assert r.status_code == 201, r.text
    tea = r.json()
    assert tea["price"] == 8800 and tea["active"] is True
    dup = await kit.post("/products", {"name": "另一款茶", "unit": "罐", "price": 6800, "sku": "TEA-1"})
    assert _problem(dup, 409)["code"] == "product_sku_exists"
    found = (await kit.get("/products", params={"sku": "TEA-1"})).json()["items"]
    assert [p["id"] for p in found] == [tea["id"]]
    r = await client.patch(f"/api/v1/products/{tea['id']}", headers=kit.auth(), json={"price": 9800, "active": False})
    assert r.status_code == 200 and r.json()["price"] == 9800 and r.json()["active"] is False
    # unit is fixed once created: the ledger's quantities are in it
    r = await client.patch(f"/api/v1/products/{tea['id']}", headers=kit.auth(), json={"unit": "盒"})
    _problem(r, 422, "unit")


BASE_SERVICE = {"name": "拔罐", "duration_minutes": 30, "price": 12800}


STRICT_SERVICE_CASES = [
    ({"price": 128.0}, "price"),
    ({"price": 128.5}, "price"),
    ({"price": "12800"}, "price"),
    ({"price": -1}, "price"),
    ({"price": True}, "price"),
    ({"price": 10**12}, "price"),
    ({"duration_minutes": 0}, "duration_minutes"),
    ({"duration_minutes": 30.0}, "duration_minutes"),
    ({"buffer_minutes": -5}, "buffer_minutes"),
    ({"commission": {"type": "fixed", "value": 20.5}}, "commission.value"),
    ({"commission": {"type": "fixed", "value": "2000"}}, "commission.value"),
    ({"commission": {"type": "percent", "value": 150}}, "commission.value"),
    ({"commission": {"type": "percent", "value": 10, "levels": {"senior": 101}}}, "commission.levels"),
    ({"commission": {"type": "bonus", "value": 10}}, "commission.type"),
    ({"resource_requirements": [{"kind": "chair"}]}, "resource_requirements.0.kind"),
]


async def test_service_money_and_times_are_strict(client):
    kit = await new_tenant(client)
    for change, field in STRICT_SERVICE_CASES:
        r = await kit.post("/services", BASE_SERVICE | change)
        assert _problem(r, 422, field)["code"] == "validation_error", change
    assert (await kit.get("/services")).json()["items"] == []


async def test_recipe_quantities_are_positive_integers(client):
    kit = await new_tenant(client)
    oil = await _consumable(kit)
    for quantity in (0, -1, 1.0, 1.5, "2", None):
        r = await kit.post("/services", BASE_SERVICE | {"consumables": [{"consumable_id": oil, "quantity": quantity}]})
        _problem(r, 422, "consumables.0.quantity")


async def test_bad_catalog_input_names_the_field(client):
    kit = await new_tenant(client)
    oil = await _consumable(kit)
    cases = [
        ("/consumables", {"name": "艾条", "unit": "根", "low_stock_threshold": -1}, "low_stock_threshold"),
        ("/consumables", {"name": "艾条", "unit": "根", "low_stock_threshold": 2.5}, "low_stock_threshold"),
        ("/consumables", {"name": "艾条"}, "unit"),
        ("/products", {"name": "茶", "unit": "罐", "price": 88.0}, "price"),
        ("/products", {"name": "茶", "unit": "罐", "price": "8800"}, "price"),
        ("/products", {"name": "茶", "unit": "罐"}, "price"),
        ("/services", BASE_SERVICE | {"consumables": [{"consumable_id": oil, "quantity": 1},
                                                      {"consumable_id": oil, "quantity": 2}]}, "consumables"),
    ]
    for path, body, field in cases:
        _problem(await kit.post(path, body), 422, field)
    service_id = (await kit.post("/services", BASE_SERVICE)).json()["id"]
    for body, field in (({"price": None}, "price"), ({"name": None}, "name"), ({"price": 1.5}, "price")):
        _problem(await client.patch(f"/api/v1/services/{service_id}", headers=kit.auth(), json=body), 422, field)
    _problem(await client.patch(f"/api/v1/consumables/{oil}", headers=kit.auth(), json={"unit": "L"}), 422, "unit")


async def test_another_tenants_catalog_is_invisible(client):
    kit, other = await new_tenant(client), await new_tenant(client)
    oil = await _consumable(kit)
    service_id = (await kit.post("/services", BASE_SERVICE)).json()["id"]
    product_id = (await kit.post("/products", {"name": "茶", "unit": "罐", "price": 8800})).json()["id"]
    for path in (f"/services/{service_id}", f"/consumables/{oil}", f"/products/{product_id}"):
        assert (await other.get(path)).status_code == 404, path
        r = await client.patch(f"/api/v1{path}", headers=other.auth(), json={"name": "改名"})
        assert r.status_code == 404, path
    assert (await other.get("/services")).json()["items"] == []
    r = await other.post("/services", BASE_SERVICE | {"consumables": [{"consumable_id": oil, "quantity": 1}]})
    _problem(r, 422, "consumables.0.consumable_id")


async def test_catalog_permissions(client):
    kit = await new_tenant(client)
    store = await kit.store()
    therapist = await kit.staff(["therapist"], [store])
    assert (await kit.get("/services", token=therapist["token"])).status_code == 200
    r = await kit.post("/services", BASE_SERVICE, token=therapist["token"])
    assert _problem(r, 403)["code"] == "permission_denied"
    assert (await kit.post("/consumables", {"name": "艾条", "unit": "根"}, token=therapist["token"])).status_code == 403


def test_compute_commission():
    percent = {"type": "percent", "value": 15, "levels": {"senior": 20}}
    assert compute_commission(percent, 19800) == 2970
    assert compute_commission(percent, 19800, "senior") == 3960
    assert compute_commission(percent, 19800, "unknown level") == 2970
    assert compute_commission(percent, 1003) == 150  # 150.45 → 150
    assert compute_commission(percent, 1010) == 152  # 151.5 → 152, half up
    assert compute_commission({"type": "fixed", "value": 3000, "levels": {"senior": 4000}}, 16800, "senior") == 4000
    assert compute_commission({"type": "fixed", "value": 3000}, 0) == 3000
    assert compute_commission(None, 19800) == 0
    with pytest.raises(ValueError):
        compute_commission(percent, 198.0)
