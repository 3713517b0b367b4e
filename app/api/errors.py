"""One mapping from failures to RFC 9457 problem+json, for every route (and the same codes in GraphQL)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import PROBLEM_BASE, AppError

log = logging.getLogger("careloop.errors")
PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "unprocessable", 429: "too_many_requests"}


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


def install_error_handlers(app: FastAPI) -> None:
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

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> JSONResponse:
        return problem_response(AppError("a value is out of range or malformed", code="invalid_value",
                                         status=422, title="Invalid value").problem(request.url.path))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response({"type": PROBLEM_BASE + "internal_error", "title": "Internal error",
                                 "status": 500, "detail": "something went wrong; the change was not saved",
                                 "code": "internal_error", "instance": request.url.path})
