"""Cards carried over from the old system: each as it stood on the day of the migration.

A migrated card is a card like any sold here — the template's terms frozen into it, items per service, a
balance kept equal to its ledger — but what it holds comes in by `migration` entries (ref_type `card_import`,
the import's id), which reports tell apart from sales (`issue`) and which checkout's daily close does not count
as money taken. Each item's `unit_value` is what one session was bought at (the price paid spread over the
template's sessions as a sale spreads it), so commissions and revenue recognition treat the sessions left as
sessions of a sold card. No `card.issued` event: nothing was sold today, and a welcome message for a card bought
years ago would be wrong.
"""

from __future__ import annotations

from datetime import datetime, time
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.actor import Actor
from app.core.clock import utcnow
from app.domain.cards import service as cards
from app.domain.cards.import_rows import POOL, Lookups, PlannedCard
from app.domain.cards.ledger import ledger_entry
from app.domain.cards.models import Card, CardItem, CardKind, CardLedgerEntry, CardStatus
from app.domain.catalog import service as catalog

MIGRATION = "migration"
REF_TYPE = "card_import"
REASON = "旧系统迁入：迁移当日的余额"
BATCH = 200


async def open_cards(session: AsyncSession, actor: Actor, planned: list[PlannedCard], *, import_id: UUID,
                     lookups: Lookups) -> None:
    """Write the cards with their items and opening entries, a batch at a time (cards, then their items, then the
    entries: each refers to the one before)."""
    service_ids = {i.service_id for c in planned for i in lookups.template_items.get(c.template.id, [])}
    services = await catalog.services_by_id(session, actor.tenant_id, service_ids)
    prices = {sid: s.price for sid, s in services.items()}
    for start in range(0, len(planned), BATCH):
        rows, items, entries = [], [], []
        for card in planned[start:start + BATCH]:
            row = _card(actor, card, lookups)
            held = _items(row, card, lookups, prices)
            row.status = _status(row, held)
            rows.append(row)
            items += held
            entries += _entries(row, card, held, import_id)
        for layer in (rows, items, entries):
            session.add_all(layer)
            await session.flush()


def _card(actor: Actor, card: PlannedCard, lookups: Lookups) -> Card:
    template = card.template
    zone = lookups.zone(card.store_id)
    row = Card(
        tenant_id=actor.tenant_id, id=card.id, template_id=template.id, member_id=card.member_id,
        store_id=card.store_id, name=template.name, kind=template.kind,
        price_paid=template.price if card.price_paid is None else card.price_paid,
        principal_balance=card.principal, bonus_balance=card.bonus,
        starts_at=datetime.combine(card.opened, time(0), zone) if card.opened else utcnow(),
        expires_at=datetime.combine(card.expires, datetime.max.time(), zone) if card.expires else None,
        terms=cards.frozen_terms(template, lookups.template_items.get(template.id, [])) | {
            "migrated_from": card.ref})
    return row


def _items(row: Card, card: PlannedCard, lookups: Lookups, prices: dict[UUID, int]) -> list[CardItem]:
    """The template's items, each holding what the old system says is left (nothing when it does not say)."""
    template = card.template
    if template.kind == CardKind.STORED_VALUE:
        return []
    template_items = lookups.template_items.get(template.id, [])
    shape = [(ti.service_id, ti.sessions + ti.gifted_sessions) for ti in template_items]
    weights = [prices.get(ti.service_id, 0) * ti.sessions for ti in template_items]
    if template.shared_pool_sessions:
        shape.append((None, template.shared_pool_sessions))
        average = sum(prices.get(ti.service_id, 0) for ti in template_items) // max(len(template_items), 1)
        weights.append(average * template.shared_pool_sessions)
    if template.kind == CardKind.PERIOD:
        weights = [0] * len(shape)
    items = []
    for (service_id, as_sold), share in zip(shape, cards.allocate(row.price_paid, weights), strict=True):
        key = POOL if service_id is None else service_id
        left = 0 if template.kind == CardKind.PERIOD else card.sessions.get(key, 0)
        items.append(CardItem(tenant_id=row.tenant_id, card_id=row.id, service_id=service_id, sessions_total=left,
                              remaining=left, unit_value=share // as_sold if as_sold else 0))
    return items


def _status(row: Card, items: list[CardItem]) -> str:
    if row.kind in (CardKind.COUNT, CardKind.PACKAGE) and not any(i.remaining for i in items):
        return CardStatus.EXHAUSTED
    return CardStatus.ACTIVE


def _entries(row: Card, card: PlannedCard, items: list[CardItem], import_id: UUID) -> list[CardLedgerEntry]:
    details = {"external_ref": card.ref, "rows": card.rows,
               "opened_on": card.opened.isoformat() if card.opened else None}
    common = {"store_id": row.store_id, "reason": REASON, "ref_type": REF_TYPE, "ref_id": import_id,
              "details": details}
    entries = [ledger_entry(row, MIGRATION, item=item, sessions=item.remaining, **common)
               for item in items if item.remaining]
    if row.principal_balance or row.bonus_balance or not entries:
        # Stored value, or a card that holds nothing countable (a period card): one entry marks its arrival.
        entries.append(ledger_entry(row, MIGRATION, principal=row.principal_balance, bonus=row.bonus_balance,
                                    **common))
    return entries
