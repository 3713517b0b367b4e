"""The patient's own account in the mini-program: profile and family, cards, points, coupons, orders and
visits.

A patient reaches themselves and, as the head of a family, its members (the members context's rule: anyone
else is 404). Points and coupons are their own only (loyalty's rule). Each piece is read through the
context that owns it; this module only puts the pieces a screen needs together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Forbidden, NotFound
from app.core.pagination import Page, PageParams
from app.domain.booking import service as booking
from app.domain.cards import service as cards
from app.domain.catalog import service as catalog
from app.domain.checkout import orders
from app.domain.checkout.schemas import OrderSummary
from app.domain.iam import service as iam
from app.domain.loyalty import service as loyalty
from app.domain.loyalty.schemas import CouponOut, PointsEntryOut, PointsOut
from app.domain.members import service as members
from app.domain.members.schemas import ChildCreate, FamilyOut, OwnProfileUpdate
from app.domain.portal.schemas import (
    ChildAdded,
    FamilyMemberOut,
    FamilyView,
    OwnProfileOut,
    PatientCardEntryOut,
    PatientCardItemOut,
    PatientCardLedger,
    PatientCardList,
    PatientCardOut,
    VisitOut,
    VisitsOut,
)
from app.domain.tenancy import service as tenancy
from app.domain.visits import service as visits

if TYPE_CHECKING:
    from app.domain.booking.models import Appointment
    from app.domain.visits.models import ServiceRecord

# Upcoming visits are few (the booking horizon is weeks): all of them come on the first page.
MAX_UPCOMING = 100


def _patient(actor: Actor) -> None:
    # The routes admit only patient tokens; this keeps a staff actor from reading "their own" account here.
    if actor.kind != "patient":
        raise Forbidden("this is the patient's own account (mini-program sign-in)", code="permission_denied")


def _family_view(family: FamilyOut) -> FamilyView:
    return FamilyView(id=family.id, name=family.name, head_member_id=family.head_member_id,
                      members=[FamilyMemberOut(**m) for m in family.members])


async def profile(session: AsyncSession, actor: Actor) -> OwnProfileOut:
    _patient(actor)
    me = await members.get_member(session, actor, actor.id)
    family = await members.get_family(session, actor, me.family.group_id) if me.family else None
    return OwnProfileOut(id=me.id, name=me.name, phone=me.phone, gender=me.gender, birthday=me.birthday,
                         address=me.address, home_store_id=me.home_store_id,
                         family=_family_view(family) if family else None,
                         consents=await members.consents_of(session, actor.tenant_id, actor.id))


async def update_profile(session: AsyncSession, actor: Actor, data: OwnProfileUpdate) -> OwnProfileOut:
    _patient(actor)
    await members.update_own_profile(session, actor, data)
    return await profile(session, actor)


async def add_child(session: AsyncSession, actor: Actor, data: ChildCreate) -> ChildAdded:
    _patient(actor)
    child, family = await members.add_child(session, actor, data)
    return ChildAdded(member_id=child.id, family=_family_view(family))


async def _reachable(session: AsyncSession, actor: Actor, member_id: UUID | None) -> UUID:
    """The member asked for (themselves by default): 404 `member_not_found` outside their family."""
    _patient(actor)
    target = member_id or actor.id
    await members.get_member_row(session, actor, target)
    return target


async def member_cards(session: AsyncSession, actor: Actor, member_id: UUID | None = None) -> PatientCardList:
    """The member's cards and the family cards shared with them: sessions left per service, balance, expiry."""
    target = await _reachable(session, actor, member_id)
    found = await cards.member_cards(session, actor, target)
    names = {s.id: s.name for s in (await catalog.services_by_id(
        session, actor.tenant_id, {i.service_id for c in found for i in c.items if i.service_id})).values()}
    return PatientCardList(items=[PatientCardOut(
        id=c.id, member_id=c.member_id, name=c.name, kind=c.kind, status=c.status, balance=c.balance,
        principal_balance=c.principal_balance, bonus_balance=c.bonus_balance, starts_at=c.starts_at,
        expires_at=c.expires_at, family_shareable=c.family_shareable,
        items=[PatientCardItemOut(service_id=i.service_id, service_name=names.get(i.service_id) if i.service_id
                                  else None, sessions_total=i.sessions_total, gifted_sessions=i.gifted_sessions,
                                  remaining=i.remaining) for i in c.items]) for c in found])


