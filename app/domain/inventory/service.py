"""Inventory use cases: receive, adjust, transfer, consume by recipe, sell, reverse; stock and ledger reads.

Every change goes through `_apply`, which moves each balance with one conditional UPDATE
(`quantity = quantity + delta … WHERE quantity + delta >= 0 RETURNING …`). The UPDATE locks the balance
row until the transaction ends, so concurrent deductions queue on it and re-check the condition against
the committed quantity: stock cannot be overdrawn, and the ledger row written under that lock records the
exact balance it produced. Balances are touched in (store_id, item_id) order, so two transactions that
need the same rows never wait on each other in a cycle.

Other contexts call `consume_for_service`, `sell_products` and `reverse` inside their own transaction:
they flush, never commit, and each call is all-or-nothing (a savepoint), so a 409 for a short item
leaves the caller's transaction as it was; the caller normally lets the error roll everything back.
These three do not check a permission (the calling use case has: visits:complete, orders:write, …);
they do check that the actor may act in the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import func, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.errors import Conflict, NotFound
from app.core.events import emit
from app.core.ids import new_id
from app.core.pagination import PageParams, decode_cursor, encode_cursor, paginate
from app.core.rows import get_or_404
from app.domain.catalog import service as catalog
from app.domain.catalog.service import StockItem, invalid
from app.domain.inventory.events import LOW_STOCK_TOPIC
from app.domain.inventory.models import ItemKind, MovementKind, StockBalance, StockMovement
from app.domain.inventory.schemas import (
    ItemRef,
    MovementCreate,
    MovementOut,
    StockItemOut,
    ThresholdSet,
    TransferCreate,
)
from app.domain.tenancy import service as tenancy

TRANSFER_REF = "stock_transfer"


@dataclass(frozen=True)
class SaleLine:
    """One product line of a sale: `quantity` units (positive) of `product_id`."""

    product_id: UUID
    quantity: int


@dataclass(frozen=True)
class _Change:
    store_id: UUID
    item: StockItem
    quantity: int  # signed
    kind: str
    reason: str | None = None
    ref_type: str | None = None
    ref_id: str | None = None
    reverses_id: UUID | None = None
    transfer_id: UUID | None = None
    counterpart_store_id: UUID | None = None


# ---------------------------------------------------------------- the one way stock moves


async def _require_store(session: AsyncSession, actor: Actor, store_id: UUID) -> None:
    await tenancy.require_stores_exist(session, actor.tenant_id, {store_id})  # 404 for another tenant's store
    actor.require_store(store_id)  # 403 for a store of the tenant the actor is not assigned to


def _balance_key(tenant_id: UUID, change: _Change) -> list:
    return [StockBalance.tenant_id == tenant_id, StockBalance.store_id == change.store_id,
            StockBalance.item_id == change.item.id]


async def _move_balance(session: AsyncSession, tenant_id: UUID, change: _Change,
                        allow_negative: bool) -> tuple[int, int | None] | None:
    """Add the change to the balance if the result may stand; (quantity after, store threshold) or None."""
    stmt = (update(StockBalance).where(*_balance_key(tenant_id, change))
            .values(quantity=StockBalance.quantity + change.quantity, updated_at=func.now())
            .returning(StockBalance.quantity, StockBalance.low_stock_threshold)
            .execution_options(synchronize_session=False))
    if not allow_negative:
        stmt = stmt.where(StockBalance.quantity + change.quantity >= 0)
    row = (await session.execute(stmt)).first()
    if row is not None:
        return row.quantity, row.low_stock_threshold
    if await _balance_quantity(session, tenant_id, change.store_id, change.item.id) is not None:
        return None  # the row exists: the condition refused the change
    if change.quantity < 0 and not allow_negative:
        return None
    await _ensure_balance(session, tenant_id, change.store_id, change.item)
    row = (await session.execute(stmt)).first()
    return (row.quantity, row.low_stock_threshold) if row is not None else None


async def _balance_quantity(session: AsyncSession, tenant_id: UUID, store_id: UUID, item_id: UUID) -> int | None:
    stmt = select(StockBalance.quantity).where(StockBalance.tenant_id == tenant_id, StockBalance.store_id == store_id,
                                               StockBalance.item_id == item_id)
    return (await session.exec(stmt)).first()


async def _ensure_balance(session: AsyncSession, tenant_id: UUID, store_id: UUID, item: StockItem) -> None:
    await session.execute(
        pg_insert(StockBalance)
        .values(tenant_id=tenant_id, store_id=store_id, item_id=item.id, item_kind=item.kind,
                consumable_id=item.id if item.kind == ItemKind.CONSUMABLE else None,
                product_id=item.id if item.kind == ItemKind.PRODUCT else None, quantity=0, updated_at=func.now())
        .on_conflict_do_nothing(index_elements=["tenant_id", "store_id", "item_id"]))


def _insufficient(change: _Change, available: int) -> Conflict:
    needed = -change.quantity
    return Conflict(
        f"not enough {change.item.name} in stock at this store: {available} {change.item.unit} available, "
        f"{needed} {change.item.unit} needed",
        code="insufficient_stock", store_id=str(change.store_id), item_kind=change.item.kind,
        item_id=str(change.item.id), item_name=change.item.name, unit=change.item.unit,
        available=available, requested=needed)


async def _apply(session: AsyncSession, actor: Actor, changes: Sequence[_Change]) -> list[StockMovement]:
    """Move every balance and write its ledger row, all or nothing; the movements in the order given."""
    if not changes:
        return []
    # A tenant may sell or consume what the system has not seen arrive (counts go negative until received).
    allow_negative = (await tenancy.tenant_settings(session, actor.tenant_id)).allow_negative_stock
    movements: dict[int, StockMovement] = {}
    crossings: list[tuple[StockMovement, StockItem, int]] = []
    order = sorted(range(len(changes)), key=lambda i: (changes[i].store_id, changes[i].item.id))
    try:
        async with session.begin_nested():
            for index in order:
                change = changes[index]
                moved = await _move_balance(session, actor.tenant_id, change, allow_negative)
                if moved is None:
                    available = await _balance_quantity(session, actor.tenant_id, change.store_id, change.item.id)
                    raise _insufficient(change, available or 0)
                after, store_threshold = moved
                movement = StockMovement(
                    tenant_id=actor.tenant_id, store_id=change.store_id, item_id=change.item.id,
                    item_kind=change.item.kind, kind=change.kind, quantity=change.quantity, balance_after=after,
                    reason=change.reason, ref_type=change.ref_type, ref_id=change.ref_id,
                    reverses_id=change.reverses_id, transfer_id=change.transfer_id,
                    counterpart_store_id=change.counterpart_store_id, actor_type=actor.kind, actor_id=actor.id)
                session.add(movement)
                await session.flush()  # seq is assigned now, while this balance row is locked
                movements[index] = movement
                threshold = store_threshold if store_threshold is not None else change.item.low_stock_threshold
                if after - change.quantity > threshold >= after:
                    crossings.append((movement, change.item, threshold))
    except IntegrityError as exc:
        if "reverses_id" in str(exc.orig):
            raise Conflict("this movement was reversed already", code="movement_already_reversed") from exc
        raise
    for movement, item, threshold in crossings:
        await emit(session, LOW_STOCK_TOPIC, {
            "store_id": str(movement.store_id), "item_kind": item.kind, "item_id": str(item.id),
            f"{item.kind}_id": str(item.id), "name": item.name, "unit": item.unit,
            "quantity": movement.balance_after, "threshold": threshold, "movement_id": str(movement.id)})
    return [movements[i] for i in range(len(changes))]


def _summary(movements: Iterable[StockMovement]) -> list[dict]:
    return [{"id": str(m.id), "store_id": str(m.store_id), "item_id": str(m.item_id), "kind": m.kind,
             "quantity": m.quantity, "balance_after": m.balance_after} for m in movements]


def movement_out(movement: StockMovement) -> MovementOut:
    return MovementOut(
        id=movement.id, seq=movement.seq, store_id=movement.store_id, item_kind=movement.item_kind,
        item_id=movement.item_id,
        consumable_id=movement.item_id if movement.item_kind == ItemKind.CONSUMABLE else None,
        product_id=movement.item_id if movement.item_kind == ItemKind.PRODUCT else None,
        kind=movement.kind, quantity=movement.quantity, balance_after=movement.balance_after,
        reason=movement.reason, ref_type=movement.ref_type, ref_id=movement.ref_id,
        reverses_id=movement.reverses_id, transfer_id=movement.transfer_id,
        counterpart_store_id=movement.counterpart_store_id, actor_type=movement.actor_type,
        actor_id=movement.actor_id, created_at=movement.created_at)


async def _item(session: AsyncSession, actor: Actor, ref: ItemRef, field_prefix: str = "") -> StockItem:
    items = await catalog.stock_items(session, actor.tenant_id,
                                      consumable_ids=[ref.consumable_id] if ref.consumable_id else [],
                                      product_ids=[ref.product_id] if ref.product_id else [])
    item = items.get(ref.item_id)
    if item is None:
        raise NotFound(f"{ref.item_kind} not found", code=f"{ref.item_kind}_not_found",
                       field=f"{field_prefix}{ref.item_kind}_id")
    return item


# ---------------------------------------------------------------- REST use cases


async def record_movement(session: AsyncSession, actor: Actor, data: MovementCreate) -> StockMovement:
    """Receive goods (positive quantity) or adjust with a reason (signed) at one store."""
    actor.require("inventory:write")
    await _require_store(session, actor, data.store_id)
    item = await _item(session, actor, data)
    if data.kind == MovementKind.RECEIVE and not item.active:
        raise Conflict(f"{item.name} is deactivated; reactivate it to receive stock", code=f"{item.kind}_inactive")
    (movement,) = await _apply(session, actor, [_Change(
        data.store_id, item, data.quantity, data.kind, reason=data.reason, ref_type=data.ref_type,
        ref_id=data.ref_id)])
    audit.record(session, f"stock.{data.kind}", "stock_movement", movement.id,
                 after=_summary([movement])[0] | {"reason": data.reason, "item_name": item.name})
    return movement


async def transfer(session: AsyncSession, actor: Actor, data: TransferCreate) -> tuple[UUID, list[StockMovement]]:
    """Move stock between two stores in one step: every line leaves one store and arrives at the other, or,
    when the sending store lacks any of it, nothing moves at all."""
    actor.require("inventory:write")
    await _require_store(session, actor, data.from_store_id)
    await _require_store(session, actor, data.to_store_id)
    transfer_id = new_id()
    changes: list[_Change] = []
    for index, line in enumerate(data.lines):
        item = await _item(session, actor, line, f"lines.{index}.")
        common = {"reason": data.reason, "ref_type": TRANSFER_REF, "ref_id": str(transfer_id),
                  "transfer_id": transfer_id}
        changes.append(_Change(data.from_store_id, item, -line.quantity, MovementKind.TRANSFER_OUT,
                               counterpart_store_id=data.to_store_id, **common))
        changes.append(_Change(data.to_store_id, item, line.quantity, MovementKind.TRANSFER_IN,
                               counterpart_store_id=data.from_store_id, **common))
    movements = await _apply(session, actor, changes)
    audit.record(session, "stock.transfer", "stock_transfer", transfer_id, from_store_id=data.from_store_id,
                 to_store_id=data.to_store_id, reason=data.reason, movements=_summary(movements))
    return transfer_id, movements


async def reverse_movement(session: AsyncSession, actor: Actor, movement_id: UUID, reason: str) -> list[StockMovement]:
    """Undo one movement (a wrong receive, a mistaken adjustment) with a compensating one. A transfer is
    undone whole: both legs of every line."""
    actor.require("inventory:write")
    movement = await get_or_404(session, StockMovement, actor.tenant_id, movement_id, code="movement_not_found",
                                detail="stock movement not found")
    actor.require_store(movement.store_id)
    if movement.kind == MovementKind.REVERSAL:
        raise Conflict("a reversal cannot be reversed; record a new movement instead", code="cannot_reverse_reversal")
    targets = [movement]
    if movement.transfer_id is not None:
        targets = list((await session.exec(select(StockMovement).where(
            StockMovement.tenant_id == actor.tenant_id, StockMovement.transfer_id == movement.transfer_id,
            StockMovement.kind != MovementKind.REVERSAL).order_by(StockMovement.seq))).all())
    for target in targets:
        actor.require_store(target.store_id)
    pending = await _not_yet_reversed(session, actor.tenant_id, targets)
    if not pending:
        raise Conflict("this movement was reversed already", code="movement_already_reversed")
    reversals = await _reverse_movements(session, actor, pending, reason)
    audit.record(session, "stock.reverse", "stock_movement", movement.id, reason=reason,
                 movements=_summary(reversals))
    return reversals


async def set_threshold(session: AsyncSession, actor: Actor, data: ThresholdSet) -> StockItemOut:
    """Set (or, with null, clear) one store's low-stock threshold for an item."""
    actor.require("inventory:write")
    await _require_store(session, actor, data.store_id)
    item = await _item(session, actor, data)
    await _ensure_balance(session, actor.tenant_id, data.store_id, item)
    await session.execute(
        update(StockBalance)
        .where(StockBalance.tenant_id == actor.tenant_id, StockBalance.store_id == data.store_id,
               StockBalance.item_id == item.id)
        .values(low_stock_threshold=data.low_stock_threshold, updated_at=func.now())
        .execution_options(synchronize_session=False))
    audit.record(session, "stock.threshold", "stock_balance", f"{data.store_id}:{item.id}",
                 store_id=data.store_id, item_id=item.id, low_stock_threshold=data.low_stock_threshold)
    (out,) = await _present_balances(session, actor.tenant_id, [await _balance_row(session, actor.tenant_id,
                                                                                      data.store_id, item.id)])
    return out


