"""Finding members: by phone, name prefix or pinyin initials, tags, store, owner and last visit."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import or_
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import crypto
from app.core.actor import Actor
from app.core.clock import DEFAULT_TIMEZONE
from app.core.pagination import PageParams, paginate
from app.core.search import prefix_range
from app.domain.members import policies
from app.domain.members import tags as member_tags
from app.domain.members.loading import phone_shown, tags_by_member
from app.domain.members.models import Member, MemberStatus, MemberTag
from app.domain.members.normalize import normalize_phone
from app.domain.members.schemas import MemberSummary


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
        tag_ids = list((await member_tags.tag_ids(session, actor.tenant_id, tags, create=False)).values())
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
    tag_map = await tags_by_member(session, actor.tenant_id, [m.id for m in rows])
    contact = policies.can_see_contact(actor)
    return [MemberSummary(id=m.id, name=m.name, phone=phone_shown(m, contact), gender=m.gender,
                          birthday=m.birthday, tags=tag_map[m.id], home_store_id=m.home_store_id,
                          owner_staff_id=m.owner_staff_id, last_visit_at=m.last_visit_at, status=m.status)
            for m in rows], cursor
