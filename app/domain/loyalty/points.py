"""Points: the member's ledger (earn, redeem, reverse, adjust) and the tenders checkout pays with.

Checkout calls the tender functions (`earn_points`, `redeem_points`, `reverse_points`) inside its own
transaction; they flush, never commit, and authorise only access to the member (the caller has authorised
the order). An adjustment needs `loyalty:write`. The integer rules are in rules.py.

Concurrency: every points change locks the member's `member_points` row (`FOR UPDATE`, created on first
use), so concurrent redemptions serialise and the CHECK (balance >= 0) is only a backstop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.context import current_context
from app.core.errors import Conflict, Unprocessable
from app.core.events import emit
from app.core.pagination import PageParams, paginate
from app.domain.loyalty.events import POINTS_EARNED, POINTS_REDEEMED, POINTS_REVERSED
from app.domain.loyalty.models import MemberPoints, PointsEntry, PointsKind
from app.domain.loyalty.rules import (
    bad,
    earn_for,
    fen_for_points,
    get_settings,
    max_redeem_fen,
    member_in_reach,
    whole,
)
from app.domain.members import service as members

MAX_MERGE_HOPS = 20


# ---------------------------------------------------------------- points: ledger writing


async def _holder(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> UUID:
    """The member who holds `member_id`'s points now: a merged record's points live with its survivor."""
    for _ in range(MAX_MERGE_HOPS):
        survivor = await members.merged_into(session, tenant_id, member_id)
        if survivor is None:
            return member_id
        member_id = survivor
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
    await member_in_reach(session, actor, member_id)
    row = await session.get(MemberPoints, (actor.tenant_id, member_id))
    return row.balance if row else 0


async def points_ledger(session: AsyncSession, actor: Actor, member_id: UUID, params: PageParams):
    await member_in_reach(session, actor, member_id)
    stmt = select(PointsEntry).where(PointsEntry.tenant_id == actor.tenant_id, PointsEntry.member_id == member_id)
    return await paginate(session, stmt, PointsEntry.id, params, descending=True)


# ---------------------------------------------------------------- points: tenders


async def earn_points(session: AsyncSession, actor: Actor, *, member_id: UUID, paid_fen: int, ref_type: str,
                      ref_id: str) -> int:
    """Credit the points for `paid_fen` paid on (ref_type, ref_id); 0 when points are off.

    Once per ref: a second call for the same ref writes nothing and returns what the first earned."""
    paid_fen = whole("paid_fen", paid_fen)
    settings = await get_settings(session, actor.tenant_id)
    if not settings.enabled:
        return 0
    await member_in_reach(session, actor, member_id)
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
    await emit(session, POINTS_EARNED, {"member_id": str(holder), "points": points, "balance": balance.balance,
                                          "ref_type": ref_type, "ref_id": str(ref_id), "entry_id": str(entry.id)})
    return points


async def redeem_points(session: AsyncSession, actor: Actor, *, member_id: UUID, points: int, ref_type: str,
                        ref_id: str, order_total_fen: int | None = None) -> int:
    """Spend `points` as a tender on (ref_type, ref_id); returns the fen they pay.

    409 insufficient_points (never overdraws, also under concurrency), 409 points_disabled; with
    `order_total_fen`, 422 points_cap_exceeded past the tenant's per-order cap (counting earlier
    redemptions for the same ref)."""
    points = whole("points", points, minimum=1)
    settings = await get_settings(session, actor.tenant_id)
    if not settings.enabled:
        raise Conflict("points are not enabled for this clinic", code="points_disabled")
    member = await member_in_reach(session, actor, member_id)
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
    await emit(session, POINTS_REDEEMED, {"member_id": str(member.id), "points": points, "fen": fen,
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
    earned_req = None if points_earned_to_remove is None else whole("points_earned_to_remove",
                                                                     points_earned_to_remove)
    restore_req = None if points_redeemed_to_restore is None else whole("points_redeemed_to_restore",
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
        await emit(session, POINTS_REVERSED, {
            "ref_type": ref_type, "ref_id": str(ref_id), "by_ref_type": by_ref_type, "by_ref_id": str(by_ref_id),
            "earned_removed": result.earned_removed, "redeemed_restored": result.redeemed_restored,
            "shortfall": result.shortfall, "member_ids": sorted({str(m) for m in locked})})
    return result


async def adjust_points(session: AsyncSession, actor: Actor, member_id: UUID, delta: int, reason: str) -> PointsEntry:
    """A staff correction with a reason; it may not take the balance below zero."""
    actor.require("loyalty:write")
    delta = whole("delta", delta, minimum=-(2**62))
    if delta == 0:
        raise bad("delta", "must not be 0")
    member = await member_in_reach(session, actor, member_id)
    if member.status != "active":
        raise Conflict(f"member is {member.status}", code="member_inactive")
    balance = await _locked_points(session, actor.tenant_id, member.id)
    entry = _write(session, balance, PointsKind.ADJUST, delta, reason=reason, ref_type="manual")
    await session.flush()
    audit.record(session, "points.adjust", "member", member.id, delta=delta, balance=balance.balance, reason=reason)
    return entry


async def open_points_balance(session: AsyncSession, actor: Actor, member_id: UUID, points: int, *, ref_type: str,
                              ref_id: Any, reason: str) -> PointsEntry:
    """The member's balance carried over from the old system, as one `migration` entry (reports tell it apart
    from points earned here). For a caller that has authorised the import; the caller keeps one opening per
    member and reference (its own unique key). Written whether or not points are enabled now: they are the
    member's. No event: nothing was earned today."""
    points = whole("points", points, minimum=1)
    member = await member_in_reach(session, actor, member_id)
    if member.status != "active":
        raise Conflict(f"member is {member.status}", code="member_inactive")
    balance = await _locked_points(session, actor.tenant_id, member.id)
    entry = _write(session, balance, PointsKind.MIGRATION, points, ref_type=ref_type, ref_id=ref_id, reason=reason)
    await session.flush()
    return entry


async def migrated_points(session: AsyncSession, tenant_id: UUID, ref_type: str, ref_id: Any) -> tuple[int, int]:
    """(points, members) of the opening balances written for one import reference; no permission check."""
    row = (await session.execute(text(
        "SELECT COALESCE(sum(delta), 0) AS points, count(DISTINCT member_id) AS members FROM points_ledger "
        "WHERE tenant_id = :t AND kind = 'migration' AND ref_type = :rt AND ref_id = :r"),
        {"t": tenant_id, "rt": ref_type, "r": str(ref_id)})).one()
    return int(row.points), int(row.members)


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


async def move_points(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID, survivor_id: UUID) -> int:
    """A member merge: the duplicate's points move by a pair of ledger entries (out of one, into the other)."""
    locked = {m: await _locked_points(session, tenant_id, m) for m in sorted([duplicate_id, survivor_id], key=str)}
    moved = locked[duplicate_id].balance
    if moved:
        _write(session, locked[duplicate_id], PointsKind.MERGE, -moved, ref_type="member_merge",
               ref_id=survivor_id, reason="merged into another member record",
               details={"to_member_id": str(survivor_id)})
        _write(session, locked[survivor_id], PointsKind.MERGE, moved, ref_type="member_merge", ref_id=duplicate_id,
               reason="merged from a duplicate member record", details={"from_member_id": str(duplicate_id)})
    await session.flush()
    return moved
