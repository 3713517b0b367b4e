"""External identifiers of members: the ids other systems give the same person (a HIS patient id, an EMR
number), as a URI `system` and a `value`.

A (system, value) pair names one member of the tenant (unique key); a member may carry several, also several
in one system (two HIS records of the same person end on one member after a merge, and both must still find
them). Integrations (scope `members:write`) and staff set them; they are found by exact (system, value), by
the REST lookup and by FHIR `Patient?identifier=system|value`. Setting one bumps the member's `updated_at`,
so a FHIR incremental sync (`_lastUpdated`) sees the change. Our own member id is not stored here: FHIR shows
it under the reserved system `OWN_SYSTEM`, which nobody may set.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field
from sqlalchemy import Index, Text, UniqueConstraint, delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field as ModelField
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.models import TENANT_TABLES, TenantRow, tenant_fk
from app.core.schemas import Name, Strict
from app.domain.members import policies
from app.domain.members.hooks import merge_mover
from app.domain.members.loading import load_member, require_active
from app.domain.members.models import Member

# The member's own id, as FHIR shows it among a Patient's identifiers; reserved.
OWN_SYSTEM = "urn:careloop:member"
# A URN (`urn:his:renji`) or an http(s) URI; `|` separates system and value in FHIR search, so not in it.
SYSTEM_PATTERN = r"^(urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[^\s|]+|https?://[^\s|]+)$"
MAX_PER_MEMBER = 20


class MemberIdentifier(TenantRow, table=True):
    __tablename__ = "member_identifiers"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        UniqueConstraint("tenant_id", "system", "value"),
        Index("ix_member_identifiers_member", "tenant_id", "member_id"),
    )

    member_id: UUID
    system: str = ModelField(sa_type=Text)
    value: str = ModelField(sa_type=Text)
    set_by_kind: str = ModelField(sa_type=Text)  # staff | integration | system
    set_by_id: UUID | None = None


TENANT_TABLES.add("member_identifiers")


# ---------------------------------------------------------------- schemas


class IdentifierIn(Strict):
    system: str = Field(min_length=5, max_length=255, pattern=SYSTEM_PATTERN,
                        description="URI of the issuing system, e.g. `urn:his:renji` or `https://his.example.cn/pid`")
    value: Name = Field(min_length=1, max_length=128, description="The member's id in that system, e.g. `P000123`")


class IdentifierOut(BaseModel):
    member_id: UUID
    system: str
    value: str
    set_by_kind: str
    created_at: datetime | None = None


def _out(row: MemberIdentifier) -> IdentifierOut:
    return IdentifierOut(member_id=row.member_id, system=row.system, value=row.value, set_by_kind=row.set_by_kind,
                         created_at=row.created_at)


# ---------------------------------------------------------------- use cases


async def set_identifier(session: AsyncSession, actor: Actor, member_id: UUID, data: IdentifierIn) -> IdentifierOut:
    """Give the member this identifier (nothing changes when it has it already). 409 `identifier_taken` when
    another member of the tenant carries it: one identifier, one person."""
    actor.require("members:write")
    if data.system == OWN_SYSTEM:
        raise Unprocessable(f"system: {OWN_SYSTEM} is this service's own and cannot be set",
                            code="validation_error", field="system",
                            errors=[{"field": "system", "message": "is reserved", "type": "reserved"}])
    member = await load_member(session, actor, member_id, for_update=True)
    require_active(member)
    held = (await session.exec(select(MemberIdentifier).where(
        MemberIdentifier.tenant_id == actor.tenant_id, MemberIdentifier.system == data.system,
        MemberIdentifier.value == data.value))).first()
    if held is not None:
        if held.member_id == member_id:
            return _out(held)
        raise Conflict("another member carries this identifier", code="identifier_taken",
                       member_id=str(held.member_id))
    count = (await session.exec(select(func.count()).select_from(MemberIdentifier).where(
        MemberIdentifier.tenant_id == actor.tenant_id, MemberIdentifier.member_id == member_id))).one()
    if count >= MAX_PER_MEMBER:
        raise Conflict(f"a member carries at most {MAX_PER_MEMBER} identifiers", code="too_many_identifiers")
    row = MemberIdentifier(tenant_id=actor.tenant_id, member_id=member_id, system=data.system, value=data.value,
                           set_by_kind=actor.kind, set_by_id=actor.id)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:  # the same identifier set on another member at the same moment
        raise Conflict("another member carries this identifier", code="identifier_taken") from None
    member.updated_at = utcnow()
    session.add(member)
    audit.record(session, "member.identifier_set", "member", member_id, system=data.system, value=data.value)
    return _out(row)


async def remove_identifiers(session: AsyncSession, actor: Actor, member_id: UUID, system: str | None,
                             value: str | None = None) -> int:
    """Take the member's identifiers of `system` away (only the one with `value`, when given); 404
    `identifier_not_found` when the member has none such, 422 without a `system`."""
    actor.require("members:write")
    member = await load_member(session, actor, member_id, for_update=True)
    if system is None:
        raise Unprocessable("system: is required", code="validation_error", field="system",
                            errors=[{"field": "system", "message": "is required", "type": "missing"}])
    stmt = delete(MemberIdentifier).where(MemberIdentifier.tenant_id == actor.tenant_id,
                                          MemberIdentifier.member_id == member_id, MemberIdentifier.system == system)
    if value is not None:
        stmt = stmt.where(MemberIdentifier.value == value)
    removed = (await session.execute(stmt)).rowcount
    if not removed:
        raise NotFound("the member has no such identifier", code="identifier_not_found")
    member.updated_at = utcnow()
    session.add(member)
    audit.record(session, "member.identifier_removed", "member", member_id, system=system, value=value,
                 removed=removed)
    return removed


async def list_identifiers(session: AsyncSession, actor: Actor, member_id: UUID) -> list[IdentifierOut]:
    if actor.kind != "patient":
        actor.require("members:read")
    await load_member(session, actor, member_id)
    rows = (await session.exec(select(MemberIdentifier).where(
        MemberIdentifier.tenant_id == actor.tenant_id, MemberIdentifier.member_id == member_id)
        .order_by(MemberIdentifier.system, MemberIdentifier.value))).all()
    return [_out(r) for r in rows]


async def find_by_identifier(session: AsyncSession, actor: Actor, system: str, value: str) -> IdentifierOut:
    """The member carrying this identifier; 404 `identifier_not_found`."""
    actor.require("members:read")
    row = (await session.exec(select(MemberIdentifier).where(
        MemberIdentifier.tenant_id == actor.tenant_id, MemberIdentifier.system == system,
        MemberIdentifier.value == value))).first()
    if row is None:
        raise NotFound("no member carries this identifier", code="identifier_not_found")
    return _out(row)


@merge_mover("member_identifiers")
async def _move_identifiers(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID,
                            survivor_id: UUID) -> dict[str, int]:
    # Every identifier names the same person, so all of them follow: the other system still finds them.
    moved = await session.execute(update(MemberIdentifier).where(
        MemberIdentifier.tenant_id == tenant_id, MemberIdentifier.member_id == duplicate_id)
        .values(member_id=survivor_id))
    return {"identifiers": moved.rowcount}


# ---------------------------------------------------------------- read API (for other contexts: FHIR)


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le, "eq": operator.eq}


@dataclass
class PatientFacts:
    """What a FHIR Patient shows of a member; `phone` only for callers who may see contact data."""

    id: UUID
    name: str
    gender: str | None
    birthday: date | None
    phone: str | None
    status: str
    merged_into_id: UUID | None
    last_updated: datetime
    identifiers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class PatientQuery:
    ids: set[UUID] | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None
    # (operator, instant) bounds on the member's last change: `gt`, `ge`, `lt`, `le`, `eq`
    updated: Sequence[tuple[str, datetime]] = ()
    after: UUID | None = None
    limit: int = 50


async def identifiers_of(session: AsyncSession, tenant_id: UUID,
                         member_ids: set[UUID]) -> dict[UUID, list[tuple[str, str]]]:
    """Each member's (system, value) pairs, sorted; no permission check (the caller made its own)."""
    out: dict[UUID, list[tuple[str, str]]] = {m: [] for m in member_ids}
    if member_ids:
        rows = (await session.execute(select(MemberIdentifier.member_id, MemberIdentifier.system,
                                             MemberIdentifier.value).where(
            MemberIdentifier.tenant_id == tenant_id, MemberIdentifier.member_id.in_(member_ids))
            .order_by(MemberIdentifier.system, MemberIdentifier.value))).all()
        for member_id, system, value in rows:
            out[member_id].append((system, value))
    return out