async def _balance_row(session: AsyncSession, tenant_id: UUID, store_id: UUID, item_id: UUID) -> StockBalance:
    stmt = (select(StockBalance).where(StockBalance.tenant_id == tenant_id, StockBalance.store_id == store_id,
                                       StockBalance.item_id == item_id)
            .execution_options(populate_existing=True))
    return (await session.exec(stmt)).one()


async def _present_balances(session: AsyncSession, tenant_id: UUID, rows: Sequence[StockBalance]) -> list[StockItemOut]:
    items = await catalog.stock_items(
        session, tenant_id, consumable_ids=[r.item_id for r in rows if r.item_kind == ItemKind.CONSUMABLE],
        product_ids=[r.item_id for r in rows if r.item_kind == ItemKind.PRODUCT])
    out = []
    for row in rows:
        item = items[row.item_id]
        threshold = row.low_stock_threshold if row.low_stock_threshold is not None else item.low_stock_threshold
        out.append(StockItemOut(
            store_id=row.store_id, item_kind=row.item_kind, item_id=row.item_id,
            consumable_id=row.consumable_id, product_id=row.product_id, name=item.name, unit=item.unit,
            quantity=row.quantity, low_stock_threshold=threshold, low_stock=row.quantity <= threshold,
            updated_at=row.updated_at))
    return out


