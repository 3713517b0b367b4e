"""Members: the profile, custom fields, tags, family groups, search, notes, timeline and privacy.

This module is the context's public face. The use cases live in sibling modules by subject — `profiles`,
`tags`, `field_definitions`, `search`, `families`, `timeline`, `privacy`, `merge` (and `imports` / `exports`
for spreadsheets) — and are re-exported here for the routers, GraphQL and other contexts; the functions
other contexts read through without a permission check are under the read API banner at the end.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID

from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import crypto
from app.core.actor import Actor
from app.core.errors import Unauthorized
from app.domain.members import policies
from app.domain.members.families import (
    add_family_member,
    create_family,
    family_member_ids,
    get_family,
    remove_family_member,
)
from app.domain.members.field_definitions import (
    create_field_definition,
    list_field_definitions,
    update_field_definition,
)
from app.domain.members.hooks import care_relationship, merge_mover, timeline_source
from app.domain.members.identifiers import (
    OWN_SYSTEM,
    IdentifierIn,
    IdentifierOut,
    PatientFacts,
    PatientQuery,
    find_by_identifier,
    identifiers_of,
    list_identifiers,
    patients,
    remove_identifiers,
    seed_demo_identifiers,
    set_identifier,
)
from app.domain.members.loading import tags_by_member
from app.domain.members.merge import find_duplicates, merge_members
from app.domain.members.models import Member, MemberStatus
from app.domain.members.normalize import normalize_other_phone, normalize_phone
from app.domain.members.privacy import erase_member, export_member_data, reencrypt_batch
from app.domain.members.profiles import (
    create_member,
    find_by_phone,
    get_member,
    get_member_row,
    other_phone_index,
    present,
    set_health_sharing,
    touch_last_visit,
    update_member,
)
from app.domain.members.relationships import hand_over_relationships
from app.domain.members.search import search_members
from app.domain.members.self_service import (
    SelfRegistration,
    add_child,
    consents_of,
    register_member,
    update_own_profile,
)
from app.domain.members.tags import (
    add_synonym,
    change_tags,
    create_tag,
    create_tag_group,
    list_synonyms,
    list_tag_groups,
    list_tags,
    synonym_map,
)
from app.domain.members.timeline import add_care_note, add_note, before_clause, timeline

__all__ = [
    # use cases, by module
    "add_family_member", "create_family", "family_member_ids", "get_family", "remove_family_member",
    "create_field_definition", "list_field_definitions", "update_field_definition",
    "find_duplicates", "merge_members",
    "erase_member", "export_member_data", "reencrypt_batch",
    "hand_over_relationships",
    "create_member", "find_by_phone", "get_member", "get_member_row", "present", "set_health_sharing",
    "touch_last_visit", "update_member",
    "search_members",
    "SelfRegistration", "add_child", "consents_of", "register_member", "update_own_profile",
    "add_synonym", "change_tags", "create_tag", "create_tag_group", "list_synonyms", "list_tag_groups", "list_tags",
    "synonym_map",
    "add_care_note", "add_note", "before_clause", "timeline",
    "OWN_SYSTEM", "IdentifierIn", "IdentifierOut", "find_by_identifier", "list_identifiers", "remove_identifiers",
    "seed_demo_identifiers", "set_identifier",
    # read API for FHIR (no REST of their own)
    "PatientFacts", "PatientQuery", "identifiers_of", "patients",
    # where other contexts plug in (care relationships, timeline sources, merge movers)
    "care_relationship", "merge_mover", "timeline_source",
]


# ---------------------------------------------------------------- read API (for other contexts)
# Other contexts read this one only through the functions below (never its models, never raw SQL on its tables).


async def merged_into(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> UUID | None:
    """The record this member was merged into (None: not merged, or no such member); no permission check."""
    return (await session.exec(select(Member.merged_into_id).where(Member.tenant_id == tenant_id,
                                                                   Member.id == member_id))).first()


async def member_ids_by_name(session: AsyncSession, tenant_id: UUID, names: set[str]) -> dict[str, UUID]:
    """The ids of the members with these names (any status; one per name), e.g. to seed demo data."""
    if not names:
        return {}
    rows = (await session.exec(select(Member.name, Member.id).where(Member.tenant_id == tenant_id,
                                                                    Member.name.in_(names)))).all()
    return dict(rows)


async def tags_of(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> list[str]:
    """The member's tag names (checkout's member-tier discounts read them)."""
    return (await tags_by_member(session, tenant_id, [member_id]))[member_id]


async def load_patient_actor(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> Actor:
    """A patient from the mini-program, as the request's actor: no staff permissions; services check they act
    on themselves (or their family). 401 when the member is closed (merged, erased) or does not exist."""
    status = (await session.exec(select(Member.status).where(Member.tenant_id == tenant_id,
                                                             Member.id == member_id))).one_or_none()
    if status != MemberStatus.ACTIVE:
        raise Unauthorized("this member account is closed or no longer exists", code="account_disabled")
    return Actor(tenant_id=tenant_id, kind="patient", id=member_id, permissions=frozenset(),
                 store_ids=None, roles=("patient",))


def is_active(member: Member) -> bool:
    """Whether a member (as `get_member_row` returns it) is live: not merged into another, not erased."""
    return member.status == MemberStatus.ACTIVE


async def member_phone(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> str | None:
    """The member's phone number in clear (for sending an SMS), or None; no permission check."""
    encrypted = (await session.exec(select(Member.phone_encrypted).where(
        Member.tenant_id == tenant_id, Member.id == member_id))).one_or_none()
    return crypto.decrypt(encrypted) if encrypted else None


