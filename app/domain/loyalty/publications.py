"""Coupons published for claiming (领券中心): marketing publishes a coupon template for a while, in a limited
quantity, and patients claim coupons of it themselves in the mini-program.

A claim is one transaction: the publication's row is locked and its `claimed_count` raised by a conditional
update (so the total is never exceeded, whatever arrives at once), the member's claims of it are counted
under that lock (the per-member limit), and the coupon is issued as staff issue one (terms frozen, `issue`
event, `coupon.issued`). `coupon_claims` is unique on (publication, member, claim number): a second claim
racing past the count still cannot be written.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy import and_, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, Forbidden, NotFound
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.core.schemas import Strict, Timestamp
from app.domain.loyalty.coupons import issue_from_template, present_coupon
from app.domain.loyalty.models import Coupon, CouponClaim, CouponPublication, CouponTemplate
from app.domain.loyalty.rules import bad
from app.domain.loyalty.schemas import CouponOut

CLAIM_REASON = "领券中心"
MAX_OPEN = 100


class PublicationCreate(Strict):
    template_id: UUID
    title: str = Field(min_length=1, max_length=60, description="What the mini-program shows, e.g. 新客立减30元")
    description: str | None = Field(None, max_length=500)
    starts_at: Timestamp | None = Field(None, description="Open from (default: now)")
    ends_at: Timestamp | None = Field(None, description="Open until (default: until closed)")
    total_quantity: StrictInt | None = Field(None, ge=1, le=1_000_000, description="Claims in all (default: no limit)")
    per_member_limit: StrictInt = Field(1, ge=1, le=10, description="Claims per member")


class PublicationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    template_id: UUID
    title: str
    description: str | None
    starts_at: datetime
    ends_at: datetime | None
    total_quantity: int | None
    per_member_limit: int
    claimed_count: int
    active: bool
    created_at: datetime | None


class ClaimableOut(BaseModel):
    """A publication as the patient sees it: what the coupon gives, and whether they may still claim."""

    id: UUID
    title: str
    description: str | None
    coupon_name: str
    kind: str = Field(description="fixed (立减), percent (折扣: value = percent off), threshold (满减)")
    value: int
    cap_fen: int | None
    threshold_fen: int | None
    item_service_ids: list[UUID]
    valid_days: int | None = Field(description="Days a claimed coupon stays valid (None: see valid_until)")
    valid_until: datetime | None
    ends_at: datetime | None
    remaining: int | None = Field(description="Coupons left to claim (None: no limit)")
    claimed_by_me: int
    can_claim: bool


def present_publication(publication: CouponPublication) -> PublicationOut:
    return PublicationOut.model_validate(publication)


async def publish(session: AsyncSession, actor: Actor, data: PublicationCreate) -> CouponPublication:
    """Publish a coupon template for claiming (`loyalty:write`)."""
    actor.require("loyalty:write")
    template = await session.get(CouponTemplate, (actor.tenant_id, data.template_id))
    if template is None:
        raise NotFound("coupon template not found", code="coupon_template_not_found", field="template_id")
    if not template.active:
        raise Conflict("this coupon template is no longer issued", code="coupon_template_inactive",
                       field="template_id")
    now = utcnow()
    starts_at = data.starts_at or now
    if data.ends_at is not None and data.ends_at <= max(starts_at, now):
        raise bad("ends_at", "must be later than starts_at and than now")
    if template.valid_until is not None and template.valid_until <= now:
        raise Conflict("this coupon template's validity has ended", code="coupon_template_expired",
                       field="template_id")
    publication = CouponPublication(tenant_id=actor.tenant_id, template_id=template.id, title=data.title,
                                    description=data.description, starts_at=starts_at, ends_at=data.ends_at,
                                    total_quantity=data.total_quantity, per_member_limit=data.per_member_limit,
                                    updated_at=now)
    session.add(publication)
    await session.flush()
    audit.record(session, "coupon_publication.create", "coupon_publication", publication.id,
                 after=data.model_dump(mode="json"))
    return publication


async def close(session: AsyncSession, actor: Actor, publication_id: UUID) -> CouponPublication:
    """Stop a publication (coupons already claimed stay valid)."""
    actor.require("loyalty:write")
    publication = await get_or_404(session, CouponPublication, actor.tenant_id, publication_id,
                                   code="coupon_publication_not_found", lock=True)
    if not publication.active:
        raise Conflict("this publication is already closed", code="publication_closed")
    publication.active, publication.updated_at = False, utcnow()
    session.add(publication)
    await session.flush()
    audit.record(session, "coupon_publication.close", "coupon_publication", publication.id)
    return publication


def _open_now(now: datetime):
    return and_(CouponPublication.active, CouponPublication.starts_at <= now,
                or_(CouponPublication.ends_at.is_(None), CouponPublication.ends_at > now))


async def list_publications(session: AsyncSession, actor: Actor, params: PageParams, *, active: bool | None = None):
    """Staff (`catalog:read`): every publication, newest first (`active` filters)."""
    actor.require("catalog:read")
    stmt = select(CouponPublication).where(CouponPublication.tenant_id == actor.tenant_id)
    if active is not None:
        stmt = stmt.where(CouponPublication.active == active)
    return await paginate(session, stmt, CouponPublication.id, params, descending=True)


async def claimable(session: AsyncSession, actor: Actor) -> list[ClaimableOut]:
    """The patient's view: publications open now (a short list: the newest `MAX_OPEN`), with what they have
    claimed of each and whether they may claim again."""
    if actor.kind != "patient":
        raise Forbidden("this is the patient's view of published coupons", code="permission_denied")
    now = utcnow()
    rows = list((await session.exec(select(CouponPublication).where(
        CouponPublication.tenant_id == actor.tenant_id, _open_now(now))
        .order_by(CouponPublication.id.desc()).limit(MAX_OPEN))).all())
    if not rows:
        return []
    templates = {t.id: t for t in (await session.exec(select(CouponTemplate).where(
        CouponTemplate.tenant_id == actor.tenant_id, CouponTemplate.id.in_({r.template_id for r in rows})))).all()}
    mine = dict((await session.exec(select(CouponClaim.publication_id, func.count()).where(
        CouponClaim.tenant_id == actor.tenant_id, CouponClaim.member_id == actor.id,
        CouponClaim.publication_id.in_([r.id for r in rows])).group_by(CouponClaim.publication_id))).all())
    out = []
    for p in rows:
        t = templates[p.template_id]
        remaining = None if p.total_quantity is None else p.total_quantity - p.claimed_count
        claimed = mine.get(p.id, 0)
        out.append(ClaimableOut(
            id=p.id, title=p.title, description=p.description, coupon_name=t.name, kind=t.kind, value=t.value,
            cap_fen=t.cap_fen, threshold_fen=t.threshold_fen, item_service_ids=[UUID(i) for i in t.item_service_ids],
            valid_days=t.valid_days, valid_until=t.valid_until, ends_at=p.ends_at, remaining=remaining,
            claimed_by_me=claimed,
            can_claim=t.active and claimed < p.per_member_limit and (remaining is None or remaining > 0)))
    return out


async def claim(session: AsyncSession, actor: Actor, publication_id: UUID) -> Coupon:
    """The patient claims one coupon of an open publication for themselves. 404 for an unknown, closed or
    not yet open publication; 409 `publication_ended`, `publication_sold_out`, `claim_limit_reached`."""
    if actor.kind != "patient":
        raise Forbidden("patients claim published coupons for themselves; staff issue coupons at POST /coupons",
                        code="permission_denied")
    now = utcnow()
    publication = await session.get(CouponPublication, (actor.tenant_id, publication_id))
    if publication is None or not publication.active or publication.starts_at > now:
        raise NotFound("no such coupon to claim", code="coupon_publication_not_found")
    if publication.ends_at is not None and publication.ends_at <= now:
        raise Conflict("this coupon offer has ended", code="publication_ended")
    table = CouponPublication.__table__
    # The conditional update takes the row lock: concurrent claims of this publication queue here, and the
    # count below sees every claim committed before ours.
    taken = (await session.execute(
        update(table).where(table.c.tenant_id == actor.tenant_id, table.c.id == publication.id, table.c.active,
                            or_(table.c.total_quantity.is_(None), table.c.claimed_count < table.c.total_quantity))
        .values(claimed_count=table.c.claimed_count + 1, updated_at=now).returning(table.c.claimed_count))).first()
    if taken is None:
        raise Conflict("all coupons of this offer have been claimed", code="publication_sold_out")
    claimed = (await session.execute(select(func.count()).select_from(CouponClaim).where(
        CouponClaim.tenant_id == actor.tenant_id, CouponClaim.publication_id == publication.id,
        CouponClaim.member_id == actor.id))).scalar_one()
    if claimed >= publication.per_member_limit:
        raise Conflict(f"you have claimed this coupon {claimed} time(s), the most allowed",
                       code="claim_limit_reached", per_member_limit=publication.per_member_limit)
    template = await session.get(CouponTemplate, (actor.tenant_id, publication.template_id))
    coupon = await issue_from_template(session, actor, template, actor.id, CLAIM_REASON)
    try:
        async with session.begin_nested():
            session.add(CouponClaim(tenant_id=actor.tenant_id, publication_id=publication.id, member_id=actor.id,
                                    claim_no=claimed + 1, coupon_id=coupon.id))
    except IntegrityError:
        raise Conflict("you have just claimed this coupon", code="claim_limit_reached",
                       per_member_limit=publication.per_member_limit) from None
    audit.record(session, "coupon_publication.claim", "coupon_publication", publication.id,
                 coupon=str(coupon.id), claim_no=claimed + 1)
    return coupon


def present_claimed(coupon: Coupon) -> CouponOut:
    return present_coupon(coupon)
