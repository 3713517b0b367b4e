"""Loyalty: points (earn, redeem, reverse, adjust) and coupons (templates, issue, quote, use, restore, revoke).

This module is loyalty's public face: routers, checkout and care call the use cases through it. They are
written in three rooms and re-exported here — rules.py (the tenant's settings and the integer rules),
points.py (the points ledger and its tenders), coupons.py (templates, coupons and their tenders) — next to
what loyalty plugs into members and its read API for other contexts.

Checkout calls the tender functions (`earn_points`, `redeem_points`, `reverse_points`, `quote_coupon`,
`redeem_coupon`, `restore_coupon`) inside its own transaction; they flush, never commit, and authorise
only access to the member (the caller has authorised the order). Staff actions (settings, adjustments,
templates, issuing, revoking) need `loyalty:write`.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.loyalty import coupons, points
from app.domain.loyalty.coupons import (
    CouponLine,
    applicable_fen,
    check_coupon_consistency,
    coupon_discount,
    create_template,
    get_template,
    issue_coupon,
    list_templates,
    member_coupons,
    present_coupon,
    present_template,
    quote_coupon,
    redeem_coupon,
    restore_coupon,
    revoke_coupon,
)
from app.domain.loyalty.models import CouponTemplate, PointsEntry
from app.domain.loyalty.points import (
    PointsReversal,
    RefPoints,
    adjust_points,
    check_points_consistency,
    earn_points,
    migrated_points,
    open_points_balance,
    points_balance,
    points_ledger,
    redeem_points,
    ref_points,
    reverse_points,
)
from app.domain.loyalty.rules import (
    DEFAULTS,
    earn_for,
    earned_share,
    fen_for_points,
    get_settings,
    max_redeem_fen,
    points_for_fen,
    present_settings,
    put_settings,
)
from app.domain.members import service as members
from app.domain.members.schemas import TimelineItem

__all__ = [
    "DEFAULTS", "CouponLine", "PointsReversal", "RefPoints", "adjust_points", "applicable_fen",
    "check_coupon_consistency", "check_points_consistency", "coupon_discount", "coupon_templates_by_id",
    "create_template", "earn_for", "earn_points", "earned_share", "fen_for_points", "get_settings", "get_template",
    "issue_coupon", "list_templates", "max_redeem_fen", "member_coupons", "migrated_points", "open_points_balance",
    "points_balance", "points_for_fen",
    "points_ledger", "present_coupon", "present_settings", "present_template", "put_settings", "quote_coupon",
    "redeem_coupon", "redeem_points", "ref_points", "restore_coupon", "reverse_points", "revoke_coupon",
]


# ---------------------------------------------------------------- plugged into members


@members.timeline_source("points")
async def _points_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                           before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    stmt = select(PointsEntry).where(PointsEntry.tenant_id == tenant_id, PointsEntry.member_id == member_id)
    if before is not None:
        stmt = stmt.where(members.before_clause(PointsEntry.created_at, PointsEntry.id, before, "points:"))
    rows = (await session.exec(stmt.order_by(PointsEntry.created_at.desc(), PointsEntry.id.desc())
                               .limit(limit))).all()
    titles = {"earn": "积分获得", "redeem": "积分抵扣", "reverse": "积分冲正", "adjust": "积分调整",
              "expire": "积分过期", "merge": "积分合并", "migration": "积分迁入"}
    return [TimelineItem(type="points", occurred_at=e.created_at, id=f"points:{e.id}",
                         title=f"{titles.get(e.kind, e.kind)} {e.delta:+d}",
                         data={"kind": e.kind, "delta": e.delta, "balance_after": e.balance_after,
                               "ref_type": e.ref_type, "ref_id": e.ref_id, "reason": e.reason}) for e in rows]


@members.merge_mover("loyalty")
async def _move_loyalty(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID,
                        survivor_id: UUID) -> dict[str, int]:
    """The duplicate's points and coupons move to the survivor (see points.move_points, coupons.move_coupons)."""
    moved = await points.move_points(session, tenant_id, duplicate_id, survivor_id)
    return {"points": moved, "coupons": await coupons.move_coupons(session, tenant_id, duplicate_id, survivor_id)}


# ---------------------------------------------------------------- read API (for other contexts)
# Other contexts read this one only through the functions below (never its models, never raw SQL on its tables).


async def coupon_templates_by_id(session: AsyncSession, tenant_id: UUID,
                                 template_ids: set[UUID]) -> dict[UUID, CouponTemplate]:
    """The coupon templates among these ids that exist (active or not), by id; no permission check."""
    if not template_ids:
        return {}
    rows = (await session.exec(select(CouponTemplate).where(CouponTemplate.tenant_id == tenant_id,
                                                            CouponTemplate.id.in_(template_ids)))).all()
    return {template.id: template for template in rows}