async def card_ledger(session: AsyncSession, actor: Actor, card_id: UUID, params: PageParams) -> PatientCardLedger:
    """Every change to one of their cards, newest first (who made it and why stay with the clinic)."""
    _patient(actor)
    try:
        card = await cards.present(session, await cards.get_card(session, actor, card_id))
    except NotFound as exc:  # someone else's card does not exist for this patient
        raise NotFound("card not found", code="card_not_found") from exc
    services = {i.id: i.service_id for i in card.items}
    rows, cursor = await cards.ledger(session, actor, card_id, params)
    return PatientCardLedger(items=[PatientCardEntryOut(
        id=e.id, kind=e.kind, service_id=services.get(e.card_item_id) if e.card_item_id else None,
        sessions_delta=e.sessions_delta, principal_delta=e.principal_delta, bonus_delta=e.bonus_delta,
        store_id=e.store_id, created_at=e.created_at) for e in rows], next_cursor=cursor)


async def points(session: AsyncSession, actor: Actor, params: PageParams) -> PointsOut:
    """Their points balance and ledger, newest first (points are not shared with the family)."""
    _patient(actor)
    balance = await loyalty.points_balance(session, actor, actor.id)
    rows, cursor = await loyalty.points_ledger(session, actor, actor.id, params)
    return PointsOut(member_id=actor.id, balance=balance, items=[PointsEntryOut.model_validate(r) for r in rows],
                     next_cursor=cursor)


async def coupons(session: AsyncSession, actor: Actor, params: PageParams, *,
                  status: str | None = None) -> Page[CouponOut]:
    """Their coupons, newest first (coupons are not shared with the family)."""
    _patient(actor)
    rows, cursor = await loyalty.member_coupons(session, actor, actor.id, params, status=status)
    return Page[CouponOut](items=[loyalty.present_coupon(c) for c in rows], next_cursor=cursor)


async def member_orders(session: AsyncSession, actor: Actor, params: PageParams, *,
                        member_id: UUID | None = None) -> Page[OrderSummary]:
    """The member's orders, newest first (receipts at GET /orders/{id}/receipt)."""
    target = await _reachable(session, actor, member_id)
    rows, cursor = await orders.list_orders(session, actor, params, member_id=target)
    return Page[OrderSummary](items=[OrderSummary.model_validate(o) for o in rows], next_cursor=cursor)


async def member_visits(session: AsyncSession, actor: Actor, params: PageParams, *,
                        member_id: UUID | None = None) -> VisitsOut:
    """Upcoming appointments (first page) and performed services (paged), each with its service's aftercare
    note, store and therapist."""
    target = await _reachable(session, actor, member_id)
    tenant_id = actor.tenant_id
    upcoming: list[Appointment] = [] if params.cursor else await booking.active_appointments_of(
        session, tenant_id, {target}, ending_after=utcnow(), limit=MAX_UPCOMING)
    past, cursor = await visits.completed_records_of(session, tenant_id, {target}, params)
    rows: list[Appointment | ServiceRecord] = [*upcoming, *past]
    services = await catalog.services_by_id(session, tenant_id, {r.service_id for r in rows})
    stores = await tenancy.stores_by_id(session, tenant_id, {r.store_id for r in rows})
    staff = {s.id: s.display_name for s in await iam.staff_names(session, tenant_id)} if rows else {}

    def visit(kind: Any, row: Any, starts_at: Any, ends_at: Any) -> VisitOut:
        service, store = services.get(row.service_id), stores.get(row.store_id)
        return VisitOut(kind=kind, id=row.id, member_id=row.member_id, status=row.status, starts_at=starts_at,
                        ends_at=ends_at, store_id=row.store_id, store_name=store.name if store else None,
                        service_id=row.service_id, service_name=service.name if service else None,
                        staff_id=row.staff_id, staff_name=staff.get(row.staff_id),
                        aftercare_note=service.aftercare_note if service else None)

    return VisitsOut(upcoming=[visit("appointment", a, a.starts_at, a.ends_at) for a in upcoming],
                     past=[visit("service_record", r, r.completed_at, None) for r in past], next_cursor=cursor)
