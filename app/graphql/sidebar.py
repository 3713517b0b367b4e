"""The WeCom sidebar in GraphQL: the member beside the chat in one query (member 360), booking their next visit,
a note, and message drafts the sidebar sends itself with the JS-SDK's `sendChatMessage`.

Staff tokens only (the sidebar signs in through WeCom OAuth). The member is found by the chat's
`external_userid` through the WeCom contact links; what the caller sees of them follows the same rules as
everywhere: health fields only under the care rule (and their read audited), contact data masked without
`members.contact:read`, and each part of the 360 null when the caller lacks its read permission, so one
missing permission does not fail the rest. Names of services, stores and staff come through per-request
DataLoaders: one query per kind whatever the number of cards, visits or appointments.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID

import strawberry
from strawberry.types import Info

from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Unprocessable
from app.core.pagination import PageParams
from app.domain.booking import appointments
from app.domain.booking.presenters import present as present_appointments
from app.domain.booking.schemas import AppointmentCreate
from app.domain.cards import service as cards
from app.domain.cards.schemas import CardItemOut, CardOut
from app.domain.care import service as care
from app.domain.catalog import service as catalog
from app.domain.iam import service as iam
from app.domain.loyalty import service as loyalty
from app.domain.members import service as members
from app.domain.members.schemas import NoteCreate
from app.domain.messaging import drafts as message_drafts
from app.domain.visits import service as visits
from app.domain.visits.presenters import present_record
from app.domain.visits.schemas import ServiceRecordOut
from app.domain.wechat_links import service as wechat_links
from app.domain.wechat_links.schemas import EXTERNAL_USERID_PATTERN
from app.graphql.booking import Appointment, BookingInput
from app.graphql.care import Task
from app.graphql.context import Context, parse_id, validated
from app.graphql.members import Member, TimelineEntry

STAFF = ("staff",)
MAX_LIST = 20
CARD_STATUSES = ("active", "frozen", "exhausted", "expired", "closed")  # as GET /members/{id}/cards takes them
_EXTERNAL_USERID = re.compile(EXTERNAL_USERID_PATTERN)


def _ident(value: Any) -> strawberry.ID:
    return strawberry.ID(str(value))


def _limit(value: int, field: str) -> int:
    if not 1 <= value <= MAX_LIST:
        raise Unprocessable(f"{field}: must be between 1 and {MAX_LIST}", code="validation_error", field=field)
    return value


# ---------------------------------------------------------------- per-request loaders


def _service_names(info: Info[Context, None], tenant_id: UUID):
    async def load(ids: list[UUID]) -> list[str | None]:
        found = await catalog.services_by_id(info.context.session, tenant_id, set(ids))
        return [found[i].name if i in found else None for i in ids]

    return info.context.loader("sidebar_service_names", load)


def _staff_names(info: Info[Context, None], tenant_id: UUID):
    async def load(ids: list[UUID]) -> list[str | None]:
        # One query for the tenant's staff list: a chain's staff is a short list, and it is read once.
        names = {s.id: s.display_name for s in await iam.staff_names(info.context.session, tenant_id)}
        return [names.get(i) for i in ids]

    return info.context.loader("sidebar_staff_names", load)


async def _store_name(info: Info[Context, None], tenant_id: UUID, store_id: UUID | None) -> str | None:
    if store_id is None:
        return None
    store = await info.context.store_loader(tenant_id).load(store_id)
    return store.name if store is not None else None


# ---------------------------------------------------------------- types


@strawberry.type
class SidebarCardItem:
    service_id: strawberry.ID | None = strawberry.field(description="null: the package's shared pool of sessions")
    sessions_total: int
    remaining: int
    tenant_id: strawberry.Private[UUID]

    @strawberry.field(description="The service's name (null for the shared pool)")
    async def service_name(self, info: Info[Context, None]) -> str | None:
        if self.service_id is None:
            return None
        return await _service_names(info, self.tenant_id).load(UUID(str(self.service_id)))

    @classmethod
    def of(cls, item: CardItemOut, tenant_id: UUID) -> SidebarCardItem:
        return cls(service_id=_ident(item.service_id) if item.service_id else None,
                   sessions_total=item.sessions_total, remaining=item.remaining, tenant_id=tenant_id)


@strawberry.type
class SidebarCard:
    id: strawberry.ID
    name: str
    kind: str
    status: str
    expires_at: datetime | None
    balance: int = strawberry.field(description="Stored value: principal + bonus, fen")
    principal_balance: int
    bonus_balance: int
    items: list[SidebarCardItem] = strawberry.field(description="Sessions left per service (count and package "
                                                                "cards; a period card lists what it covers)")
    shared_by_family: bool = strawberry.field(description="A family member's card shared with this member")

    @classmethod
    def of(cls, card: CardOut, member_id: UUID, tenant_id: UUID) -> SidebarCard:
        return cls(id=_ident(card.id), name=card.name, kind=card.kind, status=card.status,
                   expires_at=card.expires_at, balance=card.balance, principal_balance=card.principal_balance,
                   bonus_balance=card.bonus_balance, items=[SidebarCardItem.of(i, tenant_id) for i in card.items],
                   shared_by_family=card.member_id != member_id)


@strawberry.type
class SidebarVisit:
    """A visit that happened: a completed service (service record)."""

    id: strawberry.ID
    completed_at: datetime
    status: str = strawberry.field(description="completed, or reversed")
    service_id: strawberry.ID
    store_id: strawberry.ID
    staff_id: strawberry.ID
    appointment_id: strawberry.ID | None
    notes: str | None = strawberry.field(description="The therapist's remarks; null unless the caller may see "
                                                     "the member's health data")
    tenant_id: strawberry.Private[UUID]

    @strawberry.field
    async def service_name(self, info: Info[Context, None]) -> str | None:
        return await _service_names(info, self.tenant_id).load(UUID(str(self.service_id)))

    @strawberry.field
    async def store_name(self, info: Info[Context, None]) -> str | None:
        return await _store_name(info, self.tenant_id, UUID(str(self.store_id)))

    @strawberry.field
    async def staff_name(self, info: Info[Context, None]) -> str | None:
        return await _staff_names(info, self.tenant_id).load(UUID(str(self.staff_id)))

    @classmethod
    def of(cls, record: ServiceRecordOut, tenant_id: UUID, *, show_notes: bool) -> SidebarVisit:
        return cls(id=_ident(record.id), completed_at=record.completed_at, status=record.status,
                   service_id=_ident(record.service_id), store_id=_ident(record.store_id),
                   staff_id=_ident(record.staff_id),
                   appointment_id=_ident(record.appointment_id) if record.appointment_id else None,
                   notes=record.notes if show_notes else None, tenant_id=tenant_id)


@strawberry.type
class UpcomingVisit:
    appointment: Appointment
    tenant_id: strawberry.Private[UUID]

    @strawberry.field
    async def service_name(self, info: Info[Context, None]) -> str | None:
        return await _service_names(info, self.tenant_id).load(UUID(str(self.appointment.service_id)))

    @strawberry.field
    async def store_name(self, info: Info[Context, None]) -> str | None:
        return await _store_name(info, self.tenant_id, UUID(str(self.appointment.store_id)))

    @strawberry.field
    async def staff_name(self, info: Info[Context, None]) -> str | None:
        return await _staff_names(info, self.tenant_id).load(UUID(str(self.appointment.staff_id)))


@strawberry.type
class MessageDraft:
    """A message for the sidebar to put into the chat (`sendChatMessage`); nothing is sent by the server."""

    template_key: str
    template_name: str
    channel: str = strawberry.field(description="The template's own channel (what a care rule would send it by)")
    content: str


@strawberry.type
class Member360:
    external_userid: str
    member: Member = strawberry.field(description="Profile, tags and custom fields; health fields only under the "
                                                 "care rule (healthVisible)")
    in_my_care: bool = strawberry.field(description="The caller serves this member: an appointment with them (not "
                                                    "cancelled), or the relationship is theirs")
    can_book_next: bool = strawberry.field(description="bookNextVisit would accept this member from the caller")
    member_id: strawberry.Private[UUID]
    actor: strawberry.Private[Actor]

    @strawberry.field(description="Points balance")
    async def points(self, info: Info[Context, None]) -> int:
        return await loyalty.points_balance(info.context.session, self.actor, self.member_id)

    @strawberry.field(description="Active cards (own and family-shared) with sessions left per service; null "
                                  "without cards:read")
    async def cards(self, info: Info[Context, None], status: str | None = "active") -> list[SidebarCard] | None:
        if not self.actor.can("cards:read"):
            return None
        if status is not None and status not in CARD_STATUSES:
            raise Unprocessable(f"status: one of {', '.join(CARD_STATUSES)}", code="validation_error", field="status")
        found = await cards.member_cards(info.context.session, self.actor, self.member_id, status=status)
        return [SidebarCard.of(c, self.member_id, self.actor.tenant_id) for c in found]

    @strawberry.field(description="The latest completed services, newest first; null without appointments:read")
    async def last_visits(self, info: Info[Context, None], limit: int = 5) -> list[SidebarVisit] | None:
        if not self.actor.can("appointments:read"):
            return None
        rows, _ = await visits.list_records(info.context.session, self.actor,
                                            PageParams(limit=_limit(limit, "limit")), member_id=self.member_id)
        show_notes = self.member.health_visible
        return [SidebarVisit.of(present_record(self.actor, r), self.actor.tenant_id, show_notes=show_notes)
                for r in rows]

    @strawberry.field(description="Booked appointments from now on (the next 62 days, in the caller's stores), "
                                  "soonest first; null without appointments:read")
    async def upcoming(self, info: Info[Context, None], limit: int = 5) -> list[UpcomingVisit] | None:
        if not self.actor.can("appointments:read"):
            return None
        session = info.context.session
        rows, _ = await appointments.list_appointments(
            session, self.actor, PageParams(limit=_limit(limit, "limit")), store_id=None, staff_id=None,
            member_id=self.member_id, since=utcnow(), until=None, status="booked")
        return [UpcomingVisit(appointment=Appointment.of(a), tenant_id=self.actor.tenant_id)
                for a in await present_appointments(session, self.actor, list(rows))]

    @strawberry.field(description="The member's open follow-up tasks the caller may see (theirs and their "
                                  "stores'), newest first; null without tasks:read")
    async def open_tasks(self, info: Info[Context, None], limit: int = 10) -> list[Task] | None:
        if not self.actor.can("tasks:read"):
            return None
        rows, _ = await care.list_tasks(info.context.session, self.actor, PageParams(limit=_limit(limit, "limit")),
                                        member_id=self.member_id, status="open")
        return [Task.of(care.present_task(t)) for t in rows]

    @strawberry.field(description="Messages to send into this chat: the tenant's member templates rendered with "
                                  "the member's name, next visit (time, store, service) and sessions left")
    async def drafts(self, info: Info[Context, None]) -> list[MessageDraft]:
        found = await message_drafts.member_drafts(info.context.session, self.actor, self.member_id)
        return [MessageDraft(template_key=d.template_key, template_name=d.template_name, channel=d.channel,
                             content=d.content) for d in found]


# ---------------------------------------------------------------- queries and mutations


def _external_userid(value: str) -> str:
    if not _EXTERNAL_USERID.fullmatch(value):
        raise Unprocessable("externalUserid: not a WeCom external contact id", code="validation_error",
                            field="externalUserid",
                            errors=[{"field": "externalUserid", "message": "not a WeCom external contact id",
                                     "type": "string_pattern_mismatch"}])
    return value


@strawberry.type
class SidebarQueries:
    @strawberry.field(description="The member beside the WeCom chat (member 360), found by the chat's "
                                  "external_userid: external_contact_not_found / external_contact_not_linked "
                                  "(404) when it is no member.")
    async def sidebar_member(self, info: Info[Context, None], external_userid: str) -> Member360:
        actor = await info.context.actor("members:read", audiences=STAFF)
        session = info.context.session
        redis = info.context.request.app.state.redis
        member_id = await wechat_links.member_id_for_external_contact(session, redis, actor,
                                                                      _external_userid(external_userid))
        profile = await members.get_member(session, actor, member_id)
        in_care = await members.in_care(session, actor, member_id)
        can_book = actor.can("appointments:write") or (actor.can("appointments:book_own") and in_care)
        return Member360(external_userid=external_userid, member=Member.of(profile), in_my_care=in_care,
                         can_book_next=can_book, member_id=member_id, actor=actor)


@strawberry.type
class SidebarMutations:
    @strawberry.mutation(description="Book the member's next visit from the sidebar (channel wecom). With "
                                     "appointments:write as at the front desk; a therapist with "
                                     "appointments:book_own books only members they serve (not_in_care) into "
                                     "their own schedule (staffId omitted = themselves; another's is "
                                     "not_own_schedule), within the store's lead time and horizon.")
    async def book_next_visit(self, info: Info[Context, None], input: BookingInput) -> Appointment:
        actor = await info.context.actor(audiences=STAFF)
        data = validated(AppointmentCreate, member_id=str(input.member_id), store_id=str(input.store_id),
                         service_id=str(input.service_id), staff_id=str(input.staff_id) if input.staff_id else None,
                         starts_at=input.starts_at.isoformat(), notes=input.notes, channel="wecom")
        placed = await appointments.book_next_visit(info.context.session, actor, data)
        shown = await present_appointments(info.context.session, actor, [a for a, _ in placed],
                                           {a.id: resources for a, resources in placed})
        return Appointment.of(shown[0])

    @strawberry.mutation(description="Add a note to the member's timeline from the sidebar: with members:write, "
                                     "or members.notes:write for a member in the caller's care (not_in_care).")
    async def add_care_note(self, info: Info[Context, None], member_id: strawberry.ID, body: str) -> TimelineEntry:
        actor = await info.context.actor(audiences=STAFF)
        data = validated(NoteCreate, body=body)
        if not data.body.strip():
            raise Unprocessable("body: must not be blank", code="validation_error", field="body")
        note = await members.add_care_note(info.context.session, actor, parse_id(member_id, "member_id"), data)
        return TimelineEntry(type="note", occurred_at=note.created_at, id=f"note:{note.id}", title="备注",
                             data={"body": note.body})
