"""WeChat mini-program and WeCom: sign-in, the sidebar's JS-SDK signatures and contact lookup, callbacks."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import client_ip, get_db, get_redis, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.db import session_scope
from app.domain.iam.schemas import TokenResponse
from app.domain.members.schemas import MemberOut
from app.domain.tenancy.schemas import TENANT_CODE_PATTERN
from app.domain.wechat_links import service
from app.domain.wechat_links.schemas import (
    EXTERNAL_USERID_PATTERN,
    PAGE_URL_PATTERN,
    ExternalContactLink,
    JsSdkConfigOut,
    MiniProgramLogin,
    PatientLoginOut,
    WecomLogin,
)

router = APIRouter(tags=["wechat"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)

# WeCom's callback receiver is for Tencent's servers, not API clients: it speaks signed, encrypted XML,
# so it is left out of the OpenAPI document (its own tests cover it). It runs its own transaction, so
# a failed delivery can give its nonce back before WeCom retries.
callback_router = APIRouter(tags=["wechat"], include_in_schema=False)

ExternalUserId = Path(pattern=EXTERNAL_USERID_PATTERN, description="WeCom external contact id (wm…/wo…)")


@router.post("/auth/wechat/mini-program", response_model=PatientLoginOut, operation_id="auth_wechat_mini_program",
             responses={404: {"description": "Unknown tenant, or no member has the proven phone number"},
                        409: {"description": "`phone_required`: the WeChat account is not bound yet; send the phone"},
                        401: {"description": "The WeChat code is invalid, expired or used"},
                        502: {"description": "WeChat could not be reached or refused the call"}})
async def mini_program_login(body: MiniProgramLogin, request: Request, session: AsyncSession = Depends(get_db),
                             redis: Redis = Depends(get_redis)) -> PatientLoginOut:
    """Mini-program sign-in: `wx.login()` code → patient token (audience `patient`, subject the member).
    The first time, prove the member's phone with `phone_code` (or legacy `encrypted_data` + `iv`); the
    WeChat account is then bound and later sign-ins need only `code`."""
    return await service.mini_program_login(session, redis, body, ip=client_ip(request))


@router.post("/auth/wecom", response_model=TokenResponse, operation_id="auth_wecom",
             responses={401: {"description": "Invalid code, or no active staff member has this WeCom account"}})
async def wecom_login(body: WecomLogin, request: Request, session: AsyncSession = Depends(get_db),
                      redis: Redis = Depends(get_redis)) -> TokenResponse:
    """Staff sign-in through WeCom OAuth: the `code` of the app's authorize redirect → staff tokens for the
    staff member whose `wecom_userid` WeCom names."""
    return await service.wecom_login(session, redis, body, ip=client_ip(request))


@router.get("/wecom/jssdk-config", response_model=JsSdkConfigOut, operation_id="wecom_jssdk_config")
async def jssdk_config(url: str = Query(..., max_length=2000, pattern=PAGE_URL_PATTERN,
                                        description="The sidebar page's URL (any #fragment is dropped)"),
                       redis: Redis = Depends(get_redis),
                       actor: Actor = require(audiences=("staff",))) -> JsSdkConfigOut:
    """Signatures for the WeCom sidebar page: `config` for `wx.config` (corp jsapi_ticket) and
    `agentConfig` for `wx.agentConfig` (the app's ticket)."""
    return JsSdkConfigOut(**await service.jssdk_config(redis, actor, url))


@router.get("/wecom/external-contacts/{external_userid}/member", response_model=MemberOut,
            operation_id="get_external_contact_member",
            responses={404: {"description": "Unknown contact, or not linked to a member yet"}})
async def external_contact_member(external_userid: str = ExternalUserId, session: AsyncSession = Depends(get_db),
                                  redis: Redis = Depends(get_redis),
                                  actor: Actor = require("members:read")) -> MemberOut:
    """The member the sidebar's chat partner is: a stored link, or the mini-program user with the same unionid."""
    return await service.member_for_external_contact(session, redis, actor, external_userid)


@router.put("/wecom/external-contacts/{external_userid}/member", response_model=MemberOut,
            operation_id="link_external_contact_member")
async def link_external_contact(body: ExternalContactLink, external_userid: str = ExternalUserId,
                                session: AsyncSession = Depends(get_db), redis: Redis = Depends(get_redis),
                                actor: Actor = require("members:write")) -> MemberOut:
    """Link a WeCom customer to a member by hand (replaces a unionid match)."""
    return await service.link_external_contact(session, redis, actor, external_userid, body)


async def _callback_params(
    msg_signature: str = Query(..., pattern=r"^[0-9a-fA-F]{40}$"),
    timestamp: str = Query(..., pattern=r"^\d{1,12}$"),
    nonce: str = Query(..., min_length=1, max_length=64),
) -> tuple[str, str, str]:
    return msg_signature, timestamp, nonce


@callback_router.get("/wecom/callback/{tenant_code}", response_class=PlainTextResponse)
async def verify_callback_url(tenant_code: str = Path(pattern=TENANT_CODE_PATTERN),
                              params: tuple[str, str, str] = Depends(_callback_params),
                              echostr: str = Query(..., min_length=1, max_length=4096),
                              redis: Redis = Depends(get_redis)) -> PlainTextResponse:
    """WeCom's URL verification when the callback is saved in the admin console."""
    return PlainTextResponse(await service.verify_callback_url(session_scope, redis, tenant_code, *params, echostr))


@callback_router.post("/wecom/callback/{tenant_code}")
async def receive_callback(request: Request, tenant_code: str = Path(pattern=TENANT_CODE_PATTERN),
                           params: tuple[str, str, str] = Depends(_callback_params),
                           redis: Redis = Depends(get_redis)) -> Response:
    """An encrypted event (external contact changes, msgaudit_notify). WeCom wants an empty 200."""
    await service.receive_callback(session_scope, redis, tenant_code, *params, await request.body())
    return Response(content=b"", status_code=200)
