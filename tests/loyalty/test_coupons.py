"""Coupons: every kind's discount math (integer, floored, capped, never more than the applicable lines),
threshold, item limits, validity, ownership, single use under concurrency, restore on refund, and the REST
surface (patients see only their own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from app.core.db import session_scope
from app.core.errors import AppError
from app.core.pagination import PageParams
from app.core.security import issue_token
from app.domain.loyalty import service as loyalty
from app.domain.loyalty.service import CouponLine
from app.domain.members import service as members
from tests.cards.helpers import owner_sql
from tests.factories import login
from tests.loyalty.helpers import coupon, gather, make_world, new_ref, outcomes, run, template

NOW = datetime.now(UTC)


async def quote(world, coupon_id, lines, *, member_id=None, now=None):
    return await run(world, loyalty.quote_coupon, coupon_id=coupon_id, member_id=member_id or world.member,
                     lines=lines, now=now or datetime.now(UTC))


async def refusal(aw) -> AppError:
    result = (await gather(aw))[0]
    assert isinstance(result, AppError), result
    return result


async def consistent(world, coupon_id) -> list[str]:
    async with session_scope(world.tenant_id) as session:
        return await loyalty.check_coupon_consistency(session, world.tenant_id, coupon_id)


async def test_discount_math_for_every_kind():
    world = await make_world()
    massage = CouponLine("service", world.massage, 19800)
    tea = CouponLine("product", world.tea, 8801)
    top_up = CouponLine("top_up", None, 100000)

    fixed = await coupon(world, await template(world, kind="fixed", value=3000))
    assert await quote(world, fixed, [massage, tea]) == 3000
    assert await quote(world, fixed, [CouponLine("product", world.tea, 1200)]) == 1200  # never more than the lines
    # A top-up is never discounted: a coupon on stored value would mint money.
    assert (await refusal(quote(world, fixed, [top_up]))).code == "coupon_not_applicable"
    assert await quote(world, fixed, [top_up, CouponLine("card", None, 2000)]) == 2000

    # 8折 (20 % off) capped at ¥40: floor to the fen, then the cap.
    percent = await coupon(world, await template(world, kind="percent", value=20, cap_fen=4000))
    assert await quote(world, percent, [tea]) == 1760  # 8801 × 20 / 100 = 1760.2 → 1760
    assert await quote(world, percent, [massage]) == 3960
    assert await quote(world, percent, [massage, tea]) == 4000  # 5720 capped
    assert (await refusal(quote(world, percent, [CouponLine("service", world.massage, 4)]))).code \
        == "coupon_not_applicable"  # 4 × 20 % = 0.8 fen → nothing off
    uncapped = await coupon(world, await template(world, kind="percent", value=15))
    assert await quote(world, uncapped, [CouponLine("service", world.massage, 999)]) == 149  # 149.85 → 149

    # 满300减50: the applicable lines must reach ¥300.
    threshold = await coupon(world, await template(world, kind="threshold", value=5000, threshold_fen=30000))
    short = await refusal(quote(world, threshold, [massage, tea]))
    assert (short.status, short.code, short.extra["applicable_fen"]) == (422, "threshold_not_met", 28601)
    assert await quote(world, threshold, [massage, massage]) == 5000
    assert await quote(world, threshold, [CouponLine("service", world.massage, 30000)]) == 5000  # exactly reached

    # Item-limited: only 推拿 lines count, towards the threshold too.
    limited = await coupon(world, await template(world, kind="threshold", value=2000, threshold_fen=19800,
                                                 item_service_ids=[world.massage]))
    assert await quote(world, limited, [massage, tea, CouponLine("service", world.moxa, 50000)]) == 2000
    assert (await refusal(quote(world, limited, [CouponLine("service", world.moxa, 50000), tea]))).code \
        == "coupon_not_applicable"
    assert (await refusal(quote(world, limited, [CouponLine("service", world.massage, 19000)]))).code \
        == "threshold_not_met"
    limited_percent = await coupon(world, await template(world, kind="percent", value=50,
                                                         item_product_ids=[world.tea]))
    assert await quote(world, limited_percent, [massage, tea]) == 4400  # half of 8801 = 4400.5 → 4400


@pytest.mark.parametrize("lines, field", [
    ([CouponLine("service", None, -1)], "lines.0.amount_fen"),
    ([CouponLine("service", None, 10.5)], "lines.0.amount_fen"),
    ([CouponLine("service", None, 100), CouponLine("service", None, "100")], "lines.1.amount_fen"),
    ([CouponLine("gift", None, 100)], "lines.0.kind"),
    ([], "lines"),
])
async def test_bad_lines_are_422_naming_the_field(lines, field):
    world = await make_world()
    c = await coupon(world, await template(world, kind="fixed", value=100))
    exc = await refusal(quote(world, c, lines))
    assert (exc.status, exc.extra["field"]) == (422, field)


async def test_template_rules_are_checked():
    world = await make_world()
    cases = [({"kind": "percent", "value": 100}, "value"), ({"kind": "fixed", "value": 100, "cap_fen": 5}, "cap_fen"),
             ({"kind": "threshold", "value": 100}, "threshold_fen"),
             ({"kind": "fixed", "value": 100, "valid_days": 3, "valid_until": NOW + timedelta(days=9)}, "valid_until"),
             ({"kind": "fixed", "value": 100, "item_service_ids": [world.tea]}, "item_service_ids")]
    for body, field in cases:
        exc = await refusal(template(world, **body))
        assert (exc.status, exc.extra["field"]) == (422, field), body


async def test_validity_expiry_and_not_yet_valid():
    world = await make_world()
    c = await coupon(world, await template(world, kind="fixed", value=500, valid_days=7))
    line = [CouponLine("service", world.massage, 19800)]
    assert await quote(world, c, line, now=datetime.now(UTC) + timedelta(days=6)) == 500
    assert (await refusal(quote(world, c, line, now=datetime.now(UTC) + timedelta(days=8)))).code == "coupon_expired"
    later = await coupon(world, await template(world, kind="fixed", value=500, valid_from=NOW + timedelta(days=3),
                                               valid_until=NOW + timedelta(days=10)))
    assert (await refusal(quote(world, later, line))).code == "coupon_not_yet_valid"
    assert await quote(world, later, line, now=NOW + timedelta(days=4)) == 500
    # An expired coupon cannot be used either (the use checks the clock itself).
    await owner_sql("UPDATE coupons SET valid_until = now() - interval '1 minute' WHERE id = :c", c=c)
    exc = await refusal(run(world, loyalty.redeem_coupon, coupon_id=c, member_id=world.member, discount_fen=500,
                            ref_type="order", ref_id=new_ref()))
    assert (exc.status, exc.code) == (409, "coupon_expired")


async def test_another_members_or_tenants_coupon_is_404():
    world, elsewhere = await make_world(), await make_world()
    theirs = await coupon(elsewhere, await template(elsewhere, kind="fixed", value=500))
    other_member = await coupon(world, await template(world, kind="fixed", value=500), member_id=world.other)
    line = [CouponLine("service", world.massage, 19800)]
    for coupon_id in (theirs, other_member, UUID(int=7)):
        exc = await refusal(quote(world, coupon_id, line))
        assert (exc.status, exc.code) == (404, "coupon_not_found")
        exc = await refusal(run(world, loyalty.redeem_coupon, coupon_id=coupon_id, member_id=world.member,
                                discount_fen=500, ref_type="order", ref_id=new_ref()))
        assert exc.status == 404
    # No family sharing: the member's family head cannot use it either.
    async with session_scope(world.tenant_id) as session:
        from app.domain.members.schemas import FamilyCreate, FamilyMemberAdd
        family = await members.create_family(session, world.actor, FamilyCreate(name="李家",
                                                                                head_member_id=world.member))
        await members.add_family_member(session, world.actor, family.id,
                                        FamilyMemberAdd(member_id=world.other, relation="spouse"))
    assert (await refusal(quote(world, other_member, line))).status == 404


async def test_use_restore_and_revoke():
    world = await make_world()
    c = await coupon(world, await template(world, kind="percent", value=20, cap_fen=4000))
    order = new_ref()
    too_much = await refusal(run(world, loyalty.redeem_coupon, coupon_id=c, member_id=world.member,
                                 discount_fen=4001, ref_type="order", ref_id=order))
    assert (too_much.status, too_much.extra["field"]) == (422, "discount_fen")
    for bad in (0, -1, 10.0, "100"):
        exc = await refusal(run(world, loyalty.redeem_coupon, coupon_id=c, member_id=world.member,
                                discount_fen=bad, ref_type="order", ref_id=order))
        assert (exc.status, exc.extra["field"]) == (422, "discount_fen")
    await run(world, loyalty.redeem_coupon, coupon_id=c, member_id=world.member, discount_fen=3960,
              ref_type="order", ref_id=order)
    again = await refusal(run(world, loyalty.redeem_coupon, coupon_id=c, member_id=world.member, discount_fen=100,
                              ref_type="order", ref_id=new_ref()))
    assert (again.status, again.code) == (409, "coupon_used")
    assert (await refusal(quote(world, c, [CouponLine("service", world.massage, 100)]))).code == "coupon_used"
    wrong = await refusal(run(world, loyalty.restore_coupon, coupon_id=c, ref_type="order", ref_id=new_ref(),
                              reason="退款"))
    assert wrong.code == "coupon_not_used_by_ref"
    for _ in range(2):  # a retried refund restores once
        await run(world, loyalty.restore_coupon, coupon_id=c, ref_type="order", ref_id=order, reason="退款")
    assert await quote(world, c, [CouponLine("service", world.massage, 19800)]) == 3960
    assert await consistent(world, c) == []
    async with session_scope(world.tenant_id) as session:
        revoked = await loyalty.revoke_coupon(session, world.actor, c, "发错了")
    assert revoked.status == "revoked" and await consistent(world, c) == []
    assert (await refusal(quote(world, c, [CouponLine("service", world.massage, 100)]))).code == "coupon_revoked"

    # Restored after its validity ended: it comes back expired, not usable.
    late = await coupon(world, await template(world, kind="fixed", value=500))
    order = new_ref()
    await run(world, loyalty.redeem_coupon, coupon_id=late, member_id=world.member, discount_fen=500,
              ref_type="order", ref_id=order)
    await owner_sql("UPDATE coupons SET valid_until = now() - interval '1 minute' WHERE id = :c", c=late)
    await run(world, loyalty.restore_coupon, coupon_id=late, ref_type="order", ref_id=order, reason="退款")
    rows = await owner_sql("SELECT status FROM coupons WHERE id = :c", c=late)
    assert rows[0][0] == "expired" and await consistent(world, late) == []
    topics = [t for (t,) in await owner_sql("SELECT topic FROM outbox WHERE tenant_id = :t", t=world.tenant_id)]
    assert {"coupon.issued", "coupon.used", "coupon.restored"} <= set(topics)


async def test_concurrent_use_of_one_coupon_exactly_one_succeeds():
    world = await make_world()
    for _ in range(3):
        c = await coupon(world, await template(world, kind="fixed", value=3000))
        results = await gather(*(run(world, loyalty.redeem_coupon, coupon_id=c, member_id=world.member,
                                     discount_fen=3000, ref_type="order", ref_id=new_ref()) for _ in range(8)))
        done, refused = outcomes(results)
        assert len(done) == 1 and refused == ["coupon_used"] * 7
        events = await owner_sql("SELECT kind FROM coupon_events WHERE coupon_id = :c ORDER BY created_at", c=c)
        assert [k for (k,) in events] == ["issue", "use"]
        assert await consistent(world, c) == []


async def test_merge_moves_coupons_to_the_survivor():
    world = await make_world()
    c = await coupon(world, await template(world, kind="fixed", value=500), member_id=world.other)
    async with session_scope(world.tenant_id) as session:
        merged = await members.merge_members(session, world.actor, world.member, world.other, "重复建档")
    assert merged["moved"]["loyalty"] == {"points": 0, "coupons": 1}
    assert await quote(world, c, [CouponLine("product", world.tea, 8800)]) == 500


# ---------------------------------------------------------------- REST


async def test_rest_surface(client):
    world = await make_world()
    token = await login(client, world.code, "owner")
    auth = {"Authorization": f"Bearer {token}"}
    api = "/api/v1"
    r = await client.get(f"{api}/loyalty/settings", headers=auth)
    assert r.status_code == 200 and r.json()["redeem_fen_per_point"] == 1
    r = await client.put(f"{api}/loyalty/settings", headers=auth, json={
        "enabled": True, "earn_points_per_yuan": 1, "redeem_fen_per_point": 1, "max_redeem_percent": 40})
    assert r.status_code == 200 and r.json()["max_redeem_percent"] == 40
    for bad in (1.5, "2", -1):
        r = await client.put(f"{api}/loyalty/settings", headers=auth, json={
            "enabled": True, "earn_points_per_yuan": bad, "redeem_fen_per_point": 1, "max_redeem_percent": 40})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "earn_points_per_yuan", r.text

    r = await client.post(f"{api}/members/{world.member}/points/adjust", headers=auth,
                          json={"delta": 500, "reason": "老客补录"})
    assert r.status_code == 201 and r.json()["balance_after"] == 500
    r = await client.post(f"{api}/members/{world.member}/points/adjust", headers=auth,
                          json={"delta": -501, "reason": "扣回"})
    assert r.status_code == 409 and r.json()["code"] == "insufficient_points"
    for body, field in [({"delta": 1.0, "reason": "xx"}, "delta"), ({"delta": "5", "reason": "xx"}, "delta"),
                        ({"delta": 5}, "reason")]:
        r = await client.post(f"{api}/members/{world.member}/points/adjust", headers=auth, json=body)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
    r = await client.get(f"{api}/members/{world.member}/points", headers=auth)
    assert r.json()["balance"] == 500 and [e["delta"] for e in r.json()["items"]] == [500]

    r = await client.post(f"{api}/coupon-templates", headers=auth, json={
        "name": "推拿8折券", "kind": "percent", "value": 20, "cap_fen": 4000, "valid_days": 30,
        "item_service_ids": [str(world.massage)]})
    assert r.status_code == 201, r.text
    template_id = r.json()["id"]
    for body, field in [({"value": -5}, "value"), ({"value": 20.5}, "value"), ({"value": "20"}, "value"),
                        ({"cap_fen": 1.5}, "cap_fen")]:
        r = await client.post(f"{api}/coupon-templates", headers=auth,
                              json={"name": "x", "kind": "percent", "value": 20, **body})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
    r = await client.post(f"{api}/coupons", headers=auth, json={"template_id": template_id,
                                                               "member_id": str(world.member)})
    assert r.status_code == 201 and r.json()["status"] == "issued"
    coupon_id = r.json()["id"]
    other = (await client.post(f"{api}/coupons", headers=auth, json={"template_id": template_id,
                                                                     "member_id": str(world.other)})).json()["id"]
    r = await client.get(f"{api}/members/{world.member}/coupons", headers=auth)
    assert [c["id"] for c in r.json()["items"]] == [coupon_id]
    r = await client.post(f"{api}/coupons/{other}/revoke", headers=auth, json={"reason": "发错人"})
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    r = await client.get(f"{api}/members/{world.other}/coupons", headers=auth, params={"status": "revoked"})
    assert [c["id"] for c in r.json()["items"]] == [other]

    # A patient sees their own coupons and points, and nobody else's.
    token, _ = issue_token(subject=str(world.member), tenant_id=str(world.tenant_id), audience="patient",
                           ttl_seconds=300)
    patient = {"Authorization": f"Bearer {token}"}
    assert (await client.get(f"{api}/members/{world.member}/coupons", headers=patient)).status_code == 200
    assert (await client.get(f"{api}/members/{world.member}/points", headers=patient)).json()["balance"] == 500
    assert (await client.get(f"{api}/members/{world.other}/coupons", headers=patient)).status_code == 404
    assert (await client.get(f"{api}/members/{world.other}/points", headers=patient)).status_code == 404
    assert (await client.post(f"{api}/coupons/{coupon_id}/revoke", headers=patient,
                              json={"reason": "不要了"})).status_code in (401, 403)


async def test_demo_loyalty_seed():
    from app.domain.loyalty.demo import seed_loyalty
    from app.domain.members.schemas import MemberCreate
    from tests.loyalty.helpers import new_phone

    world = await make_world()
    async with session_scope(world.tenant_id) as session:
        zhang = await members.create_member(session, world.actor, MemberCreate(name="张伟", phone=new_phone()))
        await members.create_member(session, world.actor, MemberCreate(name="陈静", phone=new_phone()))
        issued = await seed_loyalty(session, world.actor)
        rows, _ = await loyalty.list_templates(session, world.actor, PageParams())
        by_name = {t.name: t for t in rows}
        assert await loyalty.points_balance(session, world.actor, zhang.id) == 3560
    assert set(by_name) == {"新客立减30元", "满300减50", "推拿8折券(封顶40元)"}
    assert by_name["推拿8折券(封顶40元)"].item_service_ids == [str(world.massage)]
    assert issued == ["陈静: 新客立减30元", "张伟: 满300减50"]
