"""Request and response models of booking's schedule data: resources, staff skills, shifts, weekly shift
patterns, time off, store hours, closed days and the booking policy.

Instants are RFC 3339 text with an offset (`Timestamp`); store-local wall-clock times are "HH:MM" and
store-local days "YYYY-MM-DD". Dates before 2000 or more than two years ahead are refused: a shift in
1900 or 2031 is a typo (or a two-digit year), and accepting it would only hide the mistake.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from app.core.clock import utcnow
from app.core.schemas import Name, Strict, Timestamp

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# "Two years ahead" with a leap day's slack, so a booking sheet for the same date two years on is accepted.
HORIZON = timedelta(days=731)
MAX_SHIFT = timedelta(hours=24)
MAX_BREAK = timedelta(hours=24)
MAX_LEAVE = timedelta(days=366)
MAX_LIST_RANGE = timedelta(days=62)
MAX_PRICE = 100_000_000  # fen: ¥1,000,000, as in the catalog
MAX_RANGES_PER_DAY = 6

ResourceKind = Literal["room", "bed", "device"]
TimeOffKind = Literal["leave", "break"]
PolicyAction = Literal["none", "fee", "deduct_session"]

Capacity = Annotated[int, Field(strict=True, ge=1, le=100, description="How many appointments it holds at once")]
Weekday = Annotated[int, Field(strict=True, ge=1, le=7, description="ISO weekday: 1 = Monday … 7 = Sunday")]
PoolName = Annotated[str, Field(min_length=1, max_length=50,
                                description="Groups interchangeable resources (推拿床); a service's `pool` names it")]
Reason = Annotated[str, Field(min_length=1, max_length=500)]

_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
CLOCK_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d$"


def _clock_in(value: Any) -> Any:
    if isinstance(value, time):  # from the database, for the response models
        return value
    if isinstance(value, str) and (match := _CLOCK.fullmatch(value)):
        return time(int(match.group(1)), int(match.group(2)))
    raise ValueError("must be a local time 'HH:MM' from 00:00 to 23:59, e.g. 09:30")


def _clock_out(value: time) -> str:
    return value.strftime("%H:%M")


ClockTime = Annotated[
    time,
    BeforeValidator(_clock_in),
    PlainSerializer(_clock_out, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": CLOCK_PATTERN, "examples": ["09:30"],
                    "description": "Store-local wall-clock time, HH:MM"}),
]


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _day_in(value: Any) -> Any:
    # Only the calendar form: lax parsing would read 20261225 or epoch seconds as a date.
    if isinstance(value, date):  # from the database, for the response models
        return value
    if isinstance(value, str) and _DAY.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("must be a date YYYY-MM-DD, e.g. 2026-12-25")


LocalDay = Annotated[
    date,
    BeforeValidator(_day_in),
    WithJsonSchema({"type": "string", "format": "date", "description": "Store-local date, YYYY-MM-DD"}),
]


# ---------------------------------------------------------------- shared checks


def check_instant(value: datetime) -> datetime:
    if value < EARLIEST:
        raise ValueError("is before 2000; check the year")
    if value > utcnow() + HORIZON:
        raise ValueError("is more than two years ahead")
    return value


def check_day(value: date) -> date:
    if value < EARLIEST.date():
        raise ValueError("is before 2000; check the year")
    # A day east of UTC starts before UTC's: one day of slack.
    if value > (utcnow() + HORIZON).date() + timedelta(days=1):
        raise ValueError("is more than two years ahead")
    return value


def check_optional_day(value: date | None) -> date | None:
    return None if value is None else check_day(value)


def _not_null(value: Any) -> Any:
    """PATCH: leaving a field out keeps it; sending null for a required column is an error."""
    if value is None:
        raise ValueError("may not be null; leave the field out to keep its value")
    return value


def _ends_after(ends_at: datetime, info: ValidationInfo, longest: timedelta, what: str) -> datetime:
    starts_at = info.data.get("starts_at")
    if starts_at is None:  # starts_at itself was refused; that error is the one to read
        return ends_at
    if ends_at <= starts_at:
        raise ValueError("must be after starts_at")
    if ends_at - starts_at > longest:
        raise ValueError(f"{what} lasts at most {_span_text(longest)}")
    return ends_at


def _span_text(span: timedelta) -> str:
    return f"{span.days} days" if span.days > 1 else f"{int(span.total_seconds() // 3600)} hours"


# ---------------------------------------------------------------- resources


class ResourceCreate(Strict):
    store_id: UUID
    kind: ResourceKind
    name: Name = Field(min_length=1, max_length=100, description="Unique within the store, e.g. 1号房, 艾灸仪A")
    capacity: Capacity = 1
    pool: PoolName | None = None


class ResourceUpdate(Strict):
    name: Name | None = Field(None, min_length=1, max_length=100)
    pool: PoolName | None = Field(None, description="null takes the resource out of its pool")
    capacity: Capacity | None = Field(None, description="Refused while the resource has bookings to come")
    active: bool | None = Field(None, description="false: no new bookings (resources are never deleted)")

    _required = field_validator("name", "capacity", "active")(_not_null)


class ResourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    store_id: UUID
    kind: str
    name: str
    pool: str | None
    capacity: int
    active: bool
    created_at: datetime | None
    updated_at: datetime | None


# ---------------------------------------------------------------- staff skills


class StaffSkillsSet(Strict):
    service_ids: list[UUID] = Field(max_length=500, description="Replaces the staff member's skills; [] clears them")


class StaffSkillsOut(BaseModel):
    staff_id: UUID
    service_ids: list[UUID]


# ---------------------------------------------------------------- single shifts


class ShiftCreate(Strict):
    staff_id: UUID
    store_id: UUID
    starts_at: Timestamp
    ends_at: Timestamp = Field(description="After starts_at, at most 24 hours later")
    note: str | None = Field(None, max_length=500)

    _window = field_validator("starts_at", "ends_at")(check_instant)

    @field_validator("ends_at")
    @classmethod
    def _span(cls, ends_at: datetime, info: ValidationInfo) -> datetime:
        return _ends_after(ends_at, info, MAX_SHIFT, "a shift")


class ShiftOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    staff_id: UUID
    store_id: UUID
    starts_at: datetime
    ends_at: datetime
    note: str | None
    created_at: datetime | None


# ---------------------------------------------------------------- weekly shift patterns


class ShiftPatternCreate(Strict):
    """Every listed weekday from `valid_from` (to `valid_until`, inclusive), local `starts`–`ends`; `ends`
    not later than `starts` runs past midnight into the next day (22:00–06:00; 08:00–08:00 is 24 hours)."""

    staff_id: UUID
    store_id: UUID
    weekdays: list[Weekday] = Field(min_length=1, max_length=7)
    starts: ClockTime
    ends: ClockTime
    valid_from: LocalDay
    valid_until: LocalDay | None = Field(None, description="Last day it applies; null: until further notice")

    _days = field_validator("valid_from", "valid_until")(check_optional_day)

    @field_validator("weekdays")
    @classmethod
    def _distinct(cls, weekdays: list[int]) -> list[int]:
        if len(set(weekdays)) != len(weekdays):
            raise ValueError("lists a weekday twice")
        return sorted(weekdays)

    @field_validator("valid_until")
    @classmethod
    def _after_start(cls, valid_until: date | None, info: ValidationInfo) -> date | None:
        valid_from = info.data.get("valid_from")
        if valid_until is not None and valid_from is not None and valid_until < valid_from:
            raise ValueError("is before valid_from")
        return valid_until


class ShiftPatternUpdate(Strict):
    valid_until: LocalDay | None = Field(None, description="null: until further notice")
    active: bool | None = None

    _active = field_validator("active")(_not_null)
    _day = field_validator("valid_until")(check_optional_day)


class ShiftExceptionCreate(Strict):
    day: LocalDay = Field(description="The store-local day the skipped occurrence starts on")
    reason: Reason | None = None

    _day = field_validator("day")(check_day)


class ShiftExceptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    pattern_id: UUID
    day: date
    reason: str | None
    created_at: datetime | None


class ShiftPatternOut(BaseModel):
    id: UUID
    staff_id: UUID
    store_id: UUID
    weekdays: list[int]
    starts: ClockTime
    ends: ClockTime
    overnight: bool = Field(description="ends on the next day")
    valid_from: date
    valid_until: date | None
    active: bool
    exceptions: list[ShiftExceptionOut]
    created_at: datetime | None


# ---------------------------------------------------------------- time off


class TimeOffCreate(Strict):
    staff_id: UUID
    kind: TimeOffKind
    starts_at: Timestamp
    ends_at: Timestamp = Field(description="After starts_at; a break lasts at most 24 hours, leave 366 days")
    reason: Reason | None = None

    _window = field_validator("starts_at", "ends_at")(check_instant)

    @field_validator("ends_at")
    @classmethod
    def _span(cls, ends_at: datetime, info: ValidationInfo) -> datetime:
        if info.data.get("kind") == "break":
            return _ends_after(ends_at, info, MAX_BREAK, "a break")
        return _ends_after(ends_at, info, MAX_LEAVE, "leave")


class TimeOffOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    staff_id: UUID
    kind: str
    starts_at: datetime
    ends_at: datetime
    reason: str | None
    created_at: datetime | None


# ---------------------------------------------------------------- store hours and closed days


class OpeningRange(Strict):
    weekday: Weekday
    opens: ClockTime
    closes: ClockTime = Field(description="Not later than `opens`: closes after midnight (10:00–02:00); "
                                          "equal to `opens`: open around the clock")


def _week_minutes(r: OpeningRange) -> tuple[int, int]:
    start = (r.weekday - 1) * 1440 + r.opens.hour * 60 + r.opens.minute
    length = (r.closes.hour * 60 + r.closes.minute) - (r.opens.hour * 60 + r.opens.minute)
    return start, length if length > 0 else length + 1440


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    week = 7 * 1440
    # On the circular week (Sunday's late hours run into Monday) compare b at its place and a week on.
    return any(a[0] < b[0] + shift + b[1] and b[0] + shift < a[0] + a[1] for shift in (-week, 0, week))


class StoreHoursSet(Strict):
    hours: list[OpeningRange] = Field(max_length=7 * MAX_RANGES_PER_DAY,
                                      description="The whole week; several ranges a day allowed; [] clears")

    @field_validator("hours")
    @classmethod
    def _no_overlaps(cls, hours: list[OpeningRange]) -> list[OpeningRange]:
        spans = [_week_minutes(r) for r in hours]
        for i, a in enumerate(spans):
            for j in range(i + 1, len(spans)):
                if _overlap(a, spans[j]):
                    raise ValueError(f"range {j} (weekday {hours[j].weekday}) overlaps range {i} "
                                     f"(weekday {hours[i].weekday})")
        return sorted(hours, key=lambda r: (r.weekday, r.opens))


class OpeningRangeOut(BaseModel):
    weekday: int
    opens: ClockTime
    closes: ClockTime


class StoreHoursOut(BaseModel):
    store_id: UUID
    timezone: str
    hours: list[OpeningRangeOut]


class ClosureCreate(Strict):
    day: LocalDay
    reason: Reason | None = Field(None, description="e.g. 春节休息, 装修")

    _day = field_validator("day")(check_day)


class ClosureOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    store_id: UUID
    day: date
    reason: str | None
    created_at: datetime | None


# ---------------------------------------------------------------- booking policy


def _minutes(low: int, high: int, description: str) -> Any:
    return Field(strict=True, ge=low, le=high, description=description)


class BookingPolicySet(Strict):
    """The whole policy (ranges as the table's check constraints, with upper bounds where it has none)."""

    slot_step_minutes: int = _minutes(5, 240, "Slots start every this many minutes")
    lead_time_minutes: int = _minutes(0, 30 * 1440, "Patients book at least this far ahead")
    horizon_days: int = _minutes(1, 365, "… and at most this many days ahead")
    cancel_window_hours: int = _minutes(0, 720, "A cancellation closer to the start than this is late")
    late_cancel_action: PolicyAction
    late_cancel_fee: int = Field(strict=True, ge=0, le=MAX_PRICE, description="fen")
    no_show_action: PolicyAction
    no_show_fee: int = Field(strict=True, ge=0, le=MAX_PRICE, description="fen")
    reminder_hours_before: int = _minutes(0, 168, "Reminder this many hours before the start")
    follow_up_hours_after: int = _minutes(0, 720, "Follow-up this many hours after the end")

    @field_validator("horizon_days")
    @classmethod
    def _horizon_after_lead(cls, horizon: int, info: ValidationInfo) -> int:
        lead = info.data.get("lead_time_minutes")
        if lead is not None and lead >= horizon * 1440:
            raise ValueError("leaves no bookable time after lead_time_minutes")
        return horizon

    @field_validator("late_cancel_fee", "no_show_fee")
    @classmethod
    def _fee_with_action(cls, fee: int, info: ValidationInfo) -> int:
        action = info.data.get("late_cancel_action" if info.field_name == "late_cancel_fee" else "no_show_action")
        if action == "fee" and fee == 0:
            raise ValueError("must be above 0 when the action is 'fee'")
        return fee


class BookingPolicyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    store_id: UUID
    slot_step_minutes: int
    lead_time_minutes: int
    horizon_days: int
    cancel_window_hours: int
    late_cancel_action: str
    late_cancel_fee: int
    no_show_action: str
    no_show_fee: int
    reminder_hours_before: int
    follow_up_hours_after: int
    is_default: bool = Field(False, description="true: the store has set no policy and these are the defaults")
    updated_at: datetime | None


# ---------------------------------------------------------------- store readiness

ReadinessCode = Literal["store_active", "opening_hours", "staff_with_skills", "shifts", "resources"]


class ReadinessCheck(BaseModel):
    code: ReadinessCode = Field(description="store_active, opening_hours, staff_with_skills (active staff of the "
                                            "store skilled for an offered service), shifts (such staff on shift "
                                            "in the coming days), resources (every room, bed or device those "
                                            "services need is at the store)")
    ok: bool
    message: str = Field(description="What was found, or what to set up, in words")


class StoreReadinessOut(BaseModel):
    store_id: UUID
    ready: bool = Field(description="Every check is ok: nothing in the store's setup keeps slots from being offered")
    days_checked: int = Field(description="How many store-local days from today the shifts check looks at")
    checks: list[ReadinessCheck]
