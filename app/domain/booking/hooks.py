"""Booking requirement checks: what another context requires before a service is booked or completed.

Clinical requires a signed consent for some services; booking and visits must not import clinical (clinical
reads them), so clinical registers its checks here when it is imported. Each check is an async callable
`(session, actor, member_id, service_id)` that returns nothing or raises an `AppError` (e.g. 409
`consent_required`); it runs in the booking's or the completion's transaction, before anything is written.
A check is on every booking's path: it must cost at most one cheap query.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor

RequirementCheck = Callable[[AsyncSession, Actor, UUID, UUID], Awaitable[None]]

BOOKING_CHECKS: list[RequirementCheck] = []
COMPLETION_CHECKS: list[RequirementCheck] = []


def booking_requirement(fn: RequirementCheck) -> RequirementCheck:
    """Register a check run before a service is booked for a member (every booking path: front desk,
    mini-program, sidebar, waitlist offers)."""
    if fn not in BOOKING_CHECKS:
        BOOKING_CHECKS.append(fn)
    return fn


def completion_requirement(fn: RequirementCheck) -> RequirementCheck:
    """Register a check run before a service is completed for a member (from an appointment or walk-in)."""
    if fn not in COMPLETION_CHECKS:
        COMPLETION_CHECKS.append(fn)
    return fn


async def check_booking(session: AsyncSession, actor: Actor, member_id: UUID, service_id: UUID) -> None:
    for check in BOOKING_CHECKS:
        await check(session, actor, member_id, service_id)


async def check_completion(session: AsyncSession, actor: Actor, member_id: UUID, service_id: UUID) -> None:
    for check in COMPLETION_CHECKS:
        await check(session, actor, member_id, service_id)
