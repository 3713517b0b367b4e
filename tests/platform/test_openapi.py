"""openapi/openapi.json is what the code generates, with stable operation ids and documented errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

from app.api.errors import PROBLEM_JSON, PROBLEM_RESPONSES
from app.openapi import openapi_json

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")
PROBLEM_REF = "#/components/schemas/Problem"


def _generated() -> dict:
    return json.loads(openapi_json())


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_committed_document_matches_the_code():
    generated = openapi_json()
    committed = COMMITTED.read_text() if COMMITTED.exists() else ""
    if committed != generated:
        old, new = (json.loads(committed) if committed else {"paths": {}}), json.loads(generated)
        old_ops = {(p, m) for p, m, _ in _operations(old)}
        new_ops = {(p, m) for p, m, _ in _operations(new)}
        hint = []
        if new_ops - old_ops:
            hint.append(f"missing from the file: {sorted(new_ops - old_ops)}")
        if old_ops - new_ops:
            hint.append(f"no longer in the code: {sorted(old_ops - new_ops)}")
        raise AssertionError(
            "openapi/openapi.json is out of date with the code; run `careloop export-openapi` "
            "(or `make openapi`) and commit the result. " + "; ".join(hint)
        )


def test_every_operation_has_a_unique_explicit_operation_id():
    document = _generated()
    ids = [(op.get("operationId"), method.upper(), path) for path, method, op in _operations(document)]
    missing = [(m, p) for op_id, m, p in ids if not op_id]
    assert not missing, f"operations without operationId: {missing}"
    seen: dict[str, tuple[str, str]] = {}
    duplicates = []
    for op_id, method, path in ids:
        if op_id in seen:
            duplicates.append((op_id, seen[op_id], (method, path)))
        seen[op_id] = (method, path)
    assert not duplicates, f"operationId used twice: {duplicates}"
    # Without operation_id= FastAPI makes one up from the function name, path and method; such ids
    # change when a route is renamed or moved, and clients generate code from them.
    implicit = [(m, p) for op_id, m, p in ids if op_id.endswith(re.sub(r"\W", "_", p) + "_" + m.lower())]
    assert not implicit, f"routes without an explicit operation_id=: {implicit}"


# WeChat Pay posts its notifications here and reads our refusals in its own format
# (`{"code": "FAIL", "message": …}`), so these two document that instead of problem+json.
WECHAT_FORMAT_ROUTES = {"/api/v1/payments/wechat/notify", "/api/v1/payments/wechat/refund-notify"}
# The FHIR API answers errors as FHIR OperationOutcomes (application/fhir+json) and documents them so.
FHIR_PREFIX = "/api/v1/fhir/"


def test_every_api_route_documents_problem_json_errors():
    document = _generated()
    problem = document["components"]["schemas"].get("Problem")
    assert problem is not None, "components.schemas.Problem is missing"
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    assert "HTTPValidationError" not in document["components"]["schemas"], \
        "FastAPI's default 422 (application/json) is documented somewhere; the API answers problem+json"

    wanted = {str(status) for status in PROBLEM_RESPONSES}
    assert {"400", "401", "403", "404", "409", "413", "422", "429"} <= wanted
    gaps = []
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        if path in WECHAT_FORMAT_ROUTES:
            continue
        if path.startswith(FHIR_PREFIX):
            assert all(set(r.get("content", {})) == {"application/fhir+json"} for status, r in responses.items()
                       if status[:1] in ("4", "5")), f"{method.upper()} {path}: errors not documented as FHIR"
            continue
        if path.startswith("/api/v1/"):
            missing = sorted(wanted - set(responses))
            if missing:
                gaps.append(f"{method.upper()} {path}: no {', '.join(missing)}")
        for status, response in responses.items():
            if status[:1] not in ("4", "5"):
                continue
            content = response.get("content", {})
            schema = content.get(PROBLEM_JSON, {}).get("schema", {})
            if schema.get("$ref") != PROBLEM_REF or set(content) != {PROBLEM_JSON}:
                gaps.append(f"{method.upper()} {path} {status}: documented as {sorted(content) or 'no body'}")
    assert not gaps, "error answers not documented as application/problem+json:\n" + "\n".join(gaps)


async def test_served_document_is_the_exported_one(client):
    r = await client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert r.json() == _generated()
