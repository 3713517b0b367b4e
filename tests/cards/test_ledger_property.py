"""A card's balances are its ledger. After any sequence of deductions, charges, top-ups, reversals, freezes,
unfreezes, extensions, transfers and expiries against a count, a package and a stored-value card:

- each item's remaining sessions and the principal/bonus balances equal the sums of the card's ledger rows
  (`check_consistency` finds nothing, and the sums computed here from the rows agree), and none is negative;
- every operation succeeds exactly when a simple model of the card says it may, with the refusal's status
  and code, and leaves the card as the model says;
- a refused operation leaves nothing behind: the caller here catches the refusal and commits its
  transaction, and still no ledger row appears anywhere in the tenant and the card is unchanged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import select

from app.core.errors import AppError
from app.domain.cards import service as cards
from app.domain.cards.models import Card, CardItem, CardLedgerEntry
from tests.cards.helpers import Clinic, in_tenant, make_clinic, make_member, make_template, new_ref, set_card_times

COUNT_SESSIONS = 3
PACKAGE_ITEMS = {"massage": 2, "moxa": 1}
PACKAGE_POOL = 2
FACE_VALUE, BONUS = 10000, 2000
SPEND_ORDERS = ("principal_first", "bonus_first", "proportional")
CARD_KINDS = ("count", "package", "stored_value")


@dataclass
class World:
    """One clinic for the whole test (each hypothesis example issues its own fresh cards in it)."""

    clinic: Clinic
    members: tuple[UUID, UUID]
    templates: dict[str, str]  # count | package | stored_value:<spend order> -> template id
    services: dict[str, UUID]  # massage | moxa | cupping -> service id


@pytest.fixture
async def world(client) -> World:
    clinic = await make_clinic(client, oil_stock=0)
    kit = clinic.kit
    other = await make_member(kit, "赵六")
    templates = {
        "count": await make_template(kit, kind="count", price=45000, valid_days=365,
                                     items=[{"service_id": clinic.massage, "sessions": COUNT_SESSIONS}]),
        "package": await make_template(kit, kind="package", price=50000, valid_days=180,
                                       shared_pool_sessions=PACKAGE_POOL,
                                       items=[{"service_id": clinic.massage, "sessions": PACKAGE_ITEMS["massage"]},
                                              {"service_id": clinic.moxa, "sessions": PACKAGE_ITEMS["moxa"]}]),
    }
    for order in SPEND_ORDERS:
        templates[f"stored_value:{order}"] = await make_template(kit, kind="stored_value", price=FACE_VALUE,
                                                                 face_value=FACE_VALUE, bonus=BONUS,
                                                                 spend_order=order)
    services = {"massage": UUID(clinic.massage), "moxa": UUID(clinic.moxa), "cupping": UUID(clinic.cupping)}
    return World(clinic, (UUID(clinic.member), UUID(other)), templates, services)


# ---------------------------------------------------------------- the model


@dataclass
class CardModel:
    id: UUID
    kind: str
    owner: UUID
    items: dict[str, int]  # massage | moxa | pool -> remaining
    principal: int = 0
    bonus: int = 0
    spend_order: str = "principal_first"
    status: str = "active"
    past_due: bool = False  # expires_at moved into the past; the card is not marked expired (yet)
    written_off: list[tuple[str | None, int]] = field(default_factory=list)  # unreversed expiry rows
    kinds: list[str] = field(default_factory=list)  # ledger row kinds written so far


@dataclass
class Ref:
    ref_type: str
    ref_id: str
    card: str
    kind: str  # deduct | charge | top_up
    item: str | None = None
    principal: int = 0
    bonus: int = 0
    reversed: bool = False


def usable_refusal(card: CardModel, member: UUID) -> tuple[int, str] | None:
    """What `_require_usable` says, in its order of checks."""
    if card.status == "frozen":
        return 409, "card_frozen"
    if card.status == "expired" or card.past_due:
        return 409, "card_expired"
    if card.status not in ("active", "exhausted"):
        return 409, "card_inactive"
    if member != card.owner:
        return 403, "card_not_shared"
    return None


def session_status(card: CardModel) -> str:
    return "active" if any(card.items.values()) else "exhausted"


# ---------------------------------------------------------------- operations

card_keys = st.sampled_from(CARD_KINDS)
who = st.sampled_from(["owner", "owner", "owner", "other"])
operations = st.one_of(
    st.tuples(st.just("deduct"), card_keys, st.sampled_from(["massage", "massage", "moxa", "cupping"]), who),
    st.tuples(st.just("charge"), card_keys, st.integers(0, 7000), who),
    st.tuples(st.just("top_up"), card_keys, st.integers(0, 5000), st.integers(0, 1000)),
    st.tuples(st.just("reverse"), st.integers(0, 30)),
    st.tuples(st.just("freeze"), card_keys),
    st.tuples(st.just("unfreeze"), card_keys),
    st.tuples(st.just("extend"), card_keys, st.integers(1, 400)),
    st.tuples(st.just("transfer"), card_keys, st.sampled_from(["other", "other", "self", "nobody"])),
    st.tuples(st.just("expire"), card_keys),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spend_order=st.sampled_from(SPEND_ORDERS), ops=st.lists(operations, min_size=1, max_size=20))
# Expiry writes sessions off; a reversal after it lands on the expired card; an extension brings both back.
@example(spend_order="principal_first", ops=[
    ("deduct", "count", "massage", "owner"), ("deduct", "count", "massage", "owner"), ("expire", "count"),
    ("deduct", "count", "massage", "owner"), ("reverse", 0), ("extend", "count", 30),
    ("deduct", "count", "massage", "owner"), ("expire", "count"), ("extend", "count", 5), ("reverse", 0)])
# The package's own items, then its pool, then nothing; freeze, a refused use, unfreeze, transfer.
@example(spend_order="bonus_first", ops=[
    ("deduct", "package", "moxa", "owner"), ("deduct", "package", "moxa", "owner"),
    ("deduct", "package", "moxa", "owner"), ("deduct", "package", "moxa", "owner"),
    ("deduct", "package", "massage", "owner"), ("freeze", "package"), ("freeze", "package"),
    ("deduct", "package", "massage", "owner"), ("unfreeze", "package"), ("transfer", "package", "other"),
    ("deduct", "package", "massage", "other"), ("deduct", "package", "massage", "owner"),
    ("deduct", "package", "massage", "owner"), ("reverse", 2), ("reverse", 2)])
# Stored value: charge past the balance, top up, reverse the top-up after spending it, reverse the charges.
@example(spend_order="proportional", ops=[
    ("charge", "stored_value", 7000, "owner"), ("charge", "stored_value", 6000, "owner"),
    ("top_up", "stored_value", 3000, 500), ("charge", "stored_value", 4000, "owner"), ("reverse", 1),
    ("charge", "stored_value", 0, "owner"), ("top_up", "stored_value", 0, 100), ("freeze", "stored_value"),
    ("top_up", "stored_value", 100, 0), ("charge", "stored_value", 1, "owner"), ("extend", "stored_value", 3),
    ("expire", "stored_value"), ("unfreeze", "stored_value"), ("reverse", 0), ("reverse", 2), ("reverse", 1)])
async def test_balances_equal_the_ledger_after_any_sequence(world, spend_order, ops):
    clinic, tenant_id, actor = world.clinic, world.clinic.tenant_id, world.clinic.actor
    store = UUID(clinic.store)
    models = await issue_cards(world, spend_order)
    refs: list[Ref] = []
    ledger_total = await tenant_ledger_count(tenant_id)
    for card in models.values():
        await check_card(world, card)

    for op in ops:
        kind = op[0]
        if kind == "reverse" and not refs:
            continue
        card = models[op[1]] if kind != "reverse" else None
        expected: tuple[int, str] | None = None  # the refusal the model predicts
        apply: Any = None  # the model's change, applied once the service has agreed
        rows = 1  # ledger rows a success writes

        if kind == "deduct":
            _, _, service, by = op
            member = card.owner if by == "owner" else other_member(world, card.owner)
            expected = usable_refusal(card, member)
            take = None
            if expected is None and card.kind == "stored_value":
                expected = 409, "card_kind_mismatch"
            elif expected is None:
                if service not in card.items:
                    expected = 409, "service_not_on_card"
                elif card.items[service] > 0:
                    take = service
                elif card.items.get("pool", 0) > 0:
                    take = "pool"
                else:
                    expected = 409, "no_sessions_left"
            ref = new_ref()

            async def run(session, card=card, service=service, member=member, ref=ref):
                return await cards.deduct_session(session, actor, card.id, service_id=world.services[service],
                                                  member_id=member, store_id=store, ref_type="service_record",
                                                  ref_id=ref)

            def apply(result, card=card, take=take, ref=ref, key=op[1]):
                assert result.remaining == card.items[take] - 1
                card.items[take] -= 1
                card.status = session_status(card)
                card.kinds.append("deduct")
                refs.append(Ref("service_record", ref, key, "deduct", item=take))

        elif kind == "charge":
            _, _, amount, by = op
            member = card.owner if by == "owner" else other_member(world, card.owner)
            if amount <= 0:
                expected = 422, "validation_error"
            elif card.kind != "stored_value":
                expected = 409, "card_kind_mismatch"
            else:
                expected = usable_refusal(card, member)
                if expected is None and amount > card.principal + card.bonus:
                    expected = 409, "insufficient_balance"
            ref = new_ref()

            async def run(session, card=card, amount=amount, member=member, ref=ref):
                return await cards.charge_value(session, actor, card.id, amount=amount, member_id=member,
                                                store_id=store, ref_type="order", ref_id=ref)

            def apply(result, card=card, amount=amount, ref=ref, key=op[1]):
                check_split(card, amount, result.principal, result.bonus)
                card.principal -= result.principal
                card.bonus -= result.bonus
                card.kinds.append("charge")
                refs.append(Ref("order", ref, key, "charge", principal=-result.principal, bonus=-result.bonus))

        elif kind == "top_up":
            _, _, principal, bonus = op
            if principal <= 0:
                expected = 422, "validation_error"
            elif card.kind != "stored_value":
                expected = 409, "card_kind_mismatch"
            elif card.status not in ("active", "exhausted"):
                expected = 409, "card_inactive"
            ref = new_ref()

            async def run(session, card=card, principal=principal, bonus=bonus, ref=ref):
                return await cards.top_up(session, actor, card.id, principal=principal, bonus=bonus,
                                          store_id=store, ref_type="order", ref_id=ref)

            def apply(result, card=card, principal=principal, bonus=bonus, ref=ref, key=op[1]):
                assert (result.principal_delta, result.bonus_delta) == (principal, bonus)
                card.principal += principal
                card.bonus += bonus
                card.status = "active"
                card.kinds.append("top_up")
                refs.append(Ref("order", ref, key, "top_up", principal=principal, bonus=bonus))

        elif kind == "reverse":
            target = refs[op[1] % len(refs)]
            card = models[target.card]
            if target.reversed:
                rows = 0  # a second reversal of the same ref finds nothing left to reverse
            elif card.principal - target.principal < 0 or card.bonus - target.bonus < 0:
                expected = 409, "insufficient_balance"  # the top-up was spent already

            async def run(session, target=target):
                return await cards.reverse_ref(session, actor, target.ref_type, target.ref_id, "冲正")

            def apply(result, card=card, target=target):
                assert len(result) == (0 if target.reversed else 1)
                if target.reversed:
                    return
                assert result[0].details == {"reversed_kind": target.kind}
                target.reversed = True
                card.principal -= target.principal
                card.bonus -= target.bonus
                if target.item is not None:
                    card.items[target.item] += 1
                    if card.status == "exhausted":
                        card.status = session_status(card)
                card.kinds.append("reverse")

        elif kind == "freeze":
            if card.status != "active":
                expected = 409, "card_not_active"

            async def run(session, card=card):
                return await cards.freeze(session, actor, card.id, "出差")

            def apply(result, card=card):
                card.status = "frozen"
                card.kinds.append("freeze")

        elif kind == "unfreeze":
            if card.status != "frozen":
                expected = 409, "card_not_frozen"

            async def run(session, card=card):
                return await cards.unfreeze(session, actor, card.id, "回来了")

            def apply(result, card=card):
                card.status = "active" if card.kind == "stored_value" else session_status(card)
                card.kinds.append("unfreeze")

        elif kind == "extend":
            days = op[2]
            if card.kind == "stored_value":
                expected = 409, "card_no_expiry"
            elif card.status == "expired":
                rows = 1 + len(card.written_off)
            before = (await expiry_of(tenant_id, card.id), datetime.now(UTC))

            async def run(session, card=card, days=days):
                return await cards.extend(session, actor, card.id, days=days, until=None, reason="店长同意延期")

            def apply(result, card=card, days=days, before=before):
                # Out by `days` from the current expiry, or from now when that has passed.
                old, started = before
                if old > datetime.now(UTC):
                    assert result.expires_at == old + timedelta(days=days)
                else:
                    assert started + timedelta(days=days) <= result.expires_at <= datetime.now(UTC) + timedelta(
                        days=days)
                if card.status == "expired":
                    for item, sessions in card.written_off:
                        if item is not None:
                            card.items[item] += sessions
                        card.kinds.append("reverse")
                    card.written_off = []
                    card.status = session_status(card)
                card.past_due = False
                card.kinds.append("extend")

        elif kind == "transfer":
            target_kind = op[2]
            to = {"other": other_member(world, card.owner), "self": card.owner, "nobody": uuid.uuid4()}[target_kind]
            if card.status != "active":
                expected = 409, "card_not_active"
            elif target_kind == "self":
                expected = 422, "validation_error"
            elif target_kind == "nobody":
                expected = 404, "member_not_found"

            async def run(session, card=card, to=to):
                return await cards.transfer(session, actor, card.id, to, "转给家人")

            def apply(result, card=card, to=to):
                assert result.member_id == to
                card.owner = to
                card.kinds.append("transfer")

        elif kind == "expire":
            # Time passes: the card's validity ends (stored value has none and never expires).
            due = card.kind != "stored_value" and card.status in ("active", "exhausted")
            if card.kind != "stored_value":
                await set_card_times(card.id, expires_at=datetime.now(UTC) - timedelta(days=1))
                card.past_due = True
            rows = (sum(1 for n in card.items.values() if n) or 1) if due else 0

            async def run(session, card=card):
                return await cards.expire_card(session, actor, card.id)

            def apply(result, card=card, due=due):
                assert result is due
                if not due:
                    return
                written = len(card.written_off)
                # One write-off row per item that still held sessions.
                for item, sessions in card.items.items():
                    if sessions:
                        card.written_off.append((item, sessions))
                        card.items[item] = 0
                        card.kinds.append("expire")
                if not any(sessions for _, sessions in card.written_off[written:]):
                    card.written_off.append((None, 0))  # nothing left: one empty row marks the expiry
                    card.kinds.append("expire")
                card.status = "expired"

        else:  # pragma: no cover - the strategy makes only the kinds above
            raise AssertionError(op)

        async with in_tenant(tenant_id) as session:
            try:
                result = await run(session)
            except AppError as exc:
                # Caught inside the transaction, which then commits: a refusal must come before any write.
                refused: tuple[int, str] | None = (exc.status, exc.code)
                detail = exc.detail
            else:
                refused, detail = None, ""
        assert refused == expected, f"{op}: expected {expected}, got {refused} {detail}"
        if refused is None:
            apply(result)
            ledger_total += rows
        assert await tenant_ledger_count(tenant_id) == ledger_total, f"{op}: ledger rows"
        await check_card(world, card)

    for card in models.values():
        await check_card(world, card)


# ---------------------------------------------------------------- helpers


def other_member(world: World, member: UUID) -> UUID:
    first, second = world.members
    return second if member == first else first


def check_split(card: CardModel, amount: int, principal: int, bonus: int) -> None:
    """Where a charge came from, per the card's spend order (independent of the service's arithmetic)."""
    assert principal + bonus == amount and 0 <= principal <= card.principal and 0 <= bonus <= card.bonus
    if card.spend_order == "principal_first":
        assert principal == min(card.principal, amount)
    elif card.spend_order == "bonus_first":
        assert bonus == min(card.bonus, amount)
    else:  # bonus in proportion to the balances, rounded down, unless principal runs out
        share = amount * card.bonus / (card.principal + card.bonus)
        assert share - 1 < bonus <= max(share, amount - card.principal), (amount, card, principal, bonus)


async def issue_cards(world: World, spend_order: str) -> dict[str, CardModel]:
    clinic, owner = world.clinic, world.members[0]
    out = {}
    async with in_tenant(clinic.tenant_id) as session:
        for key in CARD_KINDS:
            template = world.templates[key if key != "stored_value" else f"stored_value:{spend_order}"]
            card = await cards.issue_card(session, clinic.actor, member_id=owner, template_id=UUID(template),
                                          store_id=UUID(clinic.store), price_paid=0, reason="测试开卡")
            if key == "count":
                model = CardModel(card.id, key, owner, {"massage": COUNT_SESSIONS}, kinds=["issue"])
            elif key == "package":
                model = CardModel(card.id, key, owner, {**PACKAGE_ITEMS, "pool": PACKAGE_POOL}, kinds=["issue"] * 3)
            else:
                model = CardModel(card.id, key, owner, {}, FACE_VALUE, BONUS, spend_order, kinds=["issue"])
            out[key] = model
    return out


async def expiry_of(tenant_id: UUID, card_id: UUID) -> datetime | None:
    async with in_tenant(tenant_id) as session:
        return (await session.get(Card, (tenant_id, card_id))).expires_at


async def tenant_ledger_count(tenant_id: UUID) -> int:
    async with in_tenant(tenant_id) as session:
        return (await session.execute(sa_select(func.count()).select_from(CardLedgerEntry)
                                      .where(CardLedgerEntry.tenant_id == tenant_id))).scalar_one()


async def check_card(world: World, model: CardModel) -> None:
    tenant_id = world.clinic.tenant_id
    names = {v: k for k, v in world.services.items()}
    async with in_tenant(tenant_id) as session:
        card = await session.get(Card, (tenant_id, model.id))
        items = list((await session.exec(select(CardItem).where(CardItem.tenant_id == tenant_id,
                                                                CardItem.card_id == model.id))).all())
        rows = list((await session.exec(select(CardLedgerEntry).where(CardLedgerEntry.tenant_id == tenant_id,
                                                                      CardLedgerEntry.card_id == model.id))).all())
        problems = await cards.check_consistency(session, tenant_id, model.id)
    assert problems == [], problems

    # The sums, computed here from the rows.
    item_ids = {i.id for i in items}
    assert all(r.card_item_id in item_ids for r in rows if r.card_item_id is not None)
    assert all(r.sessions_delta == 0 for r in rows if r.card_item_id is None), "sessions moved outside any item"
    for item in items:
        assert item.remaining == sum(r.sessions_delta for r in rows if r.card_item_id == item.id), item
        assert 0 <= item.remaining <= item.sessions_total
    assert card.principal_balance == sum(r.principal_delta for r in rows)
    assert card.bonus_balance == sum(r.bonus_delta for r in rows)
    assert card.principal_balance >= 0 and card.bonus_balance >= 0

    # And what the model says the card holds.
    remaining = {names.get(i.service_id, "pool"): i.remaining for i in items}
    assert remaining == model.items
    assert (card.principal_balance, card.bonus_balance) == (model.principal, model.bonus)
    assert (card.status, card.member_id) == (model.status, model.owner)
    assert sorted(r.kind for r in rows) == sorted(model.kinds)
    if model.status == "frozen":
        assert card.frozen_at is not None
