from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import STAFF_AND_INTEGRATION, current_actor, get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute, model_response
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.members import service
from app.domain.members.schemas import (
    EraseRequest,
    FamilyCreate,
    FamilyMemberAdd,
    FamilyOut,
    FieldDefinitionCreate,
    FieldDefinitionOut,
    FieldDefinitionUpdate,
    HealthSharing,
    MemberCreate,
    MemberOut,
    MemberSummary,
    MemberUpdate,
    MergeRequest,
    NoteCreate,
    NoteOut,
    SynonymCreate,
    SynonymOut,
    TagChange,
    TagCreate,
    TagGroupCreate,
    TagGroupOut,
    TagOut,
    TimelinePage,
)
from app.domain.members.search import MemberFilter

router = APIRouter(tags=["members"], route_class=TransactionalRoute,
                   responses=PROBLEM_RESPONSES)
PATIENT_TOO = ("staff", "integration", "patient")


@router.post("/members", status_code=201, response_model=MemberOut, operation_id="create_member",
             responses={409: {"description": "The phone number already belongs to a member"}})
async def create_member(body: MemberCreate, session: AsyncSession = Depends(get_db),
                        actor: Actor = require("members:write")) -> MemberOut:
    """Create a member. `tags` are names (new names become ungrouped tags); `custom_fields` are
    validated against the tenant's member fields; `health` needs members.health:write."""
    return await service.present(session, actor, await service.create_member(session, actor, body))


async def member_filter(
    q: str | None = Query(None, max_length=50, description="Phone (exact), name prefix, or pinyin (`zs` → 张三)"),
    tag: list[str] | None = Query(None, description="Tag names; repeat for several"),
    tag_mode: Literal["any", "all"] = Query("any"),
    store_id: UUID | None = Query(None, description="Home store"),
    owner_staff_id: UUID | None = Query(None, description="Owning consultant/therapist"),
    last_visit_from: date | None = Query(None),
    last_visit_to: date | None = Query(None),
    status: Literal["active", "merged", "erased"] = Query("active"),
) -> MemberFilter:
    """The member search filters, shared by the list and the export."""
    return MemberFilter(q=q, tags=tag, tag_mode=tag_mode, store_id=store_id, owner_staff_id=owner_staff_id,
                        last_visit_from=last_visit_from, last_visit_to=last_visit_to, status=status)


@router.get("/members", response_model=Page[MemberSummary], operation_id="list_members")
async def list_members(
    filters: MemberFilter = Depends(member_filter),
    params: PageParams = Depends(page_params),
    session: AsyncSession = Depends(get_db),
    actor: Actor = require("members:read"),
) -> Page[MemberSummary]:
    """Search members, newest first. Phone numbers are masked without members.contact:read."""
    items, cursor = await service.search_members(session, actor, params, **asdict(filters))
    return Page(items=items, next_cursor=cursor)


@router.get("/members/duplicates", operation_id="list_member_duplicates")
async def list_duplicates(limit: int = Query(100, ge=1, le=500), session: AsyncSession = Depends(get_db),
                          actor: Actor = require("members:read")) -> dict[str, list[dict[str, Any]]]:
    """Likely duplicate pairs (same name and birthday, or the same ID number) to review and merge."""
    return {"items": await service.find_duplicates(session, actor, limit)}


@router.get("/members/{member_id}", response_model=MemberOut, operation_id="get_member")
async def get_member(member_id: UUID, session: AsyncSession = Depends(get_db),
                     actor: Actor = current_actor(PATIENT_TOO)) -> Response:
    """The 360° profile. Health fields appear only for callers allowed to see them (and the read is audited)."""
    return model_response(await service.get_member(session, actor, member_id))


@router.patch("/members/{member_id}", response_model=MemberOut, operation_id="update_member")
async def update_member(member_id: UUID, body: MemberUpdate, session: AsyncSession = Depends(get_db),
                        actor: Actor = current_actor(STAFF_AND_INTEGRATION)) -> MemberOut:
    # No permission here: the service asks members:write for profile fields and members.health:write
    # (plus the care relationship) for health fields, so a therapist can record health data only.
    return await service.present(session, actor, await service.update_member(session, actor, member_id, body))


