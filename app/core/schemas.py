"""Building blocks shared by every context's request schemas."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, StrictInt


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