def _stock_cursor(value: object) -> tuple[UUID, UUID]:
    store_id, item_id = value  # type: ignore[misc]
    return UUID(store_id), UUID(item_id)


async def list_stock(session: AsyncSession, actor: Actor, params: PageParams, store_id: UUID | None = None, *,
                     item_kind: str | None = None,
                     item_id: UUID | None = None) -> tuple[list[StockItemOut], str | None]:
    """Stock of every item a store has held (received, moved, or given a threshold); without a store,
    of every store the actor may see, store by store."""
    actor.require("inventory:read")
    stmt = (select(StockBalance).where(StockBalance.tenant_id == actor.tenant_id)
            .execution_options(populate_existing=True))
    if store_id is not None:
        await _require_store(session, actor, store_id)
        stmt = stmt.where(StockBalance.store_id == store_id)
    elif actor.store_ids is not None:
        stmt = stmt.where(StockBalance.store_id.in_(actor.store_ids))
    if item_kind:
        stmt = stmt.where(StockBalance.item_kind == item_kind)
    if item_id is not None:
        stmt = stmt.where(StockBalance.item_id == item_id)
    if params.cursor:
        after = decode_cursor(params.cursor, _stock_cursor)
        stmt = stmt.where(tuple_(StockBalance.store_id, StockBalance.item_id) > tuple_(*after))
    stmt = stmt.order_by(StockBalance.store_id, StockBalance.item_id).limit(params.limit + 1)
    rows = list((await session.exec(stmt)).all())
    cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        cursor = encode_cursor([str(rows[-1].store_id), str(rows[-1].item_id)])
    return await _present_balances(session, actor.tenant_id, rows), cursor


