from __future__ import annotations

from datetime import date
from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import current_actor, get_db
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.booking import waitlist
from app.domain.booking.waitlist import WaitlistJoin, WaitlistOut

router = APIRouter(tags=["booking"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)


@router.post("/waitlist", status_code=201, response_model=WaitlistOut, operation_id="join_waitlist")
async def join_waitlist(body: WaitlistJoin, session: AsyncSession = Depends(get_db),
                        actor: Actor = current_actor()) -> WaitlistOut:
    """Wait for a service (optionally one therapist) on a store-local day. When a matching appointment
    is cancelled the worker offers its slot (`waitlist.slot_offered`); the member then books it."""
    return WaitlistOut.model_validate(await waitlist.join(session, actor, body))


@router.get("/waitlist", response_model=Page[WaitlistOut], operation_id="list_waitlist")
async def list_waitlist(store_id: UUID | None = Query(None), day: date | None = Query(None),
                        member_id: UUID | None = Query(None, description="Required for patients"),
                        status: Literal["waiting", "offered", "booked", "cancelled", "expired"] | None = Query(None),
                        params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                        actor: Actor = current_actor()) -> Page[WaitlistOut]:
    rows, cursor = await waitlist.list_entries(session, actor, params, store_id=store_id, day=day,
                                               member_id=member_id, status=status)
    return Page(items=[WaitlistOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.post("/waitlist/{entry_id}/cancel", response_model=WaitlistOut, operation_id="leave_waitlist")
async def leave_waitlist(entry_id: UUID, session: AsyncSession = Depends(get_db),
                         actor: Actor = current_actor()) -> WaitlistOut:
    return WaitlistOut.model_validate(await waitlist.leave(session, actor, entry_id))
