"""Loyalty: points (earn, redeem, reverse, adjust) and coupons (templates, issue, quote, use, restore, revoke).

Checkout calls the tender functions (`earn_points`, `redeem_points`, `reverse_points`, `quote_coupon`,
`redeem_coupon`, `restore_coupon`) inside its own transaction; they flush, never commit, and authorise
only access to the member (the caller has authorised the order). Staff actions (settings, adjustments,
templates, issuing, revoking) need `loyalty:write`.

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
- Reversal (refunds): see `reverse_points`; for partial refunds use `earned_share` with the *cumulative*
  refunded amount, so each refund rounds down in the member's favour and the refund that completes the
  order takes back exactly the rest.

Concurrency: every points change locks the member's `member_points` row (`FOR UPDATE`, created on first
use), so concurrent redemptions serialise and the CHECK (balance >= 0) is only a backstop. A coupon is
used by a conditional `UPDATE … WHERE status = 'issued'`: of two concurrent uses, the second waits for
the first and then matches no row (409 coupon_used).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import and_, or_, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.context import current_context
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.outbox import emit
from app.core.pagination import PageParams, paginate
from app.domain.catalog.models import Product, Service
from app.domain.loyalty.models import (
    Coupon,
    CouponEvent,
    CouponKind,
    CouponStatus,
    CouponTemplate,
    LoyaltySettings,
    MemberPoints,
    PointsEntry,
    PointsKind,
)
from app.domain.loyalty.schemas import (
    CouponOut,
    CouponTemplateCreate,
    CouponTemplateOut,
    LoyaltySettingsIn,
    LoyaltySettingsOut,
)
from app.domain.members import service as members
from app.domain.members.models import Member
from app.domain.members.schemas import TimelineItem

DEFAULTS: dict[str, Any] = {"enabled": True, "earn_points_per_yuan": 1, "redeem_fen_per_point": 1,
                            "max_redeem_percent": 50}
LINE_KINDS = ("service", "product", "card", "top_up")
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: codes are read aloud at the desk
MAX_MERGE_HOPS = 20


def _bad(field_name: str, message: str, code: str = "validation_error") -> Unprocessable:
    return Unprocessable(f"{field_name}: {message}", code=code, field=field_name)


def _whole(field_name: str, value: Any, *, minimum: int = 0) -> int:
    """An integer argument from another context: a float, a string or a bool is a bug, never rounded."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(field_name, f"must be an integer, not {type(value).__name__}")
    if value < minimum:
        raise _bad(field_name, f"must be at least {minimum}")
    return value


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
    return _whole("paid_fen", paid_fen) * settings.earn_points_per_yuan // 100


def points_for_fen(settings: LoyaltySettings, fen: int) -> int:
    """The points that pay exactly `fen`; 422 when `fen` is not a whole number of points."""
    fen = _whole("fen", fen)
    if fen % settings.redeem_fen_per_point:
        raise _bad("fen", f"{fen} fen is not a whole number of points (1 point = {settings.redeem_fen_per_point} fen)",
                   code="not_whole_points")
    return fen // settings.redeem_fen_per_point


def fen_for_points(settings: LoyaltySettings, points: int) -> int:
    return _whole("points", points) * settings.redeem_fen_per_point


def max_redeem_fen(settings: LoyaltySettings, order_total_fen: int) -> int:
    """The most fen points may pay of an order: floor(total × max_redeem_percent / 100)."""
    return _whole("order_total_fen", order_total_fen) * settings.max_redeem_percent // 100


def earned_share(earned_total: int, refunded_fen_total: int, paid_fen: int) -> int:
    """Earned points that refunds totalling `refunded_fen_total` (all of the order's refunds so far, this one
    included) take back: floor(earned × refunded / paid). Pass `earned_share(...) - already_reversed` (see
    `ref_points`) to `reverse_points`: each partial refund rounds down in the member's favour, and the refund
    that completes the order takes back exactly what is left."""
    _whole("earned_total", earned_total)
    _whole("refunded_fen_total", refunded_fen_total)
    _whole("paid_fen", paid_fen, minimum=1)
    if refunded_fen_total > paid_fen:
        raise _bad("refunded_fen_total", "cannot exceed paid_fen")
    return earned_total * refunded_fen_total // paid_fen


# ---------------------------------------------------------------- points: ledger writing


async def _member(session: AsyncSession, actor: Actor, member_id: UUID) -> Member:
    """The member, if the actor may reach them; a patient reaches only their own points and coupons."""
    if actor.kind == "patient" and actor.id != member_id:
        raise NotFound("member not found", code="member_not_found")
    return await members.get_member_row(session, actor, member_id)


