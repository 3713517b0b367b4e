"""Members: the profile, custom fields, tags, family groups, search, notes, timeline and privacy."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import Text, and_, func, or_, text, update
from sqlmodel import delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.clock import DEFAULT_TIMEZONE, utcnow
from app.core.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from app.core.outbox import emit
from app.core.pagination import PageParams, decode_cursor, paginate
from app.core.search import prefix_range
from app.domain.members import custom_fields as fields
from app.domain.members import policies
from app.domain.members.hooks import (  # the registration decorators are re-exported for other contexts
    MERGE_MOVERS,
    PATIENT_HIDDEN_KEYS,
    PATIENT_HIDDEN_SOURCES,
    TIMELINE_SOURCES,
    care_relationship,
    merge_mover,
    timeline_source,
)
from app.domain.members.models import (
    CustomFieldDefinition,
    FamilyGroup,
    Member,
    MemberNote,
    MemberStatus,
    MemberTag,
    Tag,
    TagGroup,
    TagSynonym,
)
from app.domain.members.normalize import (
    mask_id_number,
    mask_phone,
    normalize_id_number,
    normalize_phone,
    pinyin_keys,
)
from app.domain.members.schemas import (
    FamilyCreate,
    FamilyMemberAdd,
    FamilyOut,
    FamilyRef,
    FieldDefinitionCreate,
    FieldDefinitionUpdate,
    HealthFields,
    HealthOut,
    MemberCreate,
    MemberOut,
    MemberSummary,
    MemberUpdate,
    NoteCreate,
    SynonymCreate,
    TagChange,
    TagCreate,
    TagGroupCreate,
    TimelineItem,
)
from app.domain.tenancy import service as tenancy

__all__ = ["care_relationship", "merge_mover", "timeline_source"]

HEALTH_COLUMNS = ("allergy_history", "past_history", "family_history", "constitution", "health_summary")
ERASED_NAME = "已注销会员"

# ---------------------------------------------------------------- loading and presenting


async def _get(session: AsyncSession, actor: Actor, member_id: UUID, *, for_update: bool = False) -> Member:
    member = await session.get(Member, (actor.tenant_id, member_id), with_for_update=for_update)
    if member is None:
        raise NotFound("member not found", code="member_not_found")
    if actor.kind == "patient" and not await policies.patient_may_access(session, actor, member):
        raise NotFound("member not found", code="member_not_found")
    return member


async def get_member_row(session: AsyncSession, actor: Actor, member_id: UUID, *, for_update: bool = False) -> Member:
    """For other contexts: the member, if the actor may reach it (404 otherwise)."""
    if actor.kind != "patient":
        actor.require("members:read")
    return await _get(session, actor, member_id, for_update=for_update)


async def _tags_of(session: AsyncSession, tenant_id: UUID, member_ids: list[UUID]) -> dict[UUID, list[str]]:
    if not member_ids:
        return {}
    rows = (await session.execute(
        select(MemberTag.member_id, Tag.name)
        .join(Tag, and_(Tag.tenant_id == MemberTag.tenant_id, Tag.id == MemberTag.tag_id))
        .where(MemberTag.tenant_id == tenant_id, MemberTag.member_id.in_(member_ids))
        .order_by(Tag.name)
    )).all()
    out: dict[UUID, list[str]] = {m: [] for m in member_ids}
    for member_id, name in rows:
        out[member_id].append(name)
    return out


async def tags_of(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> list[str]:
    """For other contexts (checkout's member-tier discounts): the member's tag names."""
    return (await _tags_of(session, tenant_id, [member_id]))[member_id]


async def _definitions(session: AsyncSession, tenant_id: UUID) -> list[CustomFieldDefinition]:
    stmt = select(CustomFieldDefinition).where(CustomFieldDefinition.tenant_id == tenant_id)
    return list((await session.exec(stmt.order_by(CustomFieldDefinition.position, CustomFieldDefinition.key))).all())


def _phone_shown(member: Member, contact: bool) -> str | None:
    if member.phone_encrypted is None:
        return None
    return crypto.decrypt(member.phone_encrypted) if contact else member.phone_masked


def _health_keys(definitions: list[CustomFieldDefinition]) -> set[str]:
    return {d.key for d in definitions if d.health}


def _hidden_fields(definitions: list[CustomFieldDefinition], health: bool) -> set[str]:
    """Custom fields not shown: deactivated ones (values kept, not in use) and, without health access,
    health-flagged ones."""
    hidden = {d.key for d in definitions if not d.active}
    return hidden if health else hidden | _health_keys(definitions)


async def present(session: AsyncSession, actor: Actor, member: Member, *, audit_reads: bool = True) -> MemberOut:
    contact = policies.can_see_contact(actor)
    health = await policies.can_see_health(session, actor, member)
    hidden = _hidden_fields(await _definitions(session, actor.tenant_id), health)
    tags = (await _tags_of(session, actor.tenant_id, [member.id]))[member.id]
    if health and audit_reads and actor.kind != "patient":
        audit.record(session, "member.health.read", "member", member.id)
    return MemberOut(
        id=member.id, name=member.name, phone=_phone_shown(member, contact), phone_masked=not contact,
        gender=member.gender, birthday=member.birthday,
        id_number=(crypto.decrypt(member.id_number_encrypted) if contact else member.id_number_masked)
        if member.id_number_encrypted else None,
        address=member.address if contact else None,
        source_channel=member.source_channel, referrer_id=member.referrer_id,
        owner_staff_id=member.owner_staff_id, home_store_id=member.home_store_id, notes=member.notes,
        tags=tags, custom_fields={k: v for k, v in member.custom_fields.items() if k not in hidden},
        family=FamilyRef(group_id=member.family_group_id, role=member.family_role, relation=member.family_relation)
        if member.family_group_id else None,
        health=HealthOut(**{c: getattr(member, c) for c in HEALTH_COLUMNS}) if health else None,
        health_visible=health, status=member.status, merged_into_id=member.merged_into_id,
        last_visit_at=member.last_visit_at, created_at=member.created_at, updated_at=member.updated_at,
    )


async def get_member(session: AsyncSession, actor: Actor, member_id: UUID) -> MemberOut:
    if actor.kind != "patient":
        actor.require("members:read")
    return await present(session, actor, await _get(session, actor, member_id))


# ---------------------------------------------------------------- writing


def _set_phone(member: Member, raw: str) -> None:
    normalized = normalize_phone(raw)
    if normalized is None:
        raise Unprocessable("phone: not a valid phone number (mainland mobile or +country number)",
                            code="validation_error", field="phone")
    member.phone_encrypted = crypto.encrypt(normalized)
    member.phone_index = crypto.blind_index(normalized, purpose="phone")
    member.phone_masked = mask_phone(normalized)


def _set_id_number(member: Member, raw: str | None) -> None:
    if raw is None or raw == "":
        member.id_number_encrypted = member.id_number_index = member.id_number_masked = None
        return
    normalized = normalize_id_number(raw)
    if normalized is None:
        raise Unprocessable("id_number: not a valid 18-character resident ID", code="validation_error",
                            field="id_number")
    member.id_number_encrypted = crypto.encrypt(normalized)
    member.id_number_index = crypto.blind_index(normalized, purpose="id_number")
    member.id_number_masked = mask_id_number(normalized)


def _set_name(member: Member, name: str) -> None:
    member.name = name
    member.pinyin_initials, member.pinyin_full = pinyin_keys(name)


async def find_by_phone(session: AsyncSession, tenant_id: UUID, raw_phone: str) -> Member | None:
    normalized = normalize_phone(raw_phone)
    if normalized is None:
        return None
    index = crypto.blind_index(normalized, purpose="phone")
    stmt = select(Member).where(Member.tenant_id == tenant_id, Member.phone_index == index)
    return (await session.exec(stmt)).first()


async def _check_refs(session: AsyncSession, actor: Actor, data: MemberCreate | MemberUpdate, member_id=None) -> None:
    from app.domain.iam.models import Staff

    if data.home_store_id is not None:
        try:
            await tenancy.require_stores_exist(session, actor.tenant_id, {data.home_store_id})
        except NotFound as exc:  # a bad reference in the body is bad input, named like the others
            raise Unprocessable("home_store_id: no such store", code="validation_error",
                                field="home_store_id") from exc
    if data.owner_staff_id is not None and await session.get(Staff, (actor.tenant_id, data.owner_staff_id)) is None:
        raise Unprocessable("owner_staff_id: no such staff member", code="validation_error", field="owner_staff_id")
    if data.referrer_id is not None:
        if data.referrer_id == member_id:
            raise Unprocessable("referrer_id: a member cannot refer themselves", code="validation_error",
                                field="referrer_id")
        if await session.get(Member, (actor.tenant_id, data.referrer_id)) is None:
            raise Unprocessable("referrer_id: no such member", code="validation_error", field="referrer_id")


def _apply_health(member: Member, health: HealthFields) -> dict[str, Any]:
    changes = health.model_dump(exclude_unset=True)
    for column, value in changes.items():
        setattr(member, column, value if value is not None or column != "constitution" else [])
    return changes


def _require_active(member: Member) -> None:
    if member.status != MemberStatus.ACTIVE:
        raise Conflict(f"this member is {member.status} and cannot be changed", code="member_inactive")


def _writes_health(data: MemberCreate | MemberUpdate, definitions: list[CustomFieldDefinition]) -> bool:
    return data.health is not None or bool(_health_keys(definitions) & set(data.custom_fields or {}))


def _audit_fields(data: MemberCreate | MemberUpdate) -> list[str]:
    """The names of the fields a write set, for the audit log — never their values: the log is
    append-only, so personal data written into it would outlive the member's erasure."""
    names = set(data.model_fields_set) - {"health", "custom_fields"}
    names |= {f"health.{k}" for k in (data.health.model_fields_set if data.health else ())}
    names |= {f"custom_fields.{k}" for k in data.custom_fields or {}}
    return sorted(names)


def _new_member(actor: Actor, data: MemberCreate, definitions: list[CustomFieldDefinition],
                external_ref: str | None) -> Member:
    """The unsaved row for `data`: contact data encrypted, custom fields validated."""
    member = Member(tenant_id=actor.tenant_id, name="", external_ref=external_ref,
                    **data.model_dump(include={"gender", "birthday", "address", "source_channel", "referrer_id",
                                               "owner_staff_id", "home_store_id", "notes"}))
    _set_name(member, data.name)
    _set_phone(member, data.phone)
    _set_id_number(member, data.id_number)
    if data.health is not None:
        _apply_health(member, data.health)
    member.custom_fields = fields.validate_values(definitions, data.custom_fields or {}, creating=True)
    member.updated_at = utcnow()
    return member


async def create_member(session: AsyncSession, actor: Actor, data: MemberCreate, *, tag_source: str = "manual",
                        external_ref: str | None = None) -> Member:
    actor.require("members:write")
    definitions = await _definitions(session, actor.tenant_id)
    if _writes_health(data, definitions):
        await policies.require_health_write(session, actor, None)
    await _check_refs(session, actor, data)
    member = _new_member(actor, data, definitions, external_ref)
    existing = await find_by_phone(session, actor.tenant_id, data.phone)
    if existing is not None:
        raise Conflict("this phone number already belongs to a member", code="member_phone_exists",
                       field="phone", existing_member_id=str(existing.id))
    session.add(member)
    await session.flush()
    if data.tags:
        await _set_tags(session, actor.tenant_id, member.id, add=data.tags, source=tag_source)
    audit.record(session, "member.create", "member", member.id, fields=_audit_fields(data))
    await emit(session, "member.created", {"member_id": str(member.id), "home_store_id":
                                           str(member.home_store_id) if member.home_store_id else None})
    return member


async def _require_update_rights(session: AsyncSession, actor: Actor, member: Member, data: MemberUpdate,
                                 definitions: list[CustomFieldDefinition]) -> None:
    """Profile fields need members:write; health fields (and health-flagged custom fields) need
    members.health:write and, for roles bound to their patients, the member in their care. A therapist
    holds only the latter: they record health data without being able to change the profile."""
    custom = set(data.custom_fields or {})
    profile = data.model_fields_set - {"health", "custom_fields"} or custom - _health_keys(definitions)
    health = _writes_health(data, definitions)
    if profile or not health:
        actor.require("members:write")
    if health:
        await policies.require_health_write(session, actor, member)


async def update_member(session: AsyncSession, actor: Actor, member_id: UUID, data: MemberUpdate) -> Member:
    if not actor.can("members.health:write"):  # can change nothing: refuse before looking the member up
        actor.require("members:write")
    member = await _get(session, actor, member_id, for_update=True)
    _require_active(member)
    definitions = await _definitions(session, actor.tenant_id)
    await _require_update_rights(session, actor, member, data, definitions)
    await _check_refs(session, actor, data, member.id)
    changes = data.model_dump(exclude_unset=True)
    for column in ("gender", "birthday", "address", "source_channel", "referrer_id", "owner_staff_id",
                   "home_store_id", "notes"):
        if column in changes:
            setattr(member, column, changes[column])
    if data.name is not None:
        _set_name(member, data.name)
    if data.phone is not None:
        other = await find_by_phone(session, actor.tenant_id, data.phone)
        if other is not None and other.id != member.id:
            raise Conflict("this phone number already belongs to a member", code="member_phone_exists",
                           field="phone", existing_member_id=str(other.id))
        _set_phone(member, data.phone)
    if "id_number" in changes:
        _set_id_number(member, data.id_number)
    if data.health is not None:
        _apply_health(member, data.health)
    if data.custom_fields is not None:
        member.custom_fields = fields.validate_values(definitions, data.custom_fields, member.custom_fields,
                                                      creating=False)
    if data.tags is not None:
        current = set((await _tags_of(session, actor.tenant_id, [member.id]))[member.id])
        await _set_tags(session, actor.tenant_id, member.id, add=[t for t in data.tags if t not in current],
                        remove=[t for t in current if t not in data.tags])
    member.updated_at = utcnow()
    session.add(member)
    await session.flush()
    audit.record(session, "member.update", "member", member.id, fields=_audit_fields(data))
    return member


# ---------------------------------------------------------------- tags


async def _tag_ids(session: AsyncSession, tenant_id: UUID, names: list[str], *, create: bool) -> dict[str, UUID]:
    if not names:
        return {}
    found = {t.name: t for t in (await session.exec(select(Tag).where(Tag.tenant_id == tenant_id,
                                                                      Tag.name.in_(names)))).all()}
    missing = [n for n in names if n not in found]
    if missing and create:
        await session.execute(
            text("INSERT INTO tags (tenant_id, id, name, created_at) SELECT :t, gen_random_uuid(), n, now() "
                 "FROM unnest(CAST(:names AS text[])) AS n ON CONFLICT (tenant_id, name) DO NOTHING"),
            {"t": tenant_id, "names": missing},
        )
        found |= {t.name: t for t in (await session.exec(select(Tag).where(Tag.tenant_id == tenant_id,
                                                                           Tag.name.in_(missing)))).all()}
    return {name: tag.id for name, tag in found.items()}


def _one_per_exclusive_group(ids: dict[str, UUID], exclusive: list[tuple[UUID, UUID]], field: str) -> None:
    """Two added tags of one exclusive group would both be kept: refuse rather than pick one."""
    names = {tag_id: name for name, tag_id in ids.items()}
    first_of_group: dict[UUID, UUID] = {}
    for tag_id, group_id in exclusive:
        if group_id in first_of_group:
            raise Unprocessable(f"{field}: {names[first_of_group[group_id]]!r} and {names[tag_id]!r} belong to the "
                                "same exclusive group; a member holds only one of them",
                                code="validation_error", field=field)
        first_of_group[group_id] = tag_id


async def _set_tags(session: AsyncSession, tenant_id: UUID, member_id: UUID, *, add: list[str] = (),
                    remove: list[str] = (), source: str = "manual", field: str = "tags") -> None:
    if remove:
        ids = await _tag_ids(session, tenant_id, list(remove), create=False)
        if ids:
            await session.execute(delete(MemberTag).where(MemberTag.tenant_id == tenant_id,
                                                          MemberTag.member_id == member_id,
                                                          MemberTag.tag_id.in_(list(ids.values()))))
    if add:
        ids = await _tag_ids(session, tenant_id, list(add), create=True)
        # An exclusive group (e.g. VIP level) keeps only the newly added tag of that group.
        exclusive = (await session.execute(
            select(Tag.id, Tag.group_id).join(TagGroup, and_(TagGroup.tenant_id == Tag.tenant_id,
                                                             TagGroup.id == Tag.group_id))
            .where(Tag.tenant_id == tenant_id, Tag.id.in_(list(ids.values())), TagGroup.exclusive)
        )).all()
        _one_per_exclusive_group(ids, exclusive, field)
        for tag_id, group_id in exclusive:
            await session.execute(text(
                "DELETE FROM member_tags mt USING tags t WHERE mt.tenant_id = :t AND mt.member_id = :m "
                "AND t.tenant_id = mt.tenant_id AND t.id = mt.tag_id AND t.group_id = :g AND t.id <> :keep"),
                {"t": tenant_id, "m": member_id, "g": group_id, "keep": tag_id})
        await session.execute(
            text("INSERT INTO member_tags (tenant_id, member_id, tag_id, source, created_at) "
                 "SELECT :t, :m, unnest(CAST(:ids AS uuid[])), :s, now() ON CONFLICT DO NOTHING"),
            {"t": tenant_id, "m": member_id, "ids": list(ids.values()), "s": source},
        )


async def change_tags(session: AsyncSession, actor: Actor, member_id: UUID, change: TagChange,
                      *, source: str = "manual") -> list[str]:
    """Add and remove tags by name (new names become ungrouped tags). Used by the API and by rules."""
    actor.require("members:write")
    member = await _get(session, actor, member_id)
    _require_active(member)
    overlap = set(change.add) & set(change.remove)
    if overlap:
        raise Unprocessable(f"tag {sorted(overlap)[0]!r} is both added and removed", code="validation_error",
                            field="add")
    await _set_tags(session, actor.tenant_id, member.id, add=change.add, remove=change.remove, source=source,
                    field="add")
    audit.record(session, "member.tags", "member", member.id, add=change.add, remove=change.remove, source=source)
    return (await _tags_of(session, actor.tenant_id, [member.id]))[member.id]


async def create_tag_group(session: AsyncSession, actor: Actor, data: TagGroupCreate) -> TagGroup:
    actor.require("members:write")
    if (await session.exec(select(TagGroup).where(TagGroup.tenant_id == actor.tenant_id,
                                                  TagGroup.name == data.name))).first():
        raise Conflict(f"tag group {data.name!r} exists", code="tag_group_exists", field="name")
    group = TagGroup(tenant_id=actor.tenant_id, **data.model_dump())
    session.add(group)
    await session.flush()
    audit.record(session, "tag_group.create", "tag_group", group.id, after=data.model_dump())
    return group


async def list_tag_groups(session: AsyncSession, actor: Actor) -> list[TagGroup]:
    actor.require("members:read")
    stmt = select(TagGroup).where(TagGroup.tenant_id == actor.tenant_id).order_by(TagGroup.position, TagGroup.name)
    return list((await session.exec(stmt)).all())


async def create_tag(session: AsyncSession, actor: Actor, data: TagCreate) -> Tag:
    actor.require("members:write")
    if data.group_id is not None and await session.get(TagGroup, (actor.tenant_id, data.group_id)) is None:
        raise Unprocessable("group_id: no such tag group", code="validation_error", field="group_id")
    existing = (await session.exec(select(Tag).where(Tag.tenant_id == actor.tenant_id, Tag.name == data.name))).first()
    if existing is not None:
        if existing.group_id is None and data.group_id is not None:
            existing.group_id, existing.color = data.group_id, data.color or existing.color
            session.add(existing)
            await session.flush()
            return existing
        raise Conflict(f"tag {data.name!r} exists", code="tag_exists", field="name")
    tag = Tag(tenant_id=actor.tenant_id, **data.model_dump())
    session.add(tag)
    await session.flush()
    audit.record(session, "tag.create", "tag", tag.id, after=data.model_dump())
    return tag


async def list_tags(session: AsyncSession, actor: Actor, group_id: UUID | None = None) -> list[tuple[Tag, int]]:
    actor.require("members:read")
    count = (select(func.count()).select_from(MemberTag)
             .where(MemberTag.tenant_id == Tag.tenant_id, MemberTag.tag_id == Tag.id).scalar_subquery())
    stmt = select(Tag, count).where(Tag.tenant_id == actor.tenant_id)
    if group_id is not None:
        stmt = stmt.where(Tag.group_id == group_id)
    return [(t, n) for t, n in (await session.execute(stmt.order_by(Tag.name))).all()]


async def add_synonym(session: AsyncSession, actor: Actor, data: SynonymCreate) -> TagSynonym:
    actor.require("members:write")
    if (await session.exec(select(TagSynonym).where(TagSynonym.tenant_id == actor.tenant_id,
                                                    TagSynonym.synonym == data.synonym))).first():
        raise Conflict(f"synonym {data.synonym!r} is already mapped", code="synonym_exists", field="synonym")
    synonym = TagSynonym(tenant_id=actor.tenant_id, **data.model_dump())
    session.add(synonym)
    await session.flush()
    audit.record(session, "tag_synonym.create", "tag_synonym", synonym.id, after=data.model_dump())
    return synonym


async def list_synonyms(session: AsyncSession, actor: Actor) -> list[TagSynonym]:
    actor.require("members:read")
    stmt = select(TagSynonym).where(TagSynonym.tenant_id == actor.tenant_id).order_by(TagSynonym.tag_name)
    return list((await session.exec(stmt)).all())


async def synonym_map(session: AsyncSession, tenant_id: UUID) -> dict[str, str]:
    rows = (await session.exec(select(TagSynonym).where(TagSynonym.tenant_id == tenant_id))).all()
    return {r.synonym: r.tag_name for r in rows}


# ---------------------------------------------------------------- custom field definitions


async def list_field_definitions(session: AsyncSession, actor: Actor) -> list[CustomFieldDefinition]:
    actor.require("members:read")
    return await _definitions(session, actor.tenant_id)


async def create_field_definition(session: AsyncSession, actor: Actor, data: FieldDefinitionCreate):
    actor.require("members:write")
    options = [o.model_dump() for o in data.options]
    for option in options:
        option["label"] = option["label"] or option["value"]
    fields.validate_definition(data.type, options, data.min_value, data.max_value)
    if (await session.exec(select(CustomFieldDefinition).where(CustomFieldDefinition.tenant_id == actor.tenant_id,
                                                               CustomFieldDefinition.key == data.key))).first():
        raise Conflict(f"field {data.key!r} exists", code="field_exists", field="key")
    definition = CustomFieldDefinition(tenant_id=actor.tenant_id, **data.model_dump(exclude={"options"}),
                                       options=options)
    session.add(definition)
    await session.flush()
    audit.record(session, "member_field.create", "member_field", definition.id, after=data.model_dump())
    return definition


async def update_field_definition(session: AsyncSession, actor: Actor, definition_id: UUID,
                                  data: FieldDefinitionUpdate) -> CustomFieldDefinition:
    actor.require("members:write")
    definition = await session.get(CustomFieldDefinition, (actor.tenant_id, definition_id))
    if definition is None:
        raise NotFound("member field not found", code="member_field_not_found")
    before = audit.snapshot(definition)
    changes = data.model_dump(exclude_unset=True)
    if "options" in changes:
        options = [o.model_dump() for o in data.options or []]
        for option in options:
            option["label"] = option["label"] or option["value"]
        dropped = {o["value"] for o in definition.options} - {o["value"] for o in options}
        if dropped:
            raise Conflict(f"option {sorted(dropped)[0]!r} is in use by history; retire it instead of removing it",
                           code="option_removed", field="options")
        changes["options"] = options
    merged = {**audit.snapshot(definition), **changes}
    fields.validate_definition(definition.type, merged["options"], merged["min_value"], merged["max_value"])
    for key, value in changes.items():
        setattr(definition, key, value)
    session.add(definition)
    await session.flush()
    audit.record(session, "member_field.update", "member_field", definition.id, before=before, after=changes)
    return definition


# ---------------------------------------------------------------- search


def _local_midnight(day: date, *, next_day: bool = False) -> datetime:
    """The start of `day` (or of the day after) in the chain's default time zone: "a day" is a local
    day, not a UTC one. Clamped to years that survive the conversion to UTC at either end."""
    day = min(max(day, date(1900, 1, 1)), date(9998, 12, 31))
    return datetime.combine(day + timedelta(days=1 if next_day else 0), time.min, tzinfo=ZoneInfo(DEFAULT_TIMEZONE))


@dataclass(frozen=True)
class MemberFilter:
    """What the member list and the export filter on."""

    q: str | None = None
    tags: list[str] | None = None
    tag_mode: str = "any"
    store_id: UUID | None = None
    owner_staff_id: UUID | None = None
    last_visit_from: date | None = None
    last_visit_to: date | None = None
    status: str = MemberStatus.ACTIVE

    def for_audit(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [])}


