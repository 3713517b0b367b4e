"""Coupons: templates, issuing, reading, and the tenders checkout pays with (quote, use, restore).

Checkout calls `quote_coupon`, `redeem_coupon` and `restore_coupon` inside its own transaction; they flush,
never commit, and authorise only access to the member (the caller has authorised the order). Templates,
issuing and revoking need `loyalty:write`. The discount arithmetic is in rules.py's notes.

Concurrency: a coupon is used by a conditional `UPDATE … WHERE status = 'issued'`: of two concurrent uses,
the second waits for the first and then matches no row (409 coupon_used).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import and_, or_, text, update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.context import current_context
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.events import emit
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.domain.catalog import service as catalog
from app.domain.loyalty.events import COUPON_ISSUED, COUPON_RESTORED, COUPON_USED
from app.domain.loyalty.models import Coupon, CouponEvent, CouponKind, CouponStatus, CouponTemplate
from app.domain.loyalty.rules import bad, member_in_reach, whole
from app.domain.loyalty.schemas import CouponOut, CouponTemplateCreate, CouponTemplateOut
from app.domain.members import service as members

LINE_KINDS = ("service", "product", "card", "top_up")
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: codes are read aloud at the desk


# ---------------------------------------------------------------- coupon templates


async def create_template(session: AsyncSession, actor: Actor, data: CouponTemplateCreate) -> CouponTemplate:
    actor.require("loyalty:write")
    if data.kind == CouponKind.PERCENT and data.value >= 100:
        raise bad("value", "a percent coupon takes 1–99 percent off (8折 = 20)")
    if data.cap_fen is not None and data.kind != CouponKind.PERCENT:
        raise bad("cap_fen", "only a percent coupon has a cap")
    if data.kind == CouponKind.THRESHOLD and data.threshold_fen is None:
        raise bad("threshold_fen", "a threshold (满减) coupon needs the amount to reach")
    if data.valid_days is not None and data.valid_until is not None:
        raise bad("valid_until", "give valid_days or valid_until, not both")
    if data.valid_from and data.valid_until and data.valid_until <= data.valid_from:
        raise bad("valid_until", "must be later than valid_from")
    existing = {"item_service_ids": lambda ids: catalog.services_by_id(session, actor.tenant_id, ids),
                # products are stock items: catalog answers which of these exist
                "item_product_ids": lambda ids: catalog.stock_items(session, actor.tenant_id, product_ids=ids)}
    for name, ids in (("item_service_ids", data.item_service_ids), ("item_product_ids", data.item_product_ids)):
        if len(set(ids)) != len(ids):
            raise bad(name, "each item may appear once")
        if ids:
            missing = set(ids) - set(await existing[name](set(ids)))
            if missing:
                raise bad(name, f"no such item {sorted(map(str, missing))[0]}")
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
    return await get_or_404(session, CouponTemplate, actor.tenant_id, template_id, code="coupon_template_not_found")


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
    template = await get_or_404(session, CouponTemplate, actor.tenant_id, template_id,
                                code="coupon_template_not_found")
    return await issue_from_template(session, actor, template, member_id, reason)


async def issue_from_template(session: AsyncSession, actor: Actor, template: CouponTemplate, member_id: UUID,
                              reason: str | None) -> Coupon:
    """`issue_coupon` for a caller that has authorised the issue already (a patient claiming a published
    coupon for themselves: see publications.py)."""
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
    await emit(session, COUPON_ISSUED, {"coupon_id": str(coupon.id), "member_id": str(member.id),
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
    member = await member_in_reach(session, actor, member_id)
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
    coupon = await get_or_404(session, Coupon, actor.tenant_id, coupon_id, code="coupon_not_found", lock=True)
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
        raise bad("lines", "give at least one order line")
    for i, line in enumerate(lines):
        if not isinstance(line, CouponLine):
            raise bad(f"lines.{i}", "must be a CouponLine")
        if line.kind not in LINE_KINDS:
            raise bad(f"lines.{i}.kind", f"must be one of {', '.join(LINE_KINDS)}")
        whole(f"lines.{i}.amount_fen", line.amount_fen)


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
    await member_in_reach(session, actor, member_id)
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
    discount_fen = whole("discount_fen", discount_fen, minimum=1)
    coupon = await _members_coupon(session, actor, coupon_id, member_id)
    now = utcnow()
    _require_usable(coupon, now)
    most = _max_discount(coupon)
    if most is not None and discount_fen > most:
        raise bad("discount_fen", f"this coupon takes at most {most} fen off", code="discount_too_large")
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
    await emit(session, COUPON_USED, {"coupon_id": str(coupon.id), "member_id": str(coupon.member_id),
                                        "discount_fen": discount_fen, "ref_type": ref_type, "ref_id": str(ref_id)})


async def restore_coupon(session: AsyncSession, actor: Actor, *, coupon_id: UUID, ref_type: str, ref_id: str,
                         reason: str) -> None:
    """Give back a coupon used on (ref_type, ref_id) — a refund. It is `issued` again if still valid, else
    `expired`. Repeating it for the same ref does nothing; a coupon not used on that ref is 409."""
    coupon = await get_or_404(session, Coupon, actor.tenant_id, coupon_id, code="coupon_not_found", lock=True)
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
    await emit(session, COUPON_RESTORED, {"coupon_id": str(coupon.id), "member_id": str(coupon.member_id),
                                            "status": coupon.status, "ref_type": ref_type, "ref_id": str(ref_id)})


async def check_coupon_consistency(session: AsyncSession, tenant_id: UUID, coupon_id: UUID) -> list[str]:
    """The coupon's events must sum to 1 exactly while it is issued, and to 0 otherwise."""
    row = (await session.execute(text(
        "SELECT c.status, COALESCE((SELECT sum(delta) FROM coupon_events e WHERE e.tenant_id = c.tenant_id "
        "AND e.coupon_id = c.id), 0) AS available FROM coupons c WHERE c.tenant_id = :t AND c.id = :c"),
        {"t": tenant_id, "c": coupon_id})).one()
    expected = 1 if row.status == CouponStatus.ISSUED else 0
    return [] if row.available == expected else [f"status {row.status}, events sum to {row.available}"]


async def move_coupons(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID, survivor_id: UUID) -> int:
    """A member merge: the duplicate's coupons move to the survivor, with a `move` event each."""
    coupons = list((await session.exec(select(Coupon).where(Coupon.tenant_id == tenant_id,
                                                             Coupon.member_id == duplicate_id)
                                       .with_for_update())).all())
    for coupon in coupons:
        coupon.member_id, coupon.updated_at = survivor_id, utcnow()
        session.add_all([coupon, _event(coupon, "move", 0, details={"from_member_id": str(duplicate_id)})])
    await session.flush()
    return len(coupons)