async def _holder(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> UUID:
    """The member who holds `member_id`'s points now: a merged record's points live with its survivor."""
    for _ in range(MAX_MERGE_HOPS):
        merged_into = (await session.execute(
            text("SELECT merged_into_id FROM members WHERE tenant_id = :t AND id = :m"),
            {"t": tenant_id, "m": member_id})).scalar_one_or_none()
        if merged_into is None:
            return member_id
        member_id = merged_into
    return member_id


async def _locked_points(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> MemberPoints:
    # The row is made on first use; ON CONFLICT lets two first uses race safely, then both lock it.
    await session.execute(pg_insert(MemberPoints).values(tenant_id=tenant_id, member_id=member_id, balance=0)
                          .on_conflict_do_nothing())
    return await session.get(MemberPoints, (tenant_id, member_id), with_for_update=True, populate_existing=True)


def _write(session: AsyncSession, points: MemberPoints, kind: str, delta: int, **fields: Any) -> PointsEntry:
    if points.balance + delta < 0:
        raise Conflict("the member does not have enough points", code="insufficient_points",
                       available=points.balance, requested=-delta)
    points.balance += delta
    points.updated_at = utcnow()
    ctx = current_context()
    if fields.get("ref_id") is not None:
        fields["ref_id"] = str(fields["ref_id"])
    if fields.get("by_ref_id") is not None:
        fields["by_ref_id"] = str(fields["by_ref_id"])
    entry = PointsEntry(tenant_id=points.tenant_id, member_id=points.member_id, kind=kind, delta=delta,
                        balance_after=points.balance, actor_type=ctx.actor_type, actor_id=ctx.actor_id, **fields)
    session.add_all([points, entry])
    return entry


async def points_balance(session: AsyncSession, actor: Actor, member_id: UUID) -> int:
    await _member(session, actor, member_id)
    row = await session.get(MemberPoints, (actor.tenant_id, member_id))
    return row.balance if row else 0


async def points_ledger(session: AsyncSession, actor: Actor, member_id: UUID, params: PageParams):
    await _member(session, actor, member_id)
    stmt = select(PointsEntry).where(PointsEntry.tenant_id == actor.tenant_id, PointsEntry.member_id == member_id)
    return await paginate(session, stmt, PointsEntry.id, params, descending=True)


# ---------------------------------------------------------------- points: tenders


async def earn_points(session: AsyncSession, actor: Actor, *, member_id: UUID, paid_fen: int, ref_type: str,
                      ref_id: str) -> int:
    """Credit the points for `paid_fen` paid on (ref_type, ref_id); 0 when points are off.

    Once per ref: a second call for the same ref writes nothing and returns what the first earned."""
    paid_fen = _whole("paid_fen", paid_fen)
    settings = await get_settings(session, actor.tenant_id)
    if not settings.enabled:
        return 0
    await _member(session, actor, member_id)
    holder = await _holder(session, actor.tenant_id, member_id)
    balance = await _locked_points(session, actor.tenant_id, holder)
    # Looked up under the lock, so a concurrent duplicate for the same member sees the first one's entry.
    existing = (await session.exec(select(PointsEntry).where(
        PointsEntry.tenant_id == actor.tenant_id, PointsEntry.kind == PointsKind.EARN,
        PointsEntry.ref_type == ref_type, PointsEntry.ref_id == str(ref_id)))).first()
    if existing is not None:
        return existing.delta
    points = earn_for(settings, paid_fen)
    if points == 0:
        return 0
    entry = _write(session, balance, PointsKind.EARN, points, ref_type=ref_type, ref_id=ref_id,
                   details={"paid_fen": paid_fen, "earn_points_per_yuan": settings.earn_points_per_yuan})
    await session.flush()
    await emit(session, "points.earned", {"member_id": str(holder), "points": points, "balance": balance.balance,
                                          "ref_type": ref_type, "ref_id": str(ref_id), "entry_id": str(entry.id)})
    return points


async def redeem_points(session: AsyncSession, actor: Actor, *, member_id: UUID, points: int, ref_type: str,
                        ref_id: str, order_total_fen: int | None = None) -> int:
    """Spend `points` as a tender on (ref_type, ref_id); returns the fen they pay.

    409 insufficient_points (never overdraws, also under concurrency), 409 points_disabled; with
    `order_total_fen`, 422 points_cap_exceeded past the tenant's per-order cap (counting earlier
    redemptions for the same ref)."""
    points = _whole("points", points, minimum=1)
    settings = await get_settings(session, actor.tenant_id)
    if not settings.enabled:
        raise Conflict("points are not enabled for this clinic", code="points_disabled")
    member = await _member(session, actor, member_id)
    if member.status != "active":
        raise Conflict(f"member is {member.status}", code="member_inactive")
    fen = fen_for_points(settings, points)
    balance = await _locked_points(session, actor.tenant_id, member.id)
    if order_total_fen is not None:
        cap = max_redeem_fen(settings, order_total_fen)
        spent = -(await _net_for_ref(session, actor.tenant_id, ref_type, ref_id, PointsKind.REDEEM))
        already = fen_for_points(settings, spent)
        if already + fen > cap:
            raise Unprocessable(f"points: points may pay at most {cap} fen of this order "
                                f"({settings.max_redeem_percent}%); {already} fen already paid with points",
                                code="points_cap_exceeded", field="points",
                                max_points=max(cap - already, 0) // settings.redeem_fen_per_point)
    entry = _write(session, balance, PointsKind.REDEEM, -points, ref_type=ref_type, ref_id=ref_id,
                   details={"fen": fen, "redeem_fen_per_point": settings.redeem_fen_per_point})
    await session.flush()
    await emit(session, "points.redeemed", {"member_id": str(member.id), "points": points, "fen": fen,
                                            "balance": balance.balance, "ref_type": ref_type, "ref_id": str(ref_id),
                                            "entry_id": str(entry.id)})
    return fen


async def _net_for_ref(session: AsyncSession, tenant_id: UUID, ref_type: str, ref_id: Any, kind: str) -> int:
    """Sum of the ref's `kind` entries and of the reversals pointing at them."""
    total = (await session.execute(text(
        "SELECT COALESCE(sum(delta), 0) FROM points_ledger WHERE tenant_id = :t AND ref_type = :rt AND ref_id = :r "
        "AND (kind = :k OR (kind = 'reverse' AND reverses_id IN (SELECT id FROM points_ledger "
        "WHERE tenant_id = :t AND ref_type = :rt AND ref_id = :r AND kind = :k)))"),
        {"t": tenant_id, "rt": ref_type, "r": str(ref_id), "k": kind})).scalar_one()
    return int(total)


@dataclass
class RefPoints:
    """What a ref (an order) did to points, and how much of it refunds have settled so far."""

    earned: int = 0
    earned_settled: int = 0  # taken back, or reported as shortfall (spent before the refund)
    redeemed: int = 0
    redeemed_restored: int = 0


@dataclass
class PointsReversal:
    earned_removed: int = 0
    redeemed_restored: int = 0
    # Earned points the member had already spent, so they could not be taken back; the caller may
    # withhold their value (fen_for_points) from the refund. They count as settled.
    shortfall: int = 0
    entries: list[PointsEntry] = field(default_factory=list)
    repeated: bool = False  # this by-ref had already reversed the ref: nothing new was written


def _settled(entry: PointsEntry) -> int:
    return int(entry.details.get("settled", abs(entry.delta)))


async def _ref_entries(session: AsyncSession, tenant_id: UUID, ref_type: str, ref_id: Any,
                       ) -> tuple[list[PointsEntry], list[PointsEntry]]:
    originals = list((await session.exec(select(PointsEntry).where(
        PointsEntry.tenant_id == tenant_id, PointsEntry.ref_type == ref_type, PointsEntry.ref_id == str(ref_id),
        PointsEntry.kind.in_([PointsKind.EARN, PointsKind.REDEEM]))
        .order_by(PointsEntry.created_at, PointsEntry.id))).all())
    if not originals:
        return [], []
    reversals = list((await session.exec(select(PointsEntry).where(
        PointsEntry.tenant_id == tenant_id, PointsEntry.reverses_id.in_([o.id for o in originals])))).all())
    return originals, reversals


async def ref_points(session: AsyncSession, actor: Actor, *, ref_type: str, ref_id: str) -> RefPoints:
    originals, reversals = await _ref_entries(session, actor.tenant_id, ref_type, ref_id)
    out = RefPoints()
    kinds = {o.id: o.kind for o in originals}
    for o in originals:
        if o.kind == PointsKind.EARN:
            out.earned += o.delta
        else:
            out.redeemed += -o.delta
    for r in reversals:
        if kinds[r.reverses_id] == PointsKind.EARN:
            out.earned_settled += _settled(r)
        else:
            out.redeemed_restored += _settled(r)
    return out


async def reverse_points(session: AsyncSession, actor: Actor, *, ref_type: str, ref_id: str, by_ref_type: str,
                         by_ref_id: str, reason: str, points_earned_to_remove: int | None = None,
                         points_redeemed_to_restore: int | None = None) -> PointsReversal:
    """Undo what (ref_type, ref_id) did to points, on behalf of (by_ref_type, by_ref_id) — a refund.

    - `points_redeemed_to_restore`: redeemed points to give back (None: all not yet given back).
    - `points_earned_to_remove`: earned points to take back (None: all not yet taken back). For a partial
      refund compute it with `earned_share` (floor, in the member's favour).
    Each reversal entry points at the entry it undoes (`reverses_id`) and names the refund (`by_ref_*`).
    Restores are applied before removals; earned points the member already spent are not taken (the
    balance never goes negative) but reported as `shortfall`, and count as settled.
    Idempotent per by-ref: calling again with the same (by_ref_type, by_ref_id) writes nothing and returns
    what the first call did (`repeated=True`). Asking for more than is left is 409 points_over_reversal.
    """
    earned_req = None if points_earned_to_remove is None else _whole("points_earned_to_remove",
                                                                     points_earned_to_remove)
    restore_req = None if points_redeemed_to_restore is None else _whole("points_redeemed_to_restore",
                                                                         points_redeemed_to_restore)
    originals, _ = await _ref_entries(session, actor.tenant_id, ref_type, ref_id)
    if not originals:
        if earned_req or restore_req:
            raise Conflict("no points were earned or redeemed for this ref", code="points_over_reversal")
        return PointsReversal()
    holders = {o.id: await _holder(session, actor.tenant_id, o.member_id) for o in originals}
    locked = {m: await _locked_points(session, actor.tenant_id, m) for m in sorted(set(holders.values()), key=str)}
    # Re-read under the locks: a concurrent reversal of the same ref has committed by now.
    originals, reversals = await _ref_entries(session, actor.tenant_id, ref_type, ref_id)
    mine = [r for r in reversals if (r.by_ref_type, r.by_ref_id) == (by_ref_type, str(by_ref_id))]
    kinds = {o.id: o.kind for o in originals}
    if mine:
        done = PointsReversal(entries=mine, repeated=True)
        for r in mine:
            if kinds[r.reverses_id] == PointsKind.EARN:
                done.earned_removed += -r.delta
                done.shortfall += int(r.details.get("shortfall", 0))
            else:
                done.redeemed_restored += r.delta
        return done
    outstanding = {o.id: abs(o.delta) - sum(_settled(r) for r in reversals if r.reverses_id == o.id)
                   for o in originals}

    def plan(kind: str, wanted: int | None, field_name: str) -> list[tuple[PointsEntry, int]]:
        left = sum(outstanding[o.id] for o in originals if o.kind == kind)
        wanted = left if wanted is None else wanted
        if wanted > left:
            raise Conflict(f"{field_name}: only {left} points of this ref are left to reverse",
                           code="points_over_reversal", field=field_name, available=left)
        out = []
        for o in (o for o in originals if o.kind == kind):
            take = min(wanted, outstanding[o.id])
            if take:
                out.append((o, take))
                wanted -= take
        return out

    restores = plan(PointsKind.REDEEM, restore_req, "points_redeemed_to_restore")
    removals = plan(PointsKind.EARN, earned_req, "points_earned_to_remove")
    result = PointsReversal()
    common = {"ref_type": ref_type, "ref_id": ref_id, "by_ref_type": by_ref_type, "by_ref_id": by_ref_id,
              "reason": reason}
    for original, amount in restores:
        result.entries.append(_write(session, locked[holders[original.id]], PointsKind.REVERSE, amount,
                                     reverses_id=original.id, details={"reversed_kind": original.kind,
                                                                       "settled": amount}, **common))
        result.redeemed_restored += amount
    for original, amount in removals:
        balance = locked[holders[original.id]]
        taken = min(amount, balance.balance)
        result.entries.append(_write(session, balance, PointsKind.REVERSE, -taken, reverses_id=original.id,
                                     details={"reversed_kind": original.kind, "settled": amount,
                                              "shortfall": amount - taken}, **common))
        result.earned_removed += taken
        result.shortfall += amount - taken
    await session.flush()
    if result.entries:
        await emit(session, "points.reversed", {
            "ref_type": ref_type, "ref_id": str(ref_id), "by_ref_type": by_ref_type, "by_ref_id": str(by_ref_id),
            "earned_removed": result.earned_removed, "redeemed_restored": result.redeemed_restored,
            "shortfall": result.shortfall, "member_ids": sorted({str(m) for m in locked})})
    return result


async def adjust_points(session: AsyncSession, actor: Actor, member_id: UUID, delta: int, reason: str) -> PointsEntry:
    """A staff correction with a reason; it may not take the balance below zero."""
    actor.require("loyalty:write")
    delta = _whole("delta", delta, minimum=-(2**62))
    if delta == 0:
        raise _bad("delta", "must not be 0")
    member = await _member(session, actor, member_id)
    if member.status != "active":
        raise Conflict(f"member is {member.status}", code="member_inactive")
    balance = await _locked_points(session, actor.tenant_id, member.id)
    entry = _write(session, balance, PointsKind.ADJUST, delta, reason=reason, ref_type="manual")
    await session.flush()
    audit.record(session, "points.adjust", "member", member.id, delta=delta, balance=balance.balance, reason=reason)
    return entry


async def check_points_consistency(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> list[str]:
    """Differences between the member's kept balance and the sum of their ledger (empty when consistent)."""
    row = (await session.execute(text(
        "SELECT COALESCE((SELECT balance FROM member_points WHERE tenant_id = :t AND member_id = :m), 0) AS kept, "
        "COALESCE((SELECT sum(delta) FROM points_ledger WHERE tenant_id = :t AND member_id = :m), 0) AS summed, "
        "(SELECT count(*) FROM points_ledger l WHERE tenant_id = :t AND member_id = :m AND balance_after < 0) AS neg"),
        {"t": tenant_id, "m": member_id})).one()
    problems = []
    if row.kept != row.summed:
        problems.append(f"balance: kept {row.kept}, ledger {row.summed}")
    if row.neg:
        problems.append(f"{row.neg} entries left a negative balance")
    return problems


# ---------------------------------------------------------------- coupon templates


async def create_template(session: AsyncSession, actor: Actor, data: CouponTemplateCreate) -> CouponTemplate:
    actor.require("loyalty:write")
    if data.kind == CouponKind.PERCENT and data.value >= 100:
        raise _bad("value", "a percent coupon takes 1–99 percent off (8折 = 20)")
    if data.cap_fen is not None and data.kind != CouponKind.PERCENT:
        raise _bad("cap_fen", "only a percent coupon has a cap")
    if data.kind == CouponKind.THRESHOLD and data.threshold_fen is None:
        raise _bad("threshold_fen", "a threshold (满减) coupon needs the amount to reach")
    if data.valid_days is not None and data.valid_until is not None:
        raise _bad("valid_until", "give valid_days or valid_until, not both")
    if data.valid_from and data.valid_until and data.valid_until <= data.valid_from:
        raise _bad("valid_until", "must be later than valid_from")
    for name, model, ids in (("item_service_ids", Service, data.item_service_ids),
                             ("item_product_ids", Product, data.item_product_ids)):
        if len(set(ids)) != len(ids):
            raise _bad(name, "each item may appear once")
        if ids:
            found = set((await session.exec(select(model.id).where(model.tenant_id == actor.tenant_id,
                                                                    model.id.in_(ids)))).all())
            missing = set(ids) - found
            if missing:
                raise _bad(name, f"no such item {sorted(map(str, missing))[0]}")
    template = CouponTemplate(tenant_id=actor.tenant_id,
                              **data.model_dump(exclude={"item_service_ids", "item_product_ids"}),
                              item_service_ids=[str(i) for i in data.item_service_ids],
                              item_product_ids=[str(i) for i in data.item_product_ids])
    session.add(template)
    await session.flush()
    audit.record(session, "coupon_template.create", "coupon_template", template.id, after=data.model_dump(mode="json"))
    return template


def present_template(template: CouponTemplate) -> CouponTemplateOut:
    return CouponTemplateOut(**template.model_dump(exclude={"item_service_ids", "item_product_ids", "tenant_id",
                                                            "created_at"}),
                             item_service_ids=[UUID(i) for i in template.item_service_ids],
                             item_product_ids=[UUID(i) for i in template.item_product_ids])


async def get_template(session: AsyncSession, actor: Actor, template_id: UUID) -> CouponTemplate:
    actor.require("catalog:read")
    template = await session.get(CouponTemplate, (actor.tenant_id, template_id))
    if template is None:
        raise NotFound("coupon template not found", code="coupon_template_not_found")
    return template


async def list_templates(session: AsyncSession, actor: Actor, params: PageParams, *, active: bool | None = True):
    actor.require("catalog:read")
    stmt = select(CouponTemplate).where(CouponTemplate.tenant_id == actor.tenant_id)
    if active is not None:
        stmt = stmt.where(CouponTemplate.active == active)
    return await paginate(session, stmt, CouponTemplate.id, params)


# ---------------------------------------------------------------- coupons: issuing and reading


def _event(coupon: Coupon, kind: str, delta: int, **fields: Any) -> CouponEvent:
    ctx = current_context()
    if fields.get("ref_id") is not None:
        fields["ref_id"] = str(fields["ref_id"])
    return CouponEvent(tenant_id=coupon.tenant_id, coupon_id=coupon.id, kind=kind, delta=delta,
                       member_id=fields.pop("member_id", coupon.member_id), actor_type=ctx.actor_type,
                       actor_id=ctx.actor_id, **fields)


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(12))


async def issue_coupon(session: AsyncSession, actor: Actor, *, template_id: UUID, member_id: UUID,
                       reason: str | None) -> Coupon:
    """Give the member a coupon with the template's terms frozen; its validity starts now (or at the
    template's valid_from) and ends after valid_days, at the template's valid_until, or never."""
    actor.require("loyalty:write")
    template = await session.get(CouponTemplate, (actor.tenant_id, template_id))
    if template is None:
        raise NotFound("coupon template not found", code="coupon_template_not_found")
    if not template.active:
        raise Conflict("this coupon template is no longer issued", code="coupon_template_inactive")
    member = await members.get_member_row(session, actor, member_id)
    if member.status != "active":
        raise Conflict(f"member is {member.status}", code="member_inactive")
    now = utcnow()
    if template.valid_until is not None and template.valid_until <= now:
        raise Conflict("this coupon template's validity has ended", code="coupon_template_expired")
    valid_from = max(now, template.valid_from) if template.valid_from else now
    valid_until = template.valid_until
    if template.valid_days:
        valid_until = valid_from + timedelta(days=template.valid_days)
    coupon = Coupon(tenant_id=actor.tenant_id, template_id=template.id, member_id=member.id, code=_new_code(),
                    name=template.name, kind=template.kind, value=template.value, cap_fen=template.cap_fen,
                    threshold_fen=template.threshold_fen, item_service_ids=list(template.item_service_ids),
                    item_product_ids=list(template.item_product_ids), valid_from=valid_from,
                    valid_until=valid_until, updated_at=now)
    session.add(coupon)
    await session.flush()
    session.add(_event(coupon, "issue", 1, reason=reason))
    await session.flush()
    audit.record(session, "coupon.issue", "coupon", coupon.id, member=str(member.id), template=str(template.id),
                 reason=reason)
    await emit(session, "coupon.issued", {"coupon_id": str(coupon.id), "member_id": str(member.id),
                                          "template_id": str(template.id), "name": coupon.name,
                                          "valid_until": valid_until.isoformat() if valid_until else None})
    return coupon


def _shown_status(coupon: Coupon, now: datetime) -> str:
    if coupon.status == CouponStatus.ISSUED and coupon.valid_until is not None and coupon.valid_until <= now:
        return CouponStatus.EXPIRED  # expiry is a matter of time; nothing has to run for it
    return coupon.status


def present_coupon(coupon: Coupon, now: datetime | None = None) -> CouponOut:
    return CouponOut(**coupon.model_dump(exclude={"item_service_ids", "item_product_ids", "tenant_id", "status",
                                                  "updated_at"}),
                     status=_shown_status(coupon, now or utcnow()),
                     item_service_ids=[UUID(i) for i in coupon.item_service_ids],
                     item_product_ids=[UUID(i) for i in coupon.item_product_ids])


async def member_coupons(session: AsyncSession, actor: Actor, member_id: UUID, params: PageParams, *,
                         status: str | None = None):
    """The member's own coupons (no family sharing), newest first."""
    member = await _member(session, actor, member_id)
    now = utcnow()
    stmt = select(Coupon).where(Coupon.tenant_id == actor.tenant_id, Coupon.member_id == member.id)
    live = or_(Coupon.valid_until.is_(None), Coupon.valid_until > now)
    if status == CouponStatus.ISSUED:
        stmt = stmt.where(Coupon.status == CouponStatus.ISSUED, live)
    elif status == CouponStatus.EXPIRED:
        stmt = stmt.where(or_(Coupon.status == CouponStatus.EXPIRED,
                              and_(Coupon.status == CouponStatus.ISSUED, ~live)))
    elif status is not None:
        stmt = stmt.where(Coupon.status == status)
    return await paginate(session, stmt, Coupon.id, params, descending=True)


async def revoke_coupon(session: AsyncSession, actor: Actor, coupon_id: UUID, reason: str) -> Coupon:
    actor.require("loyalty:write")
    coupon = await session.get(Coupon, (actor.tenant_id, coupon_id), with_for_update=True, populate_existing=True)
    if coupon is None:
        raise NotFound("coupon not found", code="coupon_not_found")
    if coupon.status != CouponStatus.ISSUED:
        raise Conflict(f"only an unused coupon can be revoked; this one is {coupon.status}",
                       code="coupon_used" if coupon.status == CouponStatus.USED else "coupon_not_revocable")
    coupon.status, coupon.updated_at = CouponStatus.REVOKED, utcnow()
    session.add_all([coupon, _event(coupon, "revoke", -1, reason=reason)])
    await session.flush()
    audit.record(session, "coupon.revoke", "coupon", coupon.id, reason=reason)
    return coupon


# ---------------------------------------------------------------- coupons: tenders


@dataclass
class CouponLine:
    """One order line as a coupon sees it: what it is and what it costs after line discounts, in fen."""

    kind: str  # service | product | card | top_up
    item_id: UUID | None
    amount_fen: int


def _check_lines(lines: list[CouponLine]) -> None:
    if not isinstance(lines, list) or not lines:
        raise _bad("lines", "give at least one order line")
    for i, line in enumerate(lines):
        if not isinstance(line, CouponLine):
            raise _bad(f"lines.{i}", "must be a CouponLine")
        if line.kind not in LINE_KINDS:
            raise _bad(f"lines.{i}.kind", f"must be one of {', '.join(LINE_KINDS)}")
        _whole(f"lines.{i}.amount_fen", line.amount_fen)


def applicable_fen(coupon: Coupon | CouponTemplate, lines: list[CouponLine]) -> int:
    """The sum of the lines the coupon applies to (see the module notes)."""
    services, products = set(coupon.item_service_ids), set(coupon.item_product_ids)
    limited = bool(services or products)
    total = 0
    for line in lines:
        if line.kind == "top_up":
            continue
        if limited and not ((line.kind == "service" and str(line.item_id) in services)
                            or (line.kind == "product" and str(line.item_id) in products)):
            continue
        total += line.amount_fen
    return total


def coupon_discount(coupon: Coupon | CouponTemplate, lines: list[CouponLine]) -> int:
    """The fen the coupon takes off these lines; 422 threshold_not_met / coupon_not_applicable."""
    _check_lines(lines)
    base = applicable_fen(coupon, lines)
    if base == 0:
        raise Unprocessable("this coupon applies to none of these lines", code="coupon_not_applicable",
                            field="lines")
    if coupon.threshold_fen and base < coupon.threshold_fen:
        raise Unprocessable(f"this coupon needs at least {coupon.threshold_fen} fen of applicable lines; "
                            f"these come to {base}", code="threshold_not_met", field="lines",
                            threshold_fen=coupon.threshold_fen, applicable_fen=base)
    if coupon.kind == CouponKind.PERCENT:
        discount = base * coupon.value // 100
        if coupon.cap_fen is not None:
            discount = min(discount, coupon.cap_fen)
    else:
        discount = coupon.value
    discount = min(discount, base)
    if discount <= 0:
        raise Unprocessable("this coupon takes nothing off these lines", code="coupon_not_applicable",
                            field="lines")
    return discount


def _max_discount(coupon: Coupon) -> int | None:
    if coupon.kind == CouponKind.PERCENT:
        return coupon.cap_fen
    return coupon.value


def _require_usable(coupon: Coupon, now: datetime) -> None:
    if coupon.status == CouponStatus.USED:
        raise Conflict("this coupon has already been used", code="coupon_used")
    if coupon.status == CouponStatus.REVOKED:
        raise Conflict("this coupon was revoked", code="coupon_revoked")
    if coupon.status == CouponStatus.EXPIRED or (coupon.valid_until is not None and coupon.valid_until <= now):
        raise Conflict("this coupon has expired", code="coupon_expired")
    if coupon.valid_from > now:
        raise Conflict("this coupon is not valid yet", code="coupon_not_yet_valid",
                       valid_from=coupon.valid_from.isoformat())


async def _members_coupon(session: AsyncSession, actor: Actor, coupon_id: UUID, member_id: UUID) -> Coupon:
    """The coupon, if it is this member's: another tenant's, another member's (no family sharing) or an
    unknown coupon are all 404, so a guessed id learns nothing."""
    await _member(session, actor, member_id)
    coupon = await session.get(Coupon, (actor.tenant_id, coupon_id), populate_existing=True)
    if coupon is None or coupon.member_id != member_id:
        raise NotFound("no such coupon for this member", code="coupon_not_found")
    return coupon


async def quote_coupon(session: AsyncSession, actor: Actor, *, coupon_id: UUID, member_id: UUID,
                       lines: list[CouponLine], now: datetime) -> int:
    coupon = await _members_coupon(session, actor, coupon_id, member_id)
    _require_usable(coupon, now)
    return coupon_discount(coupon, lines)


async def redeem_coupon(session: AsyncSession, actor: Actor, *, coupon_id: UUID, member_id: UUID,
                        discount_fen: int, ref_type: str, ref_id: str) -> None:
    """Use the coupon for `discount_fen` (as quoted) on (ref_type, ref_id). Single use: of two concurrent
    uses exactly one succeeds; the other is 409 coupon_used."""
    discount_fen = _whole("discount_fen", discount_fen, minimum=1)
    coupon = await _members_coupon(session, actor, coupon_id, member_id)
    now = utcnow()
    _require_usable(coupon, now)
    most = _max_discount(coupon)
    if most is not None and discount_fen > most:
        raise _bad("discount_fen", f"this coupon takes at most {most} fen off", code="discount_too_large")
    table = Coupon.__table__
    used = (await session.execute(
        update(table)
        .where(table.c.tenant_id == actor.tenant_id, table.c.id == coupon.id,
               table.c.status == CouponStatus.ISSUED, table.c.valid_from <= now,
               or_(table.c.valid_until.is_(None), table.c.valid_until > now))
        .values(status=CouponStatus.USED, used_at=now, used_ref_type=ref_type, used_ref_id=str(ref_id),
                discount_fen=discount_fen, updated_at=now)
        .returning(table.c.id))).first()
    coupon = await session.get(Coupon, (actor.tenant_id, coupon.id), populate_existing=True)
    if used is None:
        # Another transaction used (or revoked) it between our read and our update.
        _require_usable(coupon, now)
        raise Conflict("this coupon has already been used", code="coupon_used")
    session.add(_event(coupon, "use", -1, ref_type=ref_type, ref_id=ref_id, discount_fen=discount_fen))
    await session.flush()
    await emit(session, "coupon.used", {"coupon_id": str(coupon.id), "member_id": str(coupon.member_id),
                                        "discount_fen": discount_fen, "ref_type": ref_type, "ref_id": str(ref_id)})


async def restore_coupon(session: AsyncSession, actor: Actor, *, coupon_id: UUID, ref_type: str, ref_id: str,
                         reason: str) -> None:
    """Give back a coupon used on (ref_type, ref_id) — a refund. It is `issued` again if still valid, else
    `expired`. Repeating it for the same ref does nothing; a coupon not used on that ref is 409."""
    coupon = await session.get(Coupon, (actor.tenant_id, coupon_id), with_for_update=True, populate_existing=True)
    if coupon is None:
        raise NotFound("coupon not found", code="coupon_not_found")
    if coupon.status != CouponStatus.USED or (coupon.used_ref_type, coupon.used_ref_id) != (ref_type, str(ref_id)):
        restored = (await session.exec(select(CouponEvent.id).where(
            CouponEvent.tenant_id == actor.tenant_id, CouponEvent.coupon_id == coupon.id,
            CouponEvent.kind == "restore", CouponEvent.ref_type == ref_type,
            CouponEvent.ref_id == str(ref_id)))).first()
        if restored is not None:
            return
        raise Conflict("this coupon was not used on this order", code="coupon_not_used_by_ref")
    now = utcnow()
    events = [_event(coupon, "restore", 1, ref_type=ref_type, ref_id=ref_id, reason=reason,
                     discount_fen=coupon.discount_fen)]
    coupon.status = CouponStatus.ISSUED
    if coupon.valid_until is not None and coupon.valid_until <= now:
        coupon.status = CouponStatus.EXPIRED
        events.append(_event(coupon, "expire", -1, ref_type=ref_type, ref_id=ref_id,
                             reason="validity ended before the refund"))
    coupon.used_at = coupon.used_ref_type = coupon.used_ref_id = coupon.discount_fen = None
    coupon.updated_at = now
    session.add(coupon)
    session.add_all(events)
    await session.flush()
    await emit(session, "coupon.restored", {"coupon_id": str(coupon.id), "member_id": str(coupon.member_id),
                                            "status": coupon.status, "ref_type": ref_type, "ref_id": str(ref_id)})


async def check_coupon_consistency(session: AsyncSession, tenant_id: UUID, coupon_id: UUID) -> list[str]:
    """The coupon's events must sum to 1 exactly while it is issued, and to 0 otherwise."""
    row = (await session.execute(text(
        "SELECT c.status, COALESCE((SELECT sum(delta) FROM coupon_events e WHERE e.tenant_id = c.tenant_id "
        "AND e.coupon_id = c.id), 0) AS available FROM coupons c WHERE c.tenant_id = :t AND c.id = :c"),
        {"t": tenant_id, "c": coupon_id})).one()
    expected = 1 if row.status == CouponStatus.ISSUED else 0
    return [] if row.available == expected else [f"status {row.status}, events sum to {row.available}"]


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
              "expire": "积分过期", "merge": "积分合并"}
    return [TimelineItem(type="points", occurred_at=e.created_at, id=f"points:{e.id}",
                         title=f"{titles.get(e.kind, e.kind)} {e.delta:+d}",
                         data={"kind": e.kind, "delta": e.delta, "balance_after": e.balance_after,
                               "ref_type": e.ref_type, "ref_id": e.ref_id, "reason": e.reason}) for e in rows]


@members.merge_mover("loyalty")
async def _move_loyalty(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID,
                        survivor_id: UUID) -> dict[str, int]:
    """The duplicate's points move by a pair of ledger entries (out of one, into the other); its coupons
    move to the survivor with a `move` event each."""
    locked = {m: await _locked_points(session, tenant_id, m) for m in sorted([duplicate_id, survivor_id], key=str)}
    moved = locked[duplicate_id].balance
    if moved:
        _write(session, locked[duplicate_id], PointsKind.MERGE, -moved, ref_type="member_merge",
               ref_id=survivor_id, reason="merged into another member record",
               details={"to_member_id": str(survivor_id)})
        _write(session, locked[survivor_id], PointsKind.MERGE, moved, ref_type="member_merge", ref_id=duplicate_id,
               reason="merged from a duplicate member record", details={"from_member_id": str(duplicate_id)})
    coupons = list((await session.exec(select(Coupon).where(Coupon.tenant_id == tenant_id,
                                                             Coupon.member_id == duplicate_id)
                                       .with_for_update())).all())
    for coupon in coupons:
        coupon.member_id, coupon.updated_at = survivor_id, utcnow()
        session.add_all([coupon, _event(coupon, "move", 0, details={"from_member_id": str(duplicate_id)})])
    await session.flush()
    return {"points": moved, "coupons": len(coupons)}
