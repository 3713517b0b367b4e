"""Inventory over REST: receive/adjust, stock, the ledger, transfers, reversal, thresholds, store scoping."""

from __future__ import annotations

import uuid

from tests.factories import new_tenant


def _problem(r, status: int, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    if field is not None:
        named = [e["field"] for e in problem.get("errors", [])]
        assert field in named, f"{field} not in {named}: {problem['detail']}"
    return problem


async def _setup(client):
    kit = await new_tenant(client)
    store_a, store_b = await kit.store("静安店"), await kit.store("徐汇店")
    oil = (await kit.post("/consumables", {"name": "按摩精油", "unit": "ml", "low_stock_threshold": 100})).json()["id"]
    tea = (await kit.post("/products", {"name": "养生茶", "unit": "罐", "price": 8800})).json()["id"]
    return kit, store_a, store_b, oil, tea


async def _stock(kit, store: str) -> dict[str, int]:
    r = await kit.get("/inventory/stock", params={"store_id": store})
    assert r.status_code == 200, r.text
    return {i["item_id"]: i["quantity"] for i in r.json()["items"]}


async def test_contract_receive_adjust_and_stock(client):
    kit, store, _, oil, tea = await _setup(client)
    r = await kit.post("/inventory/movements", {"store_id": store, "consumable_id": oil, "kind": "receive",
                                                "quantity": 500})
    assert r.status_code == 201, r.text
    received = r.json()
    assert received["kind"] == "receive" and received["quantity"] == 500 and received["balance_after"] == 500
    assert received["consumable_id"] == oil and received["product_id"] is None
    r = await kit.post("/inventory/movements", {"store_id": store, "consumable_id": oil, "kind": "adjust",
                                                "quantity": -30, "reason": "盘点损耗"})
    assert r.status_code == 201 and r.json()["balance_after"] == 470 and r.json()["reason"] == "盘点损耗"
    r = await kit.post("/inventory/movements", {"store_id": store, "product_id": tea, "kind": "receive",
                                                "quantity": 12})
    assert r.status_code == 201 and r.json()["product_id"] == tea and r.json()["item_kind"] == "product"

    items = (await kit.get("/inventory/stock", params={"store_id": store})).json()["items"]
    by_id = {i["item_id"]: i for i in items}
    assert by_id[oil]["consumable_id"] == oil and by_id[oil]["quantity"] == 470
    assert by_id[oil] | {"updated_at": None} == {
        "store_id": store, "item_kind": "consumable", "item_id": oil, "consumable_id": oil, "product_id": None,
        "name": "按摩精油", "unit": "ml", "quantity": 470, "low_stock_threshold": 100, "low_stock": False,
        "updated_at": None}
    assert by_id[tea]["product_id"] == tea and by_id[tea]["quantity"] == 12 and by_id[tea]["consumable_id"] is None
    only_products = (await kit.get("/inventory/stock", params={"store_id": store, "item_kind": "product"})).json()
    assert [i["item_id"] for i in only_products["items"]] == [tea]

    ledger = (await kit.get("/inventory/movements", params={"store_id": store, "item_id": oil})).json()
    assert [(m["kind"], m["quantity"], m["balance_after"]) for m in ledger["items"]] == [
        ("adjust", -30, 470), ("receive", 500, 500)]
    first = (await kit.get("/inventory/movements", params={"store_id": store, "limit": 2})).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = (await kit.get("/inventory/movements", params={"store_id": store, "limit": 2,
                                                         "cursor": first["next_cursor"]})).json()
    assert [m["id"] for m in rest["items"]] == [received["id"]] and rest["next_cursor"] is None


async def test_quantities_are_strict_and_reasons_required(client):
    kit, store, _, oil, tea = await _setup(client)
    base = {"store_id": store, "consumable_id": oil, "kind": "receive", "quantity": 10}
    cases = [
        ({"quantity": 0}, "quantity"),
        ({"quantity": -5}, "quantity"),
        ({"quantity": 1.0}, "quantity"),
        ({"quantity": 2.5}, "quantity"),
        ({"quantity": "10"}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"quantity": 10**9}, "quantity"),
        ({"kind": "adjust", "quantity": -3}, "reason"),
        ({"kind": "adjust", "quantity": -3, "reason": "   "}, "reason"),
        ({"kind": "adjust", "quantity": 0, "reason": "盘点"}, "quantity"),
        ({"kind": "consume"}, "kind"),
        ({"product_id": tea}, "consumable_id"),
        ({"consumable_id": None}, "consumable_id"),
        ({"consumable_id": "not-a-uuid"}, "consumable_id"),
    ]
    for change, field in cases:
        r = await kit.post("/inventory/movements", base | change)
        assert _problem(r, 422, field)["code"] == "validation_error", change
    transfer = {"from_store_id": store, "to_store_id": await kit.store("徐汇店"),
                "lines": [{"consumable_id": oil, "quantity": 1}]}
    for change, field in (({"lines": [{"consumable_id": oil, "quantity": 0}]}, "lines.0.quantity"),
                          ({"lines": [{"consumable_id": oil, "quantity": 1.5}]}, "lines.0.quantity"),
                          ({"lines": []}, "lines"), ({"to_store_id": store}, "to_store_id")):
        _problem(await kit.post("/inventory/transfers", transfer | change), 422, field)
    assert await _stock(kit, store) == {}


