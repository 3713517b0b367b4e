"""What refunding a card's sale or a stored-value tender does to the card (called by checkout's refunds).

Stored value moves by `refund` ledger entries, principal and bonus apart; a session card whose sale is refunded
is closed and its unused sessions written off. Every change locks the card first (see ledger.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.errors import Conflict, Unprocessable
from app.core.events import emit
from app.core.rows import get_or_404
from app.domain.cards.events import CARD_CLOSED
from app.domain.cards.ledger import card_items, ledger_entry, locked_card
from app.domain.cards.models import Card, CardKind, CardLedgerEntry, CardStatus


@dataclass
class RefundQuote:
    """What a card still holds that a refund of its sale could take back."""

    kind: str
    status: str
    untouched: bool  # nothing used since it was issued (sessions or a period card's uses)
    unused_value: int  # session cards: remaining sessions x their unit value, fen
    principal_balance: int
    bonus_balance: int
    issued_principal: int  # stored value credited when the card was issued
    issued_bonus: int


async def refund_quote(session: AsyncSession, actor: Actor, card_id: UUID) -> RefundQuote:
    card = await get_or_404(session, Card, actor.tenant_id, card_id, code="card_not_found", fresh=True)
    items = await card_items(session, card)
    rows = (await session.execute(sa_select(CardLedgerEntry.kind, func.sum(CardLedgerEntry.principal_delta),
                                            func.sum(CardLedgerEntry.bonus_delta), func.count())
                                  .where(CardLedgerEntry.tenant_id == actor.tenant_id,
                                         CardLedgerEntry.card_id == card.id,
                                         CardLedgerEntry.kind.in_(("issue", "deduct")))
                                  .group_by(CardLedgerEntry.kind))).all()
    by_kind = {kind: (principal or 0, bonus or 0, count) for kind, principal, bonus, count in rows}
    untouched = all(i.remaining == i.sessions_total for i in items) and "deduct" not in by_kind
    return RefundQuote(kind=card.kind, status=card.status, untouched=untouched,
                       unused_value=sum(i.remaining * i.unit_value for i in items),
                       principal_balance=card.principal_balance, bonus_balance=card.bonus_balance,
                       issued_principal=by_kind.get("issue", (0, 0, 0))[0],
                       issued_bonus=by_kind.get("issue", (0, 0, 0))[1])


async def refund_value(session: AsyncSession, actor: Actor, card_id: UUID, *, principal: int, bonus: int,
                       store_id: UUID | None, ref_type: str, ref_id: Any, reason: str,
                       details: dict[str, Any] | None = None) -> CardLedgerEntry:
    """Move stored value for a refund (ledger kind `refund`): positive amounts go back to the card (a
    stored-value tender refunded: principal and bonus as they were charged; bonus is never paid out in
    cash), negative ones leave it (a top-up or a stored-value card sale refunded). 409
    `insufficient_balance` when the card no longer holds what is taken out."""
    if principal == 0 and bonus == 0:
        raise Unprocessable("a refund moves some value", code="validation_error", field="amount")
    card = await locked_card(session, actor, card_id)
    if card.kind != CardKind.STORED_VALUE:
        raise Conflict("only a stored-value card holds money", code="card_kind_mismatch")
    if card.principal_balance + principal < 0 or card.bonus_balance + bonus < 0:
        raise Conflict("the card no longer holds the value this refund takes back", code="insufficient_balance",
                       principal_balance=card.principal_balance, bonus_balance=card.bonus_balance)
    card.principal_balance += principal
    card.bonus_balance += bonus
    if card.status == CardStatus.EXHAUSTED and card.principal_balance + card.bonus_balance > 0:
        card.status = CardStatus.ACTIVE
    entry = ledger_entry(card, "refund", principal=principal, bonus=bonus, store_id=store_id, reason=reason,
                         ref_type=ref_type, ref_id=ref_id, details=details)
    session.add_all([card, entry])
    await session.flush()
    return entry


async def close_for_refund(session: AsyncSession, actor: Actor, card_id: UUID, *, store_id: UUID | None,
                           ref_type: str, ref_id: Any, reason: str) -> list[CardLedgerEntry]:
    """A session card whose sale is refunded: its remaining sessions are written off (ledger kind
    `refund`, one entry per item; one entry without sessions for a period card) and the card is closed."""
    card = await locked_card(session, actor, card_id)
    if card.kind == CardKind.STORED_VALUE:
        raise Conflict("a stored-value card is refunded by value", code="card_kind_mismatch")
    if card.status == CardStatus.CLOSED:
        raise Conflict("this card was closed already", code="card_closed")
    entries = []
    for item in await card_items(session, card, lock=True):
        if item.remaining:
            entries.append(ledger_entry(card, "refund", item=item, sessions=-item.remaining, store_id=store_id,
                                        reason=reason, ref_type=ref_type, ref_id=ref_id,
                                        details={"unit_value": item.unit_value}))
            item.remaining = 0
            session.add(item)
    if not entries:
        entries.append(ledger_entry(card, "refund", store_id=store_id, reason=reason, ref_type=ref_type, ref_id=ref_id))
    card.status = CardStatus.CLOSED
    session.add(card)
    session.add_all(entries)
    await session.flush()
    audit.record(session, "card.close_for_refund", "card", card.id, ref=f"{ref_type}:{ref_id}", reason=reason)
    await emit(session, CARD_CLOSED, {"card_id": str(card.id), "member_id": str(card.member_id),
                                        "reason": "refund"})
    return entries
