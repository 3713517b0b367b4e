"""Audit log and background events (the outbox, with its dead letters)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core import audit, outbox
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params, paginate

router = APIRouter(tags=["platform"], route_class=TransactionalRoute,
                   responses=PROBLEM_RESPONSES)


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    occurred_at: datetime
    actor_type: str
    actor_id: str | None
    action: str
    target_type: str
    target_id: str | None
    summary: dict[str, Any]
    request_id: str | None
    ip: str | None
    prev_hash: str
    hash: str


class ChainReportOut(BaseModel):
    ok: bool
    checked: int
    broken_at_seq: int | None = None
    reason: str | None = None
    unsealed_entries: int = Field(0, description="Entries recorded but not sealed into the chain yet (the "
                                                 "worker seals them every two seconds; they are not listed "
                                                 "by GET /audit until then)")
    oldest_unsealed_seconds: float | None = Field(None, description="Age of the oldest unsealed entry; growing "
                                                                    "means no worker is sealing")


class OutboxEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    topic: str
    payload: dict[str, Any]
    status: str
    attempts: int
    available_at: datetime
    last_error: str | None
    created_at: datetime | None
    done_at: datetime | None


@router.get("/audit", response_model=Page[AuditEntryOut], operation_id="list_audit")
async def list_audit(
    action: str | None = Query(None, max_length=100),
    target_type: str | None = Query(None, max_length=100),
    target_id: str | None = Query(None, max_length=100),
    actor_id: str | None = Query(None, max_length=100),
    since: AwareDatetime | None = Query(None, alias="from"),
    until: AwareDatetime | None = Query(None, alias="to"),
    params: PageParams = Depends(page_params),
    session: AsyncSession = Depends(get_db),
    actor: Actor = require("audit:read", audiences=("staff",)),
) -> Page[AuditEntryOut]:
    """The tenant's audit trail, newest first."""
    stmt = select(audit.AuditEntry).where(audit.AuditEntry.tenant_id == actor.tenant_id)
    for column, value in ((audit.AuditEntry.action, action), (audit.AuditEntry.target_type, target_type),
                          (audit.AuditEntry.target_id, target_id), (audit.AuditEntry.actor_id, actor_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(audit.AuditEntry.occurred_at >= since)
    if until is not None:
        stmt = stmt.where(audit.AuditEntry.occurred_at < until)
    rows, cursor = await paginate(session, stmt, audit.AuditEntry.seq, params, descending=True, convert=int)
    return Page(items=[AuditEntryOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/audit/verify", response_model=ChainReportOut, operation_id="verify_audit")
async def verify_audit(session: AsyncSession = Depends(get_db),
                       actor: Actor = require("audit:read", audiences=("staff",))) -> ChainReportOut:
    """Recompute the hash chain; `ok: false` names the first row that was changed or removed."""
    report = await audit.verify_chain(session, actor.tenant_id)
    return ChainReportOut(**report.__dict__)


@router.get("/outbox", response_model=Page[OutboxEventOut], operation_id="list_outbox_events")
async def list_outbox_events(
    status: str | None = Query(None, pattern="^(pending|enqueued|done|dead)$"),
    topic: str | None = Query(None, max_length=100),
    params: PageParams = Depends(page_params),
    session: AsyncSession = Depends(get_db),
    actor: Actor = require("outbox:read"),
) -> Page[OutboxEventOut]:
    """Background events, newest first; `status=dead` lists those that gave up after retries."""
    rows, cursor = await outbox.list_events(session, actor, params, status=status, topic=topic)
    return Page(items=[OutboxEventOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.post("/outbox/{event_id}/retry", response_model=OutboxEventOut, operation_id="retry_outbox_event")
async def retry_outbox_event(event_id: UUID, session: AsyncSession = Depends(get_db),
                             actor: Actor = require("outbox:write")) -> OutboxEventOut:
    return OutboxEventOut.model_validate(await outbox.retry_event(session, actor, event_id))
