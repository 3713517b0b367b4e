"""One mapping from failures to RFC 9457 problem+json, for every route (and the same codes in GraphQL)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.db import DatabaseUnavailable
from app.core.errors import PROBLEM_BASE, AppError

log = logging.getLogger("careloop.errors")
PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "unprocessable", 429: "too_many_requests"}


PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"


class ProblemFieldError(BaseModel):
    field: str = Field(description="The offending input as a dotted path, e.g. `name` or `lines.0.quantity`")
    message: str
    type: str | None = Field(None, description="Machine-readable reason, e.g. `missing`, `string_too_long`")


class Problem(BaseModel):
    """RFC 9457 problem details: the body of every error answer (`application/problem+json`)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI of the problem type; ends with `code`")
    title: str
    status: int
    detail: str = Field(description="What went wrong, for a human")
    code: str = Field(description="Stable machine-readable code, e.g. `validation_error`, `not_found`, `conflict`")
    instance: str | None = Field(None, description="The request path")
    errors: list[ProblemFieldError] | None = Field(None, description="`validation_error` only: each bad field")


def problem_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": text, "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}}}
            for status, text in descriptions.items()}


# The error answers every /api/v1 router documents (`APIRouter(responses=PROBLEM_RESPONSES)`).
PROBLEM_RESPONSES = problem_responses({
    400: "Malformed request: the body is not JSON (`malformed_json`), an unknown cursor (`invalid_cursor`), …",
    401: "Not signed in, or the token is invalid, expired or revoked",
    403: "Signed in, but without the permission or store access this needs",
    404: "No such resource in this tenant",
    409: "Conflicts with existing data or the resource's current state",
    413: "The request body is over the size limit (`payload_too_large`)",
    422: "Invalid input (`validation_error`); `errors[]` names each offending field",
    429: "Too many requests; retry after `Retry-After` seconds",
    503: "A service this request needs is unavailable or not configured: Redis (`redis_unavailable`), "
         "WeChat/WeCom (`wechat_not_configured`); "
         "retry after `Retry-After` seconds where given",
})


def document_problems(app: FastAPI) -> None:
    """Add the Problem schema to the app's OpenAPI document, and give every documented 4xx/5xx answer
    the problem+json body, also where a route declares only a description (`401: {"description": …}`),
    which replaces the router's entry for that status."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        if "Problem" not in schemas:
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(problem.pop("$defs", {}))
            schemas["Problem"] = problem
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    if status[:1] in ("4", "5") and "content" not in response:
                        response["content"] = {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def problem_response(problem: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(problem, status_code=problem["status"], media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "body")


def validation_problem(errors: list[dict[str, Any]], instance: str | None = None) -> dict[str, Any]:
    if any(e.get("type") == "json_invalid" for e in errors):
        return AppError("the request body is not valid JSON", code="malformed_json", status=400,
                        title="Malformed request").problem(instance)
    fields = [{"field": _field_path(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid"),
               "type": e.get("type")} for e in errors]
    first = fields[0] if fields else {"field": "body", "message": "invalid"}
    detail = f"{first['field']}: {first['message']}"
    if len(fields) > 1:
        detail += f" (and {len(fields) - 1} more)"
    return AppError(detail, code="validation_error", status=422, title="Invalid request",
                    errors=fields).problem(instance)


def _is_bad_value(exc: DBAPIError) -> bool:
    """A value the database or driver cannot take: SQLSTATE class 22 (data exception: text with NUL,
    numbers out of range, invalid dates…), or a parameter the driver cannot encode (a ValueError)."""
    if isinstance(exc, DataError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate.startswith("22"):
        return True
    return isinstance(getattr(exc.orig, "__cause__", None), ValueError)


def install_error_handlers(app: FastAPI) -> None:
    document_problems(app)

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        headers = {"Retry-After": str(exc.extra["retry_after"])} if "retry_after" in exc.extra else None
        if exc.status == 401:
            headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
        return problem_response(exc.problem(request.url.path), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(validation_problem(list(exc.errors()), request.url.path))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        problem = {"type": PROBLEM_BASE + code, "title": code.replace("_", " ").capitalize(),
                   "status": exc.status_code, "detail": str(exc.detail), "code": code,
                   "instance": request.url.path}
        return problem_response(problem, getattr(exc, "headers", None))

    @app.exception_handler(IntegrityError)
    async def integrity_error(request: Request, exc: IntegrityError) -> JSONResponse:
        # Services check what they can; a constraint that still fires (a race) is a conflict, not a crash.
        constraint = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
        log.info("integrity error on %s: %s", request.url.path, constraint or exc.orig)
        return problem_response(AppError("the change conflicts with existing data", code="conflict",
                                         status=409, title="Conflict", constraint=constraint).problem(request.url.path))

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:  # the connection died mid-transaction: nothing was committed
            log.warning("database connection lost on %s %s: %s", request.method, request.url.path, exc.orig)
            return await app_error(request, DatabaseUnavailable())
        if not _is_bad_value(exc):
            return await unexpected(request, exc)
        log.warning("database refused a value on %s: %s", request.url.path, exc.orig)
        return problem_response(AppError("a value is out of range or malformed", code="invalid_value",
                                         status=422, title="Invalid value").problem(request.url.path))

    @app.exception_handler(RedisError)
    async def redis_unavailable(request: Request, exc: RedisError) -> JSONResponse:
        # Only what needs Redis gets here (sign-in limits, token caches): a wait, not a crash.
        log.warning("redis unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(REDIS_UNAVAILABLE | {"instance": request.url.path}, {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(internal_error(request.url.path))


REDIS_UNAVAILABLE = {"type": PROBLEM_BASE + "redis_unavailable", "title": "Service unavailable", "status": 503,
                     "detail": "a service this request needs is unavailable; try again shortly",
                     "code": "redis_unavailable"}


def internal_error(instance: str | None) -> dict[str, Any]:
    return {"type": PROBLEM_BASE + "internal_error", "title": "Internal error", "status": 500,
            "detail": "something went wrong; the change was not saved", "code": "internal_error",
            "instance": instance}
