"""The member-profile form engine: typed field definitions and validation of values against them.

Values live in `members.custom_fields` keyed by the definition's `key`. Definitions evolve without
losing data: an option can be retired (old values stay valid and displayed, new writes may not pick
it), a field can be deactivated (its values are kept, hidden and not writable), labels and order
change freely; the type of a field never changes.
"""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any

from app.core.errors import Unprocessable
from app.domain.members.models import CustomFieldDefinition

FIELD_TYPES = ("text", "number", "date", "single_select", "multi_select", "scale", "boolean")
SELECT_TYPES = ("single_select", "multi_select")
MAX_TEXT = 2000
# Only the calendar form: date.fromisoformat would also take "20240105" and week dates ("2024-W01-5").
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _bad(key: str, message: str) -> Unprocessable:
    return Unprocessable(f"custom_fields.{key}: {message}", code="invalid_custom_field", field=f"custom_fields.{key}")


def _option_values(definition: CustomFieldDefinition, *, include_retired: bool) -> set[str]:
    return {o["value"] for o in definition.options if include_retired or not o.get("retired")}


def _is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float: no range or scale can hold it
        return False


def validate_value(definition: CustomFieldDefinition, value: Any, *, previous: Any = None) -> Any:
    """The value to store for one field, or an Unprocessable naming the field."""
    key, kind = definition.key, definition.type
    if value is None:
        if definition.required:
            raise _bad(key, "is required")
        return None
    if kind == "text":
        if not isinstance(value, str):
            raise _bad(key, "must be text")
        limit = definition.max_length or MAX_TEXT
        if len(value) > limit:
            raise _bad(key, f"must be at most {limit} characters")
        if definition.required and not value.strip():
            raise _bad(key, "is required")
        return value
    if kind in ("number", "scale"):
        if not _is_finite_number(value):
            raise _bad(key, "must be a number")
        if kind == "scale" and not float(value).is_integer():
            raise _bad(key, "must be a whole number on the scale")
        if definition.min_value is not None and value < definition.min_value:
            raise _bad(key, f"must be at least {definition.min_value:g}")
        if definition.max_value is not None and value > definition.max_value:
            raise _bad(key, f"must be at most {definition.max_value:g}")
        return int(value) if kind == "scale" else value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _bad(key, "must be true or false")
        return value
    if kind == "date":
        if not isinstance(value, str) or not _DATE.fullmatch(value):
            raise _bad(key, "must be a date (YYYY-MM-DD)")
        try:
            parsed = date.fromisoformat(value)
        except ValueError as exc:
            raise _bad(key, "must be a date (YYYY-MM-DD)") from exc
        if not 1900 <= parsed.year <= 2200:
            raise _bad(key, "is not a plausible date")
        return parsed.isoformat()
    if kind in SELECT_TYPES:
        # A retired option may stay where it already was; it may not be newly chosen.
        kept = set(previous if isinstance(previous, list) else [previous] if previous is not None else [])
        allowed = _option_values(definition, include_retired=False)
        retired = _option_values(definition, include_retired=True) - allowed
        chosen = value if kind == "multi_select" else [value]
        if kind == "multi_select" and not isinstance(value, list):
            raise _bad(key, "must be a list of options")
        if kind == "single_select" and not isinstance(value, str):
            raise _bad(key, "must be one of the options")
        for item in chosen:
            if not isinstance(item, str) or (item not in allowed and not (item in retired and item in kept)):
                raise _bad(key, f"{item!r} is not one of the options")
        if kind == "multi_select":
            if definition.required and not value:
                raise _bad(key, "needs at least one option")
            return sorted(set(value), key=value.index)
        return value
    raise _bad(key, f"has an unknown type {kind!r}")  # pragma: no cover - types are checked on definition


def validate_values(
    definitions: list[CustomFieldDefinition],
    incoming: dict[str, Any],
    current: dict[str, Any] | None = None,
    *,
    creating: bool,
) -> dict[str, Any]:
    """Merge `incoming` into `current`, validating every written field against its definition."""
    current = dict(current or {})
    by_key = {d.key: d for d in definitions}
    for key in incoming:
        definition = by_key.get(key)
        if definition is None:
            raise _bad(key, "is not a defined member field")
        if not definition.active:
            raise _bad(key, "is no longer in use and cannot be written")
    for key, value in incoming.items():
        cleaned = validate_value(by_key[key], value, previous=current.get(key))
        if cleaned is None:
            current.pop(key, None)
        else:
            current[key] = cleaned
    if creating:
        for definition in definitions:
            if definition.active and definition.required and definition.key not in current:
                raise _bad(definition.key, "is required")
    return current


def validate_definition(kind: str, options: list[dict[str, Any]], min_value: float | None,
                        max_value: float | None) -> None:
    if kind not in FIELD_TYPES:
        raise Unprocessable(f"type must be one of {', '.join(FIELD_TYPES)}", code="validation_error", field="type")
    if kind in SELECT_TYPES:
        values = [o.get("value") for o in options]
        if not values:
            raise Unprocessable("select fields need options", code="validation_error", field="options")
        if len(set(values)) != len(values):
            raise Unprocessable("option values must be unique", code="validation_error", field="options")
    elif options:
        raise Unprocessable(f"{kind} fields take no options", code="validation_error", field="options")
    if kind == "scale" and (min_value is None or max_value is None):
        raise Unprocessable("scale fields need min_value and max_value", code="validation_error", field="min_value")
    if min_value is not None and max_value is not None and min_value > max_value:
        raise Unprocessable("min_value must not exceed max_value", code="validation_error", field="min_value")
    if (min_value is not None or max_value is not None) and kind not in ("number", "scale"):
        raise Unprocessable(f"{kind} fields take no range", code="validation_error", field="min_value")
