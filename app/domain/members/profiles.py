"""Member profiles: presenting one as the caller may see it, creating (one by one or many at once) and
updating them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import or_, text, update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.events import emit
from app.domain.iam import service as iam
from app.domain.members import custom_fields as fields
from app.domain.members import policies
from app.domain.members.events import MEMBER_CREATED
from app.domain.members.loading import (
    HEALTH_READ,
    FieldFlags,
    definitions_of,
    health_keys,
    load_member,
    load_member_view,
    phone_shown,
    require_active,
    tags_by_member,
)
from app.domain.members.models import CustomFieldDefinition, Member
from app.domain.members.normalize import (
    contact_key,
    mask_id_number,
    mask_phone,
    normalize_id_number,
    normalize_other_phone,
    normalize_phone,
    pinyin_keys,
)
from app.domain.members.schemas import (
    FamilyRef,
    HealthFields,
    HealthOut,
    HealthSharing,
    MemberCreate,
    MemberOut,
    MemberUpdate,
)
from app.domain.members.tags import set_tags, tag_ids
from app.domain.tenancy import service as tenancy

HEALTH_COLUMNS = ("allergy_history", "past_history", "family_history", "constitution", "health_summary")

# ---------------------------------------------------------------- loading and presenting


async def get_member_row(session: AsyncSession, actor: Actor, member_id: UUID, *, for_update: bool = False,
                         snapshot: bool = False) -> Member:
    """For other contexts: the member, if the actor may reach it (404 otherwise); a `snapshot` for a caller
    that only reads it (one prepared statement; changes to it are not saved)."""
    if actor.kind != "patient":
        actor.require("members:read")
    return await load_member(session, actor, member_id, for_update=for_update, snapshot=snapshot)


def _hidden_fields(definitions: list[CustomFieldDefinition] | list[FieldFlags], health: bool) -> set[str]:
    """Custom fields not shown: deactivated ones (values kept, not in use) and, without health access,
    health-flagged ones."""
    hidden = {d.key for d in definitions if not d.active}
    return hidden if health else hidden | health_keys(definitions)


async def present(session: AsyncSession, actor: Actor, member: Member, *, audit_reads: bool = True) -> MemberOut:
    definitions = await definitions_of(session, actor.tenant_id)
    tags = (await tags_by_member(session, actor.tenant_id, [member.id]))[member.id]
    return await _present(session, actor, member, tags, definitions, audit_reads=audit_reads)


async def _present(session: AsyncSession, actor: Actor, member: Member, tags: list[str],
                   definitions: list[CustomFieldDefinition] | list[FieldFlags], *, audit_reads: bool) -> MemberOut:
    contact = policies.can_see_contact(actor)
    health = await policies.can_see_health(session, actor, member)
    hidden = _hidden_fields(definitions, health)
    if health and audit_reads and not (actor.kind == "patient" and actor.id == member.id):
        await audit.record_read(session, HEALTH_READ, "member", member.id)
    return MemberOut(
        id=member.id, name=member.name, phone=phone_shown(member, contact), phone_masked=not contact,
        other_phone=(crypto.decrypt(member.other_phone_encrypted) if contact else member.other_phone_masked)
        if member.other_phone_encrypted else None,
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
        health_visible=health, health_shared_with_family=member.share_health_with_family,
        status=member.status, merged_into_id=member.merged_into_id,
        last_visit_at=member.last_visit_at, created_at=member.created_at, updated_at=member.updated_at,
    )


async def get_member(session: AsyncSession, actor: Actor, member_id: UUID) -> MemberOut:
    if actor.kind != "patient":
        actor.require("members:read")
    # Staff who see every member's health data are known to see this one's before it is loaded: the
    # statement that loads it records the read too (one round trip less on the hottest audited read).
    health_read_known = actor.kind != "patient" and policies.sees_all_health(actor)
    member, tags, fields = await load_member_view(session, actor, member_id, record_health_read=health_read_known)
    return await _present(session, actor, member, tags, fields, audit_reads=not health_read_known)


# ---------------------------------------------------------------- writing


def _set_phone(member: Member, raw: str) -> None:
    normalized = normalize_phone(raw)
    if normalized is None:
        raise Unprocessable("phone: not a valid phone number (mainland mobile or +country number)",
                            code="validation_error", field="phone")
    member.phone_encrypted = crypto.encrypt(normalized)
    member.phone_index = crypto.blind_index(normalized, purpose="phone")
    member.phone_masked = mask_phone(normalized)


def _set_other_phone(member: Member, raw: str | None) -> None:
    """The second contact (a landline, or a mobile that is not the member's main one); empty clears it."""
    if raw is None or not raw.strip():
        member.other_phone_encrypted = member.other_phone_index = member.other_phone_masked = None
        return
    normalized = normalize_phone(raw) or normalize_other_phone(raw)
    if normalized is None:
        raise Unprocessable("other_phone: not a phone number (a landline such as 021-64381234, or a mobile)",
                            code="validation_error", field="other_phone")
    member.other_phone_encrypted = crypto.encrypt(normalized)
    member.other_phone_index = other_phone_index(normalized)
    member.other_phone_masked = mask_phone(normalized)


def other_phone_index(normalized: str) -> str | None:
    """The blind index of a normalised second contact (a landline's digits without the extension)."""
    return crypto.blind_index(contact_key(normalized), purpose="phone")


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
    if data.home_store_id is not None:
        try:
            await tenancy.require_stores_exist(session, actor.tenant_id, {data.home_store_id})
        except NotFound as exc:  # a bad reference in the body is bad input, named like the others
            raise Unprocessable("home_store_id: no such store", code="validation_error",
                                field="home_store_id") from exc
    if data.owner_staff_id is not None and await iam.staff_row(session, actor.tenant_id, data.owner_staff_id) is None:
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


def _writes_health(data: MemberCreate | MemberUpdate, definitions: list[CustomFieldDefinition]) -> bool:
    return data.health is not None or bool(health_keys(definitions) & set(data.custom_fields or {}))


def _audit_fields(data: MemberCreate | MemberUpdate) -> list[str]:
    """The names of the fields a write set, for the audit log — never their values: the log is
    append-only, so personal data written into it would outlive the member's erasure."""
    names = set(data.model_fields_set) - {"health", "custom_fields"}
    names |= {f"health.{k}" for k in (data.health.model_fields_set if data.health else ())}
    names |= {f"custom_fields.{k}" for k in data.custom_fields or {}}
    return sorted(names)


async def _announce_created(session: AsyncSession, member: Member, data: MemberCreate) -> None:
    audit.record(session, "member.create", "member", member.id, fields=_audit_fields(data))
    await emit(session, MEMBER_CREATED, {"member_id": str(member.id), "home_store_id":
                                         str(member.home_store_id) if member.home_store_id else None})


def _new_member(actor: Actor, data: MemberCreate, definitions: list[CustomFieldDefinition],
                external_ref: str | None) -> Member:
    """The unsaved row for `data`: contact data encrypted, custom fields validated."""
    member = Member(tenant_id=actor.tenant_id, name="", external_ref=external_ref,
                    **data.model_dump(include={"gender", "birthday", "address", "source_channel", "referrer_id",
                                               "owner_staff_id", "home_store_id", "notes"}))
    _set_name(member, data.name)
    if data.phone is None and not data.other_phone:  # an imported row may hold only a landline
        raise Unprocessable("phone: a member needs a phone number", code="validation_error", field="phone")
    if data.phone is not None:
        _set_phone(member, data.phone)
    _set_other_phone(member, data.other_phone)
    _set_id_number(member, data.id_number)
    if data.health is not None:
        _apply_health(member, data.health)
    member.custom_fields = fields.validate_values(definitions, data.custom_fields or {}, creating=True)
    member.updated_at = utcnow()
    return member


async def create_member(session: AsyncSession, actor: Actor, data: MemberCreate, *, tag_source: str = "manual",
                        external_ref: str | None = None) -> Member:
    actor.require("members:write")
    definitions = await definitions_of(session, actor.tenant_id)
    if _writes_health(data, definitions):
        await policies.require_health_write(session, actor, None)
    return await _insert_member(session, actor, data, definitions, tag_source=tag_source, external_ref=external_ref)


async def add_member(session: AsyncSession, actor: Actor, data: MemberCreate, *, tag_source: str,
                     external_ref: str | None) -> Member:
    """create_member for a caller that has checked members:write, and members.health:write when `data`
    holds health fields (the import checks both once for the whole file)."""
    definitions = await definitions_of(session, actor.tenant_id)
    return await _insert_member(session, actor, data, definitions, tag_source=tag_source, external_ref=external_ref)


async def _insert_member(session: AsyncSession, actor: Actor, data: MemberCreate,
                         definitions: list[CustomFieldDefinition], *, tag_source: str,
                         external_ref: str | None) -> Member:
    await _check_refs(session, actor, data)
    member = _new_member(actor, data, definitions, external_ref)
    existing = await find_by_phone(session, actor.tenant_id, data.phone)
    if existing is not None:
        raise Conflict("this phone number already belongs to a member", code="member_phone_exists",
                       field="phone", existing_member_id=str(existing.id))
    session.add(member)
    await session.flush()
    if data.tags:
        await set_tags(session, actor.tenant_id, member.id, add=data.tags, source=tag_source)
    await _announce_created(session, member, data)
    return member


async def _require_update_rights(session: AsyncSession, actor: Actor, member: Member, data: MemberUpdate,
                                 definitions: list[CustomFieldDefinition]) -> None:
    """Profile fields need members:write; health fields (and health-flagged custom fields) need
    members.health:write and, for roles bound to their patients, the member in their care. A therapist
    holds only the latter: they record health data without being able to change the profile."""
    custom = set(data.custom_fields or {})
    profile = data.model_fields_set - {"health", "custom_fields"} or custom - health_keys(definitions)
    health = _writes_health(data, definitions)
    if profile or not health:
        actor.require("members:write")
    if health:
        await policies.require_health_write(session, actor, member)


async def update_member(session: AsyncSession, actor: Actor, member_id: UUID, data: MemberUpdate) -> Member:
    if not actor.can("members.health:write"):  # can change nothing: refuse before looking the member up
        actor.require("members:write")
    member = await load_member(session, actor, member_id, for_update=True)
    require_active(member)
    definitions = await definitions_of(session, actor.tenant_id)
    await _require_update_rights(session, actor, member, data, definitions)
    return await _write_update(session, actor, member, data, definitions)


async def apply_member_update(session: AsyncSession, actor: Actor, member_id: UUID, data: MemberUpdate) -> Member:
    """update_member for a caller that has checked members:write (the import, once for the whole file);
    health fields still need the health rights for this member."""
    member = await load_member(session, actor, member_id, for_update=True)
    require_active(member)
    definitions = await definitions_of(session, actor.tenant_id)
    if _writes_health(data, definitions):
        await policies.require_health_write(session, actor, member)
    return await _write_update(session, actor, member, data, definitions)


async def _write_update(session: AsyncSession, actor: Actor, member: Member, data: MemberUpdate,
                        definitions: list[CustomFieldDefinition]) -> Member:
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
    if "other_phone" in changes:
        _set_other_phone(member, data.other_phone)
    if data.health is not None:
        _apply_health(member, data.health)
    if data.custom_fields is not None:
        member.custom_fields = fields.validate_values(definitions, data.custom_fields, member.custom_fields,
                                                      creating=False)
    if data.tags is not None:
        current = set((await tags_by_member(session, actor.tenant_id, [member.id]))[member.id])
        await set_tags(session, actor.tenant_id, member.id, add=[t for t in data.tags if t not in current],
                       remove=[t for t in current if t not in data.tags])
    member.updated_at = utcnow()
    session.add(member)
    await session.flush()
    audit.record(session, "member.update", "member", member.id, fields=_audit_fields(data))
    return member


async def set_health_sharing(session: AsyncSession, actor: Actor, member_id: UUID, data: HealthSharing) -> Member:
    """Record the member's consent (or its withdrawal) to show their health data to their family's head:
    given by the member themself in the mini-program, or recorded by staff who may write their health data."""
    member = await load_member(session, actor, member_id, for_update=True)
    require_active(member)
    await policies.require_health_sharing_rights(session, actor, member)
    member.share_health_with_family = data.share_with_family
    member.updated_at = utcnow()
    session.add(member)
    await session.flush()
    audit.record(session, "member.health_sharing", "member", member.id, share_with_family=data.share_with_family)
    return member


async def touch_last_visit(session: AsyncSession, tenant_id: UUID, member_id: UUID, at: datetime) -> None:
    """Record a visit time (completed services call this); never moves the last visit back."""
    await session.execute(update(Member).where(
        Member.tenant_id == tenant_id, Member.id == member_id,
        or_(Member.last_visit_at.is_(None), Member.last_visit_at < at)).values(last_visit_at=at))


# ---------------------------------------------------------------- bulk creation (imports)


async def add_members(session: AsyncSession, actor: Actor, items: list[tuple[MemberCreate, str | None]],
                      *, tag_source: str = "manual") -> list[Member]:
    """Create many members (data, external_ref) at once, as add_member would one by one — same checks,
    an audit entry and a member.created event each — but with one query per lookup for the whole batch
    instead of several per member. The first bad member raises; run it in a savepoint to keep the rest.
    Like add_member, for a caller that has checked members:write (and members.health:write for health
    fields)."""
    definitions = await definitions_of(session, actor.tenant_id)
    await tenancy.require_stores_exist(session, actor.tenant_id, {d.home_store_id for d, _ in items} - {None})
    staff = {d.owner_staff_id for d, _ in items} - {None}
    if staff - await iam.existing_staff_ids(session, actor.tenant_id, staff):
        raise Unprocessable("owner_staff_id: no such staff member", code="validation_error", field="owner_staff_id")
    referrers = {d.referrer_id for d, _ in items} - {None}
    found = set(await session.exec(select(Member.id).where(Member.tenant_id == actor.tenant_id,
                                                           Member.id.in_(referrers)))) if referrers else set()
    if referrers - found:
        raise Unprocessable("referrer_id: no such member", code="validation_error", field="referrer_id")
    members: list[Member] = []
    for data, external_ref in items:
        members.append(_new_member(actor, data, definitions, external_ref))
    indexes = [m.phone_index for m in members if m.phone_index is not None]  # landline-only: no index
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
        ids = await tag_ids(session, actor.tenant_id, sorted({tag for _, tag in links}), create=True)
        await session.execute(
            text("INSERT INTO member_tags (tenant_id, member_id, tag_id, source, created_at) "
                 "SELECT :t, m, g, :s, now() FROM unnest(CAST(:members AS uuid[]), CAST(:tags AS uuid[])) AS x(m, g) "
                 "ON CONFLICT DO NOTHING"),
            {"t": actor.tenant_id, "s": tag_source, "members": [m for m, _ in links],
             "tags": [ids[tag] for _, tag in links]})
    for member, (data, _) in zip(members, items, strict=True):
        await _announce_created(session, member, data)
    return members
