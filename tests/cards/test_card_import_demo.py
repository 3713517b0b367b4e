"""`careloop seed-demo` carries a small legacy export over through the import: the demo tenant shows migrated
cards with their `migration` entries, points brought over and the old visit history."""

from __future__ import annotations

from tests.factories import demo_reader


async def test_the_demo_shows_cards_migrated_from_the_old_system(client):
    get = await demo_reader(client)

    runs = (await get("/card-imports"))["items"]
    real = next(r for r in runs if not r["dry_run"])
    assert real["status"] == "imported" and real["error_count"] == 0
    assert real["totals"]["cards"] == 4 and real["totals"]["stored_value_principal"] == 126800
    assert {n["kind"] for n in real["notes"]} >= {"title", "blank", "totals"}
    assert (await get(f"/card-imports/{real['id']}/reconciliation"))["matches"] is True

    member = (await get("/members", q="马丽娟"))["items"][0]
    cards = (await get(f"/members/{member['id']}/cards"))["items"]
    migrated = next(c for c in cards if c["name"] == "肩颈调理疗程卡")
    assert sorted(i["remaining"] for i in migrated["items"]) == [2, 4, 7]
    ledger = (await get(f"/cards/{migrated['id']}/ledger"))["items"]
    assert {e["kind"] for e in ledger} == {"migration"} and {e["ref_type"] for e in ledger} == {"card_import"}
    points = await get(f"/members/{member['id']}/points")
    assert ("migration", 5360) in {(e["kind"], e["delta"]) for e in points["items"]}
    history = (await get("/service-records", member_id=member["id"]))["items"]
    assert sum(1 for r in history if r["settlement"] == "migration") == 2
