"""Demo growth data: the channels a medical-aesthetics / wellness chain buys leads from (抖音, 小红书,
大众点评, 老带新, 到店), a campaign code on each, last month's spend, a round-robin rule for the flagship
store with a 30-minute first-contact deadline, and leads in every funnel status. Called from
app.seed.seed_demo after stores, staff and members exist."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.domain.growth import assignment, channels, leads
from app.domain.growth.schemas import (
    CampaignCodeCreate,
    ChannelCreate,
    LeadCreate,
    LeadUpdate,
    RuleCreate,
    SpendCreate,
)

if TYPE_CHECKING:
    from app.domain.tenancy.models import Store

# name, kind, intake code, campaign code, campaign name, last month's spend (fen)
DEMO_CHANNELS = [
    ("抖音", "platform", "douyin", "DY-202612", "抖音本地推·颈肩调理体验", 1_860_000),
    ("小红书", "platform", "xhs", "XHS-202612", "小红书种草·失眠调理笔记", 920_000),
    ("大众点评", "platform", "dianping", "DP-202612", "点评团购·推拿体验券", 450_000),
    ("老带新", "referral", "referral", "REF-202612", "老带新·双人同行礼", 120_000),
    ("到店", "walk_in", "walkin", "WALKIN-01", "门店自然到访", 0),
]
# name, phone, channel, interests, funnel path (the statuses after new), lost reason
DEMO_LEADS = [
    ("高敏", "13512340001", "抖音", ["颈肩调理"], [], None),
    ("林小雨", "13512340002", "小红书", ["失眠调理"], ["contacted"], None),
    ("何佳", "13512340003", "大众点评", ["推拿"], ["contacted", "consultation_booked"], None),
    ("郭静怡", "13512340004", "抖音", ["艾灸"], ["contacted", "consultation_booked", "arrived"], None),
    ("罗晓燕", "13512340005", "老带新", ["拔罐", "推拿"], ["contacted", "consultation_booked", "arrived",
                                                         "consulted"], None),
    ("梁文博", "13512340006", "到店", ["颈肩调理"], ["contacted", "consultation_booked", "arrived", "consulted",
                                                     "won"], None),
    ("宋雅琴", "13512340007", "小红书", ["失眠调理"], ["contacted", "lost"], "价格超出预算，暂不考虑"),
    ("王芳", "13916620002", "老带新", ["痛经调理"], ["contacted"], None),  # a member already: linked by phone
]


async def seed_growth(session: AsyncSession, actor: Actor, stores: list[Store], staff_ids: dict[str, Any],
                      today: date) -> dict[str, Any]:
    """The demo's growth data; a summary for the seed output."""
    store = stores[0]
    channel_ids: dict[str, UUID] = {}
    month_end = today.replace(day=1) - timedelta(days=1)
    for name, kind, code, campaign_code, campaign_name, spend in DEMO_CHANNELS:
        channel = await channels.create_channel(session, actor, ChannelCreate(name=name, kind=kind, code=code))
        channel_ids[name] = channel.id
        await channels.create_campaign_code(session, actor, CampaignCodeCreate(
            channel_id=channel.id, code=campaign_code, name=campaign_name, store_id=store.id,
            page="pages/index/index"))
        await channels.add_spend(session, actor, channel.id, SpendCreate(
            period_start=month_end.replace(day=1), period_end=month_end, amount=spend,
            note=f"{month_end:%Y年%m月}{name}投放"))
    await assignment.create_rule(session, actor, RuleCreate(
        name="静安旗舰店·新线索轮流分配", store_id=store.id, strategy="round_robin", first_contact_minutes=30))
    consultant = staff_ids.get("consultant.zhao")
    statuses: dict[str, int] = {}
    for name, phone, channel_name, interests, path, lost_reason in DEMO_LEADS:
        lead = await leads.create_lead(session, actor, LeadCreate(
            name=name, phone=phone, channel_id=channel_ids[channel_name], store_id=store.id, interests=interests,
            note=f"来自{channel_name}，意向：{'、'.join(interests)}"))
        for status in path:
            await leads.update_lead(session, actor, lead.id, LeadUpdate(
                status=status, lost_reason=lost_reason if status == "lost" else None,
                comment="已电话沟通" if status == "contacted" else None))
        final = path[-1] if path else "new"
        statuses[final] = statuses.get(final, 0) + 1
    return {"channels": list(channel_ids), "leads": statuses, "consultant": str(consultant) if consultant else None}
