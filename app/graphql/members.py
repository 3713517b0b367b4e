"""Members in GraphQL: the sidebar opens a profile, the mini-program shows the patient their own."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from app.core.errors import AppError
from app.core.pagination import PageParams
from app.domain.members import service as members
from app.domain.members.schemas import HealthSharing, MemberOut, MemberSummary, NoteCreate, TagChange
from app.graphql.context import Context, page_limit, parse_id, validated

PATIENT_TOO = ("staff", "integration", "patient")


@strawberry.type
class Health:
    allergy_history: str | None
    past_history: str | None
    family_history: str | None
    constitution: list[str]
    health_summary: str | None


@strawberry.type
class Family:
    group_id: strawberry.ID
    role: str | None
    relation: str | None


@strawberry.type
class TimelineEntry:
    type: str
    occurred_at: datetime
    id: str
    title: str
    data: JSON


@strawberry.type
class Timeline:
    items: list[TimelineEntry]
    next_cursor: str | None


@strawberry.type
class Member:
    id: strawberry.ID
    name: str
    phone: str | None
    phone_masked: bool
    gender: str | None
    birthday: date | None
    tags: list[str]
    custom_fields: JSON
    home_store_id: strawberry.ID | None
    owner_staff_id: strawberry.ID | None
    family: Family | None
    health: Health | None
    health_visible: bool
    health_shared_with_family: bool
    status: str
    last_visit_at: datetime | None

    @classmethod
    def of(cls, out: MemberOut) -> Member:
        return cls(
            id=strawberry.ID(str(out.id)), name=out.name, phone=out.phone, phone_masked=out.phone_masked,
            gender=out.gender, birthday=out.birthday, tags=out.tags, custom_fields=out.custom_fields,
            home_store_id=strawberry.ID(str(out.home_store_id)) if out.home_store_id else None,
            owner_staff_id=strawberry.ID(str(out.owner_staff_id)) if out.owner_staff_id else None,
            family=Family(group_id=strawberry.ID(str(out.family.group_id)), role=out.family.role,
                          relation=out.family.relation) if out.family else None,
            health=Health(**out.health.model_dump()) if out.health else None, health_visible=out.health_visible,
            health_shared_with_family=out.health_shared_with_family, status=out.status, last_visit_at=out.last_visit_at,
        )

    @strawberry.field(description="Appointments, visits, orders, card changes, messages and notes, newest first.")
    async def timeline(self, info: Info[Context, None], limit: int = 20, cursor: str | None = None) -> Timeline:
        actor = await info.context.actor(audiences=PATIENT_TOO)
        items, next_cursor = await members.timeline(info.context.session, actor, UUID(str(self.id)),
                                                    PageParams(limit=page_limit(limit), cursor=cursor))
        return Timeline(items=[TimelineEntry(type=i.type, occurred_at=i.occurred_at, id=i.id, title=i.title,
                                             data=i.data) for i in items], next_cursor=next_cursor)


@strawberry.type
class MemberListItem:
    id: strawberry.ID
    name: str
    phone: str | None
    gender: str | None
    tags: list[str]
    last_visit_at: datetime | None

    @classmethod
    def of(cls, s: MemberSummary) -> MemberListItem:
        return cls(id=strawberry.ID(str(s.id)), name=s.name, phone=s.phone, gender=s.gender, tags=s.tags,
                   last_visit_at=s.last_visit_at)


@strawberry.type
class MemberPage:
    items: list[MemberListItem]
    next_cursor: str | None


@strawberry.type
class MemberQueries:
    @strawberry.field(description="One member's profile (patients: themselves and their family).")
    async def member(self, info: Info[Context, None], id: strawberry.ID) -> Member:
        actor = await info.context.actor(audiences=PATIENT_TOO)
        return Member.of(await members.get_member(info.context.session, actor, parse_id(id, "id")))

    @strawberry.field(description="Search by phone, name prefix or pinyin initials, and tags.")
    async def members(self, info: Info[Context, None], q: str | None = None, tags: list[str] | None = None,
                      limit: int = 20, cursor: str | None = None) -> MemberPage:
        actor = await info.context.actor("members:read")
        if q is not None and len(q) > 50:
            raise AppError("q must be at most 50 characters", code="validation_error", status=422)
        items, next_cursor = await members.search_members(info.context.session, actor,
                                                          PageParams(limit=page_limit(limit), cursor=cursor),
                                                          q=q, tags=tags)
        return MemberPage(items=[MemberListItem.of(i) for i in items], next_cursor=next_cursor)


@strawberry.type
class MemberMutations:
    @strawberry.mutation(description="Add a note to the member's timeline (sidebar).")
    async def add_member_note(self, info: Info[Context, None], member_id: strawberry.ID, body: str) -> TimelineEntry:
        actor = await info.context.actor("members:write")
        if not body.strip() or len(body) > 4000:
            raise AppError("body must be 1–4000 characters", code="validation_error", status=422)
        note = await members.add_note(info.context.session, actor, parse_id(member_id, "member_id"),
                                      NoteCreate(body=body))
        return TimelineEntry(type="note", occurred_at=note.created_at, id=f"note:{note.id}", title="备注",
                             data={"body": note.body})

    @strawberry.mutation(description="Show (or stop showing) the member's health data to their family's head: "
                                     "the member themself in the mini-program, or staff with members.health:write.")
    async def set_health_sharing(self, info: Info[Context, None], member_id: strawberry.ID,
                                 share_with_family: bool) -> Member:
        actor = await info.context.actor(audiences=PATIENT_TOO)
        data = validated(HealthSharing, share_with_family=share_with_family)
        session = info.context.session
        member = await members.set_health_sharing(session, actor, parse_id(member_id, "member_id"), data)
        return Member.of(await members.present(session, actor, member))

    @strawberry.mutation(description="Add and remove tags by name.")
    async def change_member_tags(self, info: Info[Context, None], member_id: strawberry.ID,
                                 add: list[str] | None = None, remove: list[str] | None = None) -> list[str]:
        actor = await info.context.actor("members:write")
        change = validated(TagChange, add=add or [], remove=remove or [])
        return await members.change_tags(info.context.session, actor, parse_id(member_id, "member_id"), change)
