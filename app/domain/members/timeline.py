"""Notes and the member's timeline: every context's items (registered as timeline sources) in one list."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Text, and_, func, or_
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.errors import BadRequest, Forbidden
from app.core.pagination import PageParams, decode_cursor
from app.domain.members import policies
from app.domain.members.hooks import PATIENT_HIDDEN_KEYS, PATIENT_HIDDEN_SOURCES, TIMELINE_SOURCES, timeline_source
from app.domain.members.loading import load_member, require_active
from app.domain.members.models import Member, MemberNote
from app.domain.members.schemas import NoteCreate, TimelineItem


async def add_note(session: AsyncSession, actor: Actor, member_id: UUID, data: NoteCreate) -> MemberNote:
    actor.require("members:write")
    member = await load_member(session, actor, member_id)
    return await _write_note(session, actor, member, data)


async def add_care_note(session: AsyncSession, actor: Actor, member_id: UUID, data: NoteCreate) -> MemberNote:
    """A note from whoever serves the member (the WeCom sidebar): `members:write` notes on anyone;
    `members.notes:write` alone (therapists) only on members in their care, as the health rule reads it."""
    if actor.can("members:write"):
        return await add_note(session, actor, member_id, data)
    actor.require("members:read", "members.notes:write")
    member = await load_member(session, actor, member_id)
    if not await policies.in_care_of(session, actor, member):
        raise Forbidden("notes on this member are only for staff caring for them", code="not_in_care")
    return await _write_note(session, actor, member, data)


async def _write_note(session: AsyncSession, actor: Actor, member: Member, data: NoteCreate) -> MemberNote:
    require_active(member)
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
    member = await load_member(session, actor, member_id)
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
