"""FHIR R4 read API at /api/v1/fhir: CapabilityStatement, and read / search of each registered resource type.

Answers are `application/fhir+json`. Errors keep the API's HTTP statuses and stable codes but their body is a
FHIR `OperationOutcome` (the code in `issue[0].details.coding[0].code`), not problem+json: `FhirRoute` turns
every failure of a route here into one, also an unknown resource type (the catch-all routes at the end).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import STAFF_AND_INTEGRATION, current_actor, get_db
from app.api.errors import validation_problem
from app.api.input_checks import unstorable_errors
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.db import session_scope
from app.core.errors import AppError
from app.domain.clinical import fhir, fhir_search, policies

BASE = "/fhir"


def outcome_response(status: int, code: str, detail: str, fields: list[str] | None = None,
                     headers: dict[str, str] | None = None) -> Response:
    body = fhir.outcome(status, code, detail, fields=fields)
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type=fhir.FHIR_JSON,
                    headers=headers)


def _error_response(exc: AppError) -> Response:
    fields = [str(exc.extra["field"])] if "field" in exc.extra else [
        str(e["field"]) for e in exc.extra.get("errors", []) if "field" in e] or None
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if "retry_after" in exc.extra:
        headers = {**(headers or {}), "Retry-After": str(exc.extra["retry_after"])}
    return outcome_response(exc.status, exc.code, exc.detail, fields, headers)


def _validation_outcome(errors: list[Any], path: str) -> Response:
    problem = validation_problem(errors, path)
    return outcome_response(problem["status"], problem["code"], problem["detail"],
                            [e["field"] for e in problem.get("errors") or []] or None)


class FhirRoute(TransactionalRoute):
    """A TransactionalRoute whose failures are OperationOutcomes (the transaction rolls back as there)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        transactional = super().get_route_handler()

        async def fhir_handler(request: Request) -> Response:
            if unstorable := unstorable_errors(request.scope, None, ""):  # what BodyLimitMiddleware leaves to us
                return _validation_outcome(unstorable, request.url.path)
            try:
                return await transactional(request)
            except AppError as exc:
                if isinstance(exc, policies.NotInCare):  # the refusal stays on record, as on the REST API
                    await policies.record_refusal(session_scope, exc)
                return _error_response(exc)
            except RequestValidationError as exc:
                return _validation_outcome(list(exc.errors()), request.url.path)

        return fhir_handler


FHIR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {fhir.FHIR_JSON: {"schema": {"type": "object"}}}}
    for code, text in {
        400: "A bad search parameter (`invalid_search_parameter`) or cursor: an OperationOutcome",
        401: "Not signed in: an OperationOutcome",
        403: "Missing permission or scope, or the member is not in the caller's care: an OperationOutcome",
        404: "Unknown resource type or id: an OperationOutcome (`unknown_resource_type`, `resource_not_found`)",
        422: "Input no field can store (a NUL character): an OperationOutcome (`validation_error`)",
        429: "Too many requests: an OperationOutcome",
    }.items()}

router = APIRouter(tags=["fhir"], route_class=FhirRoute, responses=FHIR_RESPONSES)


def fhir_base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/api/v1" + BASE


def _json(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), media_type=fhir.FHIR_JSON)


def _ok(description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {fhir.FHIR_JSON: {"schema": {"type": "object"}}}}}


@router.get(f"{BASE}/metadata", operation_id="fhir_capabilities", response_class=Response,
            responses=_ok("The CapabilityStatement"))
async def capabilities(request: Request) -> Response:
    """What this FHIR server serves (no sign-in needed): read and search of each resource type."""
    return _json(fhir_search.capabilities(fhir_base(request)))


def _add_routes(type_name: str) -> None:
    kind = fhir_search.REGISTRY[type_name]
    params = [{"name": name, "in": "query", "required": False, "description": doc, "schema": {"type": "string"}}
              for name, _, doc in (*fhir_search.COMMON_DOCS, *kind.params,
                                   ("_count", "number", f"Page size (at most {fhir_search.MAX_COUNT})"),
                                   ("_cursor", "string", "From the `next` link of the previous page"))]

    async def search(request: Request, session: AsyncSession = Depends(get_db),
                     actor: Actor = current_actor(STAFF_AND_INTEGRATION)) -> Response:
        return _json(await fhir_search.search(session, actor, type_name, list(request.query_params.multi_items()),
                                              fhir_base(request)))

    async def read(resource_id: str, session: AsyncSession = Depends(get_db),
                   actor: Actor = current_actor(STAFF_AND_INTEGRATION)) -> Response:
        return _json(await fhir_search.read(session, actor, type_name, resource_id))

    slug = "".join(f"_{c.lower()}" if c.isupper() else c for c in type_name).lstrip("_")
    search.__doc__ = f"Search {type_name} resources: a searchset Bundle, paged with `_count` and the next link."
    read.__doc__ = f"One {type_name} by id."
    router.add_api_route(f"{BASE}/{type_name}", search, methods=["GET"], operation_id=f"fhir_search_{slug}",
                         response_class=Response, responses=_ok("A searchset Bundle"),
                         openapi_extra={"parameters": params}, name=f"fhir_search_{slug}")
    router.add_api_route(f"{BASE}/{type_name}/{{resource_id}}", read, methods=["GET"],
                         operation_id=f"fhir_read_{slug}", response_class=Response,
                         responses=_ok(f"The {type_name}"), name=f"fhir_read_{slug}")


for _type_name in list(fhir_search.REGISTRY):
    _add_routes(_type_name)


@router.get(f"{BASE}/{{resource_type}}", operation_id="fhir_search_unknown", include_in_schema=False)
async def unknown_type_search(resource_type: str) -> Response:
    raise fhir_search.UnknownResourceType(resource_type)


@router.get(f"{BASE}/{{resource_type}}/{{resource_id}}", operation_id="fhir_read_unknown", include_in_schema=False)
async def unknown_type_read(resource_type: str, resource_id: str) -> Response:
    raise fhir_search.UnknownResourceType(resource_type)