async def search_members(
    session: AsyncSession,
    actor: Actor,
    params: PageParams,
    *,
    q: str | None = None,
    tags: list[str] | None = None,
    tag_mode: str = "any",
    store_id: UUID | None = None,
    owner_staff_id: UUID | None = None,
    last_visit_from: date | None = None,
    last_visit_to: date | None = None,
    status: str = MemberStatus.ACTIVE,
) -> tuple[list[MemberSummary], str | None]:
    actor.require("members:read")
    stmt = select(Member).where(Member.tenant_id == actor.tenant_id, Member.status == status)
    if q:
        q = q.strip()
        phone = normalize_phone(q)
        if phone is not None:
            stmt = stmt.where(Member.phone_index == crypto.blind_index(phone, purpose="phone"))
        elif q.isascii() and q.replace(" ", "").isalpha():
            key = q.replace(" ", "").lower()
            stmt = stmt.where(or_(prefix_range(Member.pinyin_initials, key), prefix_range(Member.pinyin_full, key)))
        else:
            stmt = stmt.where(prefix_range(Member.name, q))
    if tags:
        tag_ids = list((await _tag_ids(session, actor.tenant_id, tags, create=False)).values())
        if len(tag_ids) < (len(set(tags)) if tag_mode == "all" else 1):
            return [], None
        def has_tag(ids: list[UUID]):
            return (select(MemberTag.member_id).where(MemberTag.tenant_id == Member.tenant_id,
                                                      MemberTag.member_id == Member.id,
                                                      MemberTag.tag_id.in_(ids)).exists())

        # One EXISTS per required tag lets PostgreSQL walk members newest-first and probe the
        # (tenant, member, tag) key, instead of grouping every link of every tag.
        for condition in ([has_tag([t]) for t in tag_ids] if tag_mode == "all" else [has_tag(tag_ids)]):
            stmt = stmt.where(condition)
    if store_id is not None:
        stmt = stmt.where(Member.home_store_id == store_id)
    if owner_staff_id is not None:
        stmt = stmt.where(Member.owner_staff_id == owner_staff_id)
    if last_visit_from is not None:
        stmt = stmt.where(Member.last_visit_at >= _local_midnight(last_visit_from))
    if last_visit_to is not None:
        stmt = stmt.where(Member.last_visit_at < _local_midnight(last_visit_to, next_day=True))
    rows, cursor = await paginate(session, stmt, Member.id, params, descending=True)
    tag_map = await _tags_of(session, actor.tenant_id, [m.id for m in rows])
    contact = policies.can_see_contact(actor)
    return [MemberSummary(id=m.id, name=m.name, phone=_phone_shown(m, contact), gender=m.gender,
                          birthday=m.birthday, tags=tag_map[m.id], home_store_id=m.home_store_id,
                          owner_staff_id=m.owner_staff_id, last_visit_at=m.last_visit_at, status=m.status)
            for m in rows], cursor


