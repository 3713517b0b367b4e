from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import current_actor, get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.db import session_scope
from app.domain.booking import calendar

router = APIRouter(tags=["booking"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
# The feed is fetched by calendar apps without a bearer token: the secret in the URL is the credential,
# and the tenant in the path scopes the lookup.
feed_router = APIRouter(tags=["booking"], responses=PROBLEM_RESPONSES)


class CalendarFeedOut(BaseModel):
    id: UUID
    staff_id: UUID
    url: str
    token: str


@router.get("/calendar/store-day", operation_id="get_store_day_calendar")
async def store_day(store_id: UUID, day: date = Query(alias="date", description="Store-local YYYY-MM-DD"),
                    session: AsyncSession = Depends(get_db),
                    actor: Actor = require("appointments:read")) -> dict[str, Any]:
    """The front desk's board for one store-local day: each therapist's and each room's appointments."""
    return await calendar.store_day(session, actor, store_id, day)


@router.post("/staff/{staff_id}/calendar-feed", status_code=201, response_model=CalendarFeedOut,
             operation_id="issue_calendar_feed")
async def issue_feed(staff_id: UUID, request: Request, session: AsyncSession = Depends(get_db),
                     actor: Actor = current_actor(("staff",))) -> CalendarFeedOut:
    """A secret iCalendar URL with the therapist's appointments (subscribe to it on a phone). Shown
    once; issuing a new one revokes the old. Therapists issue their own; managers need schedule:write."""
    feed, token = await calendar.issue_feed(session, actor, staff_id)
    url = str(request.url_for("calendar_feed", tenant_id=str(actor.tenant_id), token=token))
    return CalendarFeedOut(id=feed.id, staff_id=staff_id, url=url, token=token)


@router.delete("/staff/{staff_id}/calendar-feed", status_code=204, operation_id="revoke_calendar_feed")
async def revoke_feed(staff_id: UUID, session: AsyncSession = Depends(get_db),
                      actor: Actor = current_actor(("staff",))) -> Response:
    await calendar.revoke_feeds(session, actor, staff_id)
    return Response(status_code=204)


@feed_router.get("/calendar/feeds/{tenant_id}/{token}.ics", name="calendar_feed", operation_id="calendar_feed",
                 response_class=Response,
                 responses={200: {"description": "RFC 5545 calendar", "content": {"text/calendar": {}}}})
async def calendar_feed(tenant_id: UUID, token: str = Path(min_length=20, max_length=100)) -> Response:
    async with session_scope(tenant_id) as session:
        body = await calendar.feed_ics(session, tenant_id, token)
    return Response(content=body, media_type="text/calendar; charset=utf-8",
                    headers={"Cache-Control": "private, max-age=300"})
