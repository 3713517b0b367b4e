"""Dependencies routers declare: the transaction's session, the caller, and what they must hold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from uuid import UUID

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.routing import authenticate, request_state
from app.core.actor import Actor
from app.core.context import RequestContext, current_context, set_context
from app.core.errors import Unauthorized
from app.domain.iam import service as iam
from app.domain.iam.revocations import revoked_sessions
from app.domain.members import service as members

STAFF_AND_INTEGRATION = ("staff", "integration")


async def get_db(request: Request) -> AsyncSession:
    session: AsyncSession = request_state(request)["db"]
    return session


async def get_redis(request: Request) -> Redis:
    return request.app.state.redis


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _load_actor(request: Request, audiences: tuple[str, ...]) -> Actor:
    claims = authenticate(request)
    state = request_state(request)
    if claims is None:
        raise Unauthorized(state["token_error"] or "sign in first: send 'Authorization: Bearer <token>'",
                           code="invalid_token" if state["token_error"] else "not_authenticated")
    # The audience decides before anything is loaded: a token meant for another kind of caller is
    # refused as such, whether or not its subject exists.
    if claims["aud"] not in audiences:
        raise Unauthorized(f"a {claims['aud']} token is not accepted here", code="wrong_audience")
    cached: Actor | None = state.get("actor")
    if cached is None:
        session: AsyncSession = state["db"]
        tenant_id, subject = UUID(claims["tid"]), UUID(claims["sub"])
        if claims["aud"] == "staff":
            sid = claims.get("sid")
            # Held in memory, read from PostgreSQL (app/domain/iam/revocations.py): no round trip while fresh.
            if sid and await revoked_sessions.is_revoked_now(session, tenant_id, sid):
                raise Unauthorized("this sign-in was ended; sign in again", code="token_revoked")
            cached = await iam.load_staff_actor(session, tenant_id, subject, sid)
        elif claims["aud"] == "integration":
            cached = await iam.load_integration_actor(session, tenant_id, subject,
                                                      str(claims.get("scope", "")).split())
        else:
            cached = await members.load_patient_actor(session, tenant_id, subject)
            if claims.get("openid"):  # the WeChat account the token was issued for (pays as it)
                cached = replace(cached, extra={**cached.extra, "openid": str(claims["openid"])})
        state["actor"] = cached
        ctx = current_context()
        set_context(RequestContext(request_id=ctx.request_id, ip=ctx.ip,
                                   actor_type=cached.kind, actor_id=str(cached.id)))
    return cached


def require(*permissions: str, audiences: tuple[str, ...] = STAFF_AND_INTEGRATION) -> Callable:
    """`actor: Actor = Depends(require("stores:write"))` — authenticated, allowed, and permitted."""

    async def dependency(request: Request) -> Actor:
        actor = await _load_actor(request, audiences)
        actor.require(*permissions)
        return actor

    dependency.__name__ = f"require_{'_'.join(p.replace(':', '_').replace('.', '_') for p in permissions) or 'auth'}"
    return Depends(dependency)


def current_actor(audiences: tuple[str, ...] = ("staff", "integration", "patient")) -> Callable:
    return require(audiences=audiences)