@router.put("/members/{member_id}/health-sharing", response_model=MemberOut, operation_id="set_member_health_sharing")
async def set_health_sharing(member_id: UUID, body: HealthSharing, session: AsyncSession = Depends(get_db),
                             actor: Actor = current_actor(PATIENT_TOO)) -> MemberOut:
    """Consent (or withdraw it) to show the member's health data to their family's head in the mini-program;
    a minor's is shown to the head without. Set by the member themself, or recorded by staff with
    members.health:write; audited."""
    # No permission here: the service lets the member themself through, and asks staff for
    # members.health:write (plus the care relationship) for this member.
    return await service.present(session, actor, await service.set_health_sharing(session, actor, member_id, body))


@router.post("/members/{member_id}/tags", operation_id="change_member_tags")
async def change_tags(member_id: UUID, body: TagChange, session: AsyncSession = Depends(get_db),
                      actor: Actor = require("members:write")) -> dict[str, list[str]]:
    return {"tags": await service.change_tags(session, actor, member_id, body)}


@router.post("/members/{member_id}/notes", status_code=201, response_model=NoteOut, operation_id="add_member_note")
async def add_note(member_id: UUID, body: NoteCreate, session: AsyncSession = Depends(get_db),
                   actor: Actor = require("members:write")) -> NoteOut:
    return NoteOut.model_validate(await service.add_note(session, actor, member_id, body))


@router.get("/members/{member_id}/timeline", response_model=TimelinePage, operation_id="member_timeline")
async def member_timeline(member_id: UUID, type: list[str] | None = Query(None, description="Only these types"),
                          params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                          actor: Actor = current_actor(PATIENT_TOO)) -> TimelinePage:
    """Appointments, service records, orders, card changes, messages and notes, newest first."""
    items, cursor = await service.timeline(session, actor, member_id, params, type)
    return TimelinePage(items=items, next_cursor=cursor)


@router.get("/members/{member_id}/export", operation_id="export_member_data")
async def export_member(member_id: UUID, session: AsyncSession = Depends(get_db),
                        actor: Actor = require("members:export", audiences=("staff",))) -> dict[str, Any]:
    """Everything held about the member, for a personal-information access request (PIPL)."""
    return await service.export_member_data(session, actor, member_id)


@router.post("/members/{member_id}/erase", response_model=MemberOut, operation_id="erase_member")
async def erase_member(member_id: UUID, body: EraseRequest, session: AsyncSession = Depends(get_db),
                       actor: Actor = require("members:erase", audiences=("staff",))) -> MemberOut:
    """Anonymise the member's personal data; orders, card ledgers and totals stay intact."""
    member = await service.erase_member(session, actor, member_id, body.reason)
    return await service.present(session, actor, member, audit_reads=False)


@router.post("/members/{member_id}/merge", operation_id="merge_members")
async def merge_members(member_id: UUID, body: MergeRequest, session: AsyncSession = Depends(get_db),
                        actor: Actor = require("members:merge", audiences=("staff",))) -> dict[str, Any]:
    """Fold `duplicate_id` into this member: cards, appointments, orders, notes and tags move here."""
    return await service.merge_members(session, actor, member_id, body.duplicate_id, body.reason)


@router.get("/tag-groups", response_model=list[TagGroupOut], operation_id="list_tag_groups")
async def list_tag_groups(session: AsyncSession = Depends(get_db),
                          actor: Actor = require("members:read")) -> list[TagGroupOut]:
    return [TagGroupOut.model_validate(g) for g in await service.list_tag_groups(session, actor)]


@router.post("/tag-groups", status_code=201, response_model=TagGroupOut, operation_id="create_tag_group")
async def create_tag_group(body: TagGroupCreate, session: AsyncSession = Depends(get_db),
                           actor: Actor = require("members:write")) -> TagGroupOut:
    """A group of tags (disease type, VIP level, skin type…); an exclusive group allows one tag per member."""
    return TagGroupOut.model_validate(await service.create_tag_group(session, actor, body))


