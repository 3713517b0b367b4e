"""The mini-program's storefront and the patient's own account in GraphQL (patient tokens only).

The same portal services as REST's `/patient/…`: what the clinic published (stores, services, therapists,
card templates on sale) and what is the patient's (profile and family, cards, points, coupons, orders,
visits). Staff fields such as `stores` stay closed to patients; these are the patient's narrower view.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from uuid import UUID

import strawberry
from pydantic import ValidationError
from strawberry.types import Info

from app.core.errors import AppError
from app.core.pagination import PageParams
from app.domain.members.schemas import ChildCreate, OwnProfileUpdate
from app.domain.portal import service as portal
from app.domain.portal.schemas import (
    CardTemplateOnSaleOut,
    FamilyView,
    OwnProfileOut,
    PatientCardOut,
    PublishedStoreOut,
    ServiceOnSaleOut,
    TherapistOut,
    VisitOut,
)
from app.graphql.context import Context, page_limit, parse_id

PATIENT = ("patient",)


def _id(value: Any) -> strawberry.ID:
    return strawberry.ID(str(value))


def _ids(values: list[Any]) -> list[strawberry.ID]:
    return [_id(v) for v in values]


def _checked(model: Any, values: dict[str, Any]) -> Any:
    """A request schema from arguments (absent ones left out, an explicit null kept), refused as REST refuses
    it: validation_error naming the field."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise AppError(f"{field}: {first['msg']}" if field else first["msg"], code="validation_error", status=422,
                       field=field) from exc


def _location(latitude: float | None, longitude: float | None) -> dict[str, float | None]:
    for name, value, bound in (("latitude", latitude, 90), ("longitude", longitude, 180)):
        if value is not None and not -bound <= value <= bound:
            raise AppError(f"{name}: must be between -{bound} and {bound}", code="validation_error", status=422,
                           field=name)
    if (latitude is None) != (longitude is None):
        missing = "longitude" if longitude is None else "latitude"
        raise AppError(f"{missing}: latitude and longitude come together", code="validation_error", status=422,
                       field=missing)
    return {"latitude": latitude, "longitude": longitude}


# ---------------------------------------------------------------- storefront types


@strawberry.type
class OpeningHours:
    weekday: int = strawberry.field(description="ISO weekday, 1 = Monday")
    opens: time
    closes: time = strawberry.field(description="Not later than `opens`: closes after midnight")


@strawberry.type
class PublishedStore:
    id: strawberry.ID
    name: str
    address: str | None
    phone: str | None
    timezone: str
    description: str | None
    latitude: float | None
    longitude: float | None
    photos: list[str]
    hours: list[OpeningHours]
    distance_m: int | None = strawberry.field(description="Metres from the location sent")

    @classmethod
    def of(cls, s: PublishedStoreOut) -> PublishedStore:
        return cls(id=_id(s.id), name=s.name, address=s.address, phone=s.phone, timezone=s.timezone,
                   description=s.description, latitude=s.latitude, longitude=s.longitude, photos=s.photos,
                   hours=[OpeningHours(weekday=h.weekday, opens=h.opens, closes=h.closes) for h in s.hours],
                   distance_m=s.distance_m)


@strawberry.type
class ServiceOnSale:
    id: strawberry.ID
    name: str
    category: str | None
    description: str | None
    duration_minutes: int
    price: int = strawberry.field(description="fen")
    aftercare_note: str | None
    photo_url: str | None
    store_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Where it can be booked (on the single service only)")

    @classmethod
    def of(cls, s: ServiceOnSaleOut, store_ids: list[UUID] | None = None) -> ServiceOnSale:
        return cls(id=_id(s.id), name=s.name, category=s.category, description=s.description,
                   duration_minutes=s.duration_minutes, price=s.price, aftercare_note=s.aftercare_note,
                   photo_url=s.photo_url, store_ids=_ids(store_ids) if store_ids is not None else None)


@strawberry.type
class TherapistSkill:
    service_id: strawberry.ID
    name: str


