"""Form definitions as data, and the check of filled-in values against them.

A definition is sections of fields. Each field has a stable `key` (the name of its value) and a type:

- `text` (max_length), `number` (unit, min, max), `scale` (integer min..max, e.g. VAS 0–10), `date`
  (YYYY-MM-DD), `boolean`;
- `single_select` / `multi_select` with `options[]` of stable `code`s (labels may change, codes never);
- `body_region`: a list of region codes (the field's options, or the built-in `BODY_REGIONS`);
- `signature` / `image`: for now a reference string (a file-store key or URL), not the file itself.

`staff_only` fields (a clinician's private remark) are never shown to the patient in the mini-program; the
rest of a signed record is.

`required` fields must have a value when shown; `shown_if` (`{"field": key, "equals": v}` or
`{"field": key, "any_of": [...]}`) shows a field only when an earlier field has that value (for a
multi-select: contains one of them). A value for a field that is not shown is refused, so a record never
carries answers its form did not ask for.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.errors import AppError

FieldType = Literal["text", "number", "scale", "date", "boolean", "single_select", "multi_select",
                    "body_region", "signature", "image"]
SELECTS = {"single_select", "multi_select", "body_region"}
KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_TEXT = 5000
MAX_REFERENCE = 500

BODY_REGIONS: list[tuple[str, str]] = [
    ("head", "头部"), ("face", "面部"), ("forehead", "额部"), ("periorbital", "眼周"), ("cheek", "面颊"),
    ("nose", "鼻部"), ("chin", "下颌"), ("neck", "颈部"), ("shoulder_left", "左肩"), ("shoulder_right", "右肩"),
    ("upper_back", "上背部"), ("lower_back", "腰部"), ("chest", "胸部"), ("abdomen", "腹部"),
    ("arm_left", "左上肢"), ("arm_right", "右上肢"), ("hip", "臀部"), ("knee_left", "左膝"),
    ("knee_right", "右膝"), ("leg_left", "左下肢"), ("leg_right", "右下肢"), ("foot", "足部"),
]


class Option(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=KEY_PATTERN)
    label: str = Field(min_length=1, max_length=100)


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(pattern=KEY_PATTERN)
    equals: str | int | float | bool | None = None
    any_of: list[str | int | float | bool] | None = Field(None, max_length=100)

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        if (self.equals is None) == (self.any_of is None):
            raise ValueError("a condition has exactly one of `equals` or `any_of`")
        return self


class FormField(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(pattern=KEY_PATTERN)
    label: str = Field(min_length=1, max_length=200)
    type: FieldType
    required: bool = False
    help: str | None = Field(None, max_length=500)
    unit: str | None = Field(None, max_length=20)
    min: float | None = None
    max: float | None = None
    max_length: int | None = Field(None, ge=1, le=MAX_TEXT)
    options: list[Option] | None = Field(None, max_length=200)
    shown_if: Condition | None = None
    staff_only: bool = Field(False, description="Never shown to the patient (a clinician's private remark)")

    @model_validator(mode="after")
    def _consistent(self) -> FormField:
        if self.type in {"single_select", "multi_select"} and not self.options:
            raise ValueError(f"{self.key}: a {self.type} field needs options")
        if self.options:
            if self.type not in SELECTS:
                raise ValueError(f"{self.key}: only select and body_region fields have options")
            codes = [o.code for o in self.options]
            if len(set(codes)) != len(codes):
                raise ValueError(f"{self.key}: option codes must be unique")
        if self.type == "scale" and (self.min is None or self.max is None):
            raise ValueError(f"{self.key}: a scale needs min and max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{self.key}: min is above max")
        if self.type == "body_region" and not self.options:
            self.options = [Option(code=c, label=label) for c, label in BODY_REGIONS]
        return self


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(pattern=KEY_PATTERN)
    title: str = Field(min_length=1, max_length=200)
    fields: list[FormField] = Field(min_length=1, max_length=200)


class FormDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sections: list[Section] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _keys(self) -> FormDefinition:
        check_sections(self.sections)
        return self

    def fields(self) -> list[FormField]:
        return [f for s in self.sections for f in s.fields]


def check_sections(sections: list[Section]) -> None:
    """Field keys unique across sections; a condition names an earlier field."""
    seen: set[str] = set()
    for section in sections:
        for f in section.fields:
            if f.key in seen:
                raise ValueError(f"field key {f.key!r} is used twice")
            if f.shown_if is not None and f.shown_if.field not in seen:
                raise ValueError(f"{f.key}: shown_if must name an earlier field")
            seen.add(f.key)


def field_error(field: str, message: str) -> FormValueError:
    """A `FormValueError` naming one field."""
    return FormValueError([{"field": field, "message": message, "type": "invalid_value"}])


class FormValueError(AppError):
    """Values that do not fit the form: the standard `validation_error` shape, each field named
    `values.<key>`, so a client handles it as any other 422."""

    code, status, title = "validation_error", 422, "Invalid request"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        first = errors[0]
        detail = f"{first['field']}: {first['message']}"
        if len(errors) > 1:
            detail += f" (and {len(errors) - 1} more)"
        super().__init__(detail, errors=errors)


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python; a boolean condition matches only a boolean answer.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _shown(f: FormField, values: dict[str, Any]) -> bool:
    if f.shown_if is None:
        return True
    actual = values.get(f.shown_if.field)
    wanted = [f.shown_if.equals] if f.shown_if.any_of is None else f.shown_if.any_of
    answers = actual if isinstance(actual, list) else [actual]
    return any(_same(a, w) for a in answers if a is not None for w in wanted)


def _check(f: FormField, value: Any) -> str | None:
    """Why `value` does not fit `f`, or None."""
    kind = f.type
    if kind in {"text", "signature", "image"}:
        limit = f.max_length or (MAX_TEXT if kind == "text" else MAX_REFERENCE)
        if not isinstance(value, str):
            return "must be a string" if kind == "text" else "must be a reference string (file key or URL)"
        if kind != "text" and not value.strip():
            return "must not be empty"
        return f"must be at most {limit} characters" if len(value) > limit else None
    if kind in {"number", "scale"}:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        if kind == "scale" and not float(value).is_integer():
            return "must be a whole number on the scale"
        if value != value or value in (float("inf"), float("-inf")):
            return "must be a finite number"
        if f.min is not None and value < f.min:
            return f"must be at least {f.min:g}"
        if f.max is not None and value > f.max:
            return f"must be at most {f.max:g}"
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "date":
        if not isinstance(value, str):
            return "must be a date (YYYY-MM-DD)"
        try:
            date.fromisoformat(value)
        except ValueError:
            return "must be a date (YYYY-MM-DD)"
        return None if len(value) == 10 else "must be a date (YYYY-MM-DD)"
    codes = {o.code for o in f.options or []}
    if kind == "single_select":
        if not isinstance(value, str):
            return "must be one option code"
        return None if value in codes else f"unknown option {value[:50]!r}"
    # multi_select, body_region: a list of distinct codes
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "must be a list of option codes"
    unknown = [v for v in value if v not in codes]
    if unknown:
        return f"unknown option {unknown[0][:50]!r}"
    if len(set(value)) != len(value):
        return "lists an option twice"
    return None


def validate_values(definition: FormDefinition, values: dict[str, Any]) -> dict[str, Any]:
    """The values to store (nulls dropped), or FormValueError naming every field that does not fit."""
    fields = {f.key: f for f in definition.fields()}
    errors: list[dict[str, str]] = []
    for key in values:
        if key not in fields:
            errors.append({"field": f"values.{key}", "message": "is not a field of this form", "type": "unknown_field"})
    clean = {k: v for k, v in values.items() if k in fields and v is not None and v != []}
    for key, f in fields.items():
        shown = _shown(f, clean)
        if key in clean:
            if not shown:
                errors.append({"field": f"values.{key}", "message": "is not asked unless "
                               f"{f.shown_if.field} has another answer" if f.shown_if else "is not asked",
                               "type": "not_shown"})
                continue
            problem = _check(f, clean[key])
            if problem:
                errors.append({"field": f"values.{key}", "message": problem, "type": "invalid_value"})
        elif f.required and shown:
            errors.append({"field": f"values.{key}", "message": "is required", "type": "missing"})
    if errors:
        raise FormValueError(errors)
    return clean
