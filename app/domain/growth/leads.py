"""Leads: manual entry, intake (see `intake` for the signed endpoint's checks), the funnel, history.

One person is one open lead: `match_key` (the phone's blind index, else the WeChat identity) is unique over
open leads, and both paths insert with `ON CONFLICT` on that index, so two concurrent intakes of one phone
meet in the database: one inserts, the other adds a touch to the same lead. Manual entry of a person who
already has an open lead is 409 `lead_exists` (naming the lead), as the API contract says.

A lead is assigned in the transaction that creates it (`assignment.assign_by_rules`), unless staff name
the consultant. Every change — created, assigned, each status change, escalation — is a history row.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import func, literal_column, or_, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit, crypto
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, Forbidden, NotFound
from app.core.events import emit
from app.core.ids import new_id
from app.core.pagination import PageParams, paginate
from app.domain.care import service as care
from app.domain.care.schemas import TaskCreate
from app.domain.growth import assignment, policies
from app.domain.growth.channels import invalid, resolve_source
from app.domain.growth.events import LEAD_ASSIGNED, LEAD_CREATED, LEAD_STATUS_CHANGED
from app.domain.growth.models import CLOSED, FUNNEL, OPEN_PREDICATE, Lead, LeadHistory, LeadStatus, LeadTouch
from app.domain.growth.schemas import LeadCreate, LeadHistoryOut, LeadIntake, LeadOut, LeadUpdate
from app.domain.iam import service as iam
from app.domain.members import service as members
from app.domain.tenancy import service as tenancy


def _phone(raw: str | None) -> str | None:
    if raw is None:
        return None
    normalized = members.normalize_contact(raw)
    if normalized is None:
        raise invalid("phone", "not a phone number (a mainland mobile, +country number or landline)")
    return normalized


def _match_key(phone_index: str | None, openid: str | None, unionid: str | None) -> str:
    if phone_index:
        return phone_index
    return f"wx:{unionid}" if unionid else f"wx:o:{openid}"


def _history(lead: Lead, actor_kind: str, actor_id: UUID | None, change: str, *, from_status: str | None = None,
             to_status: str | None = None, assignee_id: UUID | None = None, note: str | None = None) -> LeadHistory:
    return LeadHistory(tenant_id=lead.tenant_id, lead_id=lead.id, change=change, from_status=from_status,
                       to_status=to_status, assignee_id=assignee_id, actor_kind=actor_kind, actor_id=actor_id,
                       note=note)


class _Incoming:
    """A lead as either path gives it, checked and resolved (phone normalised, channel and store known)."""

    def __init__(self, *, name: str, phone: str | None, openid: str | None, unionid: str | None,
                 store_id: UUID | None, interests: list[str], note: str | None, source: str) -> None:
        self.name, self.phone, self.openid, self.unionid = name, phone, openid, unionid
        self.store_id, self.interests, self.note, self.source = store_id, sorted(set(interests)), note, source
        self.channel_id: UUID | None = None
        self.channel_kind: str | None = None
        self.campaign_code_id: UUID | None = None


async def _resolve(session: AsyncSession, tenant_id: UUID, incoming: _Incoming, *, channel_id: UUID | None,
                   channel_code: str | None, campaign_code: str | None, channel_field: str) -> None:
    if incoming.phone is None and incoming.openid is None and incoming.unionid is None:
        raise invalid("phone", "a lead needs a phone or a WeChat identity (openid or unionid)")
    channel, code = await resolve_source(session, tenant_id, channel_id=channel_id, channel_code=channel_code,
                                         campaign_code=campaign_code, channel_field=channel_field)
    if channel is not None:
        incoming.channel_id, incoming.channel_kind = channel.id, channel.kind
    if code is not None:
        incoming.campaign_code_id = code.id
        incoming.store_id = incoming.store_id or code.store_id
    if incoming.store_id is not None and await tenancy.store_row(session, tenant_id, incoming.store_id) is None:
        raise invalid("store_id", "no store with this id")


async def _insert(session: AsyncSession, tenant_id: UUID, incoming: _Incoming, *, actor_id: UUID | None,
                  touch_existing: bool, now: datetime) -> tuple[UUID, bool]:
    """Insert the lead, or meet the open lead of the same person: (lead id, inserted)."""
    phone_index = crypto.blind_index(incoming.phone, purpose="phone") if incoming.phone else None
    member_id = None
    if incoming.phone:
        member_id = (await members.member_ids_by_contact(session, tenant_id, {incoming.phone})).get(incoming.phone)
    table = Lead.__table__
    values: dict[str, Any] = {
        "tenant_id": tenant_id, "id": new_id(), "created_at": now, "name": incoming.name,
        "phone_encrypted": crypto.encrypt(incoming.phone), "phone_index": phone_index, "openid": incoming.openid,
        "unionid": incoming.unionid, "match_key": _match_key(phone_index, incoming.openid, incoming.unionid),
        "source": incoming.source, "channel_id": incoming.channel_id, "campaign_code_id": incoming.campaign_code_id,
        "store_id": incoming.store_id, "interests": incoming.interests, "note": incoming.note,
        "member_id": member_id, "status": LeadStatus.NEW, "touches": 1, "last_touch_at": now,
        "created_by_id": actor_id, "updated_at": now}
    stmt = pg_insert(table).values(**values)
    conflict = {"index_elements": [table.c.tenant_id, table.c.match_key], "index_where": text(OPEN_PREDICATE)}
    if touch_existing:
        stmt = stmt.on_conflict_do_update(**conflict, set_={
            "touches": table.c.touches + 1, "last_touch_at": now, "updated_at": now,
            "member_id": func.coalesce(table.c.member_id, stmt.excluded.member_id)})
    else:
        stmt = stmt.on_conflict_do_nothing(**conflict)
    row = (await session.execute(stmt.returning(table.c.id, literal_column("(xmax = 0)")))).first()
    if row is None:  # manual entry met an open lead of this person
        existing = (await session.exec(select(Lead.id).where(
            Lead.tenant_id == tenant_id, Lead.match_key == values["match_key"],
            Lead.status.not_in(CLOSED)))).first()
        raise Conflict("this person already has an open lead", code="lead_exists", lead_id=str(existing))
    return row[0], bool(row[1])


async def _created(session: AsyncSession, lead: Lead, incoming: _Incoming, *, actor_kind: str,
                   actor_id: UUID | None, assignee_id: UUID | None, now: datetime) -> None:
    """What follows a new lead in the same transaction: its first touch and history, the assignment."""
    session.add(LeadTouch(tenant_id=lead.tenant_id, lead_id=lead.id, source=incoming.source,
                          channel_id=incoming.channel_id, campaign_code_id=incoming.campaign_code_id,
                          note=incoming.note))
    session.add(_history(lead, actor_kind, actor_id, "created", to_status=LeadStatus.NEW, note=incoming.note))
    await emit(session, LEAD_CREATED, {
        "lead_id": str(lead.id), "source": lead.source, "channel_id": _s(lead.channel_id),
        "campaign_code_id": _s(lead.campaign_code_id), "store_id": _s(lead.store_id),
        "member_id": _s(lead.member_id), "interests": list(lead.interests or [])})
    rule = None
    if assignee_id is not None:
        lead.assignee_id, lead.assigned_at = assignee_id, now
    else:
        rule = await assignment.assign_by_rules(session, lead.tenant_id, lead, incoming.channel_kind, now=now)
    if lead.assignee_id is not None:
        await _announce_assignment(session, lead, previous=None, rule_id=rule.id if rule else None,
                                   actor_kind=actor_kind, actor_id=actor_id)
    await session.flush()


def _who(actor: Actor) -> UUID | None:
    """The history's actor id: the person or client; none for the system (its id is the tenant's)."""
    return None if actor.kind == "system" else actor.id


def _s(value: object) -> str | None:
    return str(value) if value is not None else None


async def _announce_assignment(session: AsyncSession, lead: Lead, *, previous: UUID | None, rule_id: UUID | None,
                               actor_kind: str, actor_id: UUID | None) -> None:
    session.add(_history(lead, actor_kind, actor_id, "assigned", assignee_id=lead.assignee_id,
                         note=f"rule {rule_id}" if rule_id else None))
    await emit(session, LEAD_ASSIGNED, {
        "lead_id": str(lead.id), "assignee_id": _s(lead.assignee_id), "previous_assignee_id": _s(previous),
        "rule_id": _s(rule_id), "store_id": _s(lead.store_id),
        "contact_due_at": lead.contact_due_at.isoformat() if lead.contact_due_at else None})


async def _check_assignee(session: AsyncSession, tenant_id: UUID, staff_id: UUID, field: str) -> None:
    if staff_id not in await iam.active_staff_ids(session, tenant_id, {staff_id}):
        raise invalid(field, "no active staff member with this id")


async def create_lead(session: AsyncSession, actor: Actor, data: LeadCreate, *, now: datetime | None = None) -> Lead:
    """Manual entry (staff). 409 `lead_exists` when the person has an open lead already."""
    actor.require("growth:write")
    now = now or utcnow()
    if data.store_id is not None:
        actor.require_store(data.store_id)
    incoming = _Incoming(name=data.name, phone=_phone(data.phone), openid=data.openid, unionid=data.unionid,
                         store_id=data.store_id, interests=data.interests, note=data.note, source="manual")
    await _resolve(session, actor.tenant_id, incoming, channel_id=data.channel_id, channel_code=None,
                   campaign_code=data.campaign_code, channel_field="channel_id")
    if data.assignee_id is not None:
        await _check_assignee(session, actor.tenant_id, data.assignee_id, "assignee_id")
    lead_id, _ = await _insert(session, actor.tenant_id, incoming, actor_id=_who(actor), touch_existing=False,
                               now=now)
    lead = await session.get(Lead, (actor.tenant_id, lead_id), populate_existing=True)
    assert lead is not None
    await _created(session, lead, incoming, actor_kind=actor.kind, actor_id=_who(actor),
                   assignee_id=data.assignee_id, now=now)
    audit.record(session, "growth.lead.create", "lead", lead.id, source="manual")
    return lead


async def intake_lead(session: AsyncSession, tenant_id: UUID, data: LeadIntake, *,
                      now: datetime | None = None) -> tuple[Lead, bool]:
    """A lead from the signed intake endpoint (the caller has checked the signature and set the tenant):
    a new lead, or a new touch of the open lead of the same person. (lead, created)."""
    now = now or utcnow()
    incoming = _Incoming(name=data.name or "未留名", phone=_phone(data.phone), openid=data.openid,
                         unionid=data.unionid, store_id=data.store_id, interests=data.interests, note=data.note,
                         source="intake")
    await _resolve(session, tenant_id, incoming, channel_id=None, channel_code=data.channel_code,
                   campaign_code=data.campaign_code, channel_field="channel_code")
    lead_id, inserted = await _insert(session, tenant_id, incoming, actor_id=None, touch_existing=True, now=now)
    lead = await session.get(Lead, (tenant_id, lead_id), populate_existing=True)
    assert lead is not None
    if inserted:
        await _created(session, lead, incoming, actor_kind="integration", actor_id=None, assignee_id=None, now=now)
    else:
        session.add(LeadTouch(tenant_id=tenant_id, lead_id=lead.id, source="intake", channel_id=incoming.channel_id,
                              campaign_code_id=incoming.campaign_code_id, note=incoming.note))
        await session.flush()
    return lead, inserted


# ---------------------------------------------------------------- reading


async def _lead(session: AsyncSession, actor: Actor, lead_id: UUID, *, lock: bool = False) -> Lead:
    actor.require("growth:read")
    lead = await session.get(Lead, (actor.tenant_id, lead_id), with_for_update=lock, populate_existing=lock)
    if lead is None:
        raise NotFound("lead not found", code="lead_not_found")
    policies.require_lead(actor, lead)
    return lead


async def history_of(session: AsyncSession, tenant_id: UUID, lead_id: UUID) -> list[LeadHistory]:
    return list((await session.exec(select(LeadHistory).where(
        LeadHistory.tenant_id == tenant_id, LeadHistory.lead_id == lead_id)
        .order_by(LeadHistory.created_at, LeadHistory.id))).all())


def present(actor: Actor, lead: Lead, history: list[LeadHistory] | None = None) -> LeadOut:
    phone = crypto.decrypt(lead.phone_encrypted) if lead.phone_encrypted else None
    if phone is not None and not policies.sees_contact(actor):
        phone = policies.mask_phone(phone)
    return LeadOut(
        id=lead.id, name=lead.name, phone=phone, has_wechat=bool(lead.openid or lead.unionid), source=lead.source,
        channel_id=lead.channel_id, campaign_code_id=lead.campaign_code_id, store_id=lead.store_id,
        interests=list(lead.interests or []), note=lead.note, member_id=lead.member_id, status=lead.status,
        lost_reason=lead.lost_reason, assignee_id=lead.assignee_id, rule_id=lead.rule_id,
        assigned_at=lead.assigned_at, contact_due_at=lead.contact_due_at, first_contacted_at=lead.first_contacted_at,
        escalated_at=lead.escalated_at, touches=lead.touches, last_touch_at=lead.last_touch_at,
        created_at=lead.created_at,
        history=None if history is None else [LeadHistoryOut.model_validate(h) for h in history])


async def get_lead(session: AsyncSession, actor: Actor, lead_id: UUID) -> LeadOut:
    lead = await _lead(session, actor, lead_id)
    return present(actor, lead, await history_of(session, actor.tenant_id, lead.id))


async def list_leads(session: AsyncSession, actor: Actor, params: PageParams, *, status: str | None = None,
                     assignee_id: UUID | None = None, store_id: UUID | None = None,
                     channel_id: UUID | None = None, mine: bool = False) -> tuple[list[LeadOut], str | None]:
    """Newest first. Staff confined to stores see their stores' leads, leads without a store, and leads
    assigned to them; `mine` narrows to the caller's own."""
    actor.require("growth:read")
    stmt = select(Lead).where(Lead.tenant_id == actor.tenant_id)
    if actor.store_ids is not None:
        stmt = stmt.where(or_(Lead.store_id.is_(None), Lead.store_id.in_(actor.store_ids),
                              Lead.assignee_id == actor.id))
    if mine:
        stmt = stmt.where(Lead.assignee_id == actor.id)
    for column, value in ((Lead.status, status), (Lead.assignee_id, assignee_id), (Lead.store_id, store_id),
                          (Lead.channel_id, channel_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    rows, cursor = await paginate(session, stmt, Lead.id, params, descending=True)
    return [present(actor, lead) for lead in rows], cursor


# ---------------------------------------------------------------- the funnel


def check_transition(current: str, target: str) -> None:
    """Forward along the funnel (steps may be skipped), or lost from any open status; closed is final."""
    if current in CLOSED:
        raise Conflict(f"the lead is {current}: it does not change any more", code="lead_closed",
                       from_status=current, to_status=target)
    if target == LeadStatus.LOST:
        return
    if FUNNEL.index(target) <= FUNNEL.index(current):
        raise Conflict(f"a lead cannot go from {current} back to {target}", code="invalid_transition",
                       from_status=current, to_status=target)


async def update_lead(session: AsyncSession, actor: Actor, lead_id: UUID, data: LeadUpdate, *,
                      now: datetime | None = None) -> LeadOut:
    actor.require("growth:write")
    now = now or utcnow()
    lead = await _lead(session, actor, lead_id, lock=True)
    if data.assignee_id is not None and data.assignee_id != lead.assignee_id:
        if not policies.can_reassign(actor):
            raise Forbidden("reassigning a lead is for managers", code="permission_denied")
        if lead.status in CLOSED:
            raise Conflict(f"the lead is {lead.status}", code="lead_closed")
        await _check_assignee(session, actor.tenant_id, data.assignee_id, "assignee_id")
        previous, lead.assignee_id, lead.assigned_at = lead.assignee_id, data.assignee_id, now
        await _announce_assignment(session, lead, previous=previous, rule_id=None, actor_kind=actor.kind,
                                   actor_id=_who(actor))
    if data.status is not None:
        check_transition(lead.status, data.status)
        previous_status = lead.status
        lead.status = data.status
        if data.status == LeadStatus.LOST:
            lead.lost_reason = data.lost_reason
        if previous_status == LeadStatus.NEW and lead.first_contacted_at is None:
            lead.first_contacted_at = now
        session.add(_history(lead, actor.kind, _who(actor), "status", from_status=previous_status,
                             to_status=data.status, note=data.lost_reason if data.status == "lost" else data.comment))
        await emit(session, LEAD_STATUS_CHANGED, {
            "lead_id": str(lead.id), "from_status": previous_status, "to_status": data.status,
            "assignee_id": _s(lead.assignee_id), "changed_by_id": _s(_who(actor)), "store_id": _s(lead.store_id),
            "channel_id": _s(lead.channel_id)})
    elif data.comment is not None:
        session.add(_history(lead, actor.kind, _who(actor), "note", note=data.comment))
    lead.updated_at = now
    await session.flush()
    audit.record(session, "growth.lead.update", "lead", lead.id, status=data.status,
                 assignee_id=_s(data.assignee_id))
    return present(actor, lead, await history_of(session, actor.tenant_id, lead.id))


# ---------------------------------------------------------------- first-contact deadline


async def escalate_due(session: AsyncSession, tenant_id: UUID, *, now: datetime | None = None,
                       batch: int = 200) -> int:
    """Leads still `new` past their first-contact deadline: a follow-up task for the store's managers (the
    owner when the lead has no store or the store no manager; the task's assignment alerts them in WeCom),
    once per lead — `escalated_at` is set in the same transaction, and rows another run holds are skipped."""
    now = now or utcnow()
    leads = list((await session.exec(select(Lead).where(
        Lead.tenant_id == tenant_id, Lead.status == LeadStatus.NEW, Lead.escalated_at.is_(None),
        Lead.contact_due_at.is_not(None), Lead.contact_due_at <= now)
        .order_by(Lead.contact_due_at).limit(batch).with_for_update(skip_locked=True))).all())
    system = Actor.system(tenant_id)
    for lead in leads:
        managers = await iam.active_staff_with_role(session, tenant_id, "store_manager", store_id=lead.store_id) \
            if lead.store_id else []
        if not managers:
            managers = (await iam.active_staff_with_role(session, tenant_id, "owner"))[:1]
        for manager_id in managers:
            await care.create_task(session, system, TaskCreate(
                kind="follow_up", title=f"线索「{lead.name}」超时未联系", member_id=lead.member_id,
                assignee_id=manager_id, store_id=lead.store_id, due_at=now + timedelta(hours=2),
                description=f"lead {lead.id}: assigned to {lead.assignee_id or 'nobody'}, not contacted by "
                            f"{lead.contact_due_at.isoformat() if lead.contact_due_at else '-'}"))
        lead.escalated_at = now
        lead.updated_at = now
        session.add(_history(lead, "system", None, "escalated", note=f"{len(managers)} manager(s) told"))
    await session.flush()
    return len(leads)