@strawberry.type
class Therapist:
    id: strawberry.ID
    name: str
    title: str | None
    bio: str | None
    photo_url: str | None
    skills: list[TherapistSkill]
    store_ids: list[strawberry.ID]

    @classmethod
    def of(cls, t: TherapistOut) -> Therapist:
        return cls(id=_id(t.id), name=t.name, title=t.title, bio=t.bio, photo_url=t.photo_url,
                   skills=[TherapistSkill(service_id=_id(s.service_id), name=s.name) for s in t.skills],
                   store_ids=_ids(t.store_ids))


@strawberry.type
class CardTemplateItemOnSale:
    service_id: strawberry.ID
    service_name: str
    sessions: int
    gifted_sessions: int


@strawberry.type
class CardTemplateOnSale:
    id: strawberry.ID
    name: str
    kind: str
    price: int = strawberry.field(description="fen")
    face_value: int
    bonus: int
    valid_days: int | None
    valid_until: date | None
    shared_pool_sessions: int | None
    family_shareable: bool
    description: str | None
    usable_store_ids: list[strawberry.ID] = strawberry.field(description="Empty: every store")
    items: list[CardTemplateItemOnSale]

    @classmethod
    def of(cls, t: CardTemplateOnSaleOut) -> CardTemplateOnSale:
        return cls(id=_id(t.id), name=t.name, kind=t.kind, price=t.price, face_value=t.face_value, bonus=t.bonus,
                   valid_days=t.valid_days, valid_until=t.valid_until, shared_pool_sessions=t.shared_pool_sessions,
                   family_shareable=t.family_shareable, description=t.description,
                   usable_store_ids=_ids(t.usable_store_ids),
                   items=[CardTemplateItemOnSale(service_id=_id(i.service_id), service_name=i.service_name,
                                                 sessions=i.sessions, gifted_sessions=i.gifted_sessions)
                          for i in t.items])


# ---------------------------------------------------------------- account types


@strawberry.type
class PatientFamilyMember:
    member_id: strawberry.ID
    name: str
    role: str | None
    relation: str | None


@strawberry.type
class PatientFamily:
    id: strawberry.ID
    name: str
    head_member_id: strawberry.ID
    members: list[PatientFamilyMember]

    @classmethod
    def of(cls, f: FamilyView) -> PatientFamily:
        return cls(id=_id(f.id), name=f.name, head_member_id=_id(f.head_member_id),
                   members=[PatientFamilyMember(member_id=_id(m.member_id), name=m.name, role=m.role,
                                                relation=m.relation) for m in f.members])


@strawberry.type
class PatientConsent:
    kind: str
    version: str
    accepted_at: datetime


@strawberry.type
class PatientProfile:
    id: strawberry.ID
    name: str
    phone: str | None
    gender: str | None
    birthday: date | None
    address: str | None
    home_store_id: strawberry.ID | None
    family: PatientFamily | None
    consents: list[PatientConsent]

    @classmethod
    def of(cls, p: OwnProfileOut) -> PatientProfile:
        return cls(id=_id(p.id), name=p.name, phone=p.phone, gender=p.gender, birthday=p.birthday,
                   address=p.address, home_store_id=_id(p.home_store_id) if p.home_store_id else None,
                   family=PatientFamily.of(p.family) if p.family else None,
                   consents=[PatientConsent(kind=c.kind, version=c.version, accepted_at=c.accepted_at)
                             for c in p.consents])


@strawberry.type
class ChildAddedResult:
    member_id: strawberry.ID
    family: PatientFamily


@strawberry.type
class PatientCardItem:
    service_id: strawberry.ID | None
    service_name: str | None
    sessions_total: int
    gifted_sessions: int
    remaining: int


@strawberry.type
class PatientCard:
    id: strawberry.ID
    member_id: strawberry.ID
    name: str
    kind: str
    status: str
    balance: int = strawberry.field(description="Stored value: principal + bonus, fen")
    principal_balance: int
    bonus_balance: int
    starts_at: datetime | None
    expires_at: datetime | None
    family_shareable: bool
    items: list[PatientCardItem]

    @classmethod
    def of(cls, c: PatientCardOut) -> PatientCard:
        return cls(id=_id(c.id), member_id=_id(c.member_id), name=c.name, kind=c.kind, status=c.status,
                   balance=c.balance, principal_balance=c.principal_balance, bonus_balance=c.bonus_balance,
                   starts_at=c.starts_at, expires_at=c.expires_at, family_shareable=c.family_shareable,
                   items=[PatientCardItem(service_id=_id(i.service_id) if i.service_id else None,
                                          service_name=i.service_name, sessions_total=i.sessions_total,
                                          gifted_sessions=i.gifted_sessions, remaining=i.remaining)
                          for i in c.items])


