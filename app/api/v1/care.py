from __future__ import annotations

from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import STAFF_AND_INTEGRATION, current_actor, get_db
from app.api.errors import PROBLEM_RESPONSES
from app.api.routing import TransactionalRoute
from app.core.actor import Actor
from app.core.pagination import Page, PageParams, page_params
from app.domain.care import service as care
from app.domain.care.schemas import (
    CatalogueOut,
    RuleCreate,
    RuleOut,
    RuleUpdate,
    RunOut,
    TaskCreate,
    TaskOut,
    TaskUpdate,
)

router = APIRouter(tags=["care"], route_class=TransactionalRoute, responses=PROBLEM_RESPONSES)
STAFF = current_actor(STAFF_AND_INTEGRATION)


@router.get("/automation-catalogue", response_model=CatalogueOut, operation_id="automation_catalogue")
async def automation_catalogue(actor: Actor = STAFF) -> CatalogueOut:
    """The topics, schedule kinds and actions a rule may use (and the fields each topic can filter on)."""
    actor.require(care.RULES_PERMISSION)
    return care.catalogue()


@router.get("/automation-rules", response_model=Page[RuleOut], operation_id="list_automation_rules")
async def list_automation_rules(enabled: bool | None = Query(None), params: PageParams = Depends(page_params),
                                session: AsyncSession = Depends(get_db), actor: Actor = STAFF) -> Page[RuleOut]:
    rows, cursor = await care.list_rules(session, actor, params, enabled=enabled)
    return Page(items=[RuleOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.post("/automation-rules", status_code=201, response_model=RuleOut, operation_id="create_automation_rule")
async def create_automation_rule(body: RuleCreate, session: AsyncSession = Depends(get_db),
                                 actor: Actor = STAFF) -> RuleOut:
    """A rule: trigger (event topic with a filter, or schedule), member conditions, delay, quiet hours and
    actions. An unknown topic, schedule kind or action type is 422 naming the field (`trigger.topic`,
    `actions.0.type`); enabling needs every coupon template and role the actions name."""
    return RuleOut.model_validate(await care.create_rule(session, actor, body))


@router.get("/automation-rules/{rule_id}", response_model=RuleOut, operation_id="get_automation_rule")
async def get_automation_rule(rule_id: UUID, session: AsyncSession = Depends(get_db),
                              actor: Actor = STAFF) -> RuleOut:
    return RuleOut.model_validate(await care.get_rule(session, actor, rule_id))


@router.patch("/automation-rules/{rule_id}", response_model=RuleOut, operation_id="update_automation_rule")
async def update_automation_rule(rule_id: UUID, body: RuleUpdate, session: AsyncSession = Depends(get_db),
                                 actor: Actor = STAFF) -> RuleOut:
    """Change or enable/disable a rule; runs already scheduled use the rule as it is when they execute."""
    return RuleOut.model_validate(await care.update_rule(session, actor, rule_id, body))


@router.get("/automation-rules/{rule_id}/runs", response_model=Page[RunOut], operation_id="list_rule_runs")
async def list_rule_runs(rule_id: UUID,
                         status: Literal["scheduled", "done", "skipped", "failed"] | None = Query(None),
                         member_id: UUID | None = Query(None), params: PageParams = Depends(page_params),
                         session: AsyncSession = Depends(get_db), actor: Actor = STAFF) -> Page[RunOut]:
    """The rule's runs, newest first: one per cause, with each action's outcome in `result`."""
    rows, cursor = await care.list_runs(session, actor, rule_id, params, status=status, member_id=member_id)
    return Page(items=[RunOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/tasks", response_model=Page[TaskOut], operation_id="list_tasks")
async def list_tasks(assignee_id: UUID | None = Query(None), member_id: UUID | None = Query(None),
                     status: Literal["open", "done", "cancelled"] | None = Query(None),
                     overdue: bool = Query(False, description="open tasks past due (managers)"),
                     store_id: UUID | None = Query(None), params: PageParams = Depends(page_params),
                     session: AsyncSession = Depends(get_db), actor: Actor = STAFF) -> Page[TaskOut]:
    rows, cursor = await care.list_tasks(session, actor, params, assignee_id=assignee_id, member_id=member_id,
                                         status=status, overdue=overdue, store_id=store_id)
    return Page(items=[care.present_task(t) for t in rows], next_cursor=cursor)


@router.post("/tasks", status_code=201, response_model=TaskOut, operation_id="create_task")
async def create_task(body: TaskCreate, session: AsyncSession = Depends(get_db), actor: Actor = STAFF) -> TaskOut:
    """A follow-up task by hand (rules make their own); assigned to the caller unless `assignee_id` is given."""
    return care.present_task(await care.create_task(session, actor, body))


@router.get("/tasks/{task_id}", response_model=TaskOut, operation_id="get_task")
async def get_task(task_id: UUID, session: AsyncSession = Depends(get_db), actor: Actor = STAFF) -> TaskOut:
    return care.present_task(await care.get_task(session, actor, task_id))


@router.patch("/tasks/{task_id}", response_model=TaskOut, operation_id="update_task")
async def update_task(task_id: UUID, body: TaskUpdate, session: AsyncSession = Depends(get_db),
                      actor: Actor = STAFF) -> TaskOut:
    """Complete, cancel or reopen a task and record the result: the assignee or a manager; reassigning is
    for managers."""
    return care.present_task(await care.update_task(session, actor, task_id, body))
