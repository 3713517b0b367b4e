"""WeCom chat records (会话内容存档): a member's chats, and starting a sync."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.chatsync import service

router = APIRouter(tags=["chat records"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)


class ChatRecordOut(BaseModel):
    id: UUID
    msgid: str
    member_id: UUID | None
    external_userid: str | None
    staff_userid: str | None = Field(description="The staff member's WeCom userid")
    direction: str = Field(description="inbound (from the member) | outbound (to the member) | internal")
    action: str
    msgtype: str
    content: str | None = Field(description="Text messages only")
    media: dict[str, Any] | None = Field(description="Media metadata (sdkfileid, md5sum, filesize); the file "
                                                     "itself is not downloaded")
    room_id: str | None
    sent_at: datetime


class SyncRequested(BaseModel):
    status: str = "queued"
    event_id: UUID


class SyncStatus(BaseModel):
    seq: int = Field(description="The archive position stored so far")
    records_stored: int
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    archive_bound: bool = Field(description="Whether this deployment's WeCom chat archive is this tenant's "
                                            "(WECOM_MSGAUDIT_TENANT); no other tenant syncs it")


@router.get("/members/{member_id}/chat-records", response_model=Page[ChatRecordOut],
            operation_id="list_member_chat_records")
async def list_chat_records(member_id: UUID, params: PageParams = Depends(page_params),
                            session: AsyncSession = Depends(get_db),
                            actor: Actor = require("members:read", "members.health:read")) -> Page[ChatRecordOut]:
    """The member's WeCom chats, newest first. Chats hold health details, so they follow the health-data
    rule (members in your care, or `members.health:all`); every read is written to the audit log."""
    rows, cursor = await service.list_member_chat_records(session, actor, member_id, params)
    items = [ChatRecordOut(id=r.id, msgid=r.msgid, member_id=r.member_id, external_userid=r.external_userid,
                           staff_userid=r.staff_userid, direction=r.direction, action=r.action, msgtype=r.msgtype,
                           content=service.content_of(r), media=r.media, room_id=r.room_id, sent_at=r.sent_at)
             for r in rows]
    return Page(items=items, next_cursor=cursor)


@router.post("/chat-sync/run", status_code=202, response_model=SyncRequested, operation_id="run_chat_sync")
async def run_sync(session: AsyncSession = Depends(get_db),
                   actor: Actor = require("chat_sync:run")) -> SyncRequested:
    """Sync chat records now (the worker runs it; it also runs every few minutes and on WeCom's notice).
    Only the tenant the corp's archive belongs to syncs (`409 chat_archive_not_bound` for any other)."""
    event = await service.request_sync(session, actor)
    return SyncRequested(event_id=event.id)


@router.get("/chat-sync/status", response_model=SyncStatus, operation_id="get_chat_sync_status")
async def sync_status(session: AsyncSession = Depends(get_db),
                      actor: Actor = require("chat_sync:run")) -> SyncStatus:
    """Where the sync stands, and the last error (a wrong private key, the SDK unreachable, …)."""
    cursor, bound = await service.sync_status(session, actor)
    if cursor is None:
        return SyncStatus(seq=0, records_stored=0, last_run_at=None, last_success_at=None, last_error=None,
                          archive_bound=bound)
    return SyncStatus(seq=cursor.seq, records_stored=cursor.records_stored, last_run_at=cursor.last_run_at,
                      last_success_at=cursor.last_success_at, last_error=cursor.last_error, archive_bound=bound)