# ---------------------------------------------------------------- family groups


async def _family_out(session: AsyncSession, family: FamilyGroup) -> FamilyOut:
    rows = (await session.exec(select(Member).where(Member.tenant_id == family.tenant_id,
                                                    Member.family_group_id == family.id).order_by(Member.id))).all()
    return FamilyOut(id=family.id, name=family.name, head_member_id=family.head_member_id,
                     members=[{"member_id": m.id, "name": m.name, "role": m.family_role,
                               "relation": m.family_relation} for m in rows])


async def create_family(session: AsyncSession, actor: Actor, data: FamilyCreate) -> FamilyOut:
    actor.require("members:write")
    head = await _get(session, actor, data.head_member_id, for_update=True)
    _require_active(head)
    if head.family_group_id is not None:
        raise Conflict("this member already belongs to a family", code="already_in_family",
                       family_id=str(head.family_group_id))
    family = FamilyGroup(tenant_id=actor.tenant_id, name=data.name, head_member_id=head.id)
    session.add(family)
    await session.flush()
    head.family_group_id, head.family_role, head.family_relation = family.id, "head", "self"
    session.add(head)
    await session.flush()
    audit.record(session, "family.create", "family", family.id, head=str(head.id), name=data.name)
    return await _family_out(session, family)


async def _family(session: AsyncSession, actor: Actor, family_id: UUID) -> FamilyGroup:
    family = await session.get(FamilyGroup, (actor.tenant_id, family_id))
    if family is None:
        raise NotFound("family not found", code="family_not_found")
    return family


