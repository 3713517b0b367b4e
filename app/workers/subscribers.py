"""Every module that reacts to outbox events, imported so that its `@on(...)` handlers are registered in
any process that runs jobs (`careloop worker`, or the worker inside `careloop serve`)."""

from app.domain.booking import waitlist  # noqa: F401  appointment.cancelled/rescheduled/booked