@router.get("/tags", response_model=list[TagOut], operation_id="list_tags")
async def list_tags(group_id: UUID | None = Query(None), session: AsyncSession = Depends(get_db),
                    actor: Actor = require("members:read")) -> list[TagOut]:
    return [TagOut(id=t.id, name=t.name, group_id=t.group_id, color=t.color, member_count=n)
            for t, n in await service.list_tags(session, actor, group_id)]


@router.post("/tags", status_code=201, response_model=TagOut, operation_id="create_tag")
async def create_tag(body: TagCreate, session: AsyncSession = Depends(get_db),
                     actor: Actor = require("members:write")) -> TagOut:
    return TagOut.model_validate(await service.create_tag(session, actor, body))


@router.get("/tag-synonyms", response_model=list[SynonymOut], operation_id="list_tag_synonyms")
async def list_synonyms(session: AsyncSession = Depends(get_db),
                        actor: Actor = require("members:read")) -> list[SynonymOut]:
    return [SynonymOut.model_validate(s) for s in await service.list_synonyms(session, actor)]


@router.post("/tag-synonyms", status_code=201, response_model=SynonymOut, operation_id="create_tag_synonym")
async def create_synonym(body: SynonymCreate, session: AsyncSession = Depends(get_db),
                         actor: Actor = require("members:write")) -> SynonymOut:
    """Map a free-text value to a standard tag for imports (e.g. 落枕 → 颈椎病)."""
    return SynonymOut.model_validate(await service.add_synonym(session, actor, body))


@router.get("/member-fields", response_model=list[FieldDefinitionOut], operation_id="list_member_fields")
async def list_fields(session: AsyncSession = Depends(get_db),
                      actor: Actor = require("members:read")) -> list[FieldDefinitionOut]:
    return [FieldDefinitionOut.model_validate(d) for d in await service.list_field_definitions(session, actor)]


@router.post("/member-fields", status_code=201, response_model=FieldDefinitionOut, operation_id="create_member_field")
async def create_field(body: FieldDefinitionCreate, session: AsyncSession = Depends(get_db),
                       actor: Actor = require("members:write")) -> FieldDefinitionOut:
    """Define a custom profile field: text, number, date, single/multi select, scale or boolean."""
    return FieldDefinitionOut.model_validate(await service.create_field_definition(session, actor, body))


@router.patch("/member-fields/{field_id}", response_model=FieldDefinitionOut, operation_id="update_member_field")
async def update_field(field_id: UUID, body: FieldDefinitionUpdate, session: AsyncSession = Depends(get_db),
                       actor: Actor = require("members:write")) -> FieldDefinitionOut:
    """Relabel, reorder, add or retire options, or deactivate; stored values are never lost."""
    return FieldDefinitionOut.model_validate(await service.update_field_definition(session, actor, field_id, body))


@router.post("/families", status_code=201, response_model=FamilyOut, operation_id="create_family")
async def create_family(body: FamilyCreate, session: AsyncSession = Depends(get_db),
                        actor: Actor = require("members:write")) -> FamilyOut:
    return await service.create_family(session, actor, body)


@router.get("/families/{family_id}", response_model=FamilyOut, operation_id="get_family")
async def get_family(family_id: UUID, session: AsyncSession = Depends(get_db),
                     actor: Actor = current_actor(PATIENT_TOO)) -> FamilyOut:
    return await service.get_family(session, actor, family_id)


@router.post("/families/{family_id}/members", response_model=FamilyOut, operation_id="add_family_member")
async def add_family_member(family_id: UUID, body: FamilyMemberAdd, session: AsyncSession = Depends(get_db),
                            actor: Actor = require("members:write")) -> FamilyOut:
    return await service.add_family_member(session, actor, family_id, body)


@router.delete("/families/{family_id}/members/{member_id}", response_model=FamilyOut,
               operation_id="remove_family_member")
async def remove_family_member(family_id: UUID, member_id: UUID, session: AsyncSession = Depends(get_db),
                               actor: Actor = require("members:write")) -> FamilyOut:
    return await service.remove_family_member(session, actor, family_id, member_id)
