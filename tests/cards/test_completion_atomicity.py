"""Completing a service is all or nothing: a failure in any step (stock short, a frozen or foreign card, a
performer from another store, bad input) leaves nothing changed; reversal restores every balance; the
commission follows the service's rule (fixed, percent, per staff level, on the session's share of the
card price); and the outbox gets its events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from tests.cards.helpers import (
    OIL_PER_MASSAGE,
    assert_problem,
    card_state,
    complete,
    consistency,
    count_card,
    events,
    issue,
    last_visit_at,
    ledger_rows,
    make_clinic,
    make_member,
    make_service,
    make_template,
    receive,
    row_counts,
    set_card_times,
    set_staff_level,
    stock_of,
)

TOUCHED = ("service_records", "commissions", "card_ledger", "stock_movements", "outbox")


async def snapshot(clinic, card_id: str) -> dict:
    """Everything a completion could change."""
    card, items = await card_state(clinic.tenant_id, card_id)
    return {"counts": await row_counts(clinic.tenant_id, *TOUCHED),
            "card": (card.status, [i.remaining for i in items]),
            "stock": await stock_of(clinic.kit, clinic.store, clinic.oil),
            "last_visit_at": await last_visit_at(clinic.member)}


async def test_stock_short_changes_nothing(client):
    clinic = await make_clinic(client, oil_stock=OIL_PER_MASSAGE - 1)
    card = await count_card(clinic, 5)
    before = await snapshot(clinic, card["id"])
    body = assert_problem(await complete(clinic, card["id"]), 409, "insufficient_stock")
    assert (body["available"], body["requested"], body["item_name"]) == (OIL_PER_MASSAGE - 1, OIL_PER_MASSAGE,
                                                                        "按摩精油")
    assert await snapshot(clinic, card["id"]) == before
    assert before["last_visit_at"] is None and before["card"] == ("active", [5])
    # Paid at checkout instead: the same shortage stops it too.
    assert_problem(await complete(clinic), 409, "insufficient_stock")
    assert await snapshot(clinic, card["id"]) == before
    # Once the oil arrives it goes through.
    await receive(clinic.kit, clinic.store, clinic.oil, 1)
    r = await complete(clinic, card["id"])
    assert r.status_code == 201, r.text
    assert await stock_of(clinic.kit, clinic.store, clinic.oil) == 0


async def test_unusable_cards_are_refused_and_change_nothing(client):
    clinic = await make_clinic(client)
    kit = clinic.kit
    card = await count_card(clinic, 5)

    # Frozen.
    assert (await kit.post(f"/cards/{card['id']}/freeze", {"reason": "出差两个月"})).status_code == 200
    before = await snapshot(clinic, card["id"])
    assert_problem(await complete(clinic, card["id"]), 409, "card_frozen")
    assert await snapshot(clinic, card["id"]) == before
    assert (await kit.post(f"/cards/{card['id']}/unfreeze", {"reason": "回来了"})).status_code == 200

    # Expired.
    expiring = await count_card(clinic, 2)
    await set_card_times(expiring["id"], expires_at=datetime.now(UTC) - timedelta(hours=1))
    before = await snapshot(clinic, expiring["id"])
    assert_problem(await complete(clinic, expiring["id"]), 409, "card_expired")
    assert await snapshot(clinic, expiring["id"]) == before

    # Another tenant's card does not exist here.
    elsewhere = await make_clinic(client)
    foreign = await count_card(elsewhere, 3)
    before = await snapshot(clinic, card["id"])
    assert_problem(await complete(clinic, foreign["id"]), 404, "card_not_found")
    assert await snapshot(clinic, card["id"]) == before
    assert (await card_state(elsewhere.tenant_id, foreign["id"]))[1][0].remaining == 3

    # A card not usable in this store.
    other_store = await kit.store("徐汇店")
    template = await make_template(kit, kind="count", price=10000, valid_days=90, usable_store_ids=[other_store],
                                   items=[{"service_id": clinic.massage, "sessions": 3}])
    elsewhere_only = await issue(kit, clinic.member, template, clinic.store, 10000)
    before = await snapshot(clinic, elsewhere_only["id"])
    assert_problem(await complete(clinic, elsewhere_only["id"]), 409, "card_store_not_allowed")
    assert await snapshot(clinic, elsewhere_only["id"]) == before


async def test_cards_of_other_members_and_the_family(client):
    clinic = await make_clinic(client)
    kit = clinic.kit
    child = await make_member(kit, "李小四")
    stranger = await make_member(kit, "路人甲")
    family = await kit.post("/families", {"name": "李家", "head_member_id": clinic.member})
    assert family.status_code == 201, family.text
    r = await kit.post(f"/families/{family.json()['id']}/members", {"member_id": child, "relation": "child"})
    assert r.status_code == 200, r.text

    private = await count_card(clinic, 3)
    shared = await count_card(clinic, 3, family_shareable=True)
    assert shared["family_shareable"] is True and private["family_shareable"] is False

    before = await snapshot(clinic, private["id"])
    assert_problem(await complete(clinic, private["id"], member=stranger), 403, "card_not_shared")
    assert_problem(await complete(clinic, shared["id"], member=stranger), 403, "card_not_shared")
    assert_problem(await complete(clinic, private["id"], member=child), 403, "card_not_shared")
    assert await snapshot(clinic, private["id"]) == before

    r = await complete(clinic, shared["id"], member=child)
    assert r.status_code == 201, r.text
    assert r.json()["member_id"] == child and r.json()["card_remaining"] == 2
    deduction = [e for e in await ledger_rows(clinic.tenant_id, shared["id"]) if e.kind == "deduct"]
    assert [str(e.member_id) for e in deduction] == [child]
    # The child sees the shared card among theirs, not the private one.
    listed = (await kit.get(f"/members/{child}/cards")).json()["items"]
    assert [c["id"] for c in listed] == [shared["id"]]


async def test_performer_and_input_are_checked_before_anything_is_written(client):
    clinic = await make_clinic(client)
    kit = clinic.kit
    card = await count_card(clinic, 5)
    other_store = await kit.store("徐汇店")
    elsewhere = await kit.staff(["therapist"], [other_store])
    before = await snapshot(clinic, card["id"])
    # The performer does not work in this store (the owner enters it).
    body = assert_problem(await complete(clinic, card["id"], staff=elsewhere, token=kit.owner_token), 422)
    assert body.get("field") == "staff_id" or "staff_id" in body["detail"], body
    # A therapist cannot complete in a store they are not assigned to.
    assert_problem(await complete(clinic, card["id"], staff=elsewhere, store=clinic.store), 403)
    for duration in (-5, 0, 30.5, "30", 24 * 60 + 1):
        assert_problem(await complete(clinic, card["id"], duration_minutes=duration), 422)
    valid = {"member_id": clinic.member, "store_id": clinic.store, "service_id": clinic.massage,
             "staff_id": clinic.therapist["id"], "card_id": card["id"]}
    for field, value in (("member_id", "nobody"), ("card_id", 42), ("staff_id", None), ("notes", "x" * 4001),
                         ("performed_at", "2026-01-01T10:00:00"), ("surprise", 1)):
        r = await kit.post("/service-records", valid | {field: value}, token=clinic.therapist["token"])
        assert_problem(r, 422)
    assert_problem(await complete(clinic, card["id"], member=str(UUID(int=1))), 404, "member_not_found")
    assert_problem(await complete(clinic, card["id"], service=str(UUID(int=1))), 404, "service_not_found")
    assert await snapshot(clinic, card["id"]) == before

    r = await complete(clinic, card["id"], duration_minutes=45, notes="肩颈紧张, 建议热敷")
    assert r.status_code == 201, r.text
    assert (r.json()["duration_minutes"], r.json()["notes"]) == (45, "肩颈紧张, 建议热敷")
    assert (await complete(clinic, service=clinic.moxa)).json()["duration_minutes"] == 60  # the service's


async def test_reversal_restores_every_balance_once(client):
    clinic = await make_clinic(client, oil_stock=100)
    card = await count_card(clinic, 4, price=60000)
    done = await complete(clinic, card["id"])
    assert done.status_code == 201, done.text
    record = done.json()
    assert await stock_of(clinic.kit, clinic.store, clinic.oil) == 90
    visited = await last_visit_at(clinic.member)
    assert visited is not None

    undo = await clinic.kit.post(f"/service-records/{record['id']}/reverse", {"reason": "记错卡了"})
    assert undo.status_code == 200, undo.text
    assert (undo.json()["status"], undo.json()["reversal_reason"]) == ("reversed", "记错卡了")
    state, items = await card_state(clinic.tenant_id, card["id"])
    assert (state.status, [i.remaining for i in items]) == ("active", [4])
    assert await stock_of(clinic.kit, clinic.store, clinic.oil) == 100
    lines = (await clinic.kit.get("/commissions", params={"staff_id": clinic.therapist["id"]})).json()["items"]
    assert sorted((c["kind"], c["amount"], c["basis"]) for c in lines) == [("reversal", -1500, 15000),
                                                                          ("service", 1500, 15000)]
    reversal = next(c for c in lines if c["kind"] == "reversal")
    assert reversal["reverses_id"] == next(c["id"] for c in lines if c["kind"] == "service")
    entries = await ledger_rows(clinic.tenant_id, card["id"])
    deduct = next(e for e in entries if e.kind == "deduct")
    assert [(e.sessions_delta, e.reverses_id) for e in entries if e.kind == "reverse"] == [(1, deduct.id)]
    assert await consistency(clinic.tenant_id, card["id"]) == []
    assert [p["service_record_id"] for _, p in await events(clinic.tenant_id, "service.reversed")] == [record["id"]]

    # Twice is refused and changes nothing.
    before = await snapshot(clinic, card["id"])
    assert_problem(await clinic.kit.post(f"/service-records/{record['id']}/reverse", {"reason": "再冲一次"}),
                   409, "already_reversed")
    assert await snapshot(clinic, card["id"]) == before
    # A therapist may not reverse.
    other = (await complete(clinic, card["id"])).json()
    assert_problem(await clinic.kit.post(f"/service-records/{other['id']}/reverse", {"reason": "想撤销"},
                                         token=clinic.therapist["token"]), 403)
    # Reversing the last session of an exhausted card makes it active again.
    exhausted = await count_card(clinic, 1)
    last = (await complete(clinic, exhausted["id"])).json()
    assert (await card_state(clinic.tenant_id, exhausted["id"]))[0].status == "exhausted"
    assert (await clinic.kit.post(f"/service-records/{last['id']}/reverse", {"reason": "录错"})).status_code == 200
    assert (await card_state(clinic.tenant_id, exhausted["id"]))[0].status == "active"


async def test_commission_rules(client):
    clinic = await make_clinic(client)
    kit = clinic.kit
    senior = await kit.staff(["therapist"], [clinic.store])
    await set_staff_level(senior["id"], "senior")
    graded_fixed = await make_service(kit, "正骨", 30000, commission={"type": "fixed", "value": 2000,
                                                                      "levels": {"senior": 3500}})
    graded_percent = await make_service(kit, "刮痧", 8000, commission={"type": "percent", "value": 10,
                                                                       "levels": {"senior": 25}})

    async def commission(service: str, staff: dict, card_id: str | None = None) -> tuple[int, int]:
        r = await complete(clinic, card_id, service=service, staff=staff)
        assert r.status_code == 201, r.text
        line = [c for c in (await kit.get("/commissions", params={"staff_id": staff["id"]})).json()["items"]
                if c["service_record_id"] == r.json()["id"]]
        assert [c["amount"] for c in line] == [r.json()["commission"]]
        return r.json()["commission"], line[0]["basis"]

    # Paid at checkout: the basis is the list price.
    assert await commission(clinic.moxa, clinic.therapist) == (1000, 9800)  # fixed
    assert await commission(clinic.massage, clinic.therapist) == (1980, 19800)  # 10 %
    assert await commission(clinic.cupping, clinic.therapist) == (0, 5000)  # no rule
    assert await commission(graded_fixed, clinic.therapist) == (2000, 30000)  # no level: the default value
    assert await commission(graded_fixed, senior) == (3500, 30000)
    assert await commission(graded_percent, clinic.therapist) == (800, 8000)
    assert await commission(graded_percent, senior) == (2000, 8000)
    lines = (await kit.get("/commissions", params={"staff_id": senior["id"]})).json()["items"]
    assert {c["staff_level"] for c in lines} == {"senior"}

    # From a card: the basis is the session's share of the card price (¥1000 for 4 → 25000 fen each).
    card = await count_card(clinic, 4, price=100000, service=graded_percent)
    assert await commission(graded_percent, senior, card["id"]) == (6250, 25000)
    assert await commission(graded_percent, clinic.therapist, card["id"]) == (2500, 25000)
    # A card sold below list price earns less than a walk-in.
    cheap = await count_card(clinic, 10, price=99900)
    assert await commission(clinic.massage, clinic.therapist, cheap["id"]) == (999, 9990)
    # A fixed rule does not care about the basis.
    moxa_card = await count_card(clinic, 2, price=100, service=clinic.moxa)
    assert await commission(clinic.moxa, clinic.therapist, moxa_card["id"]) == (1000, 50)


async def test_completion_events(client):
    clinic = await make_clinic(client)
    card = await count_card(clinic, 4)
    low = []
    for left in (3, 2, 1, 0):
        r = await complete(clinic, card["id"])
        assert r.status_code == 201, r.text
        completed = [p for _, p in await events(clinic.tenant_id, "service.completed")]
        assert completed[-1]["service_record_id"] == r.json()["id"]
        assert (completed[-1]["card_id"], completed[-1]["member_id"]) == (card["id"], clinic.member)
        low = [p for _, p in await events(clinic.tenant_id, "card.sessions_low")]
        if left > 2:
            assert low == []
        else:
            assert (low[-1]["card_id"], low[-1]["remaining"]) == (card["id"], left)
    assert len(low) == 3
    # A checkout service has its completed event too, and no card event.
    r = await complete(clinic, service=clinic.moxa)
    assert r.status_code == 201 and r.json()["settlement"] == "checkout"
    completed = [p for _, p in await events(clinic.tenant_id, "service.completed")]
    assert (completed[-1]["service_record_id"], completed[-1]["card_id"]) == (r.json()["id"], None)
    assert len(await events(clinic.tenant_id, "card.sessions_low")) == 3