@strawberry.type
class PatientCardEntry:
    id: strawberry.ID
    kind: str
    service_id: strawberry.ID | None
    sessions_delta: int
    principal_delta: int
    bonus_delta: int
    store_id: strawberry.ID | None
    created_at: datetime | None


@strawberry.type
class PatientCardLedger:
    items: list[PatientCardEntry]
    next_cursor: str | None


@strawberry.type
class PatientPointsEntry:
    id: strawberry.ID
    kind: str
    delta: int
    balance_after: int
    created_at: datetime | None


@strawberry.type
class PatientPoints:
    balance: int
    items: list[PatientPointsEntry]
    next_cursor: str | None


@strawberry.type
class PatientCoupon:
    id: strawberry.ID
    code: str
    name: str
    kind: str
    value: int
    cap_fen: int | None
    threshold_fen: int | None
    status: str
    valid_from: datetime
    valid_until: datetime | None
    used_at: datetime | None


@strawberry.type
class PatientCouponPage:
    items: list[PatientCoupon]
    next_cursor: str | None


@strawberry.type
class PatientOrderSummary:
    id: strawberry.ID
    order_no: str
    status: str
    member_id: strawberry.ID
    store_id: strawberry.ID
    total: int
    paid_total: int
    refunded_total: int
    created_at: datetime | None
    paid_at: datetime | None


@strawberry.type
class PatientOrderPage:
    items: list[PatientOrderSummary]
    next_cursor: str | None


@strawberry.type
class PatientVisit:
    kind: str = strawberry.field(description="appointment (upcoming) or service_record (past)")
    id: strawberry.ID
    member_id: strawberry.ID
    status: str
    starts_at: datetime
    ends_at: datetime | None
    store_id: strawberry.ID
    store_name: str | None
    service_id: strawberry.ID
    service_name: str | None
    staff_id: strawberry.ID
    staff_name: str | None
    aftercare_note: str | None

    @classmethod
    def of(cls, v: VisitOut) -> PatientVisit:
        return cls(kind=v.kind, id=_id(v.id), member_id=_id(v.member_id), status=v.status, starts_at=v.starts_at,
                   ends_at=v.ends_at, store_id=_id(v.store_id), store_name=v.store_name,
                   service_id=_id(v.service_id), service_name=v.service_name, staff_id=_id(v.staff_id),
                   staff_name=v.staff_name, aftercare_note=v.aftercare_note)


@strawberry.type
class PatientVisits:
    upcoming: list[PatientVisit]
    past: list[PatientVisit]
    next_cursor: str | None


def _optional_id(value: strawberry.ID | None, what: str) -> UUID | None:
    return parse_id(value, what) if value is not None else None


# ---------------------------------------------------------------- queries and mutations