async def patients(session: AsyncSession, actor: Actor, query: PatientQuery) -> tuple[list[PatientFacts], int]:
    """Members as FHIR Patients, by id (keyset after `query.after`), at most `query.limit`, with the number
    of all that match. Merged and erased members are included (FHIR shows them inactive), so a sync learns of
    them. Needs members:read; the phone number is given only with members.contact:read."""
    actor.require("members:read")
    last_updated = func.coalesce(Member.updated_at, Member.created_at)
    conditions: list[Any] = [Member.tenant_id == actor.tenant_id]
    if query.ids is not None:
        conditions.append(Member.id.in_(query.ids))
    if query.identifier_system is not None or query.identifier_value is not None:
        carriers = select(MemberIdentifier.member_id).where(MemberIdentifier.tenant_id == actor.tenant_id)
        if query.identifier_system is not None:
            carriers = carriers.where(MemberIdentifier.system == query.identifier_system)
        if query.identifier_value is not None:
            carriers = carriers.where(MemberIdentifier.value == query.identifier_value)
        conditions.append(Member.id.in_(carriers))
    conditions += [_COMPARE[op](last_updated, instant) for op, instant in query.updated]
    total = (await session.execute(select(func.count()).select_from(Member).where(*conditions))).scalar_one()
    stmt = select(Member, last_updated).where(*conditions)
    if query.after is not None:
        stmt = stmt.where(Member.id > query.after)
    rows = (await session.execute(stmt.order_by(Member.id).limit(query.limit))).all()
    contact = policies.can_see_contact(actor)
    identifiers = await identifiers_of(session, actor.tenant_id, {m.id for m, _ in rows})
    return [PatientFacts(
        id=m.id, name=m.name, gender=m.gender, birthday=m.birthday,
        phone=crypto.decrypt(m.phone_encrypted) if contact and m.phone_encrypted else None,
        status=m.status, merged_into_id=m.merged_into_id, last_updated=updated,
        identifiers=identifiers[m.id]) for m, updated in rows], total


