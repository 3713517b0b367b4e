"""The topics booking emits (payloads as emitted; see docs/events.md for who consumes them)."""

from __future__ import annotations

from app.core.events import topic

# Every appointment event carries the appointment as it is after the change (`appointments._payload`).
APPOINTMENT_KEYS = ("appointment_id", "visit_id", "member_id", "store_id", "service_id", "staff_id", "starts_at",
                    "ends_at", "status", "channel", "schedule_version")

APPOINTMENT_BOOKED = topic("appointment.booked", "An appointment was booked", *APPOINTMENT_KEYS, "resource_ids")
APPOINTMENT_RESCHEDULED = topic(
    "appointment.rescheduled", "An appointment was moved (the previous time and staff member are kept)",
    *APPOINTMENT_KEYS, "resource_ids", "previous_starts_at", "previous_ends_at", "previous_staff_id")
APPOINTMENT_CANCELLED = topic("appointment.cancelled", "An appointment was cancelled and its time freed",
                              *APPOINTMENT_KEYS, "late", "penalty", "reason")
APPOINTMENT_NO_SHOW = topic("appointment.no_show", "A member did not come to an appointment",
                            *APPOINTMENT_KEYS, "penalty", "reason")
APPOINTMENT_CHECKED_IN = topic("appointment.checked_in", "A member checked in for an appointment", *APPOINTMENT_KEYS)
APPOINTMENT_COMPLETED = topic("appointment.completed", "An appointment was completed (its service performed)",
                              *APPOINTMENT_KEYS, "service_record_id")
APPOINTMENT_REMINDER_DUE = topic(
    "appointment.reminder_due", "The store's reminder time before an appointment has come (a delayed event; "
    "a reschedule bumps schedule_version, so a stale one can be dropped)", *APPOINTMENT_KEYS)

WAITLIST_SLOT_OFFERED = topic("waitlist.slot_offered", "A freed slot was offered to a member on the waitlist "
                              "(and is held for them until hold_expires_at)",
                              "entry_id", "member_id", "store_id", "service_id", "staff_id", "starts_at",
                              "hold_expires_at")
