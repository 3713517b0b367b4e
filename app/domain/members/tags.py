"""Tags: groups (an exclusive group lets a member hold one of its tags), synonyms, and a member's tags."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import and_, func, text
from sqlmodel import delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.errors import Conflict, Unprocessable
from app.domain.members.loading import load_member, require_active, tags_by_member
from app.domain.members.models import MemberTag, Tag, TagGroup, TagSynonym
from app.domain.members.schemas import SynonymCreate, TagChange, TagCreate, TagGroupCreate


async def tag_ids(session: AsyncSession, tenant_id: UUID, names: list[str], *, create: bool) -> dict[str, UUID]:
    """The ids of the named tags (with `create`, missing names become ungrouped tags)."""
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


async def set_tags(session: AsyncSession, tenant_id: UUID, member_id: UUID, *, add: list[str] = (),
                   remove: list[str] = (), source: str = "manual", field: str = "tags") -> None:
    """Remove and add the member's tags by name (new names become ungrouped tags); no permission check."""
    if remove:
        ids = await tag_ids(session, tenant_id, list(remove), create=False)
        if ids:
            await session.execute(delete(MemberTag).where(MemberTag.tenant_id == tenant_id,
                                                          MemberTag.member_id == member_id,
                                                          MemberTag.tag_id.in_(list(ids.values()))))
    if add:
        ids = await tag_ids(session, tenant_id, list(add), create=True)
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
    return await apply_tag_change(session, actor, member_id, change, source=source)


async def apply_tag_change(session: AsyncSession, actor: Actor, member_id: UUID, change: TagChange, *,
                           source: str) -> list[str]:
    """change_tags for a caller that has checked members:write (the import, once for the whole file)."""
    member = await load_member(session, actor, member_id)
    require_active(member)
    overlap = set(change.add) & set(change.remove)
    if overlap:
        raise Unprocessable(f"tag {sorted(overlap)[0]!r} is both added and removed", code="validation_error",
                            field="add")
    await set_tags(session, actor.tenant_id, member.id, add=change.add, remove=change.remove, source=source,
                   field="add")
    audit.record(session, "member.tags", "member", member.id, add=change.add, remove=change.remove, source=source)
    return (await tags_by_member(session, actor.tenant_id, [member.id]))[member.id]


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