async def list_movements(session: AsyncSession, actor: Actor, params: PageParams, *, store_id: UUID | None = None,
                         item_id: UUID | None = None, kind: str | None = None, ref_type: str | None = None,
                         ref_id: str | None = None):
    """The stock ledger, newest first, within the stores the actor may see."""
    actor.require("inventory:read")
    stmt = select(StockMovement).where(StockMovement.tenant_id == actor.tenant_id)
    if store_id is not None:
        await _require_store(session, actor, store_id)
        stmt = stmt.where(StockMovement.store_id == store_id)
    elif actor.store_ids is not None:
        stmt = stmt.where(StockMovement.store_id.in_(actor.store_ids))
    if item_id is not None:
        stmt = stmt.where(StockMovement.item_id == item_id)
    if kind:
        stmt = stmt.where(StockMovement.kind == kind)
    if ref_type:
        stmt = stmt.where(StockMovement.ref_type == ref_type)
    if ref_id:
        stmt = stmt.where(StockMovement.ref_id == ref_id)
    return await paginate(session, stmt, StockMovement.seq, params, descending=True, convert=int)


# ---------------------------------------------------------------- for other contexts


def _check_ref(ref_type: str, ref_id: object) -> tuple[str, str]:
    if not isinstance(ref_type, str) or not ref_type.strip():
        raise invalid("ref_type", "a reference type is required (e.g. service_record)")
    if ref_id is None or not str(ref_id).strip():
        raise invalid("ref_id", "a reference id is required")
    return ref_type, str(ref_id)


