"""Referral: codes and share paths, recording a referral (at registration and by staff) with its guards, the
rewards (once under redelivery and concurrent delivery, within the monthly limit), their reversal on refund,
and the referral tree for staff and for the patient."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any
from uuid import UUID

from sqlalchemy import text

from app.core.db import session_scope
from app.domain.growth import referrals
from tests.checkout.helpers import Shop, cash, make_shop, paid_order, service_line, stored_value_card
from tests.factories import deliver, demo_reader
from tests.integrations.conftest import fake_wechat, wechat  # noqa: F401 - the fake WeChat server
from tests.members.helpers import patient_token
from tests.patient.helpers import bearer, sign_up

_serial = itertools.count(random.randrange(10_000_000))
WELCOME, REFERRER_POINTS = 300, 2000


def phone() -> str:
    return f"136{next(_serial) % 100_000_000:08d}"


async def member(shop: Shop, name: str, **extra: Any) -> str:
    r = await shop.kit.post("/members", {"name": name, "phone": phone(), **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def put_rules(shop: Shop, **rules: Any) -> dict:
    body = {"enabled": True, "referrer_reward": {"kind": "points", "points": REFERRER_POINTS},
            "referee_welcome": {"kind": "points", "points": WELCOME}} | rules
    r = await shop.kit.client.put("/api/v1/referral-reward-rules", json=body, headers=shop.kit.auth())
    assert r.status_code == 200, r.text
    return r.json()


async def code_of(shop: Shop, member_id: str) -> str:
    r = await shop.kit.get(f"/members/{member_id}/referral-code")
    assert r.status_code == 200, r.text
    return r.json()["code"]


async def refer(shop: Shop, referee: str, **body: Any):
    return await shop.kit.post(f"/members/{referee}/referral", body)


async def points(shop: Shop, member_id: str) -> int:
    r = await shop.kit.get(f"/members/{member_id}/points")
    assert r.status_code == 200, r.text
    return r.json()["balance"]


async def tree(shop: Shop, member_id: str, **params: Any) -> dict:
    r = await shop.kit.get(f"/members/{member_id}/referrals", params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def rewards(shop: Shop) -> list[dict]:
    async with session_scope(system=True) as session:
        rows = (await session.execute(text(
            "SELECT role, kind, status, amount, reward_type, referee_id, beneficiary_id, order_id "
            "FROM referral_rewards WHERE tenant_id = :t ORDER BY created_at"), {"t": shop.tenant_id})).mappings().all()
    return [dict(r) for r in rows]


async def first_order(shop: Shop, member_id: str) -> dict:
    order = await paid_order(shop, [service_line(shop.clinic.moxa)], [cash(9800)], member=member_id)
    assert order["status"] == "paid"
    return order


async def referred_pair(shop: Shop) -> tuple[str, str]:
    """李四 (the shop's member) referred 王小红, recorded through a staff-created member with referrer_id."""
    referee = await member(shop, "王小红", referrer_id=shop.member)
    assert await deliver(shop.tenant_id, "member.created")
    return shop.member, referee


# ---------------------------------------------------------------- codes and recording


async def test_code_is_stable_and_share_path_carries_it(client):
    shop = await make_shop(client)
    first = (await shop.kit.get(f"/members/{shop.member}/referral-code")).json()
    again = (await shop.kit.get(f"/members/{shop.member}/referral-code")).json()
    assert first == again and first["code"].startswith("ref-")
    assert first["share_path"] == f"pages/register/index?scene={first['code']}"
    assert first["qr_available"] is True


async def test_registration_with_code_records_referral_and_gives_welcome(client):
    shop = await make_shop(client)
    await put_rules(shop)
    code = await code_of(shop, shop.member)
    referee = await member(shop, "赵敏", source_channel=code)  # the share link's scene, as registration records it
    await deliver(shop.tenant_id, "member.created")
    got = (await shop.kit.get(f"/members/{referee}")).json()
    assert got["referrer_id"] == shop.member  # the member's own field is set too
    assert await points(shop, referee) == WELCOME
    assert [(r["role"], r["status"]) for r in await rewards(shop)] == [("referee", "granted")]
    # Redelivered: nothing more.
    async with session_scope(shop.tenant_id) as session:
        assert await referrals.on_member_created(session, shop.tenant_id, UUID(referee)) is None
    assert await points(shop, referee) == WELCOME
    t = await tree(shop, shop.member)
    assert [n["name"] for n in t["referees"]] == ["赵敏"] and t["referees"][0]["rewarded"] is False


async def test_mini_program_registration_with_the_share_code(client, wechat):  # noqa: F811
    """The whole path: the share link's scene (the code) sent as `channel` to the sign-up endpoint."""
    shop = await make_shop(client)
    await put_rules(shop)
    code = await code_of(shop, shop.member)
    out = await sign_up(client, wechat, shop.kit.code, name="钱小芸", scene=1047, channel=code)
    await deliver(shop.tenant_id, "member.created")
    me = await client.get("/api/v1/patient/referral", headers=bearer(out["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["referrer"]["member_id"] == shop.member and me.json()["referrer"]["name"] == "李*"
    assert [(r["role"], r["amount"]) for r in me.json()["rewards"]] == [("referee", WELCOME)]
    # The patient's own mini-program code carries their own code as the scene, for the sign-up page.
    own = me.json()["code"]
    png = await client.get("/api/v1/patient/referral/qr.png", headers=bearer(out["access_token"]))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    assert wechat.wxacodes[-1]["scene"] == own and wechat.wxacodes[-1]["page"] == "pages/register/index"
    staff = await shop.kit.get(f"/members/{shop.member}/referral-code/qr.png")
    assert staff.status_code == 200 and wechat.wxacodes[-1]["scene"] == code


async def test_guards(client):
    shop = await make_shop(client)
    a, b, c = [await member(shop, n) for n in ("甲", "乙", "丙")]
    r = await refer(shop, a, referrer_id=a)
    assert r.status_code == 422 and r.json()["code"] == "referral_self"
    r = await refer(shop, a, referrer_code="ref-zzzzzzzz")
    assert r.status_code == 422 and r.json()["field"] == "referrer_code"
    # The same family group.
    family = (await shop.kit.post("/families", {"name": "甲家", "head_member_id": a})).json()["id"]
    r = await shop.kit.post(f"/families/{family}/members", {"member_id": b, "relation": "spouse"})
    assert r.status_code == 200, r.text
    r = await refer(shop, b, referrer_id=a)
    assert r.status_code == 409 and r.json()["code"] == "referral_same_family"
    # A member who has bought already.
    await first_order(shop, c)
    r = await refer(shop, c, referrer_id=a)
    assert r.status_code == 409 and r.json()["code"] == "referral_after_purchase"
    # Recorded once; a second referrer is refused.
    r = await refer(shop, b, referrer_code=await code_of(shop, shop.member))
    assert r.status_code == 201, r.text
    assert (await shop.kit.get(f"/members/{b}")).json()["referrer_id"] == shop.member
    r = await refer(shop, b, referrer_id=c)
    assert r.status_code == 409 and r.json()["code"] == "referral_already_referred"
    assert len(await tree(shop, shop.member, depth=1)) and (await tree(shop, b))["referrer"]["member_id"] == shop.member


async def test_same_phone_is_refused(client, monkeypatch):
    """Two live members never share a mobile in one tenant, so the guard is checked on its own."""
    shop = await make_shop(client)
    other = await member(shop, "钱多多")

    async def same_phone(session, tenant_id, member_id):
        return "13900000000"

    monkeypatch.setattr(referrals.members, "member_phone", same_phone)
    r = await refer(shop, other, referrer_id=shop.member)
    assert r.status_code == 409 and r.json()["code"] == "referral_same_phone"


async def test_bad_input(client):
    shop = await make_shop(client)
    r = await refer(shop, shop.member)
    assert r.status_code == 422
    r = await refer(shop, shop.member, referrer_code="ABC", referrer_id=shop.member)
    assert r.status_code == 422
    r = await shop.kit.get(f"/members/{shop.member}/referrals", params={"depth": 9})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    put = shop.kit.client.put
    r = await put("/api/v1/referral-reward-rules", headers=shop.kit.auth(),
                  json={"referee_welcome": {"kind": "stored_value", "amount": 100}})
    assert r.status_code == 422
    r = await put("/api/v1/referral-reward-rules", headers=shop.kit.auth(),
                  json={"referrer_reward": {"kind": "points"}})
    assert r.status_code == 422
    r = await put("/api/v1/referral-reward-rules", headers=shop.kit.auth(), json={
        "referrer_reward": {"kind": "coupon", "coupon_template_id": "00000000-0000-4000-8000-000000000000"}})
    assert r.status_code == 422 and r.json()["field"] == "referrer_reward.coupon_template_id"
    assert (await shop.kit.get("/referral-reward-rules")).json()["enabled"] is False  # nothing stored


# ---------------------------------------------------------------- rewards


async def test_first_paid_order_rewards_once_under_redelivery(client):
    shop = await make_shop(client)
    await put_rules(shop)
    referrer, referee = await referred_pair(shop)
    before = await points(shop, referrer)
    order = await first_order(shop, referee)
    await deliver(shop.tenant_id, "order.paid")
    for _ in range(2):  # the event delivered again: the handler runs twice more
        async with session_scope(shop.tenant_id) as session:
            await referrals.reward_first_paid_order(session, shop.tenant_id, member_id=UUID(referee),
                                                    order_id=UUID(order["id"]), store_id=UUID(shop.store))
    await first_order(shop, referee)  # a second order is not a first order
    await deliver(shop.tenant_id, "order.paid")
    assert await points(shop, referrer) == before + REFERRER_POINTS
    grants = [r for r in await rewards(shop) if r["role"] == "referrer"]
    assert len(grants) == 1 and grants[0]["order_id"] == UUID(order["id"]) and grants[0]["status"] == "granted"
    assert (await tree(shop, referrer))["referees"][0]["rewarded"] is True


async def test_two_concurrent_deliveries_reward_once(client):
    shop = await make_shop(client)
    await put_rules(shop)
    referrer, referee = await referred_pair(shop)
    before = await points(shop, referrer)
    order = await first_order(shop, referee)

    async def handle() -> None:
        async with session_scope(shop.tenant_id) as session:
            await referrals.reward_first_paid_order(session, shop.tenant_id, member_id=UUID(referee),
                                                    order_id=UUID(order["id"]), store_id=UUID(shop.store))

    results = await asyncio.gather(handle(), handle(), return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert await points(shop, referrer) == before + REFERRER_POINTS
    assert len([r for r in await rewards(shop) if r["role"] == "referrer"]) == 1


async def test_monthly_limit(client):
    shop = await make_shop(client)
    await put_rules(shop, max_rewards_per_referrer_per_month=1)
    before = await points(shop, shop.member)
    referees = [await member(shop, name, referrer_id=shop.member) for name in ("周一", "吴二")]
    await deliver(shop.tenant_id, "member.created")
    for referee in referees:
        await first_order(shop, referee)
    await deliver(shop.tenant_id, "order.paid")
    assert await points(shop, shop.member) == before + REFERRER_POINTS
    statuses = sorted(r["status"] for r in await rewards(shop) if r["role"] == "referrer")
    assert statuses == ["capped", "granted"]


async def test_refund_of_first_order_reverses_reward(client):
    shop = await make_shop(client)
    await put_rules(shop)
    referrer, referee = await referred_pair(shop)
    before = await points(shop, referrer)
    order = await first_order(shop, referee)
    await deliver(shop.tenant_id, "order.paid")
    assert await points(shop, referrer) == before + REFERRER_POINTS
    r = await shop.kit.post(f"/orders/{order['id']}/refunds", {"amount": 9800, "reason": "客户不满意"})
    assert r.status_code == 201, r.text
    await deliver(shop.tenant_id, "refund.completed")
    assert await points(shop, referrer) == before
    async with session_scope(shop.tenant_id) as session:  # redelivered: no second reversal
        assert await referrals.reverse_on_refund(session, shop.tenant_id, order_id=UUID(order["id"]),
                                                 refund_id=None) is None
    rows = [(r["role"], r["kind"], r["status"], r["amount"]) for r in await rewards(shop) if r["role"] == "referrer"]
    assert rows == [("referrer", "grant", "granted", REFERRER_POINTS),
                    ("referrer", "reversal", "reversed", REFERRER_POINTS)]
    ledger = (await shop.kit.get(f"/members/{referrer}/points")).json()["items"]
    assert [e["delta"] for e in ledger][:2] == [-REFERRER_POINTS, REFERRER_POINTS]  # an entry, not a delete
    assert (await tree(shop, referrer))["referees"][0]["rewarded"] is False


async def test_coupon_reward_is_revoked_on_refund(client):
    shop = await make_shop(client)
    r = await shop.kit.post("/coupon-templates", {"name": "推荐有礼50元券", "kind": "fixed", "value": 5000,
                                                  "valid_days": 90})
    assert r.status_code == 201, r.text
    await put_rules(shop, referrer_reward={"kind": "coupon", "coupon_template_id": r.json()["id"]},
                    referee_welcome=None)
    referrer, referee = await referred_pair(shop)
    order = await first_order(shop, referee)
    await deliver(shop.tenant_id, "order.paid")
    coupons = (await shop.kit.get(f"/members/{referrer}/coupons")).json()["items"]
    assert [c["status"] for c in coupons] == ["issued"]
    r = await shop.kit.post(f"/orders/{order['id']}/refunds", {"amount": 9800, "reason": "客户不满意"})
    assert r.status_code == 201, r.text
    await deliver(shop.tenant_id, "refund.completed")
    coupons = (await shop.kit.get(f"/members/{referrer}/coupons", params={"status": "revoked"})).json()["items"]
    assert len(coupons) == 1
    assert [r["kind"] for r in await rewards(shop)] == ["grant", "reversal"]


async def test_stored_value_reward_and_its_reversal(client):
    shop = await make_shop(client)
    await put_rules(shop, referrer_reward={"kind": "stored_value", "amount": 5000}, referee_welcome=None)
    referrer, referee = await referred_pair(shop)
    card = await stored_value_card(shop, member=referrer)
    balance = (await shop.kit.get(f"/cards/{card}")).json()["balance"]
    order = await first_order(shop, referee)
    await deliver(shop.tenant_id, "order.paid")
    assert (await shop.kit.get(f"/cards/{card}")).json()["balance"] == balance + 5000
    r = await shop.kit.post(f"/orders/{order['id']}/refunds", {"amount": 9800, "reason": "客户不满意"})
    assert r.status_code == 201, r.text
    await deliver(shop.tenant_id, "refund.completed")
    assert (await shop.kit.get(f"/cards/{card}")).json()["balance"] == balance
    kinds = [e["kind"] for e in (await shop.kit.get(f"/cards/{card}/ledger")).json()["items"]]
    assert "reverse" in kinds and "top_up" in kinds  # a compensating entry, the top-up kept


async def test_no_stored_value_card_is_recorded_not_given(client):
    shop = await make_shop(client)
    await put_rules(shop, referrer_reward={"kind": "stored_value", "amount": 5000}, referee_welcome=None)
    _, referee = await referred_pair(shop)
    await first_order(shop, referee)
    await deliver(shop.tenant_id, "order.paid")
    assert [(r["status"], r["amount"]) for r in await rewards(shop)] == [("unavailable", 0)]


# ---------------------------------------------------------------- the tree


async def test_patient_sees_own_code_and_tree(client):
    shop = await make_shop(client)
    child = await member(shop, "孙悟空", referrer_id=shop.member)
    grandchild = await member(shop, "猪八戒", referrer_id=child)
    await member(shop, "沙和尚", referrer_id=grandchild)
    await deliver(shop.tenant_id, "member.created")
    token = patient_token(shop.kit, shop.member)
    r = await shop.kit.get("/patient/referral", token=token)
    assert r.status_code == 200, r.text
    mine = r.json()
    assert mine["code"] == await code_of(shop, shop.member) and mine["referrer"] is None
    assert [n["name"] for n in mine["referees"]] == ["孙**"]
    assert [n["name"] for n in mine["referees"][0]["referees"]] == ["猪**"]
    assert mine["referees"][0]["referees"][0]["referees"] == []  # depth 2 by default
    deep = (await shop.kit.get("/patient/referral", token=token, params={"depth": 3})).json()
    assert deep["referees"][0]["referees"][0]["referees"][0]["name"] == "沙**"
    # Staff see any member's tree with names; the child's referrer is shown.
    staff_view = await tree(shop, child, depth=1)
    assert staff_view["referrer"]["name"] == "李四" and [n["name"] for n in staff_view["referees"]] == ["猪八戒"]
    # A patient cannot read another member's tree through the staff route.
    r = await shop.kit.get(f"/members/{child}/referrals", token=token)
    assert r.status_code in (401, 403)


async def test_demo_has_a_rewarded_referral(client):
    get = await demo_reader(client)
    people = {m["name"]: m["id"] for m in (await get("/members", limit=200))["items"]}
    wang = await get(f"/members/{people['王芳']}/referrals", depth=2)
    assert [n["name"] for n in wang["referees"]] == ["陈静"] and wang["referees"][0]["rewarded"] is True
    assert [n["name"] for n in wang["referees"][0]["referees"]] == ["林晓"]
    assert [(r["role"], r["status"], r["amount"]) for r in wang["rewards"]] == [("referrer", "granted", 2000)]
    assert (await get("/referral-reward-rules"))["referrer_reward"] == {
        "kind": "points", "points": 2000, "coupon_template_id": None, "amount": None}
