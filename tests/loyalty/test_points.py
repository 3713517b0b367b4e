"""Points: earning, redeeming, reversing and adjusting keep balance == sum(ledger), never overdraw (also under
concurrent redemptions on separate connections), and follow the documented integer rules."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.db import session_scope
from app.core.errors import AppError
from app.domain.loyalty import service as loyalty
from app.domain.loyalty.models import LoyaltySettings
from app.domain.loyalty.schemas import LoyaltySettingsIn
from app.domain.members import service as members
from tests.cards.helpers import owner_sql
from tests.loyalty.helpers import balance, consistent, gather, make_world, new_ref, outcomes, run


def rules(**kw) -> LoyaltySettings:
    return LoyaltySettings(**{"tenant_id": None, **loyalty.DEFAULTS, **kw})


def test_integer_rules():
    default = rules()
    assert loyalty.earn_for(default, 9999) == 99  # ¥99.99 at 1 point/yuan: floor
    assert loyalty.earn_for(rules(earn_points_per_yuan=3), 1050) == 31  # 31.5 → 31
    assert loyalty.fen_for_points(default, 250) == 250  # 100 points = ¥1
    assert loyalty.points_for_fen(rules(redeem_fen_per_point=10), 1230) == 123
    with pytest.raises(AppError) as exc:
        loyalty.points_for_fen(rules(redeem_fen_per_point=10), 1235)
    assert (exc.value.status, exc.value.code, exc.value.extra["field"]) == (422, "not_whole_points", "fen")
    for bad in (1.5, "100", True, -1):
        with pytest.raises(AppError) as exc:
            loyalty.points_for_fen(default, bad)
        assert exc.value.status == 422 and exc.value.extra["field"] == "fen"
    assert loyalty.max_redeem_fen(default, 19999) == 9999  # 50 %, floor
    # Partial refunds: cumulative shares round down and the last one takes back exactly the rest.
    assert [loyalty.earned_share(10, r, 300) for r in (100, 200, 300)] == [3, 6, 10]


async def test_earn_redeem_reverse_round_trip():
    world = await make_world()
    order = new_ref()
    assert await run(world, loyalty.earn_points, member_id=world.member, paid_fen=19850, ref_type="order",
                     ref_id=order) == 198
    # Earning twice for one order writes nothing new.
    assert await run(world, loyalty.earn_points, member_id=world.member, paid_fen=19850, ref_type="order",
                     ref_id=order) == 198
    assert await balance(world) == 198
    second = new_ref()
    assert await run(world, loyalty.redeem_points, member_id=world.member, points=150, ref_type="order",
                     ref_id=second) == 150
    assert await balance(world) == 48
    refused = await gather(run(world, loyalty.redeem_points, member_id=world.member, points=49, ref_type="order",
                               ref_id=new_ref()))
    assert outcomes(refused)[1] == ["insufficient_points"]

    # Refund of the second order: its 150 redeemed points come back, once however often it is retried.
    for _ in range(2):
        back = await run(world, loyalty.reverse_points, ref_type="order", ref_id=second, by_ref_type="refund",
                         by_ref_id="r1", reason="退款")
        assert (back.redeemed_restored, back.earned_removed, back.shortfall) == (150, 0, 0)
    assert await balance(world) == 198
    # Partial refund of the first order (a third of it): floor(198 / 3) earned points go.
    part = await run(world, loyalty.reverse_points, ref_type="order", ref_id=order, by_ref_type="refund",
                     by_ref_id="r2", reason="部分退款",
                     points_earned_to_remove=loyalty.earned_share(198, 6616, 19850))
    assert part.earned_removed == 65
    # The rest of it: None takes back whatever is still outstanding.
    rest = await run(world, loyalty.reverse_points, ref_type="order", ref_id=order, by_ref_type="refund",
                     by_ref_id="r3", reason="全部退款")
    assert rest.earned_removed == 133 and await balance(world) == 0
    over = await gather(run(world, loyalty.reverse_points, ref_type="order", ref_id=order, by_ref_type="refund",
                            by_ref_id="r4", reason="x", points_earned_to_remove=1))
    assert outcomes(over)[1] == ["points_over_reversal"]
    assert await consistent(world) == []
    async with session_scope(world.tenant_id) as session:
        summary = await loyalty.ref_points(session, world.actor, ref_type="order", ref_id=order)
    assert (summary.earned, summary.earned_settled) == (198, 198)


async def test_reversal_of_spent_points_reports_a_shortfall_and_never_goes_negative():
    world = await make_world()
    order = new_ref()
    await run(world, loyalty.earn_points, member_id=world.member, paid_fen=10000, ref_type="order", ref_id=order)
    await run(world, loyalty.redeem_points, member_id=world.member, points=80, ref_type="order", ref_id=new_ref())
    back = await run(world, loyalty.reverse_points, ref_type="order", ref_id=order, by_ref_type="refund",
                     by_ref_id=new_ref(), reason="退款")
    assert (back.earned_removed, back.shortfall) == (20, 80)
    assert await balance(world) == 0
    # The shortfall counts as settled: nothing is left to take back.
    again = await run(world, loyalty.reverse_points, ref_type="order", ref_id=order, by_ref_type="refund",
                      by_ref_id=new_ref(), reason="再退")
    assert (again.earned_removed, again.shortfall, again.entries) == (0, 0, [])
    assert await consistent(world) == []


async def test_settings_disable_cap_and_rate():
    world = await make_world()
    async with session_scope(world.tenant_id) as session:
        assert (await loyalty.get_settings(session, world.tenant_id)).earn_points_per_yuan == 1
        await loyalty.put_settings(session, world.actor, LoyaltySettingsIn(
            enabled=True, earn_points_per_yuan=2, redeem_fen_per_point=10, max_redeem_percent=30))
    order = new_ref()
    assert await run(world, loyalty.earn_points, member_id=world.member, paid_fen=50000, ref_type="order",
                     ref_id=order) == 1000
    # Order of ¥100: points may pay ¥30 = 300 fen... 3000 fen = 300 points at 10 fen each.
    pay = new_ref()
    assert await run(world, loyalty.redeem_points, member_id=world.member, points=200, ref_type="order", ref_id=pay,
                     order_total_fen=10000) == 2000
    capped = await gather(run(world, loyalty.redeem_points, member_id=world.member, points=101, ref_type="order",
                              ref_id=pay, order_total_fen=10000))
    assert outcomes(capped)[1] == ["points_cap_exceeded"]
    assert capped[0].extra["max_points"] == 100
    assert await run(world, loyalty.redeem_points, member_id=world.member, points=100, ref_type="order", ref_id=pay,
                     order_total_fen=10000) == 1000
    async with session_scope(world.tenant_id) as session:
        await loyalty.put_settings(session, world.actor, LoyaltySettingsIn(
            enabled=False, earn_points_per_yuan=2, redeem_fen_per_point=10, max_redeem_percent=30))
    assert await run(world, loyalty.earn_points, member_id=world.member, paid_fen=50000, ref_type="order",
                     ref_id=new_ref()) == 0
    off = await gather(run(world, loyalty.redeem_points, member_id=world.member, points=1, ref_type="order",
                           ref_id=new_ref()))
    assert outcomes(off)[1] == ["points_disabled"]


@pytest.mark.parametrize("bad", [-5, 0, 1.5, "10", None, True])
async def test_bad_amounts_are_422_naming_the_field(bad):
    world = await make_world()
    for fn, kw, name in [(loyalty.redeem_points, {"points": bad}, "points"),
                         (loyalty.earn_points, {"paid_fen": bad}, "paid_fen")]:
        if name == "paid_fen" and bad == 0:
            continue  # paying 0 fen legitimately earns 0 points
        result = await gather(run(world, fn, member_id=world.member, ref_type="order", ref_id=new_ref(), **kw))
        assert isinstance(result[0], AppError), (name, bad, result)
        assert (result[0].status, result[0].extra.get("field")) == (422, name)


async def test_concurrent_redemptions_never_overdraw():
    world = await make_world()
    async with session_scope(world.tenant_id) as session:
        await loyalty.adjust_points(session, world.actor, world.member, 1000, "开业赠送")

    def redeem(points: int):
        return run(world, loyalty.redeem_points, member_id=world.member, points=points, ref_type="order",
                   ref_id=new_ref())

    done, refused = outcomes(await gather(*(redeem(300) for _ in range(12))))
    assert len(done) == 3 and refused == ["insufficient_points"] * 9
    assert await balance(world) == 100
    done, refused = outcomes(await gather(redeem(100), redeem(100), redeem(100)))
    assert len(done) == 1 and refused == ["insufficient_points"] * 2
    assert await balance(world) == 0
    assert await consistent(world) == []


async def test_first_use_of_a_member_row_races_safely():
    """Two members' first-ever earns and a redeem on a member with no balance row, all at once."""
    world = await make_world()
    results = await gather(*(run(world, loyalty.earn_points, member_id=m, paid_fen=1000, ref_type="order",
                                 ref_id=new_ref()) for m in [world.member, world.other] * 4))
    assert outcomes(results)[0] == [10] * 8
    assert await balance(world) == 40 and await balance(world, world.other) == 40


