"""No double spend under concurrent requests: each completion or charge below runs in its own transaction on
its own database connection, all at once, against the same card."""

from __future__ import annotations

import asyncio
from uuid import UUID

from app.core.errors import AppError
from app.domain.cards import service as cards
from tests.cards.helpers import (
    OIL_PER_MASSAGE,
    card_state,
    complete,
    complete_direct,
    consistency,
    count_card,
    in_tenant,
    issue,
    make_clinic,
    make_template,
    new_ref,
    row_counts,
    stock_of,
)


def outcomes(results: list) -> tuple[list, list[str]]:
    """The successes, and the codes of the refusals (anything else is re-raised)."""
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, AppError):
            raise r
    return [r for r in results if not isinstance(r, BaseException)], sorted(r.code for r in results
                                                                           if isinstance(r, AppError))


async def test_twenty_concurrent_completions_against_three_sessions(client):
    clinic = await make_clinic(client, oil_stock=1000)
    card = await count_card(clinic, 5, price=75000)
    for _ in range(2):
        assert (await complete(clinic, card["id"])).status_code == 201
    stock_before = await stock_of(clinic.kit, clinic.store, clinic.oil)
    counts_before = await row_counts(clinic.tenant_id, "service_records", "commissions", "card_ledger")

    results = await asyncio.gather(*(complete_direct(clinic, card["id"]) for _ in range(20)),
                                   return_exceptions=True)
    done, refused = outcomes(results)
    assert len(done) == 3 and refused == ["no_sessions_left"] * 17
    assert sorted(remaining for _, remaining, _ in done) == [0, 1, 2]
    assert [commission for _, _, commission in done] == [1500] * 3

    state, items = await card_state(clinic.tenant_id, card["id"])
    assert (state.status, [i.remaining for i in items]) == ("exhausted", [0])
    assert await stock_of(clinic.kit, clinic.store, clinic.oil) == stock_before - 3 * OIL_PER_MASSAGE
    counts = await row_counts(clinic.tenant_id, "service_records", "commissions", "card_ledger")
    assert {t: counts[t] - counts_before[t] for t in counts} == {"service_records": 3, "commissions": 3,
                                                                "card_ledger": 3}
    assert await consistency(clinic.tenant_id, card["id"]) == []
    # Every commission line belongs to a record that exists, one each.
    lines = (await clinic.kit.get("/commissions", params={"staff_id": clinic.therapist["id"]})).json()["items"]
    records = {str(record.id) for record, _, _ in done}
    assert records <= {c["service_record_id"] for c in lines}


async def test_concurrent_completions_against_a_package_pool(client):
    clinic = await make_clinic(client)
    template = await make_template(clinic.kit, kind="package", price=40000, valid_days=90, shared_pool_sessions=2,
                                   items=[{"service_id": clinic.massage, "sessions": 1},
                                          {"service_id": clinic.moxa, "sessions": 1}])
    card = await issue(clinic.kit, clinic.member, template, clinic.store, 40000)
    work = [complete_direct(clinic, card["id"], service=s) for s in [clinic.massage, clinic.moxa] * 5]
    done, refused = outcomes(await asyncio.gather(*work, return_exceptions=True))
    # Each item's own session and the two of the pool: four in all.
    assert len(done) == 4 and refused == ["no_sessions_left"] * 6
    _, items = await card_state(clinic.tenant_id, card["id"])
    assert [i.remaining for i in items] == [0, 0, 0]
    assert await consistency(clinic.tenant_id, card["id"]) == []


async def test_concurrent_charges_never_overdraw(client):
    clinic = await make_clinic(client)
    template = await make_template(clinic.kit, kind="stored_value", price=10000, face_value=10000, bonus=1000)
    card_id = UUID((await issue(clinic.kit, clinic.member, template, clinic.store, 10000))["id"])

    async def charge(amount: int):
        async with in_tenant(clinic.tenant_id) as session:
            return await cards.charge_value(session, clinic.actor, card_id, amount=amount,
                                            member_id=UUID(clinic.member), store_id=UUID(clinic.store),
                                            ref_type="order", ref_id=new_ref())

    done, refused = outcomes(await asyncio.gather(*(charge(3000) for _ in range(12)), return_exceptions=True))
    # 11000 covers three payments of 3000.
    assert len(done) == 3 and refused == ["insufficient_balance"] * 9
    state, _ = await card_state(clinic.tenant_id, card_id)
    assert (state.principal_balance, state.bonus_balance) == (1000, 1000)
    assert sum(c.principal + c.bonus for c in done) == 9000
    assert await consistency(clinic.tenant_id, card_id) == []

    # The last of it: exactly one of two payments of the whole balance goes through.
    done, refused = outcomes(await asyncio.gather(charge(2000), charge(2000), return_exceptions=True))
    assert len(done) == 1 and refused == ["insufficient_balance"]
    state, _ = await card_state(clinic.tenant_id, card_id)
    assert (state.principal_balance, state.bonus_balance) == (0, 0)
    assert await consistency(clinic.tenant_id, card_id) == []


async def test_concurrent_freeze_and_deduction_leave_a_consistent_card(client):
    clinic = await make_clinic(client)
    for _ in range(3):
        card = await count_card(clinic, 5)

        async def freeze(card_id=card["id"]):
            async with in_tenant(clinic.tenant_id) as session:
                return await cards.freeze(session, clinic.actor, UUID(card_id), "出差")

        frozen, used = await asyncio.gather(freeze(), complete_direct(clinic, card["id"]), return_exceptions=True)
        assert not isinstance(frozen, BaseException), frozen
        state, items = await card_state(clinic.tenant_id, card["id"])
        assert state.status == "frozen"
        if isinstance(used, BaseException):
            # The freeze came first: the deduction saw a frozen card and nothing of it remains.
            assert isinstance(used, AppError) and used.code == "card_frozen", used
            assert [i.remaining for i in items] == [5]
        else:
            assert [i.remaining for i in items] == [4] and used[1] == 4
        assert await consistency(clinic.tenant_id, card["id"]) == []
