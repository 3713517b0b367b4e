"""Cards: issuing, session deduction, stored value, reversal, freeze/transfer/extend, expiry, reading.

Templates (the card products) are in templates.py, what a refund does to a card in refunds.py, and the
ledger entry and row locks every change uses in ledger.py.

Concurrency: every operation that changes what a card holds first locks the card row (`FOR UPDATE`),
so two deductions, a deduction and a freeze, or two charges against one card are serialised by
PostgreSQL; the conditional updates and CHECK constraints (remaining >= 0, balances >= 0) are a
second line of defence. Functions flush and never commit: the caller's transaction decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, text
from sqlalchemy import select as sa_select
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.clock import utcnow
from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.core.events import emit
from app.core.pagination import PageParams, paginate
from app.core.rows import get_or_404
from app.domain.cards import templates
from app.domain.cards.events import (
    CARD_EXPIRED,
    CARD_EXPIRING,
    CARD_ISSUED,
    CARD_LOW_BALANCE,
    CARD_SESSIONS_LOW,
    CARD_TRANSFERRED,
)
from app.domain.cards.ledger import card_items, ledger_entry, locked_card
from app.domain.cards.models import (
    Card,
    CardItem,
    CardKind,
    CardLedgerEntry,
    CardStatus,
    CardTemplate,
    CardTemplateItem,
)
from app.domain.cards.schemas import CardItemOut, CardOut
from app.domain.cards.templates import MAX_EXTENSION
from app.domain.catalog import service as catalog
from app.domain.members import service as members
from app.domain.members.schemas import TimelineItem
from app.domain.tenancy import service as tenancy

SESSIONS_LOW_AT = 2  # card.sessions_low fires when an item drops to this many or fewer
DEFAULT_LOW_BALANCE = 10_000  # fen; the tenant setting low_balance_threshold overrides
EXPIRING_NOTICE = timedelta(days=7)


# ---------------------------------------------------------------- issuing


def _allocate(price_paid: int, weights: list[int]) -> list[int]:
    """Split `price_paid` over items by weight, in whole fen (largest remainder method).

    The fen left over by rounding down go to the items with the largest fractional shares, so the
    split does not depend on the order of the items and an item of weight 0 (all gifted) gets nothing.
    """
    total = sum(weights)
    if total == 0:
        return [0] * len(weights)
    shares = [price_paid * w // total for w in weights]
    by_fraction = sorted(range(len(weights)), key=lambda i: (-(price_paid * weights[i] % total), -weights[i], i))
    for i in by_fraction[:price_paid - sum(shares)]:
        shares[i] += 1
    return shares


def frozen_terms(template: CardTemplate, template_items: list[CardTemplateItem]) -> dict[str, Any]:
    """The template's terms as a card sold from it keeps them (a later change of the template leaves it be)."""
    return {"spend_order": template.spend_order, "usable_store_ids": template.usable_store_ids,
            "family_shareable": template.family_shareable, "transferable": template.transferable,
            "daily_cap": template.daily_cap, "pool_service_ids": [str(i.service_id) for i in template_items]
            if template.shared_pool_sessions else [], "template_price": template.price}


def allocate(price_paid: int, weights: list[int]) -> list[int]:
    """`_allocate` for the card's siblings (the import of cards from the old system)."""
    return _allocate(price_paid, weights)


