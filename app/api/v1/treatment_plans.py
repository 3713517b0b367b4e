"""Treatment plans: a course of planned sessions for a member, progress per visit, the next visit to book."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Literal, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import current_actor, get_db, require
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.db import session_scope
from app.core.pagination import Page, PageParams, page_params
from app.domain.clinical import plans, policies
from app.domain.clinical.plan_schemas import (
    NextVisitOffer,
    TreatmentPlanCancel,
    TreatmentPlanCreate,
    TreatmentPlanOut,
)

router = APIRouter(tags=["clinical"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
T = TypeVar("T")
ANYONE = ("staff", "integration", "patient")
PATIENT = ("patient",)
StatusFilter = Literal["active", "completed", "cancelled"]
NOT_IN_CARE = {403: {"description": "Missing clinical permission, or the member is not in the caller's care "
                                    "(`not_in_care`, audited)"}}


def _audited(call: Awaitable[T]) -> Awaitable[T]:
    """A `not_in_care` refusal is audited in a transaction of its own before the 403."""
    return policies.audited(session_scope, call)


async def _one(session: AsyncSession, actor: Actor, plan) -> TreatmentPlanOut:
    return (await plans.present_many(session, actor.tenant_id, [plan]))[0]


@router.post("/treatment-plans", status_code=201, response_model=TreatmentPlanOut,
             operation_id="create_treatment_plan",
             responses={**NOT_IN_CARE, 409: {"description": "The member is not active (`member_inactive`)"}})
async def create_treatment_plan(body: TreatmentPlanCreate, session: AsyncSession = Depends(get_db),
                                actor: Actor = require("clinical:write")) -> TreatmentPlanOut:
    """A course for a member: goals, planned sessions per service (`items[]` of `{service_id, sessions}`, e.g.
    10 × 针灸 + 5 × 拔罐), the interval between visits, the start date, the responsible clinician and optionally
    the member's course card. Completed services of a planned service count against it from the start date
    on; it completes when every planned session is done. An unknown service is 422 naming
    `items.<i>.service_id`."""
    return await _one(session, actor, await _audited(plans.create_plan(session, actor, body)))


@router.get("/treatment-plans", response_model=Page[TreatmentPlanOut], operation_id="list_treatment_plans",
            responses=NOT_IN_CARE)
async def list_treatment_plans(member_id: UUID, status: StatusFilter | None = None,
                               params: PageParams = Depends(page_params), session: AsyncSession = Depends(get_db),
                               actor: Actor = require("clinical:read")) -> Page[TreatmentPlanOut]:
    """A member's plans, newest first, with sessions done per service and the next visit's date (audited)."""
    items, cursor = await _audited(plans.list_plans(session, actor, member_id, params, status=status))
    return Page(items=items, next_cursor=cursor)


@router.get("/treatment-plan-offers", response_model=Page[NextVisitOffer], operation_id="list_treatment_plan_offers",
            responses=NOT_IN_CARE)
async def list_next_visits(member_id: UUID,
                           days: int = Query(plans.DEFAULT_OFFER_DAYS, ge=1, le=plans.MAX_OFFER_DAYS,
                                             description="Days searched from each suggested date"),
                           limit: int = Query(plans.DEFAULT_OFFER_SLOTS, ge=1, le=plans.MAX_OFFER_SLOTS,
                                              description="Slots per plan"),
                           session: AsyncSession = Depends(get_db),
                           actor: Actor = current_actor(ANYONE)) -> Page[NextVisitOffer]:
    """The next planned visit of each of the member's active plans (in the caller's stores): what the front
    desk books when the member calls, without seeing the plans themselves. Access as for one plan's
    `next-visit`."""
    return Page(items=await _audited(plans.next_visits_of_member(session, actor, member_id, days=days,
                                                                 limit=limit)))


@router.get("/treatment-plans/{treatment_plan_id}", response_model=TreatmentPlanOut,
            operation_id="get_treatment_plan", responses=NOT_IN_CARE)
async def get_treatment_plan(treatment_plan_id: UUID, session: AsyncSession = Depends(get_db),
                             actor: Actor = require("clinical:read")) -> TreatmentPlanOut:
    """One plan with its progress ledger (each counted visit, and reversals of reversed visits), audited."""
    return await _audited(plans.get_plan(session, actor, treatment_plan_id))


@router.post("/treatment-plans/{treatment_plan_id}/cancel", response_model=TreatmentPlanOut,
             operation_id="cancel_treatment_plan",
             responses={**NOT_IN_CARE, 409: {"description": "The plan is not active (`treatment_plan_not_active`)"}})
async def cancel_treatment_plan(treatment_plan_id: UUID, body: TreatmentPlanCancel,
                                session: AsyncSession = Depends(get_db),
                                actor: Actor = require("clinical:write")) -> TreatmentPlanOut:
    """Stop an active course, with the reason; visits after it no longer count against it."""
    return await _one(session, actor, await _audited(plans.cancel_plan(session, actor, treatment_plan_id, body)))


@router.get("/treatment-plans/{treatment_plan_id}/next-visit", response_model=NextVisitOffer,
            operation_id="get_treatment_plan_next_visit",
            responses={**NOT_IN_CARE, 409: {"description": "The plan is completed or cancelled "
                                                           "(`treatment_plan_not_active`)"}})
async def get_next_visit(treatment_plan_id: UUID,
                         days: int = Query(plans.DEFAULT_OFFER_DAYS, ge=1, le=plans.MAX_OFFER_DAYS,
                                           description="Days searched from the suggested date"),
                         limit: int = Query(plans.DEFAULT_OFFER_SLOTS, ge=1, le=plans.MAX_OFFER_SLOTS,
                                            description="Slots returned"),
                         staff_id: UUID | None = Query(None, description="Only this staff member; absent: any "
                                                                         "skilled one"),
                         session: AsyncSession = Depends(get_db),
                         actor: Actor = current_actor(ANYONE)) -> NextVisitOffer:
    """The next planned visit: the suggested day (last visit + interval; the start date before the first
    visit), the next planned service and the first bookable slots from that day (today when it is past), to
    book with `POST /appointments`. For clinicians in the member's care (`clinical:read`), the front desk
    (`appointments:write`: the offer holds nothing but what a booking shows) and the patient (own and family
    plans)."""
    return await _audited(plans.next_visit(session, actor, treatment_plan_id, days=days, limit=limit,
                                           staff_id=staff_id))


@router.get("/patient/treatment-plans", response_model=Page[TreatmentPlanOut],
            operation_id="patient_list_treatment_plans", tags=["patient"])
async def patient_treatment_plans(member_id: UUID | None = Query(None, description="A member of the family the "
                                                                                    "patient heads (default: "
                                                                                    "themselves)"),
                                  status: StatusFilter | None = None, params: PageParams = Depends(page_params),
                                  session: AsyncSession = Depends(get_db),
                                  actor: Actor = current_actor(PATIENT)) -> Page[TreatmentPlanOut]:
    """The mini-program's "my treatment plans": the patient's own courses (or a family member's), newest
    first, with sessions done per service and the next visit's date. Anyone else's member is 404."""
    items, cursor = await plans.patient_plans(session, actor, member_id, params, status=status)
    return Page(items=items, next_cursor=cursor)