async def test_stock_never_goes_negative_unless_allowed(client):
    kit, store, _, oil, _ = await _setup(client)
    r = await kit.post("/inventory/movements", {"store_id": store, "consumable_id": oil, "kind": "adjust",
                                                "quantity": -1, "reason": "破损"})
    problem = _problem(r, 409)
    assert problem["code"] == "insufficient_stock" and problem["item_name"] == "按摩精油"
    assert problem["available"] == 0 and problem["requested"] == 1
    await kit.post("/inventory/movements", {"store_id": store, "consumable_id": oil, "kind": "receive", "quantity": 5})
    r = await kit.post("/inventory/movements", {"store_id": store, "consumable_id": oil, "kind": "adjust",
                                                "quantity": -6, "reason": "破损"})
    assert _problem(r, 409)["available"] == 5
    assert await _stock(kit, store) == {oil: 5}
    assert len((await kit.get("/inventory/movements", params={"store_id": store})).json()["items"]) == 1

    from tests.inventory.helpers import allow_negative_stock

    await allow_negative_stock(uuid.UUID(kit.tenant_id))
    r = await kit.post("/inventory/movements", {"store_id": store, "consumable_id": oil, "kind": "adjust",
                                                "quantity": -6, "reason": "先用后补"})
    assert r.status_code == 201 and r.json()["balance_after"] == -1


async def test_transfers_move_stock_atomically(client):
    kit, store_a, store_b, oil, tea = await _setup(client)
    await kit.post("/inventory/movements", {"store_id": store_a, "consumable_id": oil, "kind": "receive",
                                            "quantity": 300})
    await kit.post("/inventory/movements", {"store_id": store_a, "product_id": tea, "kind": "receive", "quantity": 2})
    r = await kit.post("/inventory/transfers", {"from_store_id": store_a, "to_store_id": store_b, "reason": "调拨",
                                                "lines": [{"consumable_id": oil, "quantity": 120},
                                                          {"product_id": tea, "quantity": 2}]})
    assert r.status_code == 201, r.text
    body = r.json()
    assert [(m["store_id"], m["kind"], m["quantity"]) for m in body["movements"]] == [
        (store_a, "transfer_out", -120), (store_b, "transfer_in", 120),
        (store_a, "transfer_out", -2), (store_b, "transfer_in", 2)]
    assert {m["transfer_id"] for m in body["movements"]} == {body["transfer_id"]}
    assert await _stock(kit, store_a) == {oil: 180, tea: 0}
    assert await _stock(kit, store_b) == {oil: 120, tea: 2}

    # The second line is short: neither line moves, nothing is written.
    before_a, before_b = await _stock(kit, store_a), await _stock(kit, store_b)
    ledger_before = (await kit.get("/inventory/movements")).json()["items"]
    r = await kit.post("/inventory/transfers", {"from_store_id": store_a, "to_store_id": store_b,
                                                "lines": [{"consumable_id": oil, "quantity": 100},
                                                          {"product_id": tea, "quantity": 1}]})
    problem = _problem(r, 409)
    assert problem["code"] == "insufficient_stock" and problem["item_name"] == "养生茶"
    assert await _stock(kit, store_a) == before_a and await _stock(kit, store_b) == before_b
    assert (await kit.get("/inventory/movements")).json()["items"] == ledger_before

    # Undoing one leg undoes the whole transfer.
    r = await kit.post(f"/inventory/movements/{body['movements'][1]['id']}/reverse", {"reason": "调错店"})
    assert r.status_code == 201, r.text
    assert {m["reverses_id"] for m in r.json()["items"]} == {m["id"] for m in body["movements"]}
    assert await _stock(kit, store_a) == {oil: 300, tea: 2}
    assert await _stock(kit, store_b) == {oil: 0, tea: 0}


