"""Booking: bookable resources, schedules, appointments and the holds that make double booking impossible.

Every staff member and resource that can be booked has a `bookable_no` (a bigint from `bookables`). An
appointment writes one `appointment_holds` row per thing it occupies, from its start to the end of its
buffer. For staff and capacity-1 resources the hold is `exclusive`, and an exclusion constraint over
(`bookable_no`, time range) refuses an overlapping active hold inside the inserting transaction — the
embedded PostgreSQL has no btree_gist, hence the one-point int8range. Shared resources (a group room of
capacity 3) take non-exclusive holds under a row lock on the resource and a count.

Store-local things (opening hours, weekly shift patterns, closed days) are stored as local wall-clock
times and dates and turned into instants in the store's zone when read; single shifts, time off and
appointments are instants (timestamptz).
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    SmallInteger,
    Text,
    Time,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.models import TENANT_TABLES, TenantRow, created_at_field, tenant_fk, timestamp_field

RESOURCE_KINDS = ("room", "bed", "device")
APPOINTMENT_STATUSES = ("booked", "checked_in", "completed", "cancelled", "no_show")
ACTIVE_STATUSES = ("booked", "checked_in")  # statuses that hold their staff member and resources
CHANNELS = ("mini_program", "wecom", "front_desk", "phone", "his")


class Bookable(SQLModel, table=True):
    """The bigint identity of a bookable staff member or resource, for the holds' exclusion constraint."""

    __tablename__ = "bookables"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "ref_id"),
        CheckConstraint("kind IN ('staff', 'resource')", name="kind_known"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    # Unique across tenants (an identity), so the holds' constraint can key on it alone.
    bookable_no: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=True),
                                                                   primary_key=True))
    kind: str = Field(sa_type=Text)
    ref_id: UUID


class Resource(TenantRow, table=True):
    """A room, bed or device of one store; `pool` groups interchangeable ones (推拿床, 艾灸仪)."""

    __tablename__ = "resources"
    __table_args__ = (
        tenant_fk(["store_id"], "stores"),
        UniqueConstraint("tenant_id", "store_id", "name"),
        Index("ix_resources_store", "tenant_id", "store_id", "active"),
        CheckConstraint("kind IN ('room', 'bed', 'device')", name="kind_known"),
        CheckConstraint("capacity BETWEEN 1 AND 100", name="capacity_range"),
    )

    store_id: UUID
    kind: str = Field(sa_type=Text)
    name: str = Field(sa_type=Text)
    pool: str | None = Field(default=None, sa_type=Text)
    capacity: int = Field(default=1, sa_type=Integer)
    bookable_no: int = Field(sa_type=BigInteger)
    active: bool = True
    updated_at: datetime | None = timestamp_field()


