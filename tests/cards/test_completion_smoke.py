from tests.factories import new_tenant


async def test_count_card_completion_and_reversal(client):
    kit = await new_tenant(client)
    store = await kit.store()
    therapist = await kit.staff(["therapist"], [store])
    oil = (await kit.post("/consumables", {"name": "按摩精油", "unit": "ml"})).json()["id"]
    r = await kit.post("/inventory/movements", {"store_id": store, "consumable_id": oil, "kind": "receive",
                                                "quantity": 100})
    assert r.status_code == 201, r.text
    service = (await kit.post("/services", {"name": "推拿", "duration_minutes": 60, "price": 19800,
                                            "resource_requirements": [{"kind": "bed"}],
                                            "consumables": [{"consumable_id": oil, "quantity": 10}],
                                            "commission": {"type": "percent", "value": 10}})).json()["id"]
    member = (await kit.post("/members", {"name": "李四", "phone": "13900001111"})).json()["id"]
    template = await kit.post("/card-templates", {"name": "推拿10次卡", "kind": "count", "price": 150000,
                                                  "items": [{"service_id": service, "sessions": 10}],
                                                  "valid_days": 365})
    assert template.status_code == 201, template.text
    card = await kit.post("/cards", {"member_id": member, "template_id": template.json()["id"], "store_id": store,
                                     "reason": "纸质卡迁移", "price_paid": 150000})
    assert card.status_code == 201, card.text
    card_id = card.json()["id"]
    done = await kit.post("/service-records", {"member_id": member, "store_id": store, "service_id": service,
                                               "staff_id": therapist["id"], "card_id": card_id},
                          token=therapist["token"])
    assert done.status_code == 201, done.text
    assert done.json()["card_remaining"] == 9 and done.json()["commission"] == 1500
    stock = await kit.get("/inventory/stock", params={"store_id": store})
    assert [i["quantity"] for i in stock.json()["items"] if i.get("consumable_id") == oil] == [90]
    cards = await kit.get(f"/members/{member}/cards")
    assert cards.json()["items"][0]["items"][0]["remaining"] == 9
    undo = await kit.post(f"/service-records/{done.json()['id']}/reverse", {"reason": "记错卡"})
    assert undo.status_code == 200, undo.text
    cards = await kit.get(f"/members/{member}/cards")
    assert cards.json()["items"][0]["items"][0]["remaining"] == 10
    commissions = await kit.get("/commissions", params={"staff_id": therapist["id"]})
    assert sorted(c["amount"] for c in commissions.json()["items"]) == [-1500, 1500]
    timeline = await kit.get(f"/members/{member}/timeline")
    assert {"card_change", "service_record", "member"} <= {i["type"] for i in timeline.json()["items"]}
