"""Input no endpoint can store, refused before any endpoint runs.

PostgreSQL `text` cannot hold the NUL character (U+0000), and UTF-8 cannot encode a lone UTF-16
surrogate (U+D800–U+DFFF, which JSON and GraphQL string escapes such as `"\\ud800"` can produce): a
string carrying either fails inside the database (or worse, in a query filter, or while encoding an
answer) long after validation said yes. JSON allows both and so do URL-encoded forms and query strings
(`%00`), so they are refused here, for every route at once, as a 422 naming the field. GraphQL runs the
same check over its documents and variables (`app/graphql/input_checks.py`). Binary uploads
(multipart) are left alone: a file may contain any byte.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

NUL = "\x00"
NUL_MESSAGE = "must not contain the NUL character (\\u0000)"
NUL_ERROR_TYPE = "string_nul"
SURROGATE_MESSAGE = "must not contain a lone UTF-16 surrogate (\\ud800-\\udfff)"
SURROGATE_ERROR_TYPE = "string_surrogate"
# After decoding, a pair of surrogates is one character, so any surrogate left in a str is a lone one.
_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON body that may decode to one: an escaped NUL or an escaped surrogate.
_SUSPECT_JSON = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")

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


def unstorable(text: str) -> tuple[str, str] | None:
    """(message, error type) when the text holds what no field can store; None when it is fine."""
    if NUL in text:
        return NUL_MESSAGE, NUL_ERROR_TYPE
    if _SURROGATE.search(text):
        return SURROGATE_MESSAGE, SURROGATE_ERROR_TYPE
    return None


def unstorable_in(value: Any, loc: Loc = ()) -> list[tuple[Loc, str, str]]:
    """(location, message, type) for every unstorable string (or key) in a decoded JSON value."""
    if isinstance(value, str):
        bad = unstorable(value)
        return [(loc, *bad)] if bad else []
    found: list[tuple[Loc, str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            bad = unstorable(key) if isinstance(key, str) else None
            found.extend([((*loc, key), *bad)] if bad else unstorable_in(item, (*loc, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(unstorable_in(item, (*loc, index)))
    return found


def _in_pairs(encoded: str, section: str) -> list[Loc]:
    try:
        pairs = parse_qsl(encoded, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return []  # not ours to judge; the endpoint reports what it cannot parse
    return [(section, name) for name, value in pairs if NUL in name or NUL in value]


def unstorable_errors(scope: dict[str, Any], body: bytes | None, media: str) -> list[dict[str, Any]]:
    """Validation errors (pydantic's shape: loc, msg, type) for every NUL or lone surrogate in the path,
    query or body."""
    found: list[tuple[Loc, str, str]] = []
    if NUL in scope.get("path", ""):
        found.append((("path",), NUL_MESSAGE, NUL_ERROR_TYPE))
    query = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        found.extend((loc, NUL_MESSAGE, NUL_ERROR_TYPE) for loc in _in_pairs(query.decode("latin-1"), "query"))
    if body:
        if is_json(media) and _SUSPECT_JSON.search(body):
            try:
                found.extend(unstorable_in(json.loads(body), ("body",)))
            except ValueError:
                pass  # malformed JSON: the endpoint answers 400 malformed_json
        elif is_form(media) and (b"%00" in body or b"\x00" in body):
            found.extend((loc, NUL_MESSAGE, NUL_ERROR_TYPE) for loc in _in_pairs(body.decode("latin-1"), "body"))
    return [{"loc": loc, "msg": msg, "type": kind} for loc, msg, kind in found]
