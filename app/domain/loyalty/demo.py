"""Demo data for loyalty: the tenant's points rules, three coupon templates, coupons for a few demo members
and some points they earned on past (paper-era) spending. Called from app.seed.seed_demo after members and
the catalog exist."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.pagination import PageParams
from app.domain.catalog import service as catalog
from app.domain.loyalty import service as loyalty
from app.domain.loyalty.schemas import CouponTemplateCreate, LoyaltySettingsIn
from app.domain.members import service as members

# name → template terms; "推拿" in item_services is resolved to the demo catalog's service id.
DEMO_COUPON_TEMPLATES: list[dict[str, Any]] = [
    {"name": "新客立减30元", "kind": "fixed", "value": 3000, "valid_days": 30,
     "description": "首次到店消费立减30元"},
    {"name": "满300减50", "kind": "threshold", "value": 5000, "threshold_fen": 30000, "valid_days": 60,
     "description": "单笔实付满300元减50元"},
    {"name": "推拿8折券(封顶40元)", "kind": "percent", "value": 20, "cap_fen": 4000, "valid_days": 90,
     "item_services": ["推拿"], "description": "推拿项目8折，最多优惠40元"},
]
# member → coupon templates issued to them
DEMO_COUPONS = [
    ("陈静", "新客立减30元"), ("黄磊", "新客立减30元"),
    ("张伟", "满300减50"), ("杨帆", "满300减50"), ("王芳", "满300减50"),
    ("刘洋", "推拿8折券(封顶40元)"), ("赵敏", "推拿8折券(封顶40元)"),
]
# member → fen spent before the system went live (earns points at the tenant's rate)
DEMO_EARNED = [("张伟", 356000), ("杨帆", 218800), ("王芳", 129900), ("赵敏", 88800), ("吴刚", 45600)]


async def seed_loyalty(session: AsyncSession, actor: Actor) -> list[str]:
    """Settings, templates, coupons and points; returns one line per coupon issued (for the seed summary)."""
    await loyalty.put_settings(session, actor, LoyaltySettingsIn(
        enabled=True, earn_points_per_yuan=1, redeem_fen_per_point=1, max_redeem_percent=50))
    offered, _ = await catalog.list_services(session, actor, PageParams(limit=200))  # the demo has a dozen
    services = {s.name: s.id for s in offered}
    templates = {}
    for terms in DEMO_COUPON_TEMPLATES:
        body = {k: v for k, v in terms.items() if k != "item_services"}
        body["item_service_ids"] = [services[name] for name in terms.get("item_services", []) if name in services]
        template = await loyalty.create_template(session, actor, CouponTemplateCreate(**body))
        templates[template.name] = template.id
    people = await members.member_ids_by_name(session, actor.tenant_id,
                                              {name for name, _ in DEMO_COUPONS} | {name for name, _ in DEMO_EARNED})
    issued = []
    for member, template in DEMO_COUPONS:
        if member in people:
            await loyalty.issue_coupon(session, actor, template_id=templates[template], member_id=people[member],
                                       reason="开业活动赠券")
            issued.append(f"{member}: {template}")
    for member, paid_fen in DEMO_EARNED:
        if member in people:
            await loyalty.earn_points(session, actor, member_id=people[member], paid_fen=paid_fen,
                                      ref_type="migration", ref_id=f"paper-{member}")
    return issued