async def test_reversal_points_back_and_happens_once(client):
    kit, store, _, oil, _ = await _setup(client)
    received = (await kit.post("/inventory/movements", {"store_id": store, "consumable_id": oil, "kind": "receive",
                                                        "quantity": 50})).json()
    r = await kit.post(f"/inventory/movements/{received['id']}/reverse", {"reason": "录错数量"})
    assert r.status_code == 201, r.text
    (reversal,) = r.json()["items"]
    assert reversal["kind"] == "reversal" and reversal["reverses_id"] == received["id"]
    assert reversal["quantity"] == -50 and reversal["balance_after"] == 0 and reversal["reason"] == "录错数量"
    assert _problem(await kit.post(f"/inventory/movements/{received['id']}/reverse", {"reason": "再来"}),
                    409)["code"] == "movement_already_reversed"
    assert _problem(await kit.post(f"/inventory/movements/{reversal['id']}/reverse", {"reason": "再来"}),
                    409)["code"] == "cannot_reverse_reversal"
    _problem(await kit.post(f"/inventory/movements/{received['id']}/reverse", {}), 422, "reason")
    assert await _stock(kit, store) == {oil: 0}
    # Reversing a receive whose goods were used since would overdraw: refused.
    second = (await kit.post("/inventory/movements", {"store_id": store, "consumable_id": oil, "kind": "receive",
                                                      "quantity": 10})).json()
    await kit.post("/inventory/movements", {"store_id": store, "consumable_id": oil, "kind": "adjust",
                                            "quantity": -4, "reason": "使用"})
    assert _problem(await kit.post(f"/inventory/movements/{second['id']}/reverse", {"reason": "退货"}),
                    409)["code"] == "insufficient_stock"


async def test_thresholds_per_store(client):
    kit, store_a, store_b, oil, _ = await _setup(client)
    await kit.post("/inventory/movements", {"store_id": store_a, "consumable_id": oil, "kind": "receive",
                                            "quantity": 80})
    item = (await kit.get("/inventory/stock", params={"store_id": store_a})).json()["items"][0]
    assert item["low_stock_threshold"] == 100 and item["low_stock"] is True
    r = await client.put("/api/v1/inventory/thresholds", headers=kit.auth(),
                         json={"store_id": store_a, "consumable_id": oil, "low_stock_threshold": 50})
    assert r.status_code == 200, r.text
    assert r.json()["low_stock_threshold"] == 50 and r.json()["low_stock"] is False and r.json()["quantity"] == 80
    r = await client.put("/api/v1/inventory/thresholds", headers=kit.auth(),
                         json={"store_id": store_b, "consumable_id": oil, "low_stock_threshold": 1.5})
    _problem(r, 422, "low_stock_threshold")
    r = await client.put("/api/v1/inventory/thresholds", headers=kit.auth(),
                         json={"store_id": store_a, "consumable_id": oil, "low_stock_threshold": None})
    assert r.json()["low_stock_threshold"] == 100


