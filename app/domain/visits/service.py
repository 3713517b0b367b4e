"""Completing a service: the one transaction at the heart of a visit, and its reversal.

`complete_service` marks the work done, deducts a card session (or leaves the service to be paid at
checkout), deducts the recipe's consumables from the store, writes the performer's commission and the
service record, and puts events in the outbox. It runs inside the caller's transaction and flushes
only: if any step fails (no session left, stock short, a frozen card) the caller's transaction rolls
back and nothing of it remains.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import func, update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.events import emit
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.domain.booking import hooks as requirement_hooks
from app.domain.cards import service as cards
from app.domain.catalog import service as catalog
from app.domain.iam import service as iam
from app.domain.inventory import service as inventory
from app.domain.members import service as members
from app.domain.members.schemas import TimelineItem
from app.domain.visits.events import SERVICE_COMPLETED, SERVICE_REVERSED
from app.domain.visits.models import Commission, ServiceRecord
from app.domain.visits.schemas import CommissionStatement, CommissionTotal, ServiceCompletion

if TYPE_CHECKING:
    from app.domain.iam.models import Staff

REF = "service_record"
CARE_MESSAGE_DELAY = timedelta(hours=24)
# A service record carried over from the clinic's old system: history, already paid and settled there.
MIGRATION = "migration"


async def _performer(session: AsyncSession, actor: Actor, staff_id: UUID, store_id: UUID) -> Staff:
    found = await iam.staff_at_store(session, actor.tenant_id, staff_id, store_id)
    if found is None or not found[0].active:
        raise Unprocessable("staff_id: no such active staff member", code="validation_error", field="staff_id")
    staff, works_here = found
    if not works_here:
        raise Unprocessable("staff_id: this staff member does not work in this store", code="validation_error",
                            field="staff_id")
    return staff


async def complete_service(session: AsyncSession, actor: Actor, data: ServiceCompletion, *,
                           appointment_id: UUID | None = None) -> tuple[ServiceRecord, int | None, int]:
    """Returns the record, the sessions left on the card (or None) and the commission in fen."""
    actor.require("visits:complete")
    actor.require_store(data.store_id)
    return await complete_authorized(session, actor, data, appointment_id=appointment_id)


async def complete_authorized(session: AsyncSession, actor: Actor, data: ServiceCompletion, *,
                              appointment_id: UUID | None = None) -> tuple[ServiceRecord, int | None, int]:
    """`complete_service` for a caller that has checked visits:complete and the store already (booking's
    completion of an appointment, held to the appointment's store)."""
    service = await catalog.get_service_row(session, actor, data.service_id)
    if not service.active:
        raise Conflict("this service is no longer offered", code="service_inactive")
    member = await members.get_member_row(session, actor, data.member_id)
    if member.status != "active":
        raise Conflict(f"member is {member.status}", code="member_inactive")
    # What other contexts require first (clinical: a signed consent), before anything is written.
    await requirement_hooks.check_completion(session, actor, member.id, service.id)
    staff = await _performer(session, actor, data.staff_id, data.store_id)
    performed_at = data.performed_at or utcnow()
    record = ServiceRecord(
        tenant_id=actor.tenant_id, member_id=member.id, store_id=data.store_id, service_id=service.id,
        staff_id=staff.id, appointment_id=appointment_id, settlement="card" if data.card_id else "checkout",
        card_id=data.card_id, list_price=service.price, earned_amount=service.price,
        duration_minutes=data.duration_minutes or service.duration_minutes, notes=data.notes,
        completed_at=performed_at)
    remaining = None
    if data.card_id is not None:
        # The card comes before the record is written: the record's foreign key to the card would
        # otherwise turn another tenant's (or an unknown) card into a constraint error, not a 404.
        deduction = await cards.deduct_session(session, actor, data.card_id, service_id=service.id,
                                               member_id=member.id, store_id=data.store_id, ref_type=REF,
                                               ref_id=record.id)
        record.card_entry_id, remaining = deduction.entry.id, deduction.remaining
        # A card session earns its share of the card price (a gifted period use earns the list price).
        record.earned_amount = deduction.unit_value if deduction.unit_value else record.earned_amount
    session.add(record)
    await session.flush()
    await inventory.consume_for_service(session, actor, data.store_id, service.id, REF, record.id)
    level = getattr(staff, "level", None)
    amount = catalog.compute_commission(service.commission, record.earned_amount, level)
    session.add(Commission(tenant_id=actor.tenant_id, staff_id=staff.id, store_id=data.store_id,
                           service_record_id=record.id, amount=amount, basis=record.earned_amount,
                           rule=service.commission, staff_level=level, kind="service", occurred_at=performed_at))
    await members.touch_last_visit(session, actor.tenant_id, member.id, performed_at)
    session.add(record)
    await session.flush()
    audit.record(session, "service.complete", "service_record", record.id, member=str(member.id),
                 service=service.name, staff=str(staff.id), card=str(data.card_id) if data.card_id else None,
                 commission=amount)
    payload = {"service_record_id": str(record.id), "member_id": str(member.id), "service_id": str(service.id),
               "service_name": service.name, "staff_id": str(staff.id), "store_id": str(data.store_id),
               "card_id": str(data.card_id) if data.card_id else None, "completed_at": performed_at.isoformat()}
    await emit(session, SERVICE_COMPLETED, payload)
    return record, remaining, amount


@dataclass(frozen=True)
class PastVisit:
    """One visit from the old system's history (the caller has matched the member, service, staff and store)."""

    id: UUID
    member_id: UUID
    store_id: UUID
    service_id: UUID
    staff_id: UUID
    performed_at: datetime
    notes: str | None = None


async def record_past_visits(session: AsyncSession, actor: Actor, visits: list[PastVisit]) -> int:
    """Write history from the old system as service records settled `migration`: what was done, by whom and
    when, and the members' last visits. Nothing else a completion does happens again — no card session, stock,
    commission or event (a care message for a visit of 2019 would be absurd); the old system settled them.
    For a caller that has authorised the import (cards:import) and matched every id; returns how many."""
    if not visits:
        return 0
    services = await catalog.services_by_id(session, actor.tenant_id, {v.service_id for v in visits})
    missing = {v.service_id for v in visits} - set(services)
    if missing:
        raise Unprocessable(f"service_id: no such service {sorted(map(str, missing))[0]}", code="validation_error",
                            field="service_id")
    session.add_all(ServiceRecord(
        tenant_id=actor.tenant_id, id=v.id, member_id=v.member_id, store_id=v.store_id, service_id=v.service_id,
        staff_id=v.staff_id, settlement=MIGRATION, list_price=services[v.service_id].price, earned_amount=0,
        duration_minutes=services[v.service_id].duration_minutes, notes=v.notes, completed_at=v.performed_at)
        for v in visits)
    await session.flush()
    latest: dict[UUID, datetime] = {}
    for visit in visits:
        latest[visit.member_id] = max(latest.get(visit.member_id, visit.performed_at), visit.performed_at)
    for member_id, at in latest.items():
        await members.touch_last_visit(session, actor.tenant_id, member_id, at)
    return len(visits)


async def _record(session: AsyncSession, actor: Actor, record_id: UUID, *, for_update: bool = False) -> ServiceRecord:
    return await get_or_404(session, ServiceRecord, actor.tenant_id, record_id, code="service_record_not_found",
                            lock=for_update)


async def reverse_service(session: AsyncSession, actor: Actor, record_id: UUID, reason: str) -> ServiceRecord:
    """Undo a completion (wrong card, wrong therapist): compensating entries everywhere, audited."""
    actor.require("visits:reverse")
    record = await _record(session, actor, record_id, for_update=True)
    actor.require_store(record.store_id)
    if record.status == "reversed":
        raise Conflict("this service record was already reversed", code="already_reversed")
    if record.order_id is not None:
        raise Conflict("this service was paid at checkout; refund the order instead", code="settled_by_order")
    await cards.reverse_ref(session, actor, REF, record.id, reason)
    await inventory.reverse(session, actor, REF, record.id, reason)
    originals = (await session.exec(select(Commission).where(
        Commission.tenant_id == actor.tenant_id, Commission.service_record_id == record.id,
        Commission.kind == "service"))).all()
    now = utcnow()
    for original in originals:
        session.add(Commission(tenant_id=actor.tenant_id, staff_id=original.staff_id, store_id=original.store_id,
                               service_record_id=record.id, amount=-original.amount, basis=original.basis,
                               rule=original.rule, staff_level=original.staff_level, kind="reversal",
                               reverses_id=original.id, occurred_at=now))
    record.status, record.reversed_at, record.reversal_reason = "reversed", now, reason
    session.add(record)
    await session.flush()
    audit.record(session, "service.reverse", "service_record", record.id, reason=reason)
    await emit(session, SERVICE_REVERSED, {"service_record_id": str(record.id), "member_id": str(record.member_id)})
    return record


async def hold_for_checkout(session: AsyncSession, actor: Actor, record_id: UUID, *, member_id: UUID,
                            order_id: UUID) -> ServiceRecord:
    """For checkout: claim a completed service that waits for payment for an order (locks the record, so
    two orders cannot both charge it). The order releases it again if it is cancelled."""
    record = await session.get(ServiceRecord, (actor.tenant_id, record_id), with_for_update=True,
                               populate_existing=True)
    if record is None or record.member_id != member_id:
        raise NotFound("service record not found", code="service_record_not_found")
    if record.status != "completed" or record.settlement != "checkout":
        raise Conflict("this service was not left for payment at checkout", code="service_record_not_payable")
    if record.order_id is not None:
        raise Conflict("this service is already charged by another order", code="service_record_settled",
                       order_id=str(record.order_id))
    record.order_id = order_id
    session.add(record)
    await session.flush()
    return record


async def release_from_checkout(session: AsyncSession, actor: Actor, order_id: UUID) -> int:
    """For checkout: a cancelled order gives back the services it had claimed (they wait for payment again)."""
    released = await session.execute(update(ServiceRecord).where(
        ServiceRecord.tenant_id == actor.tenant_id, ServiceRecord.order_id == order_id,
        ServiceRecord.settlement == "checkout").values(order_id=None))
    return released.rowcount


async def get_record(session: AsyncSession, actor: Actor, record_id: UUID) -> ServiceRecord:
    if actor.kind == "patient":
        record = await _record(session, actor, record_id)
        await members.get_member_row(session, actor, record.member_id)
        return record
    actor.require("appointments:read")
    return await _record(session, actor, record_id)


async def list_records(session: AsyncSession, actor: Actor, params: PageParams, *, member_id: UUID | None = None,
                       store_id: UUID | None = None, staff_id: UUID | None = None,
                       unsettled: bool | None = None) -> tuple[list[ServiceRecord], str | None]:
    actor.require("appointments:read")
    stmt = select(ServiceRecord).where(ServiceRecord.tenant_id == actor.tenant_id)
    for column, value in ((ServiceRecord.member_id, member_id), (ServiceRecord.store_id, store_id),
                          (ServiceRecord.staff_id, staff_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    if unsettled:
        stmt = stmt.where(ServiceRecord.settlement == "checkout", ServiceRecord.order_id.is_(None),
                          ServiceRecord.status == "completed")
    return await paginate(session, stmt, ServiceRecord.id, params, descending=True)


# ---------------------------------------------------------------- commissions


def _commission_scope(actor: Actor, staff_id: UUID | None) -> UUID | None:
    """Staff who may not read everyone's commissions see their own (a therapist's own statement)."""
    if actor.kind == "staff" and not (actor.can("reports:read") or actor.can("staff:read")):
        return actor.id
    return staff_id


async def list_commissions(session: AsyncSession, actor: Actor, params: PageParams, *, staff_id: UUID | None,
                           store_id: UUID | None, since: datetime | None, until: datetime | None):
    actor.require("commissions:read")
    staff_id = _commission_scope(actor, staff_id)
    stmt = select(Commission).where(Commission.tenant_id == actor.tenant_id)
    stmt = _commission_filters(stmt, staff_id, store_id, since, until)
    return await paginate(session, stmt, Commission.id, params, descending=True)


def _commission_filters(stmt, staff_id, store_id, since, until):
    if staff_id is not None:
        stmt = stmt.where(Commission.staff_id == staff_id)
    if store_id is not None:
        stmt = stmt.where(Commission.store_id == store_id)
    if since is not None:
        stmt = stmt.where(Commission.occurred_at >= since)
    if until is not None:
        stmt = stmt.where(Commission.occurred_at < until)
    return stmt


async def commission_totals(session: AsyncSession, actor: Actor, *, store_id: UUID | None, since: datetime,
                            until: datetime) -> list[CommissionTotal]:
    actor.require("commissions:read")
    staff_id = _commission_scope(actor, None)
    stmt = select(Commission.staff_id, func.count(func.distinct(Commission.service_record_id)),
                  func.sum(Commission.amount)).where(Commission.tenant_id == actor.tenant_id)
    stmt = _commission_filters(stmt, staff_id, store_id, since, until).group_by(Commission.staff_id)
    rows = (await session.execute(stmt.order_by(Commission.staff_id))).all()
    return [CommissionTotal(staff_id=s, records=n, amount=int(a or 0)) for s, n, a in rows]


async def commission_statement(session: AsyncSession, actor: Actor, *, staff_id: UUID, since: datetime,
                               until: datetime) -> CommissionStatement:
    """A therapist's statement for a period: every commission line with its service, and the total."""
    actor.require("commissions:read")
    staff_id = _commission_scope(actor, staff_id)
    stmt = (select(Commission, ServiceRecord).join(ServiceRecord, (ServiceRecord.tenant_id == Commission.tenant_id)
                                                   & (ServiceRecord.id == Commission.service_record_id))
            .where(Commission.tenant_id == actor.tenant_id))
    stmt = _commission_filters(stmt, staff_id, None, since, until).order_by(Commission.occurred_at, Commission.id)
    rows = (await session.execute(stmt)).all()
    lines: list[dict[str, Any]] = [
        {"occurred_at": c.occurred_at.isoformat(), "service_record_id": str(r.id), "service_id": str(r.service_id),
         "member_id": str(r.member_id), "kind": c.kind, "basis": c.basis, "amount": c.amount,
         "settlement": r.settlement} for c, r in rows]
    return CommissionStatement(staff_id=staff_id, period_from=since, period_to=until,
                               total=sum(line["amount"] for line in lines), lines=lines)


# ---------------------------------------------------------------- plugged into members


@members.timeline_source("service_record", staff_only_keys=("notes",))
async def _visits_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                           before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    stmt = select(ServiceRecord).where(ServiceRecord.tenant_id == tenant_id, ServiceRecord.member_id == member_id)
    if before is not None:
        stmt = stmt.where(members.before_clause(ServiceRecord.completed_at, ServiceRecord.id, before, "visit:"))
    records = (await session.exec(stmt.order_by(ServiceRecord.completed_at.desc(), ServiceRecord.id.desc())
                                  .limit(limit))).all()
    services = await catalog.services_by_id(session, tenant_id, {r.service_id for r in records})
    rows = [(r, services[r.service_id].name) for r in records]
    return [TimelineItem(type="service_record", occurred_at=r.completed_at, id=f"visit:{r.id}",
                         title=f"{name}" + (" (已冲正)" if r.status == "reversed" else ""),
                         data={"service_id": str(r.service_id), "staff_id": str(r.staff_id), "status": r.status,
                               "settlement": r.settlement, "notes": r.notes}) for r, name in rows]


@members.merge_mover("service_records")
async def _move_records(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID,
                        survivor_id: UUID) -> dict[str, int]:
    moved = await session.execute(update(ServiceRecord).where(ServiceRecord.tenant_id == tenant_id,
                                                               ServiceRecord.member_id == duplicate_id)
                                  .values(member_id=survivor_id))
    return {"service_records": moved.rowcount}


# ---------------------------------------------------------------- read API (for other contexts)


async def completed_records_of(session: AsyncSession, tenant_id: UUID, member_ids: set[UUID],
                               params: PageParams) -> tuple[list[ServiceRecord], str | None]:
    """The members' performed services (reversed ones left out), newest first, a page at a time; no
    permission check (the caller has made its own: a patient's past visits)."""
    if not member_ids:
        return [], None
    stmt = select(ServiceRecord).where(ServiceRecord.tenant_id == tenant_id, ServiceRecord.member_id.in_(member_ids),
                                       ServiceRecord.status == "completed")
    rows, cursor = await paginate(session, stmt, ServiceRecord.id, params, descending=True)
    return list(rows), cursor


async def migrated_visit_count(session: AsyncSession, tenant_id: UUID, record_ids: list[UUID]) -> int:
    """How many of these service records exist as history carried over from the old system; no permission check."""
    if not record_ids:
        return 0
    count = (await session.execute(select(func.count()).select_from(ServiceRecord).where(
        ServiceRecord.tenant_id == tenant_id, ServiceRecord.settlement == MIGRATION,
        ServiceRecord.id.in_(record_ids)))).scalar_one()
    return int(count)


_COMPARE = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le, "eq": operator.eq}


async def records_matching(session: AsyncSession, tenant_id: UUID, *, ids: set[UUID] | None = None,
                           member_id: UUID | None = None, updated: Sequence[tuple[str, datetime]] = (),
                           after: UUID | None = None, limit: int = 50) -> tuple[list[ServiceRecord], int]:
    """Service records for an export (clinical's FHIR API): by id after `after`, at most `limit`, and how many
    match in all. `updated` are (`gt`|`ge`|`lt`|`le`|`eq`, instant) bounds on the last change (the reversal,
    else the completion). No permission check (the caller has made its own)."""
    last_change = func.coalesce(ServiceRecord.reversed_at, ServiceRecord.completed_at)
    conditions = [ServiceRecord.tenant_id == tenant_id]
    if ids is not None:
        conditions.append(ServiceRecord.id.in_(ids))
    if member_id is not None:
        conditions.append(ServiceRecord.member_id == member_id)
    conditions += [_COMPARE[op](last_change, instant) for op, instant in updated]
    total = (await session.execute(select(func.count()).select_from(ServiceRecord).where(*conditions))).scalar_one()
    stmt = select(ServiceRecord).where(*conditions)
    if after is not None:
        stmt = stmt.where(ServiceRecord.id > after)
    rows = (await session.exec(stmt.order_by(ServiceRecord.id).limit(limit))).all()
    return list(rows), int(total)