async def issue_card(session: AsyncSession, actor: Actor, *, member_id: UUID, template_id: UUID, store_id: UUID,
                     price_paid: int | None = None, order_id: UUID | None = None, reason: str | None = None,
                     principal_override: int | None = None, bonus_override: int | None = None) -> Card:
    """Sell or give a card: through an order (checkout) or by an authorised staff action with a reason."""
    if order_id is None:
        actor.require("cards:issue")
        if not reason:
            raise Unprocessable("reason: a card issued without an order needs a reason", code="validation_error",
                                field="reason")
    actor.require_store(store_id)
    template = await templates.get_template(session, actor, template_id)
    if not template.active:
        raise Conflict("this card template is no longer sold", code="card_template_inactive")
    member = await members.get_member_row(session, actor, member_id)
    if member.status != "active":
        raise Conflict(f"member is {member.status}", code="member_inactive")
    store = await tenancy.store_row(session, actor.tenant_id, store_id)
    if store is None:
        raise NotFound("store not found", code="store_not_found")
    price = template.price if price_paid is None and order_id is not None else (price_paid or 0)
    now = utcnow()
    expires_at = None
    if template.valid_days:
        expires_at = now + timedelta(days=template.valid_days)
    elif template.valid_until:
        expires_at = datetime.combine(template.valid_until, datetime.max.time(), ZoneInfo(store.timezone))
    template_items = await templates.template_items(session, actor.tenant_id, template.id)
    services = await catalog.services_by_id(session, actor.tenant_id, {i.service_id for i in template_items})
    card = Card(
        tenant_id=actor.tenant_id, template_id=template.id, member_id=member.id, store_id=store_id,
        name=template.name, kind=template.kind, price_paid=price, starts_at=now, expires_at=expires_at,
        order_id=order_id, terms=frozen_terms(template, template_items),
    )
    session.add(card)
    await session.flush()
    entries: list[CardLedgerEntry] = []
    if template.kind == CardKind.STORED_VALUE:
        principal = template.face_value if principal_override is None else principal_override
        bonus = template.bonus if bonus_override is None else bonus_override
        card.principal_balance, card.bonus_balance = principal, bonus
        entries.append(ledger_entry(card, "issue", principal=principal, bonus=bonus, store_id=store_id, reason=reason,
                                    ref_type="order" if order_id else "manual", ref_id=order_id))
    else:
        items = [CardItem(tenant_id=card.tenant_id, card_id=card.id, service_id=ti.service_id,
                          sessions_total=0 if template.kind == CardKind.PERIOD else ti.sessions + ti.gifted_sessions,
                          gifted_sessions=ti.gifted_sessions) for ti in template_items]
        weights = [services[ti.service_id].price * ti.sessions for ti in template_items]
        if template.shared_pool_sessions:
            items.append(CardItem(tenant_id=card.tenant_id, card_id=card.id, service_id=None,
                                  sessions_total=template.shared_pool_sessions))
            average = sum(services[ti.service_id].price for ti in template_items) // max(len(template_items), 1)
            weights.append(average * template.shared_pool_sessions)
        if template.kind == CardKind.PERIOD:
            weights = [0] * len(items)
        for item, share in zip(items, _allocate(price, weights), strict=True):
            item.remaining = item.sessions_total
            item.unit_value = share // item.sessions_total if item.sessions_total else 0
        session.add_all(items)
        await session.flush()
        for item in items:
            entries.append(ledger_entry(card, "issue", item=item, sessions=item.sessions_total, store_id=store_id,
                                        reason=reason, ref_type="order" if order_id else "manual", ref_id=order_id))
    session.add(card)
    session.add_all(entries)
    await session.flush()
    audit.record(session, "card.issue", "card", card.id, member=str(member.id), template=str(template.id),
                 price_paid=price, order=str(order_id) if order_id else None, reason=reason)
    await emit(session, CARD_ISSUED, {"card_id": str(card.id), "member_id": str(member.id),
                                        "kind": card.kind, "price_paid": price})
    return card


# ---------------------------------------------------------------- using a card


@dataclass
class SessionDeduction:
    entry: CardLedgerEntry
    item: CardItem
    remaining: int
    unit_value: int


async def _require_usable(session: AsyncSession, actor: Actor, card: Card, member_id: UUID,
                          store_id: UUID | None) -> None:
    if card.status == CardStatus.FROZEN:
        raise Conflict("this card is frozen", code="card_frozen")
    if card.status == CardStatus.EXPIRED or (card.expires_at is not None and card.expires_at <= utcnow()):
        raise Conflict("this card has expired", code="card_expired")
    if card.status not in (CardStatus.ACTIVE, CardStatus.EXHAUSTED):
        raise Conflict(f"this card is {card.status}", code="card_inactive")
    if member_id != card.member_id:
        shared = card.terms.get("family_shareable") and member_id in await members.family_member_ids(
            session, card.tenant_id, card.member_id)
        if not shared:
            raise Forbidden("this card belongs to another member and is not shared with them",
                            code="card_not_shared")
    stores = card.terms.get("usable_store_ids") or []
    if store_id is not None and stores and str(store_id) not in stores:
        raise Conflict("this card cannot be used in this store", code="card_store_not_allowed")