async def consume_for_service(session: AsyncSession, actor: Actor, store_id: UUID, service_id: UUID,
                              ref_type: str, ref_id: object) -> list[StockMovement]:
    """Deduct one performance of the service's recipe from the store's stock (kind `consume`).

    409 `insufficient_stock` naming the short item (`item_name`, `available`, `requested`) when the store
    lacks any of it and the tenant does not allow negative stock; then nothing of this call is written.
    A service without a recipe deducts nothing and returns []. Undo with `reverse(ref_type, ref_id)`.
    """
    ref_type, ref = _check_ref(ref_type, ref_id)
    await _require_store(session, actor, store_id)
    recipe = await catalog.recipe_of(session, actor.tenant_id, service_id)
    if not recipe:
        return []
    items = await catalog.stock_items(session, actor.tenant_id, consumable_ids=[r.consumable_id for r in recipe])
    movements = await _apply(session, actor, [
        _Change(store_id, items[line.consumable_id], -line.quantity, MovementKind.CONSUME, ref_type=ref_type,
                ref_id=ref) for line in recipe])
    audit.record(session, "stock.consume", ref_type, ref, store_id=store_id, service_id=service_id,
                 movements=_summary(movements))
    return movements


async def sell_products(session: AsyncSession, actor: Actor, store_id: UUID, lines: Sequence[SaleLine],
                        ref_type: str, ref_id: object) -> list[StockMovement]:
    """Deduct sold products from the store's stock (kind `sale`), one movement per line, all or nothing.

    409 `insufficient_stock` (as consume_for_service) or `product_inactive`; 404 `product_not_found`;
    422 for a line whose quantity is not a positive integer. Undo with `reverse(ref_type, ref_id)`.
    """
    ref_type, ref = _check_ref(ref_type, ref_id)
    for index, line in enumerate(lines):
        if isinstance(line.quantity, bool) or not isinstance(line.quantity, int) or line.quantity <= 0:
            raise invalid(f"lines.{index}.quantity", "must be a positive integer")
    await _require_store(session, actor, store_id)
    items = await catalog.stock_items(session, actor.tenant_id, product_ids=[line.product_id for line in lines])
    changes = []
    for index, line in enumerate(lines):
        item = items.get(line.product_id)
        if item is None:
            raise NotFound("product not found", code="product_not_found", field=f"lines.{index}.product_id")
        if not item.active:
            raise Conflict(f"{item.name} is no longer sold", code="product_inactive",
                           field=f"lines.{index}.product_id")
        changes.append(_Change(store_id, item, -line.quantity, MovementKind.SALE, ref_type=ref_type, ref_id=ref))
    movements = await _apply(session, actor, changes)
    audit.record(session, "stock.sell", ref_type, ref, store_id=store_id, movements=_summary(movements))
    return movements


