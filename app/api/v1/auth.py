from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import client_ip, current_actor, get_db, get_redis, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.db import session_scope
from app.core.errors import BadRequest
from app.domain.iam import service as iam
from app.domain.iam.schemas import LogoutRequest, MeOut, RefreshRequest, TokenRequest, TokenResponse

router = APIRouter(tags=["auth"], route_class=TransactionalRoute,
                   responses=PROBLEM_RESPONSES)


@router.post("/auth/token", response_model=TokenResponse, operation_id="auth_token",
             responses={401: {"description": "Wrong tenant, username or password"},
                        429: {"description": "Locked out after repeated failures"}})
async def token(body: TokenRequest, request: Request, session: AsyncSession = Depends(get_db),
                redis: Redis = Depends(get_redis)) -> TokenResponse:
    """Staff password sign-in: a 15-minute access token and a rotating refresh token."""
    return await iam.login(session, redis, tenant_code=body.tenant, username=body.username,
                           password=body.password, ip=client_ip(request))


@router.post("/auth/refresh", response_model=TokenResponse, operation_id="auth_refresh")
async def refresh(body: RefreshRequest, session: AsyncSession = Depends(get_db)) -> TokenResponse:
    """Trade a refresh token for a new pair. Each refresh token works once; presenting a used one
    again revokes the whole sign-in (it was copied)."""
    return await iam.refresh(session, body.refresh_token, sessions=session_scope)


@router.post("/auth/logout", status_code=204, operation_id="auth_logout")
async def logout(body: LogoutRequest | None = None, actor: Actor = require(audiences=("staff",))) -> None:
    """End this sign-in: its refresh tokens and its access tokens stop working at once."""
    await iam.logout(actor, sessions=session_scope)


@router.post("/oauth/token", response_model=TokenResponse, operation_id="oauth_token",
             responses={401: {"description": "Unknown client or wrong secret"}})
async def oauth_token(
    request: Request,
    grant_type: str = Form(..., max_length=40),
    client_id: str = Form(..., max_length=120),
    client_secret: str = Form(..., max_length=200),
    scope: str | None = Form(None, max_length=4000),
    session: AsyncSession = Depends(get_db),
    redis: Redis = Depends(get_redis),
) -> TokenResponse:
    """OAuth 2.0 client credentials (RFC 6749 §4.4) for HIS/EMR integrations; `scope` is a
    space-separated subset of the client's permissions."""
    if grant_type != "client_credentials":
        raise BadRequest("only grant_type=client_credentials is supported", code="unsupported_grant_type")
    return await iam.client_credentials(session, redis, client_id=client_id, client_secret=client_secret,
                                        scope=scope, ip=client_ip(request))


@router.get("/me", response_model=MeOut, operation_id="me")
async def me(actor: Actor = current_actor()) -> MeOut:
    """Who the token belongs to, with effective permissions and stores."""
    return MeOut(tenant_id=actor.tenant_id, kind=actor.kind, id=actor.id, display_name=actor.display_name,
                 roles=list(actor.roles), permissions=sorted(actor.permissions),
                 store_ids=None if actor.store_ids is None else sorted(actor.store_ids, key=str))
