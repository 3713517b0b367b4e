"""Member-tier discounts (会员等级折扣): members tagged e.g. 金卡会员 get a percent off lines of some types when
an order is priced (see pricing.py for how the percent applies)."""

from __future__ import annotations

from uuid import UUID

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.errors import Unprocessable
from app.domain.checkout.models import TierDiscount
from app.domain.members import service as members


async def set_tier_discount(session: AsyncSession, actor: Actor, *, tag_name: str, percent_off: int,
                            line_types: list[str] | None = None, active: bool = True) -> TierDiscount:
    """Members tagged `tag_name` get `percent_off` % on lines of `line_types` (default services and products).
    A price policy, so it needs catalog:write (the front desk sells, it does not set discounts)."""
    actor.require("catalog:write")
    if not 1 <= percent_off <= 90:
        raise Unprocessable("percent_off: between 1 and 90", code="validation_error", field="percent_off")
    types = line_types or ["service", "product"]
    if not set(types) <= {"service", "product", "card", "top_up"}:
        raise Unprocessable("line_types: service, product, card or top_up", code="validation_error",
                            field="line_types")
    row = (await session.exec(select(TierDiscount).where(TierDiscount.tenant_id == actor.tenant_id,
                                                          TierDiscount.tag_name == tag_name))).first()
    row = row or TierDiscount(tenant_id=actor.tenant_id, tag_name=tag_name, percent_off=percent_off)
    row.percent_off, row.line_types, row.active = percent_off, types, active
    session.add(row)
    await session.flush()
    audit.record(session, "tier_discount.set", "tier_discount", row.id, tag=tag_name, percent_off=percent_off,
                 line_types=types, active=active)
    return row


async def list_tier_discounts(session: AsyncSession, actor: Actor) -> list[TierDiscount]:
    actor.require("orders:read")
    return list((await session.exec(select(TierDiscount).where(TierDiscount.tenant_id == actor.tenant_id)
                                    .order_by(TierDiscount.tag_name))).all())


async def tier_percents(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> dict[str, int]:
    """Line type -> the best member-tier percent the member's tags give (several tiers do not add up)."""
    tags = set(await members.tags_of(session, tenant_id, member_id))
    if not tags:
        return {}
    rows = (await session.exec(select(TierDiscount).where(
        TierDiscount.tenant_id == tenant_id, TierDiscount.active.is_(True),
        TierDiscount.tag_name.in_(tags)))).all()
    best: dict[str, int] = {}
    for row in rows:
        for line_type in row.line_types:
            best[line_type] = max(best.get(line_type, 0), row.percent_off)
    return best
