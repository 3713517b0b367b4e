"""Loyalty's rules: the tenant's settings, the integer arithmetic of points, and who may reach a member's
points and coupons. points.py and coupons.py apply them.

Integer rules (money is fen, points are whole points; nothing is ever a float):

- Earning: points = floor(paid_fen × earn_points_per_yuan / 100). At 1 point per yuan, ¥99.99 earns 99.
- Redeeming: one point pays `redeem_fen_per_point` fen (default 1: 100 points = ¥1). `points_for_fen`
  refuses an amount that is not a whole number of points (422) rather than rounding it.
- Per-order cap: points may pay at most floor(order_total_fen × max_redeem_percent / 100) fen of an order,
  counting every redemption already made for the same ref.
- Coupons: the discount applies to the *applicable* lines only — the listed services/products for an
  item-limited coupon, otherwise every service, product and card line (never a stored-value top-up:
  discounting stored value would mint money). Threshold (满减) compares the applicable sum.
  fixed/threshold: `value` fen; percent: floor(applicable × value / 100) (the member is never given a
  fraction of a fen), then at most `cap_fen`; always at most the applicable sum. A coupon that would take
  nothing off is refused as not applicable.
- Reversal (refunds): see `points.reverse_points`; for partial refunds use `earned_share` with the
  *cumulative* refunded amount, so each refund rounds down in the member's favour and the refund that
  completes the order takes back exactly the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import NotFound, Unprocessable
from app.domain.loyalty.models import LoyaltySettings
from app.domain.loyalty.schemas import LoyaltySettingsIn, LoyaltySettingsOut
from app.domain.members import service as members

if TYPE_CHECKING:
    from app.domain.members.models import Member

DEFAULTS: dict[str, Any] = {"enabled": True, "earn_points_per_yuan": 1, "redeem_fen_per_point": 1,
                            "max_redeem_percent": 50}


def bad(field_name: str, message: str, code: str = "validation_error") -> Unprocessable:
    return Unprocessable(f"{field_name}: {message}", code=code, field=field_name)


def whole(field_name: str, value: Any, *, minimum: int = 0) -> int:
    """An integer argument from another context: a float, a string or a bool is a bug, never rounded."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(field_name, f"must be an integer, not {type(value).__name__}")
    if value < minimum:
        raise bad(field_name, f"must be at least {minimum}")
    return value


async def member_in_reach(session: AsyncSession, actor: Actor, member_id: UUID) -> Member:
    """The member, if the actor may reach them; a patient reaches only their own points and coupons."""
    if actor.kind == "patient" and actor.id != member_id:
        raise NotFound("member not found", code="member_not_found")
    return await members.get_member_row(session, actor, member_id)


# ---------------------------------------------------------------- settings


async def get_settings(session: AsyncSession, tenant_id: UUID) -> LoyaltySettings:
    """The tenant's rules; a tenant that never saved any gets the defaults (an unsaved object)."""
    row = await session.get(LoyaltySettings, tenant_id)
    return row if row is not None else LoyaltySettings(tenant_id=tenant_id, **DEFAULTS)


def present_settings(row: LoyaltySettings) -> LoyaltySettingsOut:
    return LoyaltySettingsOut(enabled=row.enabled, earn_points_per_yuan=row.earn_points_per_yuan,
                              redeem_fen_per_point=row.redeem_fen_per_point,
                              max_redeem_percent=row.max_redeem_percent, updated_at=row.updated_at)


async def put_settings(session: AsyncSession, actor: Actor, data: LoyaltySettingsIn) -> LoyaltySettings:
    actor.require("loyalty:write")
    row = await session.get(LoyaltySettings, actor.tenant_id, with_for_update=True)
    before = present_settings(row).model_dump(mode="json", exclude={"updated_at"}) if row else dict(DEFAULTS)
    if row is None:
        row = LoyaltySettings(tenant_id=actor.tenant_id)
    for key, value in data.model_dump().items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    session.add(row)
    await session.flush()
    audit.record(session, "loyalty.settings", "loyalty_settings", actor.tenant_id, before=before,
                 after=data.model_dump(mode="json"))
    return row


def earn_for(settings: LoyaltySettings, paid_fen: int) -> int:
    """Points for `paid_fen`: floor(paid_fen × earn_points_per_yuan / 100)."""
    return whole("paid_fen", paid_fen) * settings.earn_points_per_yuan // 100


def points_for_fen(settings: LoyaltySettings, fen: int) -> int:
    """The points that pay exactly `fen`; 422 when `fen` is not a whole number of points."""
    fen = whole("fen", fen)
    if fen % settings.redeem_fen_per_point:
        raise bad("fen", f"{fen} fen is not a whole number of points (1 point = {settings.redeem_fen_per_point} fen)",
                   code="not_whole_points")
    return fen // settings.redeem_fen_per_point


def fen_for_points(settings: LoyaltySettings, points: int) -> int:
    return whole("points", points) * settings.redeem_fen_per_point


def max_redeem_fen(settings: LoyaltySettings, order_total_fen: int) -> int:
    """The most fen points may pay of an order: floor(total × max_redeem_percent / 100)."""
    return whole("order_total_fen", order_total_fen) * settings.max_redeem_percent // 100


def earned_share(earned_total: int, refunded_fen_total: int, paid_fen: int) -> int:
    """Earned points that refunds totalling `refunded_fen_total` (all of the order's refunds so far, this one
    included) take back: floor(earned × refunded / paid). Pass `earned_share(...) - already_reversed` (see
    `ref_points`) to `reverse_points`: each partial refund rounds down in the member's favour, and the refund
    that completes the order takes back exactly what is left."""
    whole("earned_total", earned_total)
    whole("refunded_fen_total", refunded_fen_total)
    whole("paid_fen", paid_fen, minimum=1)
    if refunded_fen_total > paid_fen:
        raise bad("refunded_fen_total", "cannot exceed paid_fen")
    return earned_total * refunded_fen_total // paid_fen