class StaffSkill(SQLModel, table=True):
    """Which services a staff member may perform (and so be booked for)."""

    __tablename__ = "staff_skills"
    __table_args__ = (
        tenant_fk(["staff_id"], "staff", ondelete="CASCADE"),
        tenant_fk(["service_id"], "services"),
        Index("ix_staff_skills_service", "tenant_id", "service_id"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    staff_id: UUID = Field(primary_key=True)
    service_id: UUID = Field(primary_key=True)
    created_at: datetime | None = created_at_field()


class StoreHours(TenantRow, table=True):
    """Opening hours: one or more local time ranges per ISO weekday (1 = Monday); `closes` after
    midnight is written as a time not later than `opens` (e.g. 10:00–02:00)."""

    __tablename__ = "store_hours"
    __table_args__ = (
        tenant_fk(["store_id"], "stores", ondelete="CASCADE"),
        Index("ix_store_hours_store", "tenant_id", "store_id", "weekday"),
        CheckConstraint("weekday BETWEEN 1 AND 7", name="weekday_range"),
    )

    store_id: UUID
    weekday: int = Field(sa_type=SmallInteger)
    opens: time = Field(sa_type=Time)
    closes: time = Field(sa_type=Time)


class StoreClosure(TenantRow, table=True):
    """A local date the store is closed (holidays, renovation)."""

    __tablename__ = "store_closures"
    __table_args__ = (
        tenant_fk(["store_id"], "stores", ondelete="CASCADE"),
        UniqueConstraint("tenant_id", "store_id", "day"),
    )

    store_id: UUID
    day: date = Field(sa_type=Date)
    reason: str | None = Field(default=None, sa_type=Text)


class BookingPolicy(SQLModel, table=True):
    """A store's booking rules; a store without a row uses the defaults of the columns."""

    __tablename__ = "booking_policies"
    __table_args__ = (
        tenant_fk(["store_id"], "stores", ondelete="CASCADE"),
        CheckConstraint("slot_step_minutes BETWEEN 5 AND 240", name="step_range"),
        CheckConstraint("lead_time_minutes >= 0 AND horizon_days BETWEEN 1 AND 365", name="window_range"),
        CheckConstraint("late_cancel_action IN ('none', 'fee', 'deduct_session')", name="late_cancel_known"),
        CheckConstraint("no_show_action IN ('none', 'fee', 'deduct_session')", name="no_show_known"),
        CheckConstraint("no_show_fee >= 0 AND late_cancel_fee >= 0", name="fees_not_negative"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    store_id: UUID = Field(primary_key=True)
    slot_step_minutes: int = Field(default=15, sa_type=Integer)
    lead_time_minutes: int = Field(default=30, sa_type=Integer)  # patients book at least this far ahead
    horizon_days: int = Field(default=30, sa_type=Integer)  # and at most this far
    cancel_window_hours: int = Field(default=2, sa_type=Integer)  # later than this before start is "late"
    late_cancel_action: str = Field(default="none", sa_type=Text)
    late_cancel_fee: int = Field(default=0, sa_type=BigInteger)  # fen
    no_show_action: str = Field(default="none", sa_type=Text)
    no_show_fee: int = Field(default=0, sa_type=BigInteger)  # fen
    reminder_hours_before: int = Field(default=24, sa_type=Integer)
    # Accepted and stored, but schedules nothing any more: the follow-up rule's own delay on service.completed decides.
    follow_up_hours_after: int = Field(default=24, sa_type=Integer)
    updated_at: datetime | None = timestamp_field()


class ShiftPattern(TenantRow, table=True):
    """A weekly-recurring shift: local `starts`–`ends` on the listed ISO weekdays from `valid_from`
    (until `valid_until`); `ends` not later than `starts` runs past midnight."""

    __tablename__ = "shift_patterns"
    __table_args__ = (
        tenant_fk(["staff_id"], "staff"),
        tenant_fk(["store_id"], "stores"),
        Index("ix_shift_patterns_store", "tenant_id", "store_id"),
    )

    staff_id: UUID
    store_id: UUID
    weekdays: list[int] = Field(sa_column=Column(ARRAY(SmallInteger), nullable=False))
    starts: time = Field(sa_type=Time)
    ends: time = Field(sa_type=Time)
    valid_from: date = Field(sa_type=Date)
    valid_until: date | None = Field(default=None, sa_type=Date)
    active: bool = True


class ShiftException(TenantRow, table=True):
    """A local date on which a weekly pattern does not apply (a single shift may replace it)."""

    __tablename__ = "shift_exceptions"
    __table_args__ = (
        tenant_fk(["pattern_id"], "shift_patterns", ondelete="CASCADE"),
        UniqueConstraint("tenant_id", "pattern_id", "day"),
    )

    pattern_id: UUID
    day: date = Field(sa_type=Date)
    reason: str | None = Field(default=None, sa_type=Text)


class Shift(TenantRow, table=True):
    """A single shift, as instants."""

    __tablename__ = "shifts"
    __table_args__ = (
        tenant_fk(["staff_id"], "staff"),
        tenant_fk(["store_id"], "stores"),
        Index("ix_shifts_store_time", "tenant_id", "store_id", "starts_at"),
        Index("ix_shifts_staff_time", "tenant_id", "staff_id", "starts_at"),
        CheckConstraint("ends_at > starts_at AND ends_at <= starts_at + interval '24 hours'", name="span"),
    )

    staff_id: UUID
    store_id: UUID
    starts_at: datetime = Field(sa_type=DateTime(timezone=True))
    ends_at: datetime = Field(sa_type=DateTime(timezone=True))
    note: str | None = Field(default=None, sa_type=Text)


class TimeOff(TenantRow, table=True):
    """Leave or a break: the staff member is not bookable in this span, whatever the shifts say."""

    __tablename__ = "time_off"
    __table_args__ = (
        tenant_fk(["staff_id"], "staff"),
        Index("ix_time_off_staff_time", "tenant_id", "staff_id", "starts_at"),
        CheckConstraint("ends_at > starts_at", name="span"),
        CheckConstraint("kind IN ('leave', 'break')", name="kind_known"),
    )

    staff_id: UUID
    kind: str = Field(sa_type=Text)
    starts_at: datetime = Field(sa_type=DateTime(timezone=True))
    ends_at: datetime = Field(sa_type=DateTime(timezone=True))
    reason: str | None = Field(default=None, sa_type=Text)


class Appointment(TenantRow, table=True):
    """One service for one member with one staff member; a multi-service visit shares `visit_id`."""

    __tablename__ = "appointments"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        tenant_fk(["store_id"], "stores"),
        tenant_fk(["service_id"], "services"),
        tenant_fk(["staff_id"], "staff"),
        Index("ix_appointments_store_time", "tenant_id", "store_id", "starts_at"),
        Index("ix_appointments_staff_time", "tenant_id", "staff_id", "starts_at"),
        Index("ix_appointments_member_time", "tenant_id", "member_id", "starts_at"),
        Index("ix_appointments_visit", "tenant_id", "visit_id"),
        CheckConstraint("ends_at > starts_at AND blocked_until >= ends_at", name="span"),
        CheckConstraint("status IN ('booked', 'checked_in', 'completed', 'cancelled', 'no_show')",
                        name="status_known"),
        CheckConstraint("channel IN ('mini_program', 'wecom', 'front_desk', 'phone', 'his')", name="channel_known"),
    )

    member_id: UUID
    store_id: UUID
    service_id: UUID
    staff_id: UUID
    visit_id: UUID  # the appointment's own id, or the first one's for back-to-back services
    starts_at: datetime = Field(sa_type=DateTime(timezone=True))
    ends_at: datetime = Field(sa_type=DateTime(timezone=True))
    blocked_until: datetime = Field(sa_type=DateTime(timezone=True))  # ends_at + the service's buffer
    status: str = Field(default="booked", sa_type=Text)
    channel: str = Field(default="front_desk", sa_type=Text)
    notes: str | None = Field(default=None, sa_type=Text)
    booked_by_kind: str = Field(sa_type=Text)  # staff / patient / integration
    booked_by_id: UUID | None = None
    cancel_reason: str | None = Field(default=None, sa_type=Text)
    service_record_id: UUID | None = None
    # Reminders are scheduled for this version of the time; a reschedule bumps it and stale ones are dropped.
    schedule_version: int = Field(default=1, sa_type=Integer)
    updated_at: datetime | None = timestamp_field()


class AppointmentHold(TenantRow, table=True):
    """What an active appointment occupies, from its start to the end of its buffer; or what a slot offered
    to a member on the waitlist keeps free for them until the offer is taken or expires (`waitlist_entry_id`:
    the same exclusion constraint then refuses anyone else's booking of it)."""

    __tablename__ = "appointment_holds"
    __table_args__ = (
        tenant_fk(["appointment_id"], "appointments", ondelete="CASCADE"),
        tenant_fk(["waitlist_entry_id"], "waitlist_entries", ondelete="CASCADE"),
        Index("ix_appointment_holds_appointment", "tenant_id", "appointment_id"),
        Index("ix_appointment_holds_waitlist_entry", "tenant_id", "waitlist_entry_id"),
        Index("ix_appointment_holds_bookable_time", "bookable_no", "starts_at"),
        CheckConstraint("ends_at > starts_at", name="span"),
        CheckConstraint("kind IN ('staff', 'resource')", name="kind_known"),
        CheckConstraint("(appointment_id IS NULL) <> (waitlist_entry_id IS NULL)", name="one_owner"),
        # The exclusion constraint itself is created by the migration (SQLModel cannot express it).
    )

    appointment_id: UUID | None = None
    waitlist_entry_id: UUID | None = None
    kind: str = Field(sa_type=Text)
    ref_id: UUID  # the staff member or resource
    bookable_no: int = Field(sa_type=BigInteger)
    starts_at: datetime = Field(sa_type=DateTime(timezone=True))
    ends_at: datetime = Field(sa_type=DateTime(timezone=True))
    exclusive: bool = True
    active: bool = True


class AppointmentStatusChange(TenantRow, table=True):
    """Append-only history of an appointment's status and times."""

    __tablename__ = "appointment_status_history"
    __table_args__ = (
        tenant_fk(["appointment_id"], "appointments"),
        Index("ix_appointment_status_history_appointment", "tenant_id", "appointment_id", "created_at"),
    )

    appointment_id: UUID
    from_status: str | None = Field(default=None, sa_type=Text)
    to_status: str = Field(sa_type=Text)
    starts_at: datetime = Field(sa_type=DateTime(timezone=True))
    staff_id: UUID
    actor_kind: str = Field(sa_type=Text)
    actor_id: UUID | None = None
    reason: str | None = Field(default=None, sa_type=Text)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False,
                                                                             server_default="{}"))


class WaitlistEntry(TenantRow, table=True):
    """A member waiting for a service (optionally a therapist) at a store on a local day."""

    __tablename__ = "waitlist_entries"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        tenant_fk(["store_id"], "stores"),
        tenant_fk(["service_id"], "services"),
        Index("ix_waitlist_entries_day", "tenant_id", "store_id", "day", "status"),
        Index("ix_waitlist_entries_hold_expiry", "hold_expires_at", postgresql_where=text("status = 'offered'")),
        CheckConstraint("status IN ('waiting', 'offered', 'booked', 'cancelled', 'expired')", name="status_known"),
    )

    member_id: UUID
    store_id: UUID
    service_id: UUID
    staff_id: UUID | None = None
    day: date = Field(sa_type=Date)
    status: str = Field(default="waiting", sa_type=Text)
    offered_at: datetime | None = timestamp_field()
    offered_starts_at: datetime | None = timestamp_field()
    offered_staff_id: UUID | None = None
    # While offered, the slot is held for the member until then (`appointment_holds.waitlist_entry_id`).
    hold_expires_at: datetime | None = timestamp_field()
    appointment_id: UUID | None = None
    updated_at: datetime | None = timestamp_field()


class CalendarFeed(TenantRow, table=True):
    """A therapist's iCalendar subscription; only the secret's hash is kept."""

    __tablename__ = "calendar_feeds"
    __table_args__ = (
        tenant_fk(["staff_id"], "staff", ondelete="CASCADE"),
        UniqueConstraint("tenant_id", "token_hash"),
    )

    staff_id: UUID
    token_hash: str = Field(sa_type=Text)
    revoked_at: datetime | None = timestamp_field()


TENANT_TABLES.update({
    "bookables", "resources", "staff_skills", "store_hours", "store_closures", "booking_policies",
    "shift_patterns", "shift_exceptions", "shifts", "time_off", "appointments", "appointment_holds",
    "appointment_status_history", "waitlist_entries", "calendar_feeds",
})
