"""Duplicates: finding likely ones, and merging one member into another (every context moves its rows)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import text, update
from sqlmodel import delete
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, Unprocessable
from app.core.events import emit
from app.domain.members.events import MEMBER_MERGED
from app.domain.members.families import dissolve_headed_family, family_member_ids
from app.domain.members.hooks import MERGE_MOVERS, merge_mover
from app.domain.members.loading import load_member
from app.domain.members.models import Member, MemberNote, MemberStatus, MemberTag


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
    rows = {m.id: m for m in [await load_member(session, actor, first, for_update=True),
                              await load_member(session, actor, second, for_update=True)]}
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
    await dissolve_headed_family(session, actor.tenant_id, duplicate.id)
    audit.record(session, "member.merge", "member", survivor.id, duplicate=str(duplicate.id), moved=moved,
                 reason=reason)
    await emit(session, MEMBER_MERGED, {"member_id": str(survivor.id), "duplicate_id": str(duplicate.id)})
    return {"survivor_id": str(survivor.id), "duplicate_id": str(duplicate.id), "moved": moved}