async def members_by_id(session: AsyncSession, tenant_id: UUID, member_ids: set[UUID], *,
                        active_only: bool = False) -> dict[UUID, Member]:
    """The members with these ids (only the active ones with `active_only`); no permission check."""
    if not member_ids:
        return {}
    stmt = select(Member).where(Member.tenant_id == tenant_id, Member.id.in_(member_ids))
    if active_only:
        stmt = stmt.where(Member.status == MemberStatus.ACTIVE)
    return {member.id: member for member in (await session.exec(stmt)).all()}


async def members_last_visited_between(session: AsyncSession, tenant_id: UUID, since: datetime, before: datetime,
                                       *, limit: int) -> list[Member]:
    """Active members whose last visit is in [since, before), by id, at most `limit` (one query for a tenant)."""
    return list((await session.exec(
        select(Member).where(Member.tenant_id == tenant_id, Member.status == MemberStatus.ACTIVE,
                             Member.last_visit_at >= since, Member.last_visit_at < before)
        .order_by(Member.id).limit(limit))).all())


async def members_with_birthday_between(session: AsyncSession, tenant_id: UUID, first: date, last: date, *,
                                        limit: int) -> list[Member]:
    """Active members whose birthday (month and day, any year) is a day from `first` to `last`, by id, at most
    `limit`. Those born on 29 February count when 28 February is in the range (common years have no 29th)."""
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    keys = {day.strftime("%m%d") for day in days}
    if "0228" in keys:
        keys.add("0229")
    return list((await session.exec(
        select(Member).where(Member.tenant_id == tenant_id, Member.status == MemberStatus.ACTIVE,
                             Member.birthday.is_not(None), func.to_char(Member.birthday, "MMDD").in_(sorted(keys)))
        .order_by(Member.id).limit(limit))).all())


async def member_names(session: AsyncSession, tenant_id: UUID, member_ids: set[UUID]) -> dict[UUID, str]:
    """The names of these members (those that exist), by id; no permission check (the caller has made its own)."""
    if not member_ids:
        return {}
    rows = (await session.execute(select(Member.id, Member.name).where(Member.tenant_id == tenant_id,
                                                                      Member.id.in_(member_ids)))).all()
    return {member_id: name for member_id, name in rows}


def normalize_contact(raw: str) -> str | None:
    """A phone number as members keep it — a mainland mobile, a +country number, or a landline — or None."""
    return normalize_phone(raw) or normalize_other_phone(raw)


async def member_ids_by_contact(session: AsyncSession, tenant_id: UUID,
                                numbers: set[str]) -> dict[str, UUID | None]:
    """Active members by phone number as written in a file (`normalize_contact`): a mobile finds the member
    holding it; a landline finds the one member whose other phone it is (None when several share it, as a
    household does). Numbers that find nobody are left out. No permission check (the caller has made its own)."""
    found: dict[str, UUID | None] = {}
    mobiles: dict[str, list[str]] = {}
    landlines: dict[str, list[str]] = {}
    for raw in numbers:
        if (mobile := normalize_phone(raw)) is not None:
            mobiles.setdefault(crypto.blind_index(mobile, purpose="phone"), []).append(raw)
        elif (landline := normalize_other_phone(raw)) is not None:
            landlines.setdefault(other_phone_index(landline), []).append(raw)
    if mobiles:
        rows = (await session.execute(select(Member.phone_index, Member.id).where(
            Member.tenant_id == tenant_id, Member.status == MemberStatus.ACTIVE,
            Member.phone_index.in_(list(mobiles))))).all()
        found |= {raw: member_id for index, member_id in rows for raw in mobiles[index]}
    if landlines:
        rows = (await session.execute(select(Member.other_phone_index, Member.id).where(
            Member.tenant_id == tenant_id, Member.status == MemberStatus.ACTIVE,
            Member.other_phone_index.in_(list(landlines))))).all()
        holders: dict[str, set[UUID]] = {}
        for index, member_id in rows:
            holders.setdefault(index, set()).add(member_id)
        for index, ids in holders.items():
            for raw in landlines[index]:
                found[raw] = next(iter(ids)) if len(ids) == 1 else None
    return found


async def member_ids_by_external_ref(session: AsyncSession, tenant_id: UUID,
                                     refs: set[str]) -> dict[str, UUID | None]:
    """Active members by their number in the old system (会员编号, kept by the member import); None when two
    members carry the same number. Refs that find nobody are left out. No permission check."""
    if not refs:
        return {}
    rows = (await session.execute(select(Member.external_ref, Member.id).where(
        Member.tenant_id == tenant_id, Member.status == MemberStatus.ACTIVE,
        Member.external_ref.in_(list(refs))))).all()
    found: dict[str, UUID | None] = {}
    for ref, member_id in rows:
        found[ref] = member_id if found.get(ref, member_id) == member_id else None
    return found


async def in_care(session: AsyncSession, actor: Actor, member_id: UUID) -> bool:
    """Whether the staff member serves this member — owns the relationship, or has (or had) an appointment
    with them: the rule that opens health data to roles bound to their patients. False for no such member."""
    member = await session.get(Member, (actor.tenant_id, member_id))
    return member is not None and await policies.in_care_of(session, actor, member)
