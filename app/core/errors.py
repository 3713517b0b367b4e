"""Domain errors and their RFC 9457 problem+json form (one mapping for REST and GraphQL)."""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://careloop.dev/problems/"


class AppError(Exception):
    """A failure the client can act on: a stable `code`, an HTTP `status` and a human `detail`."""

    code = "error"
    status = 400
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status: int | None = None,
        title: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        if status:
            self.status = status
        if title:
            self.title = title
        self.extra = extra

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class BadRequest(AppError):
    code, status, title = "bad_request", 400, "Bad request"


class Unauthorized(AppError):
    code, status, title = "unauthorized", 401, "Unauthorized"


class Forbidden(AppError):
    code, status, title = "forbidden", 403, "Forbidden"


class NotFound(AppError):
    code, status, title = "not_found", 404, "Not found"


class Conflict(AppError):
    code, status, title = "conflict", 409, "Conflict"


class PayloadTooLarge(AppError):
    code, status, title = "payload_too_large", 413, "Payload too large"


class Unprocessable(AppError):
    code, status, title = "unprocessable", 422, "Unprocessable content"


def invalid(field: str, message: str, *, code: str = "validation_error", type_: str = "value_error") -> Unprocessable:
    """A 422 shaped like request validation's, naming the field, for checks a request schema cannot make
    (they need the database, or decode what was sent)."""
    return Unprocessable(f"{field}: {message}", code=code, title="Invalid request", field=field,
                         errors=[{"field": field, "message": message, "type": type_}])


class TooManyRequests(AppError):
    code, status, title = "too_many_requests", 429, "Too many requests"


class ServiceUnavailable(AppError):
    code, status, title = "service_unavailable", 503, "Service unavailable"
