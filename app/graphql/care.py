"""Follow-up tasks in GraphQL: the WeCom sidebar shows the signed-in staff member's tasks and completes them."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from app.core.pagination import PageParams
from app.domain.care import service as care
from app.domain.care.schemas import TaskOut
from app.graphql.context import Context, page_limit, parse_id


@strawberry.type
class Task:
    id: strawberry.ID
    kind: str
    title: str
    description: str | None
    member_id: strawberry.ID | None
    assignee_id: strawberry.ID | None
    store_id: strawberry.ID | None
    status: str
    due_at: datetime
    overdue: bool
    result_note: str | None
    completed_at: datetime | None

    @classmethod
    def of(cls, out: TaskOut) -> Task:
        def ident(value) -> strawberry.ID | None:
            return strawberry.ID(str(value)) if value is not None else None

        return cls(id=strawberry.ID(str(out.id)), kind=out.kind, title=out.title, description=out.description,
                   member_id=ident(out.member_id), assignee_id=ident(out.assignee_id), store_id=ident(out.store_id),
                   status=out.status, due_at=out.due_at, overdue=out.overdue, result_note=out.result_note,
                   completed_at=out.completed_at)


@strawberry.type
class TaskPage:
    items: list[Task]
    next_cursor: str | None


@strawberry.type
class CareQueries:
    @strawberry.field(description="The signed-in staff member's follow-up tasks (open ones by default), "
                                  "optionally about one member (the chat's contact in the sidebar).")
    async def my_tasks(self, info: Info[Context, None], status: str | None = "open",
                       member_id: strawberry.ID | None = None, limit: int = 50,
                       cursor: str | None = None) -> TaskPage:
        actor = await info.context.actor(audiences=("staff",))  # care checks tasks:read (and the status)
        rows, next_cursor = await care.list_tasks(
            info.context.session, actor, PageParams(limit=page_limit(limit), cursor=cursor), assignee_id=actor.id,
            member_id=parse_id(member_id, "member_id") if member_id else None, status=status)
        return TaskPage(items=[Task.of(care.present_task(t)) for t in rows], next_cursor=next_cursor)


@strawberry.type
class CareMutations:
    @strawberry.mutation(description="Mark a task done with the result of the follow-up (assignee or manager).")
    async def complete_task(self, info: Info[Context, None], id: strawberry.ID,
                            result_note: str | None = None) -> Task:
        actor = await info.context.actor(audiences=("staff",))  # care checks tasks:write (and the note's length)
        task = await care.complete_task(info.context.session, actor, parse_id(id, "id"), result_note)
        return Task.of(care.present_task(task))