async def deduct_session(session: AsyncSession, actor: Actor, card_id: UUID, *, service_id: UUID, member_id: UUID,
                         store_id: UUID, ref_type: str, ref_id: Any, reason: str | None = None) -> SessionDeduction:
    """Use one session of `service_id` from the card (a period card records the use, within its daily cap)."""
    card = await locked_card(session, actor, card_id)
    await _require_usable(session, actor, card, member_id, store_id)
    if card.kind == CardKind.STORED_VALUE:
        raise Conflict("a stored-value card pays at checkout; it holds no sessions", code="card_kind_mismatch")
    items = await card_items(session, card, lock=True)
    own = next((i for i in items if i.service_id == service_id), None)
    pool = next((i for i in items if i.service_id is None), None)
    pool_ok = pool is not None and str(service_id) in card.terms.get("pool_service_ids", [])
    if own is None and not pool_ok:
        raise Conflict("this card does not cover this service", code="service_not_on_card")
    if card.kind == CardKind.PERIOD:
        await _check_daily_cap(session, card, store_id)
        item, sessions = own, 0
    elif own is not None and own.remaining > 0:
        item, sessions = own, -1
    elif pool_ok and pool.remaining > 0:
        item, sessions = pool, -1
    else:
        raise Conflict("no session of this service is left on the card", code="no_sessions_left")
    item.remaining += sessions
    session.add(item)
    entry = ledger_entry(card, "deduct", item=item, sessions=sessions, member_id=member_id, store_id=store_id,
                         reason=reason, ref_type=ref_type, ref_id=ref_id, details={"service_id": str(service_id)})
    session.add(entry)
    if card.kind != CardKind.PERIOD and all(i.remaining == 0 for i in items):
        card.status = CardStatus.EXHAUSTED
        session.add(card)
    await session.flush()
    if card.kind != CardKind.PERIOD and item.remaining <= SESSIONS_LOW_AT:
        await emit(session, CARD_SESSIONS_LOW, {
            "card_id": str(card.id), "member_id": str(card.member_id), "service_id": str(service_id),
            "remaining": item.remaining, "total_remaining": sum(i.remaining for i in items)})
    return SessionDeduction(entry=entry, item=item, remaining=item.remaining, unit_value=item.unit_value)


async def _check_daily_cap(session: AsyncSession, card: Card, store_id: UUID) -> None:
    cap = card.terms.get("daily_cap")
    if not cap:
        return
    zone = tenancy.store_zone(await tenancy.store_row(session, card.tenant_id, store_id))
    day_start = datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    reversed_ids = sa_select(CardLedgerEntry.reverses_id).where(
        CardLedgerEntry.tenant_id == card.tenant_id, CardLedgerEntry.card_id == card.id,
        CardLedgerEntry.reverses_id.is_not(None))
    used = (await session.execute(sa_select(func.count()).where(
        CardLedgerEntry.tenant_id == card.tenant_id, CardLedgerEntry.card_id == card.id,
        CardLedgerEntry.kind == "deduct", CardLedgerEntry.created_at >= day_start.astimezone(UTC),
        CardLedgerEntry.id.not_in(reversed_ids)))).scalar_one()
    if used >= cap:
        raise Conflict(f"this card allows {cap} use(s) a day", code="daily_cap_reached")


@dataclass
class ValueCharge:
    entry: CardLedgerEntry
    principal: int
    bonus: int


