from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.iam import service, staff_leave
from app.domain.iam.permissions import PERMISSIONS
from app.domain.iam.schemas import (
    ApiClientCreate,
    ApiClientCreated,
    ApiClientOut,
    PermissionOut,
    RoleCreate,
    RoleOut,
    RoleUpdate,
    StaffCreate,
    StaffOut,
    StaffUpdate,
)
from app.domain.iam.staff_leave_schemas import StaffLeave, StaffLeaveOut

router = APIRouter(tags=["staff"], route_class=TransactionalRoute,
                   responses=PROBLEM_RESPONSES)


@router.post("/staff", status_code=201, response_model=StaffOut, operation_id="create_staff")
async def create_staff(body: StaffCreate, session: AsyncSession = Depends(get_db),
                       actor: Actor = require("staff:write")) -> StaffOut:
    """Create a staff account with preset or tenant roles, assigned to stores."""
    return await service.create_staff(session, actor, body)


@router.get("/staff", response_model=Page[StaffOut], operation_id="list_staff")
async def list_staff(store_id: UUID | None = Query(None), params: PageParams = Depends(page_params),
                     session: AsyncSession = Depends(get_db),
                     actor: Actor = require("staff:read")) -> Page[StaffOut]:
    items, cursor = await service.list_staff(session, actor, params, store_id)
    return Page(items=items, next_cursor=cursor)


@router.get("/staff/{staff_id}", response_model=StaffOut, operation_id="get_staff")
async def get_staff(staff_id: UUID, session: AsyncSession = Depends(get_db),
                    actor: Actor = require("staff:read")) -> StaffOut:
    return await service.get_staff(session, actor, staff_id)


@router.patch("/staff/{staff_id}", response_model=StaffOut, operation_id="update_staff")
async def update_staff(staff_id: UUID, body: StaffUpdate, session: AsyncSession = Depends(get_db),
                       actor: Actor = require("staff:write")) -> StaffOut:
    """Change roles, stores, name or password, or disable the account (which ends its sign-ins)."""
    return await service.update_staff(session, actor, staff_id, body)


@router.post("/staff/{staff_id}/leave", response_model=StaffLeaveOut, operation_id="hand_over_leaving_staff",
             responses={409: {"description": "An appointment cannot move to the chosen therapist "
                                             "(`appointments_not_movable`, each one named in `appointments[]`); "
                                             "nothing was changed"}})
async def hand_over_leaving_staff(staff_id: UUID, body: StaffLeave, session: AsyncSession = Depends(get_db),
                                  actor: Actor = require("staff:write")) -> StaffLeaveOut:
    """A staff member leaves: their members (as staff contact), open tasks and future appointments go to the
    targets (one for all, or one per kind), and the account is disabled when `deactivate` is true, all in one
    audited transaction. Appointments keep their times; if any cannot move (the therapist is not on shift,
    lacks the skill, or is busy), nothing changes and the 409 names each such appointment."""
    return await staff_leave.leave(session, actor, staff_id, body)


@router.get("/permissions", response_model=list[PermissionOut], operation_id="list_permissions")
async def list_permissions(actor: Actor = require("roles:read")) -> list[PermissionOut]:
    return [PermissionOut(name=k, description=v) for k, v in sorted(PERMISSIONS.items())]


@router.get("/roles", response_model=list[RoleOut], operation_id="list_roles")
async def list_roles(session: AsyncSession = Depends(get_db), actor: Actor = require("roles:read")) -> list[RoleOut]:
    return [RoleOut.model_validate(r) for r in await service.list_roles(session, actor)]


@router.post("/roles", status_code=201, response_model=RoleOut, operation_id="create_role")
async def create_role(body: RoleCreate, session: AsyncSession = Depends(get_db),
                      actor: Actor = require("roles:write")) -> RoleOut:
    """Define a tenant role from catalogue permissions (never more than you hold yourself)."""
    return RoleOut.model_validate(await service.create_role(session, actor, body))


@router.patch("/roles/{role_id}", response_model=RoleOut, operation_id="update_role")
async def update_role(role_id: UUID, body: RoleUpdate, session: AsyncSession = Depends(get_db),
                      actor: Actor = require("roles:write")) -> RoleOut:
    return RoleOut.model_validate(await service.update_role(session, actor, role_id, body))


@router.post("/api-clients", status_code=201, response_model=ApiClientCreated, operation_id="create_api_client")
async def create_api_client(body: ApiClientCreate, session: AsyncSession = Depends(get_db),
                            actor: Actor = require("api_clients:write", audiences=("staff",))) -> ApiClientCreated:
    """Register an integration; the secret is shown once. It signs in at `POST /oauth/token`."""
    return ApiClientCreated(**await service.create_api_client(session, actor, body))


@router.get("/api-clients", response_model=list[ApiClientOut], operation_id="list_api_clients")
async def list_api_clients(session: AsyncSession = Depends(get_db),
                           actor: Actor = require("api_clients:write", audiences=("staff",))) -> list[ApiClientOut]:
    return [ApiClientOut(**c) for c in await service.list_api_clients(session, actor)]


@router.post("/api-clients/{client_uuid}/revoke", response_model=ApiClientOut, operation_id="revoke_api_client")
async def revoke_api_client(client_uuid: UUID, session: AsyncSession = Depends(get_db),
                            actor: Actor = require("api_clients:write", audiences=("staff",))) -> ApiClientOut:
    return ApiClientOut(**await service.revoke_api_client(session, actor, client_uuid))
