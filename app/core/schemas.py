"""Building blocks shared by every context's request schemas."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, StrictInt


class Strict(BaseModel):
    """Request bodies: unknown fields are refused (a typo must not be silently dropped)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _timestamp_text(value: Any) -> Any:
    # Pydantic's lax mode reads 12345 as seconds since 1970; for a clinic that is always a client bug.
    # (datetime objects come from our own code, e.g. the demo seed, never from JSON.)
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 timestamp string with an offset, e.g. 2026-11-22T10:00:00+08:00")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_timestamp_text)]
"""An instant given as RFC 3339 text with its UTC offset."""

Fen = StrictInt
"""An amount in integer fen; a float or a string amount is refused, never rounded."""


# C0 controls (tab and newline too: a name is one line), DEL and C1 controls. Nobody types them; they
# arrive pasted from other systems, print as nothing or garbage, and .xlsx cannot hold most of them.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _no_control_characters(value: str) -> str:
    found = _CONTROL_CHARACTERS.search(value)
    if found:
        raise ValueError(f"must not contain control characters (found U+{ord(found.group()):04X})")
    return value


Name = Annotated[str, AfterValidator(_no_control_characters)]
"""A name people read (of a member, store, staff member, service, product, card template, tag…): one line
of text without control characters. Length limits stay with each field (`name: Name = Field(max_length=50)`)."""


# The mini-program loads images only over https (and only from domains set in its console); 500 characters
# holds any CDN or object-store URL with its signature.
_HTTPS_URL = re.compile(r"https://[^\s/?#]+[^\s]*")


def _https_url(value: str) -> str:
    if len(value) > 500 or not _HTTPS_URL.fullmatch(value):
        raise ValueError("must be an https:// URL without spaces, at most 500 characters")
    return _no_control_characters(value)


ImageUrl = Annotated[str, AfterValidator(_https_url)]
"""An image the mini-program shows (a store photo, a therapist's portrait): an https URL."""