@strawberry.type
class PatientQueries:
    @strawberry.field(description="Published stores, nearest first when latitude and longitude (GCJ-02) are sent.")
    async def published_stores(self, info: Info[Context, None], latitude: float | None = None,
                               longitude: float | None = None) -> list[PublishedStore]:
        actor = await info.context.actor(audiences=PATIENT)
        found = await portal.list_stores(info.context.session, actor.tenant_id, **_location(latitude, longitude))
        return [PublishedStore.of(s) for s in found.items]

    @strawberry.field(description="One published store.")
    async def published_store(self, info: Info[Context, None], id: strawberry.ID, latitude: float | None = None,
                              longitude: float | None = None) -> PublishedStore:
        actor = await info.context.actor(audiences=PATIENT)
        return PublishedStore.of(await portal.get_store(info.context.session, actor.tenant_id, parse_id(id, "id"),
                                                        **_location(latitude, longitude)))

    @strawberry.field(description="The services on sale at a published store.")
    async def store_services(self, info: Info[Context, None], store_id: strawberry.ID) -> list[ServiceOnSale]:
        actor = await info.context.actor(audiences=PATIENT)
        found = await portal.store_services(info.context.session, actor.tenant_id, parse_id(store_id, "store_id"))
        return [ServiceOnSale.of(s) for s in found.items]

    @strawberry.field(description="A service on sale, with the stores where it can be booked.")
    async def service_on_sale(self, info: Info[Context, None], id: strawberry.ID) -> ServiceOnSale:
        actor = await info.context.actor(audiences=PATIENT)
        found = await portal.get_service(info.context.session, actor.tenant_id, parse_id(id, "id"))
        return ServiceOnSale.of(found, found.store_ids)

    @strawberry.field(description="The published staff of a published store.")
    async def store_therapists(self, info: Info[Context, None], store_id: strawberry.ID) -> list[Therapist]:
        actor = await info.context.actor(audiences=PATIENT)
        found = await portal.store_therapists(info.context.session, actor.tenant_id, parse_id(store_id, "store_id"))
        return [Therapist.of(t) for t in found.items]

    @strawberry.field(description="One published staff member.")
    async def therapist(self, info: Info[Context, None], id: strawberry.ID) -> Therapist:
        actor = await info.context.actor(audiences=PATIENT)
        return Therapist.of(await portal.get_therapist(info.context.session, actor.tenant_id, parse_id(id, "id")))

    @strawberry.field(description="The card templates on sale (those usable in storeId when given).")
    async def card_templates_on_sale(self, info: Info[Context, None],
                                     store_id: strawberry.ID | None = None) -> list[CardTemplateOnSale]:
        actor = await info.context.actor(audiences=PATIENT)
        found = await portal.card_templates_on_sale(info.context.session, actor.tenant_id,
                                                    store_id=_optional_id(store_id, "store_id"))
        return [CardTemplateOnSale.of(t) for t in found.items]

    @strawberry.field(description="One card template on sale.")
    async def card_template_on_sale(self, info: Info[Context, None], id: strawberry.ID) -> CardTemplateOnSale:
        actor = await info.context.actor(audiences=PATIENT)
        return CardTemplateOnSale.of(await portal.get_card_template(info.context.session, actor.tenant_id,
                                                                    parse_id(id, "id")))

    @strawberry.field(description="The signed-in patient's profile, family and accepted privacy policies.")
    async def my_profile(self, info: Info[Context, None]) -> PatientProfile:
        actor = await info.context.actor(audiences=PATIENT)
        return PatientProfile.of(await portal.profile(info.context.session, actor))

    @strawberry.field(description="Cards of the patient (or of memberId in the family they head), with the family "
                                  "cards shared with them.")
    async def my_cards(self, info: Info[Context, None], member_id: strawberry.ID | None = None) -> list[PatientCard]:
        actor = await info.context.actor(audiences=PATIENT)
        found = await portal.member_cards(info.context.session, actor, _optional_id(member_id, "member_id"))
        return [PatientCard.of(c) for c in found.items]

    @strawberry.field(description="Every change to one of their cards, newest first.")
    async def my_card_ledger(self, info: Info[Context, None], card_id: strawberry.ID, limit: int = 20,
                             cursor: str | None = None) -> PatientCardLedger:
        actor = await info.context.actor(audiences=PATIENT)
        found = await portal.card_ledger(info.context.session, actor, parse_id(card_id, "card_id"),
                                         PageParams(limit=page_limit(limit), cursor=cursor))
        return PatientCardLedger(items=[PatientCardEntry(
            id=_id(e.id), kind=e.kind, service_id=_id(e.service_id) if e.service_id else None,
            sessions_delta=e.sessions_delta, principal_delta=e.principal_delta, bonus_delta=e.bonus_delta,
            store_id=_id(e.store_id) if e.store_id else None, created_at=e.created_at) for e in found.items],
            next_cursor=found.next_cursor)

    @strawberry.field(description="The patient's points balance and ledger, newest first.")
    async def my_points(self, info: Info[Context, None], limit: int = 20, cursor: str | None = None) -> PatientPoints:
        actor = await info.context.actor(audiences=PATIENT)
        found = await portal.points(info.context.session, actor, PageParams(limit=page_limit(limit), cursor=cursor))
        return PatientPoints(balance=found.balance, next_cursor=found.next_cursor, items=[PatientPointsEntry(
            id=_id(e.id), kind=e.kind, delta=e.delta, balance_after=e.balance_after, created_at=e.created_at)
            for e in found.items])

    @strawberry.field(description="The patient's coupons, newest first (status: issued, used, expired, revoked).")
    async def my_coupons(self, info: Info[Context, None], status: str | None = None, limit: int = 20,
                         cursor: str | None = None) -> PatientCouponPage:
        actor = await info.context.actor(audiences=PATIENT)
        if status is not None and status not in ("issued", "used", "expired", "revoked"):
            raise AppError("status: must be issued, used, expired or revoked", code="validation_error", status=422,
                           field="status")
        page = PageParams(limit=page_limit(limit), cursor=cursor)
        found = await portal.coupons(info.context.session, actor, page, status=status)
        return PatientCouponPage(next_cursor=found.next_cursor, items=[PatientCoupon(
            id=_id(c.id), code=c.code, name=c.name, kind=c.kind, value=c.value, cap_fen=c.cap_fen,
            threshold_fen=c.threshold_fen, status=c.status, valid_from=c.valid_from, valid_until=c.valid_until,
            used_at=c.used_at) for c in found.items])

    @strawberry.field(description="Orders of the patient (or of memberId in their family), newest first.")
    async def my_orders(self, info: Info[Context, None], member_id: strawberry.ID | None = None, limit: int = 20,
                        cursor: str | None = None) -> PatientOrderPage:
        actor = await info.context.actor(audiences=PATIENT)
        found = await portal.member_orders(info.context.session, actor,
                                           PageParams(limit=page_limit(limit), cursor=cursor),
                                           member_id=_optional_id(member_id, "member_id"))
        return PatientOrderPage(next_cursor=found.next_cursor, items=[PatientOrderSummary(
            id=_id(o.id), order_no=o.order_no, status=o.status, member_id=_id(o.member_id),
            store_id=_id(o.store_id), total=o.total, paid_total=o.paid_total, refunded_total=o.refunded_total,
            created_at=o.created_at, paid_at=o.paid_at) for o in found.items])

    @strawberry.field(description="Upcoming appointments (first page) and past visits with the aftercare note.")
    async def my_visits(self, info: Info[Context, None], member_id: strawberry.ID | None = None, limit: int = 20,
                        cursor: str | None = None) -> PatientVisits:
        actor = await info.context.actor(audiences=PATIENT)
        found = await portal.member_visits(info.context.session, actor,
                                           PageParams(limit=page_limit(limit), cursor=cursor),
                                           member_id=_optional_id(member_id, "member_id"))
        return PatientVisits(upcoming=[PatientVisit.of(v) for v in found.upcoming],
                             past=[PatientVisit.of(v) for v in found.past], next_cursor=found.next_cursor)


