"""Freeze, transfer and extension over HTTP: what each does to the card and its ledger, when each is refused
(and that a refusal changes nothing), who may do them, and tenant isolation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest

from app.core.errors import AppError
from app.domain.cards import service as cards
from app.workers.scheduled import run_card_housekeeping
from tests.cards.helpers import (
    Clinic,
    assert_problem,
    card_state,
    complete,
    consistency,
    count_card,
    events,
    in_tenant,
    issue,
    ledger_rows,
    make_clinic,
    make_member,
    make_template,
    new_phone,
    new_ref,
    owner_sql,
    set_card_times,
)
from tests.factories import new_tenant

REASON = {"reason": "顾客出差一个月"}


async def post(clinic: Clinic, card_id: str, action: str, body: dict, token: str | None = None):
    return await clinic.kit.post(f"/cards/{card_id}/{action}", body, token=token)


async def get_card(clinic: Clinic, card_id: str) -> dict:
    r = await clinic.kit.get(f"/cards/{card_id}")
    assert r.status_code == 200, r.text
    return r.json()


async def ledger_kinds(clinic: Clinic, card_id: str) -> list[str]:
    return sorted(e.kind for e in await ledger_rows(clinic.tenant_id, card_id))


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def stored_value(clinic: Clinic, **template) -> dict:
    template_id = await make_template(clinic.kit, kind="stored_value", price=10000, face_value=10000, bonus=2000,
                                      **template)
    return await issue(clinic.kit, clinic.member, template_id, clinic.store, 10000)


async def charge(clinic: Clinic, card_id: str, amount: int) -> None:
    async with in_tenant(clinic.tenant_id) as session:
        await cards.charge_value(session, clinic.actor, UUID(card_id), amount=amount, member_id=UUID(clinic.member),
                                 store_id=UUID(clinic.store), ref_type="order", ref_id=new_ref())


# ---------------------------------------------------------------- freeze


async def test_a_frozen_card_cannot_be_used_until_it_is_unfrozen(client):
    clinic = await make_clinic(client)
    card = await count_card(clinic, 3)
    r = await post(clinic, card["id"], "freeze", REASON)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "frozen" and r.json()["items"][0]["remaining"] == 3

    assert_problem(await complete(clinic, card["id"]), 409, "card_frozen")
    # Freezing twice, or transferring a frozen card, is a conflict; none of it touches the card.
    assert_problem(await post(clinic, card["id"], "freeze", REASON), 409, "card_not_active")
    other = await make_member(clinic.kit, "孙七")
    assert_problem(await post(clinic, card["id"], "transfer", {"to_member_id": other, **REASON}), 409,
                   "card_not_active")
    state, items = await card_state(clinic.tenant_id, card["id"])
    assert (state.status, state.member_id, [i.remaining for i in items]) == ("frozen", UUID(clinic.member), [3])
    assert await ledger_kinds(clinic, card["id"]) == ["freeze", "issue"]

    r = await post(clinic, card["id"], "unfreeze", {"reason": "回来了"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active"
    assert_problem(await post(clinic, card["id"], "unfreeze", {"reason": "回来了"}), 409, "card_not_frozen")
    used = await complete(clinic, card["id"])
    assert used.status_code == 201 and used.json()["card_remaining"] == 2, used.text
    assert await ledger_kinds(clinic, card["id"]) == ["deduct", "freeze", "issue", "unfreeze"]
    assert await consistency(clinic.tenant_id, card["id"]) == []


async def test_a_frozen_stored_value_card_cannot_pay_or_be_topped_up(client):
    clinic = await make_clinic(client)
    card = await stored_value(clinic)
    assert (await post(clinic, card["id"], "freeze", REASON)).status_code == 200
    with pytest.raises(AppError) as refused:
        await charge(clinic, card["id"], 100)
    assert (refused.value.status, refused.value.code) == (409, "card_frozen")
    with pytest.raises(AppError) as refused:
        async with in_tenant(clinic.tenant_id) as session:
            await cards.top_up(session, clinic.actor, UUID(card["id"]), principal=5000, bonus=0,
                               store_id=UUID(clinic.store), ref_type="order", ref_id=new_ref())
    assert (refused.value.status, refused.value.code) == (409, "card_inactive")
    after = await get_card(clinic, card["id"])
    assert (after["status"], after["principal_balance"], after["bonus_balance"]) == ("frozen", 10000, 2000)

    # Stored value never expires: unfreezing leaves it without an expiry.
    r = await post(clinic, card["id"], "unfreeze", {"reason": "回来了"})
    assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["expires_at"] is None, r.text
    await charge(clinic, card["id"], 100)
    assert (await get_card(clinic, card["id"]))["balance"] == 11900
    assert await consistency(clinic.tenant_id, card["id"]) == []


async def test_freezing_pauses_the_validity(client):
    clinic = await make_clinic(client)
    card = await count_card(clinic, 3, valid_days=30)
    assert (await post(clinic, card["id"], "freeze", REASON)).status_code == 200
    # Ten days pass while frozen; the card was frozen six days before its expiry, which is now behind us.
    now = datetime.now(UTC).replace(microsecond=0)
    old_expiry = now - timedelta(days=4)
    await set_card_times(card["id"], frozen_at=now - timedelta(days=10), expires_at=old_expiry)

    # The expiry job leaves a frozen card alone: its clock is stopped.
    await run_card_housekeeping()
    state, items = await card_state(clinic.tenant_id, card["id"])
    assert (state.status, [i.remaining for i in items]) == ("frozen", [3])
    assert "expire" not in await ledger_kinds(clinic, card["id"])

    r = await post(clinic, card["id"], "unfreeze", {"reason": "回来了"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active"
    # The expiry moved out by the ten frozen days: six days of validity are left, as when it was frozen.
    new_expiry = when(r.json()["expires_at"])
    assert timedelta(days=10) <= new_expiry - old_expiry < timedelta(days=10, minutes=1)
    assert timedelta(days=6) - timedelta(minutes=1) < new_expiry - datetime.now(UTC) <= timedelta(days=6)
    row = next(e for e in await ledger_rows(clinic.tenant_id, card["id"]) if e.kind == "unfreeze")
    assert 10 * 86400 <= row.details["paused_seconds"] < 10 * 86400 + 60
    assert when(row.details["expires_at"]["from"]) == old_expiry
    assert when(row.details["expires_at"]["to"]) == new_expiry
    assert row.reason == "回来了" and row.sessions_delta == 0

    used = await complete(clinic, card["id"])
    assert used.status_code == 201, used.text
    assert await consistency(clinic.tenant_id, card["id"]) == []


async def test_only_an_active_card_can_be_frozen(client):
    clinic = await make_clinic(client)
    card = await count_card(clinic, 1)
    assert (await complete(clinic, card["id"])).status_code == 201  # now exhausted
    assert_problem(await post(clinic, card["id"], "freeze", REASON), 409, "card_not_active")
    assert_problem(await post(clinic, card["id"], "unfreeze", REASON), 409, "card_not_frozen")
    assert await ledger_kinds(clinic, card["id"]) == ["deduct", "issue"]
    assert (await get_card(clinic, card["id"]))["status"] == "exhausted"


# ---------------------------------------------------------------- transfer


async def test_transfer_moves_the_card_and_records_who_and_why(client):
    clinic = await make_clinic(client)
    manager = await clinic.kit.staff(["store_manager"], [clinic.store])
    card = await count_card(clinic, 3)
    heir = await make_member(clinic.kit, "李小四")

    r = await post(clinic, card["id"], "transfer", {"to_member_id": heir, "reason": "转给女儿"},
                   token=manager["token"])
    assert r.status_code == 200, r.text
    assert r.json()["member_id"] == heir and r.json()["status"] == "active"
    assert r.json()["items"][0]["remaining"] == 3

    rows = await ledger_rows(clinic.tenant_id, card["id"])
    moved = [e for e in rows if e.kind == "transfer"]
    assert len(moved) == 1 and len(rows) == 2
    entry = moved[0]
    assert (entry.actor_type, entry.actor_id, entry.reason) == ("staff", manager["id"], "转给女儿")
    assert entry.member_id == UUID(heir)
    assert entry.details == {"from_member_id": clinic.member, "to_member_id": heir}
    assert (entry.sessions_delta, entry.principal_delta, entry.bonus_delta) == (0, 0, 0)
    assert [p for _, p in await events(clinic.tenant_id, "card.transferred")] == [
        {"card_id": card["id"], "from_member_id": clinic.member, "to_member_id": heir}]
    listed = await clinic.kit.get(f"/cards/{card['id']}/ledger")
    assert [(e["kind"], e["actor_id"], e["reason"]) for e in listed.json()["items"]][0] == (
        "transfer", manager["id"], "转给女儿")

    # The card is the heir's now: listed under them, usable by them, not by its former owner.
    heirs = (await clinic.kit.get(f"/members/{heir}/cards")).json()["items"]
    formers = (await clinic.kit.get(f"/members/{clinic.member}/cards")).json()["items"]
    assert [c["id"] for c in heirs] == [card["id"]] and formers == []
    assert_problem(await complete(clinic, card["id"]), 403, "card_not_shared")
    used = await complete(clinic, card["id"], member=heir)
    assert used.status_code == 201 and used.json()["card_remaining"] == 2, used.text
    # Transferring to the member who already holds it is invalid input.
    body = assert_problem(await post(clinic, card["id"], "transfer", {"to_member_id": heir, **REASON}), 422,
                          "validation_error")
    assert body["field"] == "to_member_id"
    assert await consistency(clinic.tenant_id, card["id"]) == []


async def test_transfer_to_a_member_of_another_tenant_is_not_found(client):
    clinic = await make_clinic(client)
    card = await count_card(clinic, 3)
    elsewhere = await new_tenant(client)
    r = await elsewhere.post("/members", {"name": "外人", "phone": new_phone()})
    assert r.status_code == 201, r.text
    stranger = r.json()["id"]

    for target in (stranger, str(uuid4())):
        r = await post(clinic, card["id"], "transfer", {"to_member_id": target, **REASON})
        assert_problem(r, 404, "member_not_found")
    state, _ = await card_state(clinic.tenant_id, card["id"])
    assert (state.member_id, state.status) == (UUID(clinic.member), "active")
    assert await ledger_kinds(clinic, card["id"]) == ["issue"]
    assert await events(clinic.tenant_id, "card.transferred") == []


async def test_a_non_transferable_card_stays_with_its_member(client):
    clinic = await make_clinic(client)
    card = await count_card(clinic, 3, transferable=False)
    heir = await make_member(clinic.kit, "李小四")
    assert_problem(await post(clinic, card["id"], "transfer", {"to_member_id": heir, **REASON}), 409,
                   "card_not_transferable")
    # The terms were frozen at sale: making the template transferable later does not free this card.
    await owner_sql("UPDATE card_templates SET transferable = true WHERE id = :id", id=UUID(card["template_id"]))
    assert_problem(await post(clinic, card["id"], "transfer", {"to_member_id": heir, **REASON}), 409,
                   "card_not_transferable")
    assert (await get_card(clinic, card["id"]))["member_id"] == clinic.member
    assert await ledger_kinds(clinic, card["id"]) == ["issue"]
    # A stored-value card sold on transferable terms can be handed on with its balance.
    value = await stored_value(clinic)
    r = await post(clinic, value["id"], "transfer", {"to_member_id": heir, **REASON})
    assert r.status_code == 200, r.text
    assert (r.json()["member_id"], r.json()["balance"]) == (heir, 12000)
    assert await consistency(clinic.tenant_id, value["id"]) == []


# ---------------------------------------------------------------- extension


async def test_extend_by_days_and_until(client):
    clinic = await make_clinic(client)
    card = await count_card(clinic, 3, valid_days=30)
    expiry = when(card["expires_at"])

    r = await post(clinic, card["id"], "extend", {"days": 10, "reason": "店庆延期"})
    assert r.status_code == 200, r.text
    assert when(r.json()["expires_at"]) == expiry + timedelta(days=10)

    until = (datetime.now(UTC) + timedelta(days=100)).replace(microsecond=0)
    r = await post(clinic, card["id"], "extend", {"until": until.astimezone(ZoneInfo("Asia/Shanghai")).isoformat(),
                                                    "reason": "店长同意"})
    assert r.status_code == 200, r.text
    assert when(r.json()["expires_at"]) == until
    extends = [e for e in await ledger_rows(clinic.tenant_id, card["id"]) if e.kind == "extend"]
    assert sorted((when(e.details["from"]), when(e.details["to"]), e.reason) for e in extends) == [
        (expiry, expiry + timedelta(days=10), "店庆延期"), (expiry + timedelta(days=10), until, "店长同意")]

    refusals = [
        ({"until": (datetime.now(UTC) - timedelta(days=1)).isoformat()}, "until"),  # in the past
        ({"until": (until - timedelta(days=1)).isoformat()}, "until"),  # earlier than the current expiry
        ({"days": 5, "until": (until + timedelta(days=5)).isoformat()}, "days"),  # both
        ({}, "days"),  # neither
        ({"days": 0}, "days"),
        ({"days": "7"}, "days"),
        ({"until": (until + timedelta(days=5)).replace(tzinfo=None).isoformat()}, "until"),  # no offset
        # No further than `days` could reach (3660 days); year 9999 used to end in an overflow (a 500).
        ({"until": (until + timedelta(days=3660, seconds=1)).isoformat()}, "until"),
        ({"until": "9999-12-31T23:59:59+08:00"}, "until"),
        ({"until": "9999-12-31T23:59:59-08:00"}, "until"),
    ]
    for body, field in refusals:
        problem = assert_problem(await post(clinic, card["id"], "extend", {**body, "reason": "延期"}), 422,
                                 "validation_error")
        named = problem.get("field") or [e["field"] for e in problem["errors"]]
        assert field in named, (body, problem)
    assert when((await get_card(clinic, card["id"]))["expires_at"]) == until
    assert len([e for e in await ledger_rows(clinic.tenant_id, card["id"]) if e.kind == "extend"]) == 2

    furthest = until + timedelta(days=3660)
    r = await post(clinic, card["id"], "extend", {"until": furthest.isoformat(), "reason": "十年延期"})
    assert r.status_code == 200 and when(r.json()["expires_at"]) == furthest, r.text
    # And what was refused could not break what comes after: a later extension or a freeze and thaw.
    r = await post(clinic, card["id"], "extend", {"days": 1, "reason": "再延一天"})
    assert r.status_code == 200 and when(r.json()["expires_at"]) == furthest + timedelta(days=1), r.text
    assert (await post(clinic, card["id"], "freeze", REASON)).status_code == 200
    assert (await post(clinic, card["id"], "unfreeze", REASON)).status_code == 200
    assert await consistency(clinic.tenant_id, card["id"]) == []


async def test_a_moved_expiry_is_announced_again(client):
    clinic = await make_clinic(client)
    card = await count_card(clinic, 3, valid_days=3)

    async def notices() -> int:
        await run_card_housekeeping()
        return [p["card_id"] for _, p in await events(clinic.tenant_id, "card.expiring")].count(card["id"])

    assert await notices() == 1
    # Extended out of the notice window: nothing to announce now, but the new expiry is announced in its turn.
    r = await post(clinic, card["id"], "extend", {"days": 30, "reason": "店长同意延期"})
    assert r.status_code == 200, r.text
    assert await notices() == 1
    await set_card_times(card["id"], expires_at=datetime.now(UTC) + timedelta(days=2))
    assert await notices() == 2
    # Moved within the window (a short freeze): the member was told already.
    assert (await post(clinic, card["id"], "freeze", REASON)).status_code == 200
    assert (await post(clinic, card["id"], "unfreeze", REASON)).status_code == 200
    assert await notices() == 2
    # A long freeze pushes it out of the window: announced again when it comes near.
    assert (await post(clinic, card["id"], "freeze", REASON)).status_code == 200
    await set_card_times(card["id"], frozen_at=datetime.now(UTC) - timedelta(days=20))
    r = await post(clinic, card["id"], "unfreeze", REASON)
    assert r.status_code == 200, r.text
    assert when(r.json()["expires_at"]) > datetime.now(UTC) + timedelta(days=21)
    assert await notices() == 2
    await set_card_times(card["id"], expires_at=datetime.now(UTC) + timedelta(days=1))
    assert await notices() == 3


async def test_extending_a_card_that_has_expired(client):
    clinic = await make_clinic(client)
    # Past its expiry but not yet marked by the job: the days count from today, not from the old expiry.
    late = await count_card(clinic, 3, valid_days=30)
    await set_card_times(late["id"], expires_at=datetime.now(UTC) - timedelta(days=20))
    r = await post(clinic, late["id"], "extend", {"days": 7, "reason": "补偿"})
    assert r.status_code == 200, r.text
    assert timedelta(days=7) - timedelta(minutes=1) < when(r.json()["expires_at"]) - datetime.now(UTC) <= timedelta(
        days=7)
    assert r.json()["status"] == "active"
    assert (await complete(clinic, late["id"])).status_code == 201

    # Expired by the job with nothing left: it comes back, still exhausted (there is nothing to give back).
    used_up = await count_card(clinic, 1, valid_days=30)
    assert (await complete(clinic, used_up["id"])).status_code == 201
    await set_card_times(used_up["id"], expires_at=datetime.now(UTC) - timedelta(minutes=1))
    await run_card_housekeeping()
    assert (await get_card(clinic, used_up["id"]))["status"] == "expired"
    r = await post(clinic, used_up["id"], "extend", {"days": 30, "reason": "补偿"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["items"][0]["remaining"]) == ("exhausted", 0)
    assert await ledger_kinds(clinic, used_up["id"]) == ["deduct", "expire", "extend", "issue", "reverse"]
    assert await consistency(clinic.tenant_id, used_up["id"]) == []

    # Stored value has no expiry to move.
    value = await stored_value(clinic)
    assert_problem(await post(clinic, value["id"], "extend", {"days": 30, "reason": "补偿"}), 409, "card_no_expiry")
    assert await ledger_kinds(clinic, value["id"]) == ["issue"]


# ---------------------------------------------------------------- who may, and input


@pytest.mark.parametrize("role", ["therapist", "front_desk"])
async def test_staff_without_cards_adjust_are_forbidden(client, role):
    clinic = await make_clinic(client)
    token = clinic.therapist["token"] if role == "therapist" else (await clinic.kit.staff([role], [clinic.store]))[
        "token"]
    card = await count_card(clinic, 3)
    frozen = await count_card(clinic, 3)
    assert (await post(clinic, frozen["id"], "freeze", REASON)).status_code == 200
    heir = await make_member(clinic.kit, "李小四")
    attempts = [(card["id"], "freeze", REASON), (frozen["id"], "unfreeze", REASON),
                (card["id"], "transfer", {"to_member_id": heir, **REASON}),
                (card["id"], "extend", {"days": 30, **REASON})]
    for card_id, action, body in attempts:
        problem = assert_problem(await post(clinic, card_id, action, body, token=token), 403, "permission_denied")
        assert problem["missing_permissions"] == ["cards:adjust"], (action, problem)
    # They may still read the cards they cannot change.
    r = await clinic.kit.get(f"/cards/{card['id']}", token=token)
    assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["member_id"] == clinic.member
    assert when(r.json()["expires_at"]) == when(card["expires_at"])
    assert await ledger_kinds(clinic, card["id"]) == ["issue"]
    assert await ledger_kinds(clinic, frozen["id"]) == ["freeze", "issue"]


async def test_another_tenants_card_is_not_found(client):
    clinic = await make_clinic(client)
    card = await count_card(clinic, 3)
    intruder = await make_clinic(client)
    frozen = await count_card(clinic, 3)
    assert (await post(clinic, frozen["id"], "freeze", REASON)).status_code == 200
    attempts = [(card["id"], "freeze", REASON), (frozen["id"], "unfreeze", REASON),
                (card["id"], "transfer", {"to_member_id": intruder.member, **REASON}),
                (card["id"], "extend", {"days": 30, **REASON})]
    for card_id, action, body in attempts:
        assert_problem(await post(intruder, card_id, action, body), 404, "card_not_found")
    assert_problem(await intruder.kit.get(f"/cards/{card['id']}"), 404, "card_not_found")
    state, _ = await card_state(clinic.tenant_id, card["id"])
    assert (state.status, state.member_id) == ("active", UUID(clinic.member))
    assert (await card_state(clinic.tenant_id, frozen["id"]))[0].status == "frozen"
    assert await ledger_kinds(clinic, card["id"]) == ["issue"]


@pytest.mark.parametrize("action", ["freeze", "unfreeze", "transfer", "extend"])
async def test_a_reason_is_required(client, action):
    clinic = await make_clinic(client)
    card = await count_card(clinic, 3)
    if action == "unfreeze":
        assert (await post(clinic, card["id"], "freeze", REASON)).status_code == 200
    heir = await make_member(clinic.kit, "李小四")
    extra = {"transfer": {"to_member_id": heir}, "extend": {"days": 30}}.get(action, {})
    for reason in (None, "", "  ", "x"):
        body = extra if reason is None else {**extra, "reason": reason}
        problem = assert_problem(await post(clinic, card["id"], action, body), 422, "validation_error")
        assert [e["field"] for e in problem["errors"]] == ["reason"], (reason, problem)
    assert len(await ledger_rows(clinic.tenant_id, card["id"])) == (2 if action == "unfreeze" else 1)


async def test_a_fixed_end_date_must_be_a_real_one(client):
    clinic = await make_clinic(client)
    base = {"name": "艾灸年卡", "kind": "period", "price": 100000, "items": [{"service_id": clinic.moxa}]}
    for bad in ("1999-12-31", "9999-12-31"):
        r = await clinic.kit.post("/card-templates", base | {"valid_until": bad})
        assert_problem(r, 422, "validation_error")
        assert "valid_until" in r.text
    ok = await clinic.kit.post("/card-templates", base | {"valid_until": f"{date.today().year + 1}-06-30"})
    assert ok.status_code == 201, ok.text
