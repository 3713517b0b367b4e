"""Calendars: the front desk's store-day board (per therapist and per room) and each therapist's
iCalendar (RFC 5545) feed, which a phone's calendar app subscribes to through a secret URL.

The feed URL is a bearer secret that ends up in calendar apps and sync servers, so it carries only
what a therapist needs to turn up: the service, the time, the store and the member's surname.
Only a hash of the secret is stored; issuing a new one revokes the old.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Forbidden, NotFound
from app.domain.booking.models import Appointment, AppointmentHold, CalendarFeed, Resource, StaffSkill
from app.domain.catalog import service as catalog
from app.domain.iam import service as iam
from app.domain.members import service as members
from app.domain.tenancy import service as tenancy

if TYPE_CHECKING:
    from app.domain.tenancy.models import Store

FEED_PAST_DAYS, FEED_FUTURE_DAYS = 30, 90
SHOWN_STATUSES = ("booked", "checked_in", "completed", "no_show")


def _day_bounds(store: Store, day: date) -> tuple[datetime, datetime]:
    zone = ZoneInfo(store.timezone)
    return (datetime.combine(day, time(), zone),
            datetime.combine(day + timedelta(days=1), time(), zone))


async def _names(session: AsyncSession, tenant_id: UUID,
                 appointments: list[Appointment]) -> tuple[dict[UUID, str], dict[UUID, str]]:
    """The services' and the members' names of these appointments (one query each)."""
    services = await catalog.services_by_id(session, tenant_id, {a.service_id for a in appointments})
    member_names = await members.member_names(session, tenant_id, {a.member_id for a in appointments})
    return {service_id: s.name for service_id, s in services.items()}, member_names


def _entry(appointment: Appointment, service_name: str, member_name: str) -> dict[str, Any]:
    return {"id": str(appointment.id), "member_id": str(appointment.member_id), "member_name": member_name,
            "service_id": str(appointment.service_id), "service_name": service_name,
            "staff_id": str(appointment.staff_id), "starts_at": appointment.starts_at.isoformat(),
            "ends_at": appointment.ends_at.isoformat(), "blocked_until": appointment.blocked_until.isoformat(),
            "status": appointment.status, "channel": appointment.channel}


async def store_day(session: AsyncSession, actor: Actor, store_id: UUID, day: date) -> dict[str, Any]:
    """One store-local day: each therapist's and each room's appointments, in time order."""
    actor.require("appointments:read")
    actor.require_store(store_id)
    store = await tenancy.get_store(session, actor, store_id)
    start, end = _day_bounds(store, day)
    appointments = list((await session.exec(
        select(Appointment).where(Appointment.tenant_id == actor.tenant_id, Appointment.store_id == store.id,
                                  Appointment.starts_at < end, Appointment.blocked_until > start,
                                  Appointment.status.in_(SHOWN_STATUSES))
        .order_by(Appointment.starts_at, Appointment.id))).all())
    service_names, member_names = await _names(session, actor.tenant_id, appointments)
    entries = {a.id: _entry(a, service_names[a.service_id], member_names[a.member_id]) for a in appointments}

    staff = await iam.active_staff_of_store(session, actor.tenant_id, store.id)
    shown = {a.staff_id for a in appointments} | await _bookable(session, actor.tenant_id, [s.id for s in staff])
    therapists = [{"staff_id": str(s.id), "name": s.display_name,
                   "appointments": [entries[a.id] for a in appointments if a.staff_id == s.id]}
                  for s in staff if s.id in shown]

    resources = (await session.exec(select(Resource).where(
        Resource.tenant_id == actor.tenant_id, Resource.store_id == store.id, Resource.active)
        .order_by(Resource.kind, Resource.name))).all()
    holds = (await session.exec(select(AppointmentHold).where(
        AppointmentHold.tenant_id == actor.tenant_id, AppointmentHold.kind == "resource",
        AppointmentHold.appointment_id.in_(list(entries)) if entries else False))).all()
    by_resource: dict[UUID, list[dict[str, Any]]] = {}
    for hold in sorted(holds, key=lambda h: (h.starts_at, h.appointment_id)):
        by_resource.setdefault(hold.ref_id, []).append(entries[hold.appointment_id])
    rooms = [{"resource_id": str(r.id), "name": r.name, "kind": r.kind, "pool": r.pool, "capacity": r.capacity,
              "appointments": by_resource.get(r.id, [])} for r in resources]
    return {"store_id": str(store.id), "date": day.isoformat(), "timezone": store.timezone,
            "therapists": therapists, "resources": rooms}


async def _bookable(session: AsyncSession, tenant_id: UUID, staff_ids: list[UUID]) -> set[UUID]:
    """Staff who perform services (have skills) appear on the board even on a free day."""
    if not staff_ids:
        return set()
    return set((await session.exec(select(StaffSkill.staff_id).where(
        StaffSkill.tenant_id == tenant_id, StaffSkill.staff_id.in_(staff_ids)).distinct())).all())


# ---------------------------------------------------------------- iCalendar feeds


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_feed(session: AsyncSession, actor: Actor, staff_id: UUID) -> tuple[CalendarFeed, str]:
    """A new secret feed for the therapist (themselves, or a manager for them); older feeds stop working."""
    if not (actor.kind == "staff" and actor.id == staff_id):
        actor.require("schedule:write")
    if await iam.staff_row(session, actor.tenant_id, staff_id) is None:
        raise NotFound("staff member not found", code="staff_not_found")
    await _revoke_all(session, actor.tenant_id, staff_id)
    token = secrets.token_urlsafe(32)
    feed = CalendarFeed(tenant_id=actor.tenant_id, staff_id=staff_id, token_hash=_hash(token))
    session.add(feed)
    await session.flush()
    audit.record(session, "calendar_feed.issue", "staff", staff_id, feed_id=str(feed.id))
    return feed, token


async def revoke_feeds(session: AsyncSession, actor: Actor, staff_id: UUID) -> int:
    if not (actor.kind == "staff" and actor.id == staff_id):
        actor.require("schedule:write")
    if await iam.staff_row(session, actor.tenant_id, staff_id) is None:
        raise NotFound("staff member not found", code="staff_not_found")
    count = await _revoke_all(session, actor.tenant_id, staff_id)
    audit.record(session, "calendar_feed.revoke", "staff", staff_id, feeds=count)
    return count


async def _revoke_all(session: AsyncSession, tenant_id: UUID, staff_id: UUID) -> int:
    feeds = (await session.exec(select(CalendarFeed).where(
        CalendarFeed.tenant_id == tenant_id, CalendarFeed.staff_id == staff_id,
        CalendarFeed.revoked_at.is_(None)))).all()
    for feed in feeds:
        feed.revoked_at = utcnow()
        session.add(feed)
    return len(feeds)


def _surname(name: str) -> str:
    # 张三 → 张**: enough to greet the right person, useless to whoever finds the URL.
    return (name[:1] + "**") if name else "**"


async def feed_ics(session: AsyncSession, tenant_id: UUID, token: str) -> bytes:
    """The therapist's appointments from 30 days back to 90 ahead, as text/calendar."""
    feed = (await session.exec(select(CalendarFeed).where(
        CalendarFeed.tenant_id == tenant_id, CalendarFeed.token_hash == _hash(token),
        CalendarFeed.revoked_at.is_(None)))).first()
    if feed is None:
        raise NotFound("no such calendar feed", code="calendar_feed_not_found")
    staff = await iam.staff_row(session, tenant_id, feed.staff_id)
    if staff is None or not staff.active:
        raise Forbidden("this calendar feed's owner is no longer active", code="account_disabled")
    now = utcnow()
    appointments = list((await session.exec(
        select(Appointment).where(Appointment.tenant_id == tenant_id, Appointment.staff_id == staff.id,
                                  Appointment.starts_at >= now - timedelta(days=FEED_PAST_DAYS),
                                  Appointment.starts_at < now + timedelta(days=FEED_FUTURE_DAYS))
        .order_by(Appointment.starts_at, Appointment.id))).all())
    service_names, member_names = await _names(session, tenant_id, appointments)
    stores = await tenancy.stores_by_id(session, tenant_id, {a.store_id for a in appointments})
    calendar = Calendar()
    calendar.add("prodid", "-//CareLoop//Therapist schedule//ZH")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", f"{staff.display_name} 的预约")
    calendar.add("x-published-ttl", "PT15M")
    for appointment in appointments:
        service_name, member_name = service_names[appointment.service_id], member_names[appointment.member_id]
        event = Event()
        event.add("uid", f"{appointment.id}@careloop")
        event.add("dtstamp", (appointment.updated_at or appointment.created_at or now))
        event.add("dtstart", appointment.starts_at)
        event.add("dtend", appointment.ends_at)
        event.add("summary", f"{service_name} · {_surname(member_name)}")
        event.add("location", stores[appointment.store_id].name)
        event.add("status", "CANCELLED" if appointment.status in ("cancelled", "no_show") else "CONFIRMED")
        event.add("sequence", appointment.schedule_version)
        calendar.add_component(event)
    return calendar.to_ical()
