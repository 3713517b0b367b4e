"""Writing a card's ledger: the entry every change of what a card holds records, and the row locks taken first.

Every operation that changes what a card holds locks the card row (`locked_card`, FOR UPDATE) and then its
items (`card_items(lock=True)`), always in that order, so concurrent changes of one card are serialised by
PostgreSQL and never wait on each other in a cycle.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.context import current_context
from app.core.rows import get_or_404
from app.domain.cards.models import Card, CardItem, CardLedgerEntry


def ledger_entry(card: Card, kind: str, *, item: CardItem | None = None, sessions: int = 0, principal: int = 0,
                 bonus: int = 0, member_id: UUID | None = None, store_id: UUID | None = None,
                 reason: str | None = None, ref_type: str | None = None, ref_id: Any = None,
                 reverses_id: UUID | None = None, details: dict[str, Any] | None = None) -> CardLedgerEntry:
    ctx = current_context()
    return CardLedgerEntry(
        tenant_id=card.tenant_id, card_id=card.id, kind=kind, card_item_id=item.id if item else None,
        sessions_delta=sessions, principal_delta=principal, bonus_delta=bonus,
        member_id=member_id or card.member_id, store_id=store_id, actor_type=ctx.actor_type, actor_id=ctx.actor_id,
        reason=reason, ref_type=ref_type, ref_id=None if ref_id is None else str(ref_id), reverses_id=reverses_id,
        details=details or {},
    )


async def locked_card(session: AsyncSession, actor: Actor, card_id: UUID) -> Card:
    return await get_or_404(session, Card, actor.tenant_id, card_id, code="card_not_found", lock=True)


async def card_items(session: AsyncSession, card: Card, *, lock: bool = False) -> list[CardItem]:
    stmt = select(CardItem).where(CardItem.tenant_id == card.tenant_id, CardItem.card_id == card.id)
    stmt = stmt.order_by(CardItem.id).execution_options(populate_existing=True)
    if lock:
        stmt = stmt.with_for_update()
    return list((await session.exec(stmt)).all())
