"""Input no endpoint can store, refused before any endpoint runs.

PostgreSQL `text` cannot hold the NUL character (U+0000): a string carrying one fails inside the
database (or worse, in a query filter) long after validation said yes. JSON allows it (`"\\u0000"`) and
so do URL-encoded forms and query strings (`%00`), so it is refused here, for every route at once,
as a 422 naming the field. Binary uploads (multipart) are left alone: a file may contain any byte.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

NUL = "\x00"
NUL_MESSAGE = "must not contain the NUL character (\\u0000)"
NUL_ERROR_TYPE = "string_nul"

Loc = tuple[str | int, ...]


def media_type(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return ""


def is_json(media: str) -> bool:
    """The media types FastAPI parses as JSON."""
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def is_form(media: str) -> bool:
    return media == "application/x-www-form-urlencoded"


def reads_whole_body(media: str) -> bool:
    """Bodies the checks need in full before the endpoint runs (the endpoint buffers them anyway)."""
    return is_json(media) or is_form(media)


def _in_json(value: Any, loc: Loc) -> list[Loc]:
    if isinstance(value, str):
        return [loc] if NUL in value else []
    found: list[Loc] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend([(*loc, key)] if NUL in key else _in_json(item, (*loc, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_in_json(item, (*loc, index)))
    return found


def _in_pairs(encoded: str, section: str) -> list[Loc]:
    try:
        pairs = parse_qsl(encoded, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return []  # not ours to judge; the endpoint reports what it cannot parse
    return [(section, name) for name, value in pairs if NUL in name or NUL in value]


def nul_errors(scope: dict[str, Any], body: bytes | None, media: str) -> list[dict[str, Any]]:
    """Validation errors (pydantic's shape: loc, msg, type) for every NUL in the path, query or body."""
    locs: list[Loc] = []
    if NUL in scope.get("path", ""):
        locs.append(("path",))
    query = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        locs.extend(_in_pairs(query.decode("latin-1"), "query"))
    if body:
        if is_json(media) and b"\\u0000" in body:
            try:
                locs.extend(_in_json(json.loads(body), ("body",)))
            except ValueError:
                pass  # malformed JSON: the endpoint answers 400 malformed_json
        elif is_form(media) and (b"%00" in body or b"\x00" in body):
            locs.extend(_in_pairs(body.decode("latin-1"), "body"))
    return [{"loc": loc, "msg": NUL_MESSAGE, "type": NUL_ERROR_TYPE} for loc in locs]
