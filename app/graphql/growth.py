"""Growth in GraphQL: the WeCom sidebar's list of the consultant's own leads (`myLeads`, growth:read, staff
tokens) and a status change from the sidebar (`moveLead`, growth:write) — the same service functions as
REST's `/leads`, so the phone is masked alike and each change lands in the lead's history."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from app.core.errors import Unprocessable
from app.core.pagination import PageParams
from app.domain.growth import service
from app.domain.growth.schemas import LeadOut, LeadUpdate
from app.graphql.context import Context, page_limit, parse_id, validated

STAFF = ("staff",)
STATUSES = ("new", "contacted", "consultation_booked", "arrived", "consulted", "won", "lost")


def _ident(value: object) -> strawberry.ID | None:
    return strawberry.ID(str(value)) if value is not None else None


@strawberry.type
class Lead:
    id: strawberry.ID
    name: str
    phone: str | None = strawberry.field(description="Masked for roles without members.contact:read")
    status: str = strawberry.field(description="new, contacted, consultation_booked, arrived, consulted, won, lost")
    channel_id: strawberry.ID | None
    campaign_code_id: strawberry.ID | None
    store_id: strawberry.ID | None
    member_id: strawberry.ID | None
    interests: list[str]
    note: str | None
    touches: int
    contact_due_at: datetime | None
    first_contacted_at: datetime | None
    created_at: datetime | None

    @classmethod
    def of(cls, lead: LeadOut) -> Lead:
        return cls(id=strawberry.ID(str(lead.id)), name=lead.name, phone=lead.phone, status=lead.status,
                   channel_id=_ident(lead.channel_id), campaign_code_id=_ident(lead.campaign_code_id),
                   store_id=_ident(lead.store_id), member_id=_ident(lead.member_id), interests=lead.interests,
                   note=lead.note, touches=lead.touches, contact_due_at=lead.contact_due_at,
                   first_contacted_at=lead.first_contacted_at, created_at=lead.created_at)


@strawberry.type
class LeadPage:
    items: list[Lead]
    next_cursor: str | None


@strawberry.type
class GrowthQueries:
    @strawberry.field(description="The caller's own leads, newest first (the sidebar's 我的线索); `status` "
                                  "narrows to one funnel status. growth:read, staff tokens.")
    async def my_leads(self, info: Info[Context, None], status: str | None = None, limit: int = 20,
                       cursor: str | None = None) -> LeadPage:
        actor = await info.context.actor("growth:read", audiences=STAFF)
        if status is not None and status not in STATUSES:
            raise Unprocessable(f"status: one of {', '.join(STATUSES)}", code="validation_error", field="status")
        items, next_cursor = await service.list_leads(info.context.session, actor,
                                                      PageParams(limit=page_limit(limit), cursor=cursor),
                                                      status=status, mine=True)
        return LeadPage(items=[Lead.of(i) for i in items], next_cursor=next_cursor)


@strawberry.type
class GrowthMutations:
    @strawberry.mutation(description="Move one of your leads along the funnel (lostReason required for lost); "
                                     "409 for a backward move or a closed lead. growth:write.")
    async def move_lead(self, info: Info[Context, None], lead_id: strawberry.ID, status: str,
                        lost_reason: str | None = None, comment: str | None = None) -> Lead:
        actor = await info.context.actor("growth:write", audiences=STAFF)
        data = validated(LeadUpdate, status=status, lost_reason=lost_reason, comment=comment)
        out = await service.update_lead(info.context.session, actor, parse_id(lead_id, "lead_id"), data)
        return Lead.of(out)