async def test_merge_moves_points_and_reversal_follows_the_survivor():
    world = await make_world()
    order = new_ref()
    await run(world, loyalty.earn_points, member_id=world.other, paid_fen=30000, ref_type="order", ref_id=order)
    await run(world, loyalty.earn_points, member_id=world.member, paid_fen=5000, ref_type="order", ref_id=new_ref())
    async with session_scope(world.tenant_id) as session:
        merged = await members.merge_members(session, world.actor, world.member, world.other, "重复建档")
    assert merged["moved"]["loyalty"] == {"points": 300, "coupons": 0}
    assert await balance(world) == 350
    back = await run(world, loyalty.reverse_points, ref_type="order", ref_id=order, by_ref_type="refund",
                     by_ref_id=new_ref(), reason="退款")
    assert back.earned_removed == 300 and await balance(world) == 50
    assert await consistent(world) == [] and await consistent(world, world.other) == []


async def test_the_ledger_is_append_only():
    world = await make_world()
    await run(world, loyalty.earn_points, member_id=world.member, paid_fen=1000, ref_type="order", ref_id=new_ref())
    with pytest.raises(Exception, match="append-only"):
        await owner_sql("UPDATE points_ledger SET delta = 1000 WHERE tenant_id = :t", t=world.tenant_id)


