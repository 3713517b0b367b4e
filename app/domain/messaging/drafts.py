"""Message drafts for the WeCom sidebar: the tenant's member-facing templates rendered with what is known of
the member, for the staff member to send from their own chat (JS-SDK `sendChatMessage`). Nothing is sent,
queued or stored here: the chat is the staff member's, and WeCom records it there.

The variables are the ones the care rules supply (`care.actions.variables_for`), so one template serves a
rule's message and a sidebar draft alike:

- `member_name`
- `store_name`, `store_phone`: the next visit's store, else the member's home store
- `starts_at`: the next visit's start in that store's time, `YYYY-MM-DD HH:MM`
- `service_name`: the next visit's service, else the card service with the fewest sessions left
- `remaining`: sessions of `service_name` left on the member's active cards
- `sessions_left`: each active session card with what is left per service, `推拿10次卡：推拿 7次；…`

Card variables need `cards:read` (the caller would see them in the member's cards anyway). A template that
needs a variable the member has no value for (no next visit, no card) is not offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.clock import utcnow
from app.domain.booking import service as booking
from app.domain.cards import service as cards
from app.domain.catalog import service as catalog
from app.domain.members import service as members
from app.domain.messaging import service
from app.domain.messaging.models import MessageChannel, MessageTemplate
from app.domain.tenancy import service as tenancy

SESSION_CARD_KINDS = ("count", "package")
SHARED_POOL_LABEL = "通用次数"
TIME_FORMAT = "%Y-%m-%d %H:%M"


@dataclass(frozen=True)
class Draft:
    template_key: str
    template_name: str
    channel: str
    content: str


async def draft_variables(session: AsyncSession, actor: Actor, member_id: UUID, *,
                          now: datetime | None = None) -> dict[str, str]:
    """What a draft may say about the member (see the module docstring); 404 for a member the actor may not
    reach. Only variables with a value are present."""
    member = await members.get_member_row(session, actor, member_id)
    now = now or utcnow()
    values: dict[str, str] = {"member_name": member.name}
    upcoming = await booking.next_appointment(session, actor.tenant_id, member.id, after=now)
    store_id = upcoming.store_id if upcoming is not None else member.home_store_id
    store = await tenancy.store_row(session, actor.tenant_id, store_id) if store_id is not None else None
    if store is not None:
        values["store_name"] = store.name
        if store.phone:
            values["store_phone"] = store.phone
    session_cards = []
    if actor.can("cards:read"):
        session_cards = [c for c in await cards.member_cards(session, actor, member.id, status="active")
                         if c.kind in SESSION_CARD_KINDS]
    service_ids = {i.service_id for c in session_cards for i in c.items if i.service_id is not None}
    if upcoming is not None:
        service_ids.add(upcoming.service_id)
    names = {sid: s.name for sid, s in (await catalog.services_by_id(session, actor.tenant_id, service_ids)).items()}
    left: dict[UUID, int] = {}
    for card in session_cards:
        for item in card.items:
            if item.service_id is not None:
                left[item.service_id] = left.get(item.service_id, 0) + item.remaining
    focus: UUID | None = None
    if upcoming is not None:
        values["starts_at"] = upcoming.starts_at.astimezone(tenancy.store_zone(store)).strftime(TIME_FORMAT)
        focus = upcoming.service_id
    elif left:
        # The one about to run out is what a member is told about (and what a renewal talk is about).
        focus = min(left, key=lambda sid: (left[sid], names.get(sid, ""), str(sid)))
    if focus is not None and focus in names:
        values["service_name"] = names[focus]
        if focus in left:
            values["remaining"] = str(left[focus])
    summary = [_card_summary(card.name, card.items, names) for card in session_cards]
    if any(summary):
        values["sessions_left"] = "；".join(s for s in summary if s)
    return values


def _card_summary(card_name: str, items: list[Any], names: dict[UUID, str]) -> str:
    parts = [f"{names.get(i.service_id, '') if i.service_id else SHARED_POOL_LABEL} {i.remaining}次"
             for i in items]
    return f"{card_name}：{'、'.join(parts)}" if parts else ""


async def member_drafts(session: AsyncSession, actor: Actor, member_id: UUID, *,
                        now: datetime | None = None) -> list[Draft]:
    """Every active template addressed to members that the member's data can fill, rendered through the
    templates' own code (`service.render_template`), by template name."""
    variables = await draft_variables(session, actor, member_id, now=now)
    templates = (await session.execute(
        select(MessageTemplate).where(MessageTemplate.tenant_id == actor.tenant_id, MessageTemplate.active,
                                      MessageTemplate.channel.in_(MessageChannel.TO_MEMBERS))
        .order_by(MessageTemplate.name, MessageTemplate.key))).scalars().all()
    drafts = []
    for template in templates:
        needed = set(template.variables) | set(service.placeholders(template.body))
        if not needed <= set(variables):
            continue
        content, _, _ = service.render_template(template, variables)
        drafts.append(Draft(template_key=template.key, template_name=template.name, channel=template.channel,
                            content=content))
    return drafts
