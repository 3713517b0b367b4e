"""What patients do to their own record from the mini-program: register (with the privacy policy they
accepted), change their profile, and add a child to their family.

Staff rules do not apply here: a patient acts on themselves only (the actor's id), and the changes they may
make are narrower than `members:write` (no tags, notes, owner or health fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, Forbidden, Unprocessable
from app.core.events import emit
from app.core.ids import new_id
from app.domain.members import policies
from app.domain.members.events import MEMBER_CREATED
from app.domain.members.families import _family_out, found_family
from app.domain.members.loading import definitions_of, load_member, require_active
from app.domain.members.models import FamilyGroup, Member, MemberConsent, MemberStatus
from app.domain.members.normalize import normalize_phone
from app.domain.members.profiles import _announce_created, _set_name, _set_phone, _write_update, find_by_phone
from app.domain.members.schemas import ChildCreate, ConsentOut, FamilyOut, MemberCreate, MemberUpdate, OwnProfileUpdate
from app.domain.tenancy import service as tenancy

PRIVACY_POLICY = "privacy_policy"
# A family group is a household: more than this is a data-entry accident, not a family.
MAX_FAMILY_SIZE = 20


@dataclass(frozen=True)
class SelfRegistration:
    """A mini-program user proven to hold `phone` (WeChat said so) who accepted the privacy policy."""

    phone: str
    name: str
    privacy_policy_version: str
    accepted_at: datetime
    openid: str | None
    source_channel: str | None
    referrer_id: UUID | None


def _patient(actor: Actor) -> None:
    if actor.kind != "patient":
        raise Forbidden("only a patient signed in from the mini-program changes their own record here",
                        code="permission_denied")


async def _lock_phone(session: AsyncSession, tenant_id: UUID, phone_index: str) -> None:
    # Two sign-ups with one phone (a double tap, two phones of one family) queue here until the first commits;
    # the second then finds the member the first created instead of failing on the unique phone index.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                          {"k": f"member_phone:{tenant_id}:{phone_index}"})


async def _usable_referrer(session: AsyncSession, tenant_id: UUID, referrer_id: UUID | None) -> UUID | None:
    """The referrer when it is a live member of the tenant; anything else (a stale or forged share link) is
    ignored: it must not keep someone from registering."""
    if referrer_id is None:
        return None
    referrer = await session.get(Member, (tenant_id, referrer_id))
    return referrer.id if referrer is not None and referrer.status == MemberStatus.ACTIVE else None


async def register_member(session: AsyncSession, tenant_id: UUID, data: SelfRegistration) -> tuple[Member, bool]:
    """The member with this phone, created when there is none: (member, created). Whoever they are, their
    acceptance of the privacy policy version is recorded. An existing member keeps their source and referrer."""
    normalized = normalize_phone(data.phone)
    if normalized is None:
        raise Unprocessable("phone: WeChat gave a number that is not a mainland mobile or +country number",
                            code="validation_error", field="phone_code")
    await _lock_phone(session, tenant_id, crypto.blind_index(normalized, purpose="phone"))
    member = await find_by_phone(session, tenant_id, normalized)
    created = member is None
    if member is None:
        referrer_id = await _usable_referrer(session, tenant_id, data.referrer_id)
        create = MemberCreate(name=data.name, phone=normalized, source_channel=data.source_channel,
                              referrer_id=referrer_id)
        member = Member(tenant_id=tenant_id, name="", source_channel=data.source_channel, referrer_id=referrer_id)
        _set_name(member, create.name)
        _set_phone(member, normalized)
        # Required custom fields are the clinic's to fill in at the first visit, not the patient's at sign-up.
        member.updated_at = utcnow()
        session.add(member)
        await session.flush()
        await _announce_created(session, member, create)
    if member.status == MemberStatus.ACTIVE:
        await record_consent(session, tenant_id, member.id, kind=PRIVACY_POLICY, version=data.privacy_policy_version,
                             accepted_at=data.accepted_at, openid=data.openid)
    return member, created


async def record_consent(session: AsyncSession, tenant_id: UUID, member_id: UUID, *, kind: str, version: str,
                         accepted_at: datetime, openid: str | None, channel: str = "mini_program") -> bool:
    """Record that the member accepted this version of a document; False when they had already (the first
    acceptance is the one kept)."""
    inserted = await session.execute(
        insert(MemberConsent).values(tenant_id=tenant_id, id=new_id(), member_id=member_id, kind=kind,
                                     version=version, accepted_at=accepted_at, channel=channel, openid=openid)
        .on_conflict_do_nothing(index_elements=["tenant_id", "member_id", "kind", "version"])
        .returning(MemberConsent.id))
    if inserted.first() is None:
        return False
    audit.record(session, "member.consent", "member", member_id, kind=kind, version=version, channel=channel)
    return True


async def consents_of(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> list[ConsentOut]:
    """What the member accepted, oldest first."""
    rows = (await session.exec(select(MemberConsent).where(MemberConsent.tenant_id == tenant_id,
                                                           MemberConsent.member_id == member_id)
                               .order_by(MemberConsent.accepted_at, MemberConsent.id))).all()
    return [ConsentOut.model_validate(row) for row in rows]


async def update_own_profile(session: AsyncSession, actor: Actor, data: OwnProfileUpdate) -> Member:
    """The patient changes their own name, gender, birthday or address."""
    _patient(actor)
    member = await load_member(session, actor, actor.id, for_update=True)
    require_active(member)
    changes = MemberUpdate(**data.model_dump(exclude_unset=True))
    return await _write_update(session, actor, member, changes, await definitions_of(session, actor.tenant_id))


async def _today_for(session: AsyncSession, member: Member) -> date:
    store = await tenancy.store_row(session, member.tenant_id, member.home_store_id) if member.home_store_id else None
    return utcnow().astimezone(tenancy.store_zone(store)).date()


async def _own_family(session: AsyncSession, parent: Member) -> FamilyGroup:
    """The family the parent heads, made for them when they have none; 403 when they are in one as a member."""
    if parent.family_group_id is not None:
        if parent.family_role != "head":
            raise Forbidden("only the head of the family adds members to it", code="not_family_head")
        family = await session.get(FamilyGroup, (parent.tenant_id, parent.family_group_id))
        assert family is not None  # the member's foreign key to it
        return family
    return await found_family(session, parent, f"{parent.name}的家庭")


async def add_child(session: AsyncSession, actor: Actor, data: ChildCreate) -> tuple[Member, FamilyOut]:
    """A child joins the patient's family as a new member without a phone (the parent books and pays for
    them); the parent, as head, sees the child's cards, visits and health data while they are a minor."""
    _patient(actor)
    parent = await load_member(session, actor, actor.id, for_update=True)  # one family even under double taps
    require_active(parent)
    if not policies.is_minor(data.birthday, await _today_for(session, parent)):
        raise Unprocessable("birthday: a child is under 18; adults register with their own phone",
                            code="validation_error", field="birthday")
    family = await _own_family(session, parent)
    household = (await session.exec(select(Member.name, Member.birthday).where(
        Member.tenant_id == actor.tenant_id, Member.family_group_id == family.id))).all()
    if any(name == data.name and birthday == data.birthday for name, birthday in household):
        raise Conflict("this child is already in your family", code="child_exists", field="name")
    if len(household) >= MAX_FAMILY_SIZE:
        raise Conflict(f"a family has at most {MAX_FAMILY_SIZE} members", code="family_full")
    child = Member(tenant_id=actor.tenant_id, name="", gender=data.gender, birthday=data.birthday,
                   home_store_id=parent.home_store_id, source_channel="mini_program:family",
                   family_group_id=family.id, family_role="member", family_relation="child", updated_at=utcnow())
    _set_name(child, data.name)
    session.add(child)
    await session.flush()
    audit.record(session, "member.create", "member", child.id, fields=sorted(data.model_fields_set),
                 added_by=str(parent.id))
    audit.record(session, "family.add_member", "family", family.id, member=str(child.id), relation="child")
    await emit(session, MEMBER_CREATED, {"member_id": str(child.id), "home_store_id":
                                         str(child.home_store_id) if child.home_store_id else None})
    return child, await _family_out(session, family)