def _split(amount: int, principal: int, bonus: int, order: str) -> tuple[int, int]:
    if order == "bonus_first":
        from_bonus = min(bonus, amount)
        return amount - from_bonus, from_bonus
    if order == "proportional" and principal + bonus > 0:
        from_bonus = min(bonus, amount * bonus // (principal + bonus))
        from_principal = min(principal, amount - from_bonus)
        return from_principal, amount - from_principal
    from_principal = min(principal, amount)
    return from_principal, amount - from_principal


async def charge_value(session: AsyncSession, actor: Actor, card_id: UUID, *, amount: int, member_id: UUID,
                       store_id: UUID, ref_type: str, ref_id: Any) -> ValueCharge:
    """Pay `amount` fen from a stored-value card, principal and bonus per the card's spend order."""
    if amount <= 0:
        raise Unprocessable("amount must be positive", code="validation_error", field="amount")
    card = await locked_card(session, actor, card_id)
    if card.kind != CardKind.STORED_VALUE:
        raise Conflict("only a stored-value card pays money", code="card_kind_mismatch")
    await _require_usable(session, actor, card, member_id, store_id)
    available = card.principal_balance + card.bonus_balance
    if amount > available:
        raise Conflict("the card's balance does not cover this amount", code="insufficient_balance",
                       available=available, requested=amount)
    principal, bonus = _split(amount, card.principal_balance, card.bonus_balance,
                              card.terms.get("spend_order", "principal_first"))
    card.principal_balance -= principal
    card.bonus_balance -= bonus
    entry = ledger_entry(card, "charge", principal=-principal, bonus=-bonus, member_id=member_id, store_id=store_id,
                         ref_type=ref_type, ref_id=ref_id)
    session.add_all([card, entry])
    await session.flush()
    threshold = await _low_balance_threshold(session, card.tenant_id)
    if available >= threshold > card.principal_balance + card.bonus_balance:
        await emit(session, CARD_LOW_BALANCE, {"card_id": str(card.id), "member_id": str(card.member_id),
                                                 "balance": card.principal_balance + card.bonus_balance})
    return ValueCharge(entry=entry, principal=principal, bonus=bonus)


async def _low_balance_threshold(session: AsyncSession, tenant_id: UUID) -> int:
    value = (await tenancy.tenant_settings(session, tenant_id)).low_balance_threshold
    return DEFAULT_LOW_BALANCE if value is None else value


async def top_up(session: AsyncSession, actor: Actor, card_id: UUID, *, principal: int, bonus: int,
                 store_id: UUID, ref_type: str, ref_id: Any) -> CardLedgerEntry:
    if principal <= 0 or bonus < 0:
        raise Unprocessable("a top-up adds a positive principal", code="validation_error", field="amount")
    card = await locked_card(session, actor, card_id)
    if card.kind != CardKind.STORED_VALUE:
        raise Conflict("only a stored-value card can be topped up", code="card_kind_mismatch")
    if card.status not in (CardStatus.ACTIVE, CardStatus.EXHAUSTED):
        raise Conflict(f"this card is {card.status}", code="card_inactive")
    card.principal_balance += principal
    card.bonus_balance += bonus
    card.status = CardStatus.ACTIVE
    entry = ledger_entry(card, "top_up", principal=principal, bonus=bonus, store_id=store_id, ref_type=ref_type,
                         ref_id=ref_id)
    session.add_all([card, entry])
    await session.flush()
    audit.record(session, "card.top_up", "card", card.id, principal=principal, bonus=bonus, ref=str(ref_id))
    return entry


# ---------------------------------------------------------------- reversal


async def reverse_ref(session: AsyncSession, actor: Actor, ref_type: str, ref_id: Any,
                      reason: str) -> list[CardLedgerEntry]:
    """Write compensating entries for every not-yet-reversed entry made for (ref_type, ref_id)."""
    reversed_ids = sa_select(CardLedgerEntry.reverses_id).where(
        CardLedgerEntry.tenant_id == actor.tenant_id, CardLedgerEntry.reverses_id.is_not(None))
    stmt = (select(CardLedgerEntry).where(CardLedgerEntry.tenant_id == actor.tenant_id,
                                          CardLedgerEntry.ref_type == ref_type,
                                          CardLedgerEntry.ref_id == str(ref_id),
                                          CardLedgerEntry.kind != "reverse",
                                          CardLedgerEntry.id.not_in(reversed_ids))
            .order_by(CardLedgerEntry.card_id, CardLedgerEntry.created_at))
    originals = list((await session.exec(stmt)).all())
    out = []
    for card_id in sorted({e.card_id for e in originals}, key=str):  # lock cards in one order
        card = await locked_card(session, actor, card_id)
        items = {i.id: i for i in await card_items(session, card, lock=True)}
        for original in (e for e in originals if e.card_id == card_id):
            out.append(_reverse_entry(card, items, original, reason))
        if card.status == CardStatus.EXHAUSTED and any(i.remaining > 0 for i in items.values()):
            card.status = CardStatus.ACTIVE
        session.add(card)
        session.add_all(items.values())
    session.add_all(out)
    await session.flush()
    return out


def _reverse_entry(card: Card, items: dict[UUID, CardItem], original: CardLedgerEntry, reason: str) -> CardLedgerEntry:
    if card.principal_balance - original.principal_delta < 0 or card.bonus_balance - original.bonus_delta < 0:
        raise Conflict("the card no longer holds what this entry added", code="insufficient_balance")
    card.principal_balance -= original.principal_delta
    card.bonus_balance -= original.bonus_delta
    item = items.get(original.card_item_id) if original.card_item_id else None
    if item is not None:
        if item.remaining - original.sessions_delta < 0:
            raise Conflict("the sessions this entry added were already used", code="sessions_already_used")
        item.remaining -= original.sessions_delta
    return ledger_entry(card, "reverse", item=item, sessions=-original.sessions_delta,
                        principal=-original.principal_delta, bonus=-original.bonus_delta,
                        member_id=original.member_id, store_id=original.store_id, reason=reason,
                        ref_type=original.ref_type, ref_id=original.ref_id, reverses_id=original.id,
                        details={"reversed_kind": original.kind})


# ---------------------------------------------------------------- freeze, transfer, extend, expiry


async def freeze(session: AsyncSession, actor: Actor, card_id: UUID, reason: str) -> Card:
    actor.require("cards:adjust")
    card = await locked_card(session, actor, card_id)
    if card.status != CardStatus.ACTIVE:
        raise Conflict(f"only an active card can be frozen; this one is {card.status}", code="card_not_active")
    card.status, card.frozen_at = CardStatus.FROZEN, utcnow()
    session.add_all([card, ledger_entry(card, "freeze", reason=reason)])
    await session.flush()
    audit.record(session, "card.freeze", "card", card.id, reason=reason)
    return card


async def unfreeze(session: AsyncSession, actor: Actor, card_id: UUID, reason: str) -> Card:
    """Thaw the card; its expiry moves out by the time it was frozen (validity was paused)."""
    actor.require("cards:adjust")
    card = await locked_card(session, actor, card_id)
    if card.status != CardStatus.FROZEN:
        raise Conflict("this card is not frozen", code="card_not_frozen")
    paused = utcnow() - card.frozen_at
    old_expiry = card.expires_at
    if card.expires_at is not None:
        card.expires_at += paused
        _rearm_expiring_notice(card)
    items = await card_items(session, card)
    has_left = card.kind in (CardKind.STORED_VALUE, CardKind.PERIOD) or any(i.remaining for i in items)
    card.status, card.frozen_at = CardStatus.ACTIVE if has_left else CardStatus.EXHAUSTED, None
    session.add_all([card, ledger_entry(card, "unfreeze", reason=reason, details={
        "paused_seconds": int(paused.total_seconds()),
        "expires_at": {"from": old_expiry.isoformat() if old_expiry else None,
                       "to": card.expires_at.isoformat() if card.expires_at else None}})])
    await session.flush()
    audit.record(session, "card.unfreeze", "card", card.id, reason=reason, paused_seconds=int(paused.total_seconds()))
    return card


async def transfer(session: AsyncSession, actor: Actor, card_id: UUID, to_member_id: UUID, reason: str) -> Card:
    actor.require("cards:adjust")
    card = await locked_card(session, actor, card_id)
    if not card.terms.get("transferable", True):
        raise Conflict("this card's terms do not allow transfer", code="card_not_transferable")
    if card.status != CardStatus.ACTIVE:
        raise Conflict(f"only an active card can be transferred; this one is {card.status}", code="card_not_active")
    if to_member_id == card.member_id:
        raise Unprocessable("to_member_id: the card already belongs to this member", code="validation_error",
                            field="to_member_id")
    target = await members.get_member_row(session, actor, to_member_id)
    if target.status != "active":
        raise Conflict(f"member is {target.status}", code="member_inactive")
    previous = card.member_id
    card.member_id = target.id
    session.add_all([card, ledger_entry(card, "transfer", member_id=target.id, reason=reason,
                                        details={"from_member_id": str(previous), "to_member_id": str(target.id)})])
    await session.flush()
    audit.record(session, "card.transfer", "card", card.id, from_member=str(previous), to_member=str(target.id),
                 reason=reason)
    await emit(session, CARD_TRANSFERRED, {"card_id": str(card.id), "from_member_id": str(previous),
                                             "to_member_id": str(target.id)})
    return card


async def extend(session: AsyncSession, actor: Actor, card_id: UUID, *, days: int | None, until: datetime | None,
                 reason: str) -> Card:
    """Move the expiry out; an expired card comes back with the sessions its expiry took."""
    actor.require("cards:adjust")
    if (days is None) == (until is None):
        raise Unprocessable("give days or until", code="validation_error", field="days")
    card = await locked_card(session, actor, card_id)
    if card.expires_at is None:
        raise Conflict("this card does not expire", code="card_no_expiry")
    base = max(card.expires_at, utcnow())
    if until is not None and until > base + MAX_EXTENSION:
        # `until` reaches no further than `days` may; an unbounded one (year 9999) overflowed later arithmetic.
        raise Unprocessable(f"until: at most {MAX_EXTENSION.days} days past the current expiry",
                            code="validation_error", field="until")
    new_expiry = until if until is not None else base + timedelta(days=days)
    if new_expiry <= base:
        raise Unprocessable("until: the new expiry must be later than the current one and in the future",
                            code="validation_error", field="until")
    if card.status == CardStatus.EXPIRED:
        # Give back the sessions the expiry wrote off (this reloads the card, so it comes first).
        await reverse_ref(session, actor, "expiry", card.id, reason)
        items = await card_items(session, card)
        card.status = CardStatus.ACTIVE if card.kind == CardKind.PERIOD or any(i.remaining for i in items) \
            else CardStatus.EXHAUSTED
    old = card.expires_at
    card.expires_at = new_expiry
    _rearm_expiring_notice(card)
    session.add_all([card, ledger_entry(card, "extend", reason=reason, details={
        "from": old.isoformat(), "to": new_expiry.isoformat()})])
    await session.flush()
    audit.record(session, "card.extend", "card", card.id, reason=reason, expires_from=old.isoformat(),
                 expires_to=new_expiry.isoformat())
    return card


def _rearm_expiring_notice(card: Card) -> None:
    """A notice sent for an expiry the card no longer has is forgotten, so the new one is announced too."""
    if card.expires_at is not None and card.expires_at > utcnow() + EXPIRING_NOTICE:
        card.expiring_notified_at = None


async def expire_card(session: AsyncSession, actor: Actor, card_id: UUID) -> bool:
    """Expire one due card: its remaining sessions are written off by ledger entries (breakage)."""
    card = await locked_card(session, actor, card_id)
    if card.status not in (CardStatus.ACTIVE, CardStatus.EXHAUSTED) or card.expires_at is None \
            or card.expires_at > utcnow():
        return False
    entries = []
    for item in await card_items(session, card, lock=True):
        if item.remaining:
            entries.append(ledger_entry(card, "expire", item=item, sessions=-item.remaining, ref_type="expiry",
                                        ref_id=card.id, reason="validity ended"))
            item.remaining = 0
            session.add(item)
    card.status = CardStatus.EXPIRED
    session.add(card)
    session.add_all(entries or [ledger_entry(card, "expire", ref_type="expiry", ref_id=card.id,
                                             reason="validity ended")])
    await session.flush()
    await emit(session, CARD_EXPIRED, {"card_id": str(card.id), "member_id": str(card.member_id)})
    return True


async def notify_expiring(session: AsyncSession, actor: Actor, card_id: UUID) -> bool:
    card = await locked_card(session, actor, card_id)
    if card.expiring_notified_at is not None or card.status != CardStatus.ACTIVE or card.expires_at is None:
        return False
    card.expiring_notified_at = utcnow()
    session.add(card)
    await emit(session, CARD_EXPIRING, {"card_id": str(card.id), "member_id": str(card.member_id),
                                          "expires_at": card.expires_at.isoformat()})
    return True


# ---------------------------------------------------------------- reading


async def present(session: AsyncSession, card: Card) -> CardOut:
    return _card_out(card, await card_items(session, card))


async def present_many(session: AsyncSession, cards: list[Card]) -> list[CardOut]:
    """`present` for many cards, with one query for all their items (a member's card list, the sidebar)."""
    if not cards:
        return []
    rows = (await session.exec(select(CardItem).where(CardItem.tenant_id == cards[0].tenant_id,
                                                      CardItem.card_id.in_([c.id for c in cards]))
                               .order_by(CardItem.id).execution_options(populate_existing=True))).all()
    items: dict[UUID, list[CardItem]] = {c.id: [] for c in cards}
    for item in rows:
        items[item.card_id].append(item)
    return [_card_out(card, items[card.id]) for card in cards]


def _card_out(card: Card, items: list[CardItem]) -> CardOut:
    return CardOut(
        id=card.id, template_id=card.template_id, member_id=card.member_id, name=card.name, kind=card.kind,
        status=card.status, price_paid=card.price_paid, balance=card.principal_balance + card.bonus_balance,
        principal_balance=card.principal_balance, bonus_balance=card.bonus_balance, starts_at=card.starts_at,
        expires_at=card.expires_at, family_shareable=bool(card.terms.get("family_shareable")),
        items=[CardItemOut(id=i.id, service_id=i.service_id, sessions_total=i.sessions_total,
                           gifted_sessions=i.gifted_sessions, remaining=i.remaining, unit_value=i.unit_value)
               for i in items],
        created_at=card.created_at)


async def get_card(session: AsyncSession, actor: Actor, card_id: UUID) -> Card:
    if actor.kind != "patient":
        actor.require("cards:read")
    card = await get_or_404(session, Card, actor.tenant_id, card_id, code="card_not_found")
    if actor.kind == "patient":
        await members.get_member_row(session, actor, card.member_id)  # 404 unless theirs or their family's
    return card


async def member_cards(session: AsyncSession, actor: Actor, member_id: UUID, *, include_shared: bool = True,
                       status: str | None = None) -> list[CardOut]:
    """The member's cards, and family cards shared with them."""
    if actor.kind != "patient":
        actor.require("cards:read")
    member = await members.get_member_row(session, actor, member_id)
    owners = await members.family_member_ids(session, actor.tenant_id, member.id) if include_shared else {member.id}
    stmt = select(Card).where(Card.tenant_id == actor.tenant_id, Card.member_id.in_(owners))
    if status:
        stmt = stmt.where(Card.status == status)
    cards = [c for c in (await session.exec(stmt.order_by(Card.id.desc()))).all()
             if c.member_id == member.id or c.terms.get("family_shareable")]
    return await present_many(session, cards)


async def ledger(session: AsyncSession, actor: Actor, card_id: UUID, params: PageParams):
    card = await get_card(session, actor, card_id)
    stmt = select(CardLedgerEntry).where(CardLedgerEntry.tenant_id == actor.tenant_id,
                                         CardLedgerEntry.card_id == card.id)
    return await paginate(session, stmt, CardLedgerEntry.id, params, descending=True)


async def check_consistency(session: AsyncSession, tenant_id: UUID, card_id: UUID) -> list[str]:
    """Differences between the card's balances and its ledger (empty when consistent)."""
    rows = (await session.execute(text(
        """
        SELECT 'item ' || i.id AS what, i.remaining AS kept,
               COALESCE((SELECT sum(l.sessions_delta) FROM card_ledger l
                          WHERE l.tenant_id = i.tenant_id AND l.card_item_id = i.id), 0) AS summed
          FROM card_items i WHERE i.tenant_id = :t AND i.card_id = :c
        UNION ALL
        SELECT 'principal', c.principal_balance, COALESCE((SELECT sum(principal_delta) FROM card_ledger l
                          WHERE l.tenant_id = c.tenant_id AND l.card_id = c.id), 0)
          FROM cards c WHERE c.tenant_id = :t AND c.id = :c
        UNION ALL
        SELECT 'bonus', c.bonus_balance, COALESCE((SELECT sum(bonus_delta) FROM card_ledger l
                          WHERE l.tenant_id = c.tenant_id AND l.card_id = c.id), 0)
          FROM cards c WHERE c.tenant_id = :t AND c.id = :c
        """), {"t": tenant_id, "c": card_id})).all()
    return [f"{r.what}: kept {r.kept}, ledger {r.summed}" for r in rows if r.kept != r.summed]


# ---------------------------------------------------------------- plugged into members


@members.timeline_source("card_change")
async def _card_timeline(session: AsyncSession, tenant_id: UUID, member_id: UUID,
                         before: tuple[datetime, str] | None, limit: int) -> list[TimelineItem]:
    stmt = (select(CardLedgerEntry, Card.name).join(Card, and_(Card.tenant_id == CardLedgerEntry.tenant_id,
                                                               Card.id == CardLedgerEntry.card_id))
            .where(CardLedgerEntry.tenant_id == tenant_id, CardLedgerEntry.member_id == member_id))
    if before is not None:
        stmt = stmt.where(members.before_clause(CardLedgerEntry.created_at, CardLedgerEntry.id, before, "card:"))
    rows = (await session.execute(stmt.order_by(CardLedgerEntry.created_at.desc(), CardLedgerEntry.id.desc())
                                  .limit(limit))).all()
    titles = {"issue": "开卡", "deduct": "耗卡", "charge": "储值消费", "top_up": "充值", "reverse": "冲正",
              "refund": "退款", "freeze": "冻结", "unfreeze": "解冻", "transfer": "转卡", "extend": "延期",
              "expire": "过期", "migration": "旧系统迁入"}
    return [TimelineItem(type="card_change", occurred_at=e.created_at, id=f"card:{e.id}",
                         title=f"{titles.get(e.kind, e.kind)} · {name}",
                         data={"card_id": str(e.card_id), "kind": e.kind, "sessions_delta": e.sessions_delta,
                               "principal_delta": e.principal_delta, "bonus_delta": e.bonus_delta,
                               "reason": e.reason}) for e, name in rows]


@members.merge_mover("cards")
async def _move_cards(session: AsyncSession, tenant_id: UUID, duplicate_id: UUID, survivor_id: UUID) -> dict[str, int]:
    moved = await session.execute(text("UPDATE cards SET member_id = :s WHERE tenant_id = :t AND member_id = :d"),
                                  {"t": tenant_id, "s": survivor_id, "d": duplicate_id})
    return {"cards": moved.rowcount}


# ---------------------------------------------------------------- read API (for other contexts)
# Other contexts read this one only through the functions below (never its models, never raw SQL on its tables).


async def stored_value_total(session: AsyncSession, tenant_id: UUID, member_id: UUID) -> int:
    """What the member holds on their active stored-value cards (principal + bonus, fen); no permission check."""
    total = (await session.execute(
        sa_select(func.coalesce(func.sum(Card.principal_balance + Card.bonus_balance), 0))
        .where(Card.tenant_id == tenant_id, Card.member_id == member_id, Card.kind == CardKind.STORED_VALUE,
               Card.status == CardStatus.ACTIVE))).scalar_one()
    return int(total)


@dataclass(frozen=True)
class CardConsumption:
    """What one store's card ledger released of deferred revenue (预收款) in a time range."""

    sessions: int  # sessions deducted, net of reversals
    sessions_value: int  # fen: those sessions × their item's unit value
    principal_charged: int  # fen of stored-value principal charged, net of reversals and tender refunds
    bonus_charged: int  # fen of bonus charged, likewise (never paid for, so reported apart)
    card_refunds: int  # fen: refunded card and top-up lines (sessions written off × unit value, principal out)


_CONSUMPTION = text("""
    SELECT COALESCE(sum(-l.sessions_delta * i.unit_value) FILTER (
               WHERE l.kind = 'deduct' OR (l.kind = 'reverse' AND l.details ->> 'reversed_kind' = 'deduct')), 0)
               AS sessions_value,
           COALESCE(sum(-l.sessions_delta) FILTER (
               WHERE l.kind = 'deduct' OR (l.kind = 'reverse' AND l.details ->> 'reversed_kind' = 'deduct')), 0)
               AS sessions,
           COALESCE(sum(-l.principal_delta) FILTER (WHERE l.kind = 'charge'
               OR (l.kind = 'reverse' AND l.details ->> 'reversed_kind' = 'charge')
               OR (l.kind = 'refund' AND l.details ->> 'purpose' = 'tender')), 0) AS principal_charged,
           COALESCE(sum(-l.bonus_delta) FILTER (WHERE l.kind = 'charge'
               OR (l.kind = 'reverse' AND l.details ->> 'reversed_kind' = 'charge')
               OR (l.kind = 'refund' AND l.details ->> 'purpose' = 'tender')), 0) AS bonus_charged,
           COALESCE(sum(-l.sessions_delta * i.unit_value) FILTER (WHERE l.kind = 'refund'), 0)
             + COALESCE(sum(-l.principal_delta) FILTER (
                   WHERE l.kind = 'refund' AND l.details ->> 'purpose' = 'goods'), 0) AS card_refunds
      FROM card_ledger l LEFT JOIN card_items i ON i.tenant_id = l.tenant_id AND i.id = l.card_item_id
     WHERE l.tenant_id = :t AND l.store_id = :s AND l.created_at >= :a AND l.created_at < :b
""")


async def card_consumption(session: AsyncSession, tenant_id: UUID, store_id: UUID, starts: datetime,
                           ends: datetime) -> CardConsumption:
    """The store's card consumption in [starts, ends) from the card ledger (checkout's daily close)."""
    row = (await session.execute(_CONSUMPTION, {"t": tenant_id, "s": store_id, "a": starts, "b": ends})).one()
    return CardConsumption(sessions=row.sessions, sessions_value=row.sessions_value,
                           principal_charged=row.principal_charged, bonus_charged=row.bonus_charged,
                           card_refunds=row.card_refunds)