@strawberry.type
class PatientMutations:
    @strawberry.mutation(description="Change the patient's own name, gender, birthday or address (arguments left "
                                     "out stay; address: null clears it).")
    async def update_my_profile(self, info: Info[Context, None], name: str | None = strawberry.UNSET,
                                gender: str | None = strawberry.UNSET, birthday: date | None = strawberry.UNSET,
                                address: str | None = strawberry.UNSET) -> PatientProfile:
        actor = await info.context.actor(audiences=PATIENT)
        given = {"name": name, "gender": gender, "birthday": birthday, "address": address}
        values = {k: v for k, v in given.items() if v is not strawberry.UNSET}
        data = _checked(OwnProfileUpdate, values)
        return PatientProfile.of(await portal.update_profile(info.context.session, actor, data))

    @strawberry.mutation(description="Add a child (under 18) to the family the patient heads.")
    async def add_child(self, info: Info[Context, None], name: str, birthday: date,
                        gender: str | None = None) -> ChildAddedResult:
        actor = await info.context.actor(audiences=PATIENT)
        data = _checked(ChildCreate, {"name": name, "birthday": birthday, "gender": gender})
        added = await portal.add_child(info.context.session, actor, data)
        return ChildAddedResult(member_id=_id(added.member_id), family=PatientFamily.of(added.family))
