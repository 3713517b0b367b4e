"""Treatment plans in GraphQL: the sidebar's member view lists the member's plans with progress
(`memberTreatmentPlans`, staff: clinical:read and the care relationship, refusals audited), and the
mini-program shows the patient's own ("my treatment plans", `myTreatmentPlans`: own and family, patient
tokens). The same service functions as REST's `/treatment-plans` and `/patient/treatment-plans`, reads
audited alike."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date, datetime
from typing import TypeVar

import strawberry
from strawberry.types import Info

from app.core.db import session_scope
from app.core.errors import Unprocessable
from app.core.pagination import PageParams
from app.domain.clinical import plans, policies
from app.domain.clinical.plan_schemas import NextVisitOffer, TreatmentPlanOut
from app.graphql.context import Context, page_limit, parse_id

STAFF = ("staff",)
PATIENT = ("patient",)
STATUSES = ("active", "completed", "cancelled")
T = TypeVar("T")


def _ident(value: object) -> strawberry.ID:
    return strawberry.ID(str(value))


def _status(value: str | None) -> str | None:
    if value is not None and value not in STATUSES:
        raise Unprocessable(f"status: one of {', '.join(STATUSES)}", code="validation_error", field="status")
    return value


@strawberry.type
class TreatmentPlanItem:
    service_id: strawberry.ID
    service_name: str | None
    sessions_planned: int
    sessions_done: int
    remaining: int


@strawberry.type
class TreatmentPlan:
    id: strawberry.ID
    member_id: strawberry.ID
    store_id: strawberry.ID
    title: str
    goals: str
    status: str = strawberry.field(description="active, completed or cancelled")
    interval_days: int
    start_date: date
    responsible_staff_id: strawberry.ID
    card_id: strawberry.ID | None
    sessions_planned: int
    sessions_done: int
    items: list[TreatmentPlanItem] = strawberry.field(description="Planned and done sessions per service")
    last_visit_at: datetime | None
    next_visit_date: date | None = strawberry.field(description="Last visit + interval (or the start date), "
                                                                "store-local; null unless active")
    completed_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str | None

    @classmethod
    def of(cls, p: TreatmentPlanOut) -> TreatmentPlan:
        return cls(id=_ident(p.id), member_id=_ident(p.member_id), store_id=_ident(p.store_id), title=p.title,
                   goals=p.goals, status=p.status, interval_days=p.interval_days, start_date=p.start_date,
                   responsible_staff_id=_ident(p.responsible_staff_id),
                   card_id=_ident(p.card_id) if p.card_id else None, sessions_planned=p.sessions_planned,
                   sessions_done=p.sessions_done,
                   items=[TreatmentPlanItem(service_id=_ident(i.service_id), service_name=i.service_name,
                                            sessions_planned=i.sessions_planned, sessions_done=i.sessions_done,
                                            remaining=i.remaining) for i in p.items],
                   last_visit_at=p.last_visit_at, next_visit_date=p.next_visit_date, completed_at=p.completed_at,
                   cancelled_at=p.cancelled_at, cancel_reason=p.cancel_reason)


@strawberry.type
class OfferedSlot:
    starts_at: datetime
    ends_at: datetime
    staff_id: strawberry.ID
    resource_ids: list[strawberry.ID]


@strawberry.type
class NextPlannedVisit:
    """Book one of `slots` with bookNextVisit (sidebar) or the mini-program's booking, as any booking."""

    plan_id: strawberry.ID
    member_id: strawberry.ID
    store_id: strawberry.ID
    service_id: strawberry.ID
    service_name: str | None
    suggested_date: date = strawberry.field(description="Last visit + interval (the start date before the first "
                                                        "visit), store-local")
    slots: list[OfferedSlot] = strawberry.field(description="Bookable now, earliest first, from the suggested date "
                                                            "(today when it is past)")

    @classmethod
    def of(cls, o: NextVisitOffer) -> NextPlannedVisit:
        return cls(plan_id=_ident(o.plan_id), member_id=_ident(o.member_id), store_id=_ident(o.store_id),
                   service_id=_ident(o.service_id), service_name=o.service_name, suggested_date=o.suggested_date,
                   slots=[OfferedSlot(starts_at=s.starts_at, ends_at=s.ends_at, staff_id=_ident(s.staff_id),
                                      resource_ids=[_ident(r) for r in s.resource_ids]) for s in o.slots])


@strawberry.type
class TreatmentPlanPage:
    items: list[TreatmentPlan]
    next_cursor: str | None


def _audited(call: Awaitable[T]) -> Awaitable[T]:
    """A `not_in_care` refusal is audited in a transaction of its own before the 403."""
    return policies.audited(session_scope, call)


@strawberry.type
class ClinicalPlanQueries:
    @strawberry.field(description="A member's treatment plans with progress, newest first (the sidebar's member "
                                  "view: memberId from sidebarMember). clinical:read and the member in the caller's "
                                  "care (not_in_care, audited); the read is audited.")
    async def member_treatment_plans(self, info: Info[Context, None], member_id: strawberry.ID,
                                     status: str | None = None, limit: int = 20,
                                     cursor: str | None = None) -> TreatmentPlanPage:
        actor = await info.context.actor("clinical:read", audiences=STAFF)
        items, next_cursor = await _audited(plans.list_plans(
            info.context.session, actor, parse_id(member_id, "member_id"),
            PageParams(limit=page_limit(limit), cursor=cursor), status=_status(status)))
        return TreatmentPlanPage(items=[TreatmentPlan.of(p) for p in items], next_cursor=next_cursor)

    @strawberry.field(description="The patient's treatment plans (or, as the family's head, memberId's), newest "
                                  "first, with sessions done per service and the next visit's date.")
    async def my_treatment_plans(self, info: Info[Context, None], member_id: strawberry.ID | None = None,
                                 status: str | None = None, limit: int = 20,
                                 cursor: str | None = None) -> TreatmentPlanPage:
        actor = await info.context.actor(audiences=PATIENT)
        target = parse_id(member_id, "member_id") if member_id is not None else None
        items, next_cursor = await plans.patient_plans(info.context.session, actor, target,
                                                       PageParams(limit=page_limit(limit), cursor=cursor),
                                                       status=_status(status))
        return TreatmentPlanPage(items=[TreatmentPlan.of(p) for p in items], next_cursor=next_cursor)

    @strawberry.field(description="The next visit of a treatment plan: the suggested day, the next planned service "
                                  "and the first bookable slots around it (staff in the member's care, the front "
                                  "desk, or the patient for their own and their family's plans).")
    async def treatment_plan_next_visit(self, info: Info[Context, None], plan_id: strawberry.ID,
                                        limit: int = plans.DEFAULT_OFFER_SLOTS) -> NextPlannedVisit:
        actor = await info.context.actor(audiences=STAFF + PATIENT)
        offer = await _audited(plans.next_visit(info.context.session, actor, parse_id(plan_id, "plan_id"),
                                                limit=limit))
        return NextPlannedVisit.of(offer)