async def get_family(session: AsyncSession, actor: Actor, family_id: UUID) -> FamilyOut:
    if actor.kind == "patient":
        own = await session.get(Member, (actor.tenant_id, actor.id))
        if own is None or own.family_group_id != family_id:
            raise NotFound("family not found", code="family_not_found")
    else:
        actor.require("members:read")
    return await _family_out(session, await _family(session, actor, family_id))


async def add_family_member(session: AsyncSession, actor: Actor, family_id: UUID, data: FamilyMemberAdd) -> FamilyOut:
    actor.require("members:write")
    family = await _family(session, actor, family_id)
    member = await _get(session, actor, data.member_id, for_update=True)
    _require_active(member)
    if member.family_group_id is not None:
        raise Conflict("this member already belongs to a family", code="already_in_family",
                       family_id=str(member.family_group_id))
    member.family_group_id, member.family_role, member.family_relation = family.id, "member", data.relation
    session.add(member)
    await session.flush()
    audit.record(session, "family.add_member", "family", family.id, member=str(member.id), relation=data.relation)
    return await _family_out(session, family)


async def remove_family_member(session: AsyncSession, actor: Actor, family_id: UUID, member_id: UUID) -> FamilyOut:
    actor.require("members:write")
    family = await _family(session, actor, family_id)
    member = await _get(session, actor, member_id, for_update=True)
    if member.family_group_id != family.id:
        raise NotFound("this member is not in the family", code="not_in_family")
    if member.id == family.head_member_id:
        raise Conflict("the head cannot leave; make another member head first", code="family_head")
    member.family_group_id = member.family_role = member.family_relation = None
    session.add(member)
    await session.flush()
    audit.record(session, "family.remove_member", "family", family.id, member=str(member.id))
    return await _family_out(session, family)