operations = st.one_of(
    st.tuples(st.just("earn"), st.integers(0, 50000)),
    st.tuples(st.just("redeem"), st.integers(1, 400)),
    st.tuples(st.just("adjust"), st.integers(-300, 300).filter(bool)),
    st.tuples(st.just("reverse"), st.integers(0, 10)),
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operations, min_size=1, max_size=12))
async def test_balance_equals_the_ledger_after_any_sequence(ops):
    world = await make_world()
    model = 0
    refs: list[tuple[str, int, bool]] = []  # (ref, points it moved: +earned / -redeemed, reversed)
    for kind, amount in ops:
        expect_ok = True
        async with session_scope(world.tenant_id) as session:
            try:
                if kind == "earn":
                    ref = new_ref()
                    got = await loyalty.earn_points(session, world.actor, member_id=world.member, paid_fen=amount,
                                                    ref_type="order", ref_id=ref)
                    assert got == amount // 100
                    model += got
                    refs.append((ref, got, False))
                elif kind == "redeem":
                    expect_ok = model >= amount
                    ref = new_ref()
                    await loyalty.redeem_points(session, world.actor, member_id=world.member, points=amount,
                                                ref_type="order", ref_id=ref)
                    model -= amount
                    refs.append((ref, -amount, False))
                elif kind == "adjust":
                    expect_ok = model + amount >= 0
                    await loyalty.adjust_points(session, world.actor, world.member, amount, "盘点")
                    model += amount
                elif kind == "reverse" and refs:
                    index = amount % len(refs)
                    ref, moved, done = refs[index]
                    result = await loyalty.reverse_points(session, world.actor, ref_type="order", ref_id=ref,
                                                          by_ref_type="refund", by_ref_id=new_ref(), reason="退")
                    if done:
                        assert result.entries == []
                    elif moved < 0:
                        assert result.redeemed_restored == -moved
                        model -= moved
                    else:
                        assert result.earned_removed + result.shortfall == moved
                        model -= result.earned_removed
                    refs[index] = (ref, moved, True)
                assert expect_ok, f"{kind} {amount} should have been refused"
            except AppError as exc:
                assert not expect_ok, f"{kind} {amount} refused: {exc.detail}"
                assert exc.code == "insufficient_points"
        assert model >= 0
    assert await balance(world) == model
    assert await consistent(world) == []
