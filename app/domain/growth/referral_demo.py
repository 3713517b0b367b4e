"""Demo referrals: the rules (2000 points to the referrer for a first order, 300 welcome points, at most 10
rewards a month), 王芳 sharing her code with 陈静 — who registers with it and has her first 艾灸, which
rewards 王芳 — and 陈静 bringing 林晓, whom the front desk records. Called from app.seed.seed_demo after the
catalog and members exist. The events these writes emit find the work done when the worker delivers them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.pagination import PageParams
from app.domain.catalog import service as catalog
from app.domain.checkout import orders
from app.domain.checkout.schemas import OrderCreate
from app.domain.growth import referrals
from app.domain.growth.referral_schemas import ReferralSet, RewardIn, RewardRulesIn
from app.domain.members import service as members
from app.domain.members.schemas import MemberCreate

if TYPE_CHECKING:
    from app.domain.tenancy.models import Store

REFERRER = "王芳"
REFEREE = ("陈静", "13725880101")
SECOND_LEVEL = ("林晓", "13725880102")
FIRST_SERVICE = "艾灸"


async def seed_referrals(session: AsyncSession, actor: Actor, stores: list[Store]) -> list[str]:
    """The demo referrals; one line each (for the seed summary)."""
    tenant_id = actor.tenant_id
    people = await members.member_ids_by_name(session, tenant_id, {REFERRER})
    if REFERRER not in people or not stores:
        return []
    await referrals.put_rules(session, actor, RewardRulesIn(
        enabled=True, referrer_reward=RewardIn(kind="points", points=2000),
        referee_welcome=RewardIn(kind="points", points=300), max_rewards_per_referrer_per_month=10))
    code = await referrals.member_code(session, actor, people[REFERRER])
    # 陈静 opened 王芳's share link: registration records the link's scene (the code) as her source channel.
    chen = await members.create_member(session, actor, MemberCreate(
        name=REFEREE[0], phone=REFEREE[1], gender="female", source_channel=code.code))
    await referrals.on_member_created(session, tenant_id, chen.id)
    made = [f"{REFERRER} → {REFEREE[0]}（扫码注册，欢迎礼300积分）"]
    services = {s.name: s for s in (await catalog.list_services(session, actor, PageParams(limit=200)))[0]}
    moxa = services.get(FIRST_SERVICE)
    if moxa is not None:
        result = await orders.create_order(session, actor, OrderCreate.model_validate({
            "member_id": chen.id, "store_id": stores[0].id, "lines": [{"type": "service", "service_id": moxa.id}],
            "payments": [{"method": "cash", "amount": moxa.price}], "note": "首次体验艾灸"}))
        await referrals.reward_first_paid_order(session, tenant_id, member_id=chen.id, order_id=result.order.id,
                                                store_id=stores[0].id)
        made.append(f"{REFEREE[0]} 首单 {result.order.order_no}：{REFERRER} 获推荐奖励2000积分")
    lin = await members.create_member(session, actor, MemberCreate(name=SECOND_LEVEL[0], phone=SECOND_LEVEL[1],
                                                                   gender="female", source_channel="walk_in"))
    await referrals.set_referrer(session, actor, lin.id, ReferralSet(referrer_id=chen.id))
    made.append(f"{REFEREE[0]} → {SECOND_LEVEL[0]}（前台登记）")
    return made
