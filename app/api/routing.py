"""The request machinery every REST route (and /graphql) runs inside.

For each request it verifies the bearer token (if any), opens one database transaction scoped to the
caller's tenant, applies `Idempotency-Key`, runs the endpoint, and commits *before* the response is
returned, so a client never sees a success that was not durable. A 4xx/5xx answer rolls back.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from uuid import UUID

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app.core import idempotency
from app.core.db import session_scope
from app.core.security import TokenError, decode_token

IDEMPOTENT_METHODS = {"POST"}


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    """`model` as the JSON FastAPI would write for a `response_model` of its own type, without validating
    it a second time on the way out (a measurable share of a hot read; the route keeps its response_model,
    so the OpenAPI document is unchanged)."""
    return Response(content=model.model_dump_json(), status_code=status_code, media_type="application/json")


class _Rollback(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def authenticate(request: Request) -> dict[str, Any] | None:
    """Verify the bearer token once; the reason for a bad token is kept for the auth dependency.

    The request's state is read as the dict under `request.state` (the same values): asking `request.state`
    for an attribute it lacks raises and catches an AttributeError, a visible share of a small request."""
    state = request_state(request)
    if "claims" in state:
        return state["claims"]
    claims = token_error = None
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            token_error = "Authorization header must be 'Bearer <token>'"
        else:
            try:
                claims = decode_token(token.strip())
            except TokenError as exc:
                token_error = str(exc)
    state["claims"], state["token_error"] = claims, token_error
    return claims


def request_state(request: Request) -> dict[str, Any]:
    """What `request.state` holds, as its dict."""
    state: dict[str, Any] = request.scope.setdefault("state", {})
    return state


def _tenant_of(claims: dict[str, Any] | None) -> UUID | None:
    try:
        return UUID(claims["tid"]) if claims else None
    except (KeyError, ValueError, TypeError):
        return None


async def run_in_transaction(
    request: Request, call: Callable[[Request], Coroutine[Any, Any, Response]]
) -> Response:
    claims = authenticate(request)
    tenant_id = _tenant_of(claims)
    key = request.headers.get("idempotency-key")
    use_key = key is not None and request.method in IDEMPOTENT_METHODS and tenant_id is not None
    if use_key:
        idempotency.validate_key(key)
        body = await request.body()
        principal = f"{claims['aud']}:{claims['sub']}"
        fingerprint = idempotency.request_fingerprint(
            request.method, request.url.path, request.url.query, body
        )
    try:
        async with session_scope(tenant_id) as session:
            state = request_state(request)
            state["db"], state["rollback"] = session, False
            if use_key:
                previous = await idempotency.claim(session, tenant_id, principal, key, fingerprint)
                if previous is not None and previous.status_code is not None:
                    return Response(
                        content=previous.response_body or b"",
                        status_code=previous.status_code,
                        headers={**previous.response_headers, "idempotent-replayed": "true"},
                    )
            response = await call(request)
            if response.status_code >= 400 or state["rollback"]:
                raise _Rollback(response)
            if use_key:
                headers = {
                    h: response.headers[h] for h in idempotency.REPLAYED_HEADERS if h in response.headers
                }
                await idempotency.remember(
                    session, tenant_id, principal, key, response.status_code,
                    bytes(getattr(response, "body", b"")), headers,
                )
        return response
    except _Rollback as rollback:
        return rollback.response


class TransactionalRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def transactional_handler(request: Request) -> Response:
            return await run_in_transaction(request, handler)

        return transactional_handler