async def test_store_scoping_and_tenant_isolation(client):
    kit, store_a, store_b, oil, _ = await _setup(client)
    manager = await kit.staff(["store_manager"], [store_a])
    front_desk = await kit.staff(["front_desk"], [store_a])
    receive = {"consumable_id": oil, "kind": "receive", "quantity": 10}
    assert (await kit.post("/inventory/movements", receive | {"store_id": store_a},
                           token=manager["token"])).status_code == 201
    assert (await kit.post("/inventory/movements", receive | {"store_id": store_b})).status_code == 201
    r = await kit.post("/inventory/movements", receive | {"store_id": store_b}, token=manager["token"])
    assert _problem(r, 403)["code"] == "store_forbidden"
    r = await kit.post("/inventory/transfers", {"from_store_id": store_b, "to_store_id": store_a,
                                                "lines": [{"consumable_id": oil, "quantity": 1}]},
                       token=manager["token"])
    _problem(r, 403)
    _problem(await kit.get("/inventory/stock", params={"store_id": store_b}, token=manager["token"]), 403)
    mine = (await kit.get("/inventory/movements", token=manager["token"])).json()["items"]
    assert {m["store_id"] for m in mine} == {store_a}
    # Without store_id: every store the caller may see, store by store, page by page.
    stock = (await kit.get("/inventory/stock", token=manager["token"])).json()
    assert [(i["store_id"], i["quantity"]) for i in stock["items"]] == [(store_a, 10)]
    first = (await kit.get("/inventory/stock", params={"limit": 1})).json()
    rest = (await kit.get("/inventory/stock", params={"limit": 1, "cursor": first["next_cursor"]})).json()
    assert sorted(i["store_id"] for i in first["items"] + rest["items"]) == sorted([store_a, store_b])
    assert rest["next_cursor"] is None
    # front desk reads stock of its store but cannot change it
    assert (await kit.get("/inventory/stock", params={"store_id": store_a},
                          token=front_desk["token"])).status_code == 200
    r = await kit.post("/inventory/movements", receive | {"store_id": store_a}, token=front_desk["token"])
    assert _problem(r, 403)["code"] == "permission_denied"

    other = await new_tenant(client)
    other_store = await other.store()
    r = await other.post("/inventory/movements", receive | {"store_id": other_store})
    assert _problem(r, 404)["code"] == "consumable_not_found"
    r = await other.post("/inventory/movements", {"store_id": store_a, "consumable_id": oil, "kind": "receive",
                                                  "quantity": 1})
    assert _problem(r, 404)["code"] == "store_not_found"
    _problem(await other.get("/inventory/stock", params={"store_id": store_a}), 404)
    assert (await other.get("/inventory/movements", params={"item_id": oil})).json()["items"] == []
    moved = (await kit.get("/inventory/movements")).json()["items"][0]
    _problem(await other.post(f"/inventory/movements/{moved['id']}/reverse", {"reason": "x"}), 404)
    assert await _stock(kit, store_a) == {oil: 10}


async def test_receiving_a_deactivated_item_is_refused(client):
    kit, store, _, oil, _ = await _setup(client)
    await client.patch(f"/api/v1/consumables/{oil}", headers=kit.auth(), json={"active": False})
    r = await kit.post("/inventory/movements", {"store_id": store, "consumable_id": oil, "kind": "receive",
                                                "quantity": 1})
    assert _problem(r, 409)["code"] == "consumable_inactive"


async def test_repeated_post_with_an_idempotency_key_receives_once(client):
    kit, store, _, oil, _ = await _setup(client)
    body = {"store_id": store, "consumable_id": oil, "kind": "receive", "quantity": 40}
    key = {"Idempotency-Key": f"receive-{uuid.uuid4().hex}"}
    first = await kit.post("/inventory/movements", body, headers=key)
    again = await kit.post("/inventory/movements", body, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers.get("idempotent-replayed") == "true"
    assert await _stock(kit, store) == {oil: 40}