async def reverse(session: AsyncSession, actor: Actor, ref_type: str, ref_id: object,
                  reason: str) -> list[StockMovement]:
    """Write a compensating `reversal` for every movement with this reference not reversed yet.

    Each reversal points at its movement (reverses_id) and carries the same reference. Calling it again
    is harmless (returns []), so a retried job does not restore stock twice. 409 `insufficient_stock` when
    undoing would overdraw (e.g. reversing a receive whose goods were used since).
    """
    ref_type, ref = _check_ref(ref_type, ref_id)
    if not reason or not reason.strip():
        raise invalid("reason", "a reversal needs a reason")
    movements = list((await session.exec(select(StockMovement).where(
        StockMovement.tenant_id == actor.tenant_id, StockMovement.ref_type == ref_type,
        StockMovement.ref_id == ref, StockMovement.kind != MovementKind.REVERSAL)
        .order_by(StockMovement.seq))).all())
    for store_id in {m.store_id for m in movements}:
        actor.require_store(store_id)
    pending = await _not_yet_reversed(session, actor.tenant_id, movements)
    try:
        reversals = await _reverse_movements(session, actor, pending, reason)
    except Conflict as exc:
        if exc.code != "movement_already_reversed":
            raise
        # A concurrent reversal of the same reference committed first (its rows are visible now that this
        # statement's turn came): reverse what it left, which is usually nothing.
        pending = await _not_yet_reversed(session, actor.tenant_id, movements)
        reversals = await _reverse_movements(session, actor, pending, reason)
    if reversals:
        audit.record(session, "stock.reverse", ref_type, ref, reason=reason, movements=_summary(reversals))
    return reversals


async def stock_levels(session: AsyncSession, actor: Actor, store_id: UUID,
                       item_ids: Iterable[UUID]) -> dict[UUID, int]:
    """Current quantities at a store (0 for items never stocked there), e.g. to warn before booking."""
    ids = set(item_ids)
    levels = dict.fromkeys(ids, 0)
    if ids:
        rows = (await session.exec(select(StockBalance.item_id, StockBalance.quantity).where(
            StockBalance.tenant_id == actor.tenant_id, StockBalance.store_id == store_id,
            StockBalance.item_id.in_(ids)))).all()
        levels.update(dict(rows))
    return levels


async def _not_yet_reversed(session: AsyncSession, tenant_id: UUID,
                            movements: Sequence[StockMovement]) -> list[StockMovement]:
    if not movements:
        return []
    reversed_ids = set((await session.exec(select(StockMovement.reverses_id).where(
        StockMovement.tenant_id == tenant_id, StockMovement.reverses_id.in_([m.id for m in movements])))).all())
    return [m for m in movements if m.id not in reversed_ids]


async def _reverse_movements(session: AsyncSession, actor: Actor, movements: Sequence[StockMovement],
                             reason: str) -> list[StockMovement]:
    if not movements:
        return []
    items = await catalog.stock_items(
        session, actor.tenant_id, consumable_ids=[m.item_id for m in movements if m.item_kind == ItemKind.CONSUMABLE],
        product_ids=[m.item_id for m in movements if m.item_kind == ItemKind.PRODUCT])
    return await _apply(session, actor, [
        _Change(m.store_id, items[m.item_id], -m.quantity, MovementKind.REVERSAL, reason=reason,
                ref_type=m.ref_type, ref_id=m.ref_id, reverses_id=m.id, transfer_id=m.transfer_id,
                counterpart_store_id=m.counterpart_store_id) for m in movements])