# ---------------------------------------------------------------- demo


DEMO_HIS_SYSTEM = "urn:his:renji"


async def seed_demo_identifiers(session: AsyncSession, tenant_id: UUID) -> int:
    """Give the demo members a patient id in the demo HIS (`urn:his:renji`, `P000101`, … by member id);
    idempotent: members that have one keep it."""
    members = (await session.exec(select(Member.id).where(Member.tenant_id == tenant_id,
                                                          Member.status == "active").order_by(Member.id))).all()
    have = set((await session.exec(select(MemberIdentifier.member_id).where(
        MemberIdentifier.tenant_id == tenant_id, MemberIdentifier.system == DEMO_HIS_SYSTEM))).all())
    taken = set((await session.exec(select(MemberIdentifier.value).where(
        MemberIdentifier.tenant_id == tenant_id, MemberIdentifier.system == DEMO_HIS_SYSTEM))).all())
    added, number = 0, 100
    for member_id in members:
        if member_id in have:
            continue
        number += 1
        while f"P{number:06d}" in taken:
            number += 1
        session.add(MemberIdentifier(tenant_id=tenant_id, member_id=member_id, system=DEMO_HIS_SYSTEM,
                                     value=f"P{number:06d}", set_by_kind="system"))
        added += 1
    await session.flush()
    return added