async def family_member_ids(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> set[UUID]:
    """The member and everyone in their family group (cards shareable with the family use this)."""
    member = await session.get(Member, (tenant_id, member_id))
    if member is None or member.family_group_id is None:
        return {member_id}
    rows = (await session.exec(select(Member.id).where(Member.tenant_id == tenant_id,
                                                       Member.family_group_id == member.family_group_id))).all()
    return set(rows) | {member_id}


# ---------------------------------------------------------------- notes and timeline


async def add_note(session: AsyncSession, actor: Actor, member_id: UUID, data: NoteCreate) -> MemberNote:
    actor.require("members:write")
    member = await _get(session, actor, member_id)
    _require_active(member)
    note = MemberNote(tenant_id=actor.tenant_id, member_id=member.id, author_type=actor.kind, author_id=actor.id,
                      body=data.body)
    session.add(note)
    await session.flush()
    audit.record(session, "member.note", "member", member.id, note_id=str(note.id))
    return note


def before_clause(ts_column, id_column, before: tuple[datetime, str] | None, prefix: str):
    """Keyset condition for timeline sources: rows strictly older than the cursor (time, then id)."""
    if before is None:
        return True
    return or_(ts_column < before[0],
               and_(ts_column == before[0], func.concat(prefix, func.cast(id_column, Text)) < before[1]))


@timeline_source("note", patient_visible=False)
async def _notes_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                          before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    stmt = select(MemberNote).where(MemberNote.tenant_id == tenant_id, MemberNote.member_id == member_id)
    if before is not None:
        stmt = stmt.where(before_clause(MemberNote.created_at, MemberNote.id, before, "note:"))
    rows = (await session.exec(stmt.order_by(MemberNote.created_at.desc(), MemberNote.id.desc()).limit(limit))).all()
    return [TimelineItem(type="note", occurred_at=n.created_at, id=f"note:{n.id}", title="备注",
                         data={"body": n.body, "author_type": n.author_type,
                               "author_id": str(n.author_id) if n.author_id else None}) for n in rows]


@timeline_source("member")
async def _member_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                           before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    member = await session.get(Member, (tenant_id, member_id))
    if member is None or member.created_at is None:
        return []
    item = TimelineItem(type="member", occurred_at=member.created_at, id=f"member:{member.id}", title="建档",
                        data={"source_channel": member.source_channel})
    if before is not None and (item.occurred_at, item.id) >= before:
        return []
    return [item]


def _encode_timeline_cursor(item: TimelineItem) -> str:
    raw = json.dumps([item.occurred_at.isoformat(), item.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_timeline_cursor(cursor: str) -> tuple[datetime, str]:
    def convert(value: Any) -> tuple[datetime, str]:
        ts, item_id = value
        return datetime.fromisoformat(ts), str(item_id)

    return decode_cursor(cursor, convert)


async def timeline(session: AsyncSession, actor: Actor, member_id: UUID, params: PageParams,
                   types: list[str] | None = None) -> tuple[list[TimelineItem], str | None]:
    """Every source's items for the member, newest first, merged into one keyset-paginated list."""
    if actor.kind != "patient":
        actor.require("members:read")
    member = await _get(session, actor, member_id)
    unknown = set(types or []) - set(TIMELINE_SOURCES)
    if unknown:
        raise BadRequest(f"unknown timeline type {sorted(unknown)[0]!r}; known: {', '.join(sorted(TIMELINE_SOURCES))}",
                         code="unknown_timeline_type")
    before = _decode_timeline_cursor(params.cursor) if params.cursor else None
    items: list[TimelineItem] = []
    patient = actor.kind == "patient"
    for name, source in TIMELINE_SOURCES.items():
        if (types and name not in types) or (patient and name in PATIENT_HIDDEN_SOURCES):
            continue
        found = await source(session, actor.tenant_id, member.id, before, params.limit + 1)
        hidden = PATIENT_HIDDEN_KEYS.get(name) if patient else None
        if hidden:
            found = [i.model_copy(update={"data": {k: v for k, v in i.data.items() if k not in hidden}})
                     for i in found]
        items.extend(found)
    items.sort(key=lambda i: (i.occurred_at, i.id), reverse=True)
    page = items[: params.limit]
    next_cursor = _encode_timeline_cursor(page[-1]) if len(items) > params.limit else None
    return page, next_cursor


# ---------------------------------------------------------------- privacy: access requests and erasure


async def export_member_data(session: AsyncSession, actor: Actor, member_id: UUID) -> dict[str, Any]:
    """Everything held about one member (a PIPL access request), health data included."""
    actor.require("members:export", "members.contact:read")
    member = await _get(session, actor, member_id)
    if not await policies.can_see_health(session, actor, member):
        raise Forbidden("an export holds the member's health data, which you may not see", code="permission_denied")
    profile = await present(session, actor, member, audit_reads=False)
    profile_data = profile.model_dump(mode="json")
    profile_data["health"] = HealthOut(**{c: getattr(member, c) for c in HEALTH_COLUMNS}).model_dump(mode="json")
    profile_data["custom_fields"] = member.custom_fields
    notes = (await session.exec(select(MemberNote).where(MemberNote.tenant_id == actor.tenant_id,
                                                         MemberNote.member_id == member.id)
                                .order_by(MemberNote.created_at))).all()
    items, _ = await timeline(session, actor, member.id, PageParams(limit=200))
    audit.record(session, "member.export", "member", member.id)
    return {"exported_at": utcnow().isoformat(), "member": profile_data,
            "notes": [{"body": n.body, "created_at": n.created_at.isoformat()} for n in notes],
            "timeline": [i.model_dump(mode="json") for i in items]}


async def _dissolve_headed_family(session: AsyncSession, tenant_id: UUID, head_id: UUID) -> None:
    """Remove the family a departing member headed alone (callers refuse heads with others in it)."""
    await session.execute(delete(FamilyGroup).where(FamilyGroup.tenant_id == tenant_id,
                                                    FamilyGroup.head_member_id == head_id))


PERSONAL_COLUMNS = ("phone_encrypted", "phone_index", "phone_masked", "id_number_encrypted", "id_number_index",
                    "id_number_masked", "gender", "birthday", "address", "notes", "allergy_history", "past_history",
                    "family_history", "health_summary", "family_group_id", "family_role", "family_relation",
                    "external_ref", "source_channel")


def _scrub(member: Member) -> None:
    """Remove the personal data from one row; the row, and every ledger pointing at it, stays."""
    member.name = ERASED_NAME
    member.pinyin_initials = member.pinyin_full = ""
    for column in PERSONAL_COLUMNS:
        setattr(member, column, None)
    member.constitution = []
    member.custom_fields = {}
    member.erased_at = member.updated_at = utcnow()


async def _folded_into(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> list[Member]:
    """Every record merged into the member, directly or into one merged into it (A into B, B into C)."""
    folded: list[Member] = []
    targets = [member_id]
    while targets:
        rows = (await session.exec(select(Member).where(Member.tenant_id == tenant_id,
                                                        Member.merged_into_id.in_(targets))
                                   .with_for_update())).all()
        folded += rows
        targets = [row.id for row in rows]
    return folded


async def erase_member(session: AsyncSession, actor: Actor, member_id: UUID, reason: str) -> Member:
    """Anonymise personal data; keep the row (and so every ledger, order and total that points at it)."""
    actor.require("members:erase")
    member = await _get(session, actor, member_id, for_update=True)
    if member.status == MemberStatus.ERASED:
        raise Conflict("this member was already erased", code="member_erased")
    if member.family_group_id is not None and member.family_role == "head":
        others = await family_member_ids(session, actor.tenant_id, member.id)
        if len(others) > 1:
            raise Conflict("make another family member head before erasing this one", code="family_head")
    # Records merged into this one (also through earlier merges) hold the same person's data.
    rows = [member, *await _folded_into(session, actor.tenant_id, member.id)]
    for row in rows:
        _scrub(row)
    member.status = MemberStatus.ERASED
    session.add_all(rows)
    ids = [row.id for row in rows]
    await session.execute(update(MemberNote).where(MemberNote.tenant_id == actor.tenant_id,
                                                   MemberNote.member_id.in_(ids)).values(body="[已删除]"))
    await session.execute(delete(MemberTag).where(MemberTag.tenant_id == actor.tenant_id,
                                                  MemberTag.member_id.in_(ids)))
    await _dissolve_headed_family(session, actor.tenant_id, member.id)
    await session.flush()
    audit.record(session, "member.erase", "member", member.id, reason=reason)
    await emit(session, "member.erased", {"member_id": str(member.id)})
    return member


# ---------------------------------------------------------------- duplicates and merge


async def find_duplicates(session: AsyncSession, actor: Actor, limit: int = 100) -> list[dict[str, Any]]:
    """Likely duplicates: same name and birthday, or the same ID number."""
    actor.require("members:read")
    rows = (await session.execute(text(
        """
        SELECT a.id AS a, b.id AS b, 'same_name_birthday' AS reason FROM members a
          JOIN members b ON b.tenant_id = a.tenant_id AND b.name = a.name AND b.birthday = a.birthday AND b.id > a.id
         WHERE a.tenant_id = :t AND a.status = 'active' AND b.status = 'active'
        UNION ALL
        SELECT a.id, b.id, 'same_id_number' FROM members a
          JOIN members b ON b.tenant_id = a.tenant_id AND b.id_number_index = a.id_number_index AND b.id > a.id
         WHERE a.tenant_id = :t AND a.status = 'active' AND b.status = 'active'
        LIMIT :limit
        """), {"t": actor.tenant_id, "limit": limit})).all()
    return [{"member_ids": [str(r.a), str(r.b)], "reason": r.reason} for r in rows]


@merge_mover("members")
async def _move_member_rows(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID,
                            survivor_id: UUID) -> dict[str, int]:
    # A tag of an exclusive group (e.g. VIP level) the survivor already holds one of stays behind.
    tags = await session.execute(text(
        "INSERT INTO member_tags (tenant_id, member_id, tag_id, source, created_at) "
        "SELECT d.tenant_id, :s, d.tag_id, d.source, d.created_at FROM member_tags d "
        "  JOIN tags t ON t.tenant_id = d.tenant_id AND t.id = d.tag_id "
        "  LEFT JOIN tag_groups g ON g.tenant_id = t.tenant_id AND g.id = t.group_id AND g.exclusive "
        " WHERE d.tenant_id = :t AND d.member_id = :d AND NOT EXISTS ("
        "   SELECT 1 FROM member_tags s JOIN tags st ON st.tenant_id = s.tenant_id AND st.id = s.tag_id "
        "    WHERE s.tenant_id = :t AND s.member_id = :s AND st.group_id = g.id) "
        "ON CONFLICT DO NOTHING"), {"t": tenant_id, "s": survivor_id, "d": duplicate_id})
    await session.execute(delete(MemberTag).where(MemberTag.tenant_id == tenant_id,
                                                  MemberTag.member_id == duplicate_id))
    notes = await session.execute(update(MemberNote).where(MemberNote.tenant_id == tenant_id,
                                                           MemberNote.member_id == duplicate_id)
                                  .values(member_id=survivor_id))
    referrals = await session.execute(update(Member).where(Member.tenant_id == tenant_id,
                                                           Member.referrer_id == duplicate_id,
                                                           Member.id != survivor_id)
                                      .values(referrer_id=survivor_id))
    return {"tags": tags.rowcount, "notes": notes.rowcount, "referrals": referrals.rowcount}


async def merge_members(session: AsyncSession, actor: Actor, survivor_id: UUID, duplicate_id: UUID,
                        reason: str | None) -> dict[str, Any]:
    """Fold `duplicate` into `survivor`: every context moves its rows; the duplicate stays as a pointer."""
    actor.require("members:merge")
    if survivor_id == duplicate_id:
        raise Unprocessable("a member cannot be merged into itself", code="validation_error", field="duplicate_id")
    # Lock both in a fixed order so two opposite merges cannot deadlock.
    first, second = sorted([survivor_id, duplicate_id], key=str)
    rows = {m.id: m for m in [await _get(session, actor, first, for_update=True),
                              await _get(session, actor, second, for_update=True)]}
    survivor, duplicate = rows[survivor_id], rows[duplicate_id]
    for member in (survivor, duplicate):
        if member.status != MemberStatus.ACTIVE:
            raise Conflict(f"member {member.id} is {member.status}", code="member_inactive")
    if duplicate.family_role == "head" and len(await family_member_ids(session, actor.tenant_id, duplicate.id)) > 1:
        raise Conflict("the duplicate heads a family; make another member head first", code="family_head")
    moved: dict[str, Any] = {}
    for name, mover in MERGE_MOVERS.items():
        moved[name] = await mover(session, actor.tenant_id, duplicate.id, survivor.id)
    # Fill the survivor's gaps from the duplicate; the survivor's own values win.
    for column in ("gender", "birthday", "address", "source_channel", "referrer_id", "owner_staff_id",
                   "home_store_id", "notes", "allergy_history", "past_history", "family_history", "health_summary",
                   "id_number_encrypted", "id_number_index", "id_number_masked"):
        if getattr(survivor, column) is None and getattr(duplicate, column) is not None:
            setattr(survivor, column, getattr(duplicate, column))
    if survivor.referrer_id in (survivor.id, duplicate.id):  # one referred the other: now one person
        survivor.referrer_id = None
    survivor.constitution = survivor.constitution or duplicate.constitution
    survivor.custom_fields = {**duplicate.custom_fields, **survivor.custom_fields}
    if survivor.last_visit_at is None or (duplicate.last_visit_at and duplicate.last_visit_at > survivor.last_visit_at):
        survivor.last_visit_at = duplicate.last_visit_at
    survivor.updated_at = utcnow()
    duplicate.status, duplicate.merged_into_id = MemberStatus.MERGED, survivor.id
    duplicate.phone_index = None  # the phone is free again; the duplicate keeps its encrypted copy for the record
    duplicate.family_group_id = duplicate.family_role = duplicate.family_relation = None
    session.add_all([survivor, duplicate])
    await session.flush()
    await _dissolve_headed_family(session, actor.tenant_id, duplicate.id)
    audit.record(session, "member.merge", "member", survivor.id, duplicate=str(duplicate.id), moved=moved,
                 reason=reason)
    await emit(session, "member.merged", {"member_id": str(survivor.id), "duplicate_id": str(duplicate.id)})
    return {"survivor_id": str(survivor.id), "duplicate_id": str(duplicate.id), "moved": moved}


# ---------------------------------------------------------------- key rotation


async def reencrypt_batch(session: AsyncSession, tenant_id: UUID, batch: int = 500) -> int:
    """Re-encrypt up to `batch` members whose phone or ID number uses an older key; returns how many."""
    keys = crypto.field_keys()
    prefix = keys.active_kid + ":"
    stale_phone = and_(Member.phone_encrypted.is_not(None), ~Member.phone_encrypted.startswith(prefix))
    stale_id = and_(Member.id_number_encrypted.is_not(None), ~Member.id_number_encrypted.startswith(prefix))
    stmt = (select(Member).where(Member.tenant_id == tenant_id, or_(stale_phone, stale_id))
            .limit(batch).with_for_update(skip_locked=True))
    rows = (await session.exec(stmt)).all()
    for member in rows:
        member.phone_encrypted = crypto.encrypt(crypto.decrypt(member.phone_encrypted))
        member.id_number_encrypted = crypto.encrypt(crypto.decrypt(member.id_number_encrypted))
        session.add(member)
    await session.flush()
    return len(rows)


async def touch_last_visit(session: AsyncSession, tenant_id: UUID, member_id: UUID, at: datetime) -> None:
    """Record a visit time (completed services call this); never moves the last visit back."""
    await session.execute(update(Member).where(
        Member.tenant_id == tenant_id, Member.id == member_id,
        or_(Member.last_visit_at.is_(None), Member.last_visit_at < at)).values(last_visit_at=at))


# ---------------------------------------------------------------- bulk creation (imports)


async def create_members_bulk(session: AsyncSession, actor: Actor, items: list[tuple[MemberCreate, str | None]],
                              *, tag_source: str = "manual") -> list[Member]:
    """Create many members (data, external_ref) at once, as create_member would one by one — same checks,
    an audit entry and a member.created event each — but with one query per lookup for the whole batch
    instead of several per member. The first bad member raises; run it in a savepoint to keep the rest."""
    from app.domain.iam.models import Staff

    actor.require("members:write")
    definitions = await _definitions(session, actor.tenant_id)
    if any(_writes_health(data, definitions) for data, _ in items):
        await policies.require_health_write(session, actor, None)
    await tenancy.require_stores_exist(session, actor.tenant_id, {d.home_store_id for d, _ in items} - {None})
    for model, column, wanted in ((Staff, "owner_staff_id", {d.owner_staff_id for d, _ in items} - {None}),
                                  (Member, "referrer_id", {d.referrer_id for d, _ in items} - {None})):
        found = set(await session.exec(select(model.id).where(model.tenant_id == actor.tenant_id,
                                                              model.id.in_(wanted)))) if wanted else set()
        if wanted - found:
            raise Unprocessable(f"{column}: no such {'staff member' if model is Staff else 'member'}",
                                code="validation_error", field=column)
    members: list[Member] = []
    for data, external_ref in items:
        members.append(_new_member(actor, data, definitions, external_ref))
    indexes = [m.phone_index for m in members]
    taken = (await session.execute(text(
        "SELECT id FROM members WHERE tenant_id = :t AND phone_index = ANY(CAST(:indexes AS text[])) LIMIT 1"),
        {"t": actor.tenant_id, "indexes": indexes})).first()
    if taken is not None or len(set(indexes)) != len(indexes):
        raise Conflict("a phone number already belongs to a member", code="member_phone_exists", field="phone",
                       existing_member_id=str(taken.id) if taken else None)
    session.add_all(members)
    await session.flush()
    links = [(m.id, tag) for m, (data, _) in zip(members, items, strict=True) for tag in data.tags]
    if links:
        tag_ids = await _tag_ids(session, actor.tenant_id, sorted({tag for _, tag in links}), create=True)
        await session.execute(
            text("INSERT INTO member_tags (tenant_id, member_id, tag_id, source, created_at) "
                 "SELECT :t, m, g, :s, now() FROM unnest(CAST(:members AS uuid[]), CAST(:tags AS uuid[])) AS x(m, g) "
                 "ON CONFLICT DO NOTHING"),
            {"t": actor.tenant_id, "s": tag_source, "members": [m for m, _ in links],
             "tags": [tag_ids[tag] for _, tag in links]})
    for member, (data, _) in zip(members, items, strict=True):
        audit.record(session, "member.create", "member", member.id, fields=_audit_fields(data))
        await emit(session, "member.created", {"member_id": str(member.id), "home_store_id":
                                               str(member.home_store_id) if member.home_store_id else None})
    return members
