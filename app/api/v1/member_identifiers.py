"""Members' external identifiers (a HIS patient id, …): set, remove, list, and find the member by one.

Kept off `GET /members/{id}` (a benchmarked hot read): a member's identifiers have their own GET.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page
from app.domain.members import service
from app.domain.members.identifiers import SYSTEM_PATTERN

router = APIRouter(tags=["members"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)

SYSTEM = Query(min_length=5, max_length=255, pattern=SYSTEM_PATTERN, description="URI of the issuing system",
              examples=["urn:his:renji"])


@router.get("/members/{member_id}/identifiers", response_model=Page[service.IdentifierOut],
            operation_id="list_member_identifiers")
async def list_member_identifiers(member_id: UUID, session: AsyncSession = Depends(get_db),
                                  actor: Actor = require("members:read")) -> Page[service.IdentifierOut]:
    """The identifiers other systems gave this member."""
    return Page(items=await service.list_identifiers(session, actor, member_id))


@router.put("/members/{member_id}/identifiers", response_model=service.IdentifierOut,
            operation_id="set_member_identifier",
            responses={409: {"description": "Another member carries this identifier (`identifier_taken`), or the "
                                            "member is merged or erased (`member_inactive`)"}})
async def set_member_identifier(member_id: UUID, body: service.IdentifierIn, session: AsyncSession = Depends(get_db),
                                actor: Actor = require("members:write")) -> service.IdentifierOut:
    """Give the member an identifier of another system (`urn:his:renji` / `P000123`); repeating it changes
    nothing. A member may carry several, also in one system; one identifier names one member."""
    return await service.set_identifier(session, actor, member_id, body)


@router.delete("/members/{member_id}/identifiers", status_code=204, operation_id="remove_member_identifiers",
               responses={404: {"description": "No such member, or it has no such identifier "
                                               "(`identifier_not_found`)"}})
async def remove_member_identifiers(member_id: UUID,
                                    # Required, but checked after the member is found (an unknown member is 404).
                                    system: str | None = Query(None, min_length=5, max_length=255,
                                                               pattern=SYSTEM_PATTERN, examples=["urn:his:renji"],
                                                               description="URI of the issuing system (required)"),
                                    value: str | None = Query(None, min_length=1, max_length=128,
                                                              description="Only this one (default: all of "
                                                                          "the system)"),
                                    session: AsyncSession = Depends(get_db),
                                    actor: Actor = require("members:write")) -> Response:
    """Take the member's identifiers of a system away (or only the one with `value`)."""
    await service.remove_identifiers(session, actor, member_id, system, value)
    return Response(status_code=204)


@router.get("/member-identifiers", response_model=service.IdentifierOut, operation_id="find_member_by_identifier",
            responses={404: {"description": "No member carries it (`identifier_not_found`)"}})
async def find_member_by_identifier(system: str = SYSTEM,
                                    value: str = Query(min_length=1, max_length=128, examples=["P000123"]),
                                    session: AsyncSession = Depends(get_db),
                                    actor: Actor = require("members:read")) -> service.IdentifierOut:
    """The member another system's identifier names: `?system=urn:his:renji&value=P000123` → `member_id`."""
    return await service.find_by_identifier(session, actor, system, value)
