"""Per-store stock: a balance row per (store, item) and the append-only stock ledger.

`stock_balances.quantity` is kept for speed and locking; it always equals the sum of the item's
`stock_movements.quantity` at that store, because both change in the same statement sequence of one
transaction while the balance row is locked. Movements are never updated or deleted (a trigger refuses
it); a mistake is undone by a `reversal` movement pointing at the one it reverses.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Identity,
    Index,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from app.core.models import TENANT_TABLES, TenantRow, tenant_fk, timestamp_field


class ItemKind:
    CONSUMABLE = "consumable"
    PRODUCT = "product"
    ALL = (CONSUMABLE, PRODUCT)


class MovementKind:
    RECEIVE = "receive"  # goods arrived at the store
    ADJUST = "adjust"  # stock-take correction, breakage, expiry (reason required)
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    CONSUME = "consume"  # used by a service's recipe
    SALE = "sale"  # a product sold at checkout
    REVERSAL = "reversal"  # undoes the movement in reverses_id
    ALL = (RECEIVE, ADJUST, TRANSFER_OUT, TRANSFER_IN, CONSUME, SALE, REVERSAL)


_ITEM_COLUMNS_MATCH = (
    "(item_kind = 'consumable' AND consumable_id = item_id AND product_id IS NULL) OR "
    "(item_kind = 'product' AND product_id = item_id AND consumable_id IS NULL)"
)


class StockBalance(SQLModel, table=True):
    __tablename__ = "stock_balances"
    __table_args__ = (
        tenant_fk(["store_id"], "stores"),
        tenant_fk(["consumable_id"], "consumables"),
        tenant_fk(["product_id"], "products"),
        CheckConstraint(_ITEM_COLUMNS_MATCH, name="item"),
        CheckConstraint("low_stock_threshold IS NULL OR low_stock_threshold >= 0", name="threshold_not_negative"),
        Index("ix_stock_balances_item", "tenant_id", "item_id", "store_id"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    store_id: UUID = Field(primary_key=True)
    # The consumable's or product's id (ids are unique across both), so locks sort on one column.
    item_id: UUID = Field(primary_key=True)
    item_kind: str = Field(sa_type=Text)
    consumable_id: UUID | None = None
    product_id: UUID | None = None
    quantity: int = Field(default=0, sa_type=BigInteger)
    # This store's own threshold; null: the item's low_stock_threshold.
    low_stock_threshold: int | None = Field(default=None, sa_type=BigInteger)
    updated_at: datetime | None = timestamp_field()


class StockMovement(TenantRow, table=True):
    __tablename__ = "stock_movements"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "store_id", "item_id"],
                             ["stock_balances.tenant_id", "stock_balances.store_id", "stock_balances.item_id"]),
        tenant_fk(["counterpart_store_id"], "stores"),
        tenant_fk(["reverses_id"], "stock_movements"),
        # A movement is reversed at most once, also when two reversals race.
        UniqueConstraint("tenant_id", "reverses_id"),
        CheckConstraint("quantity <> 0", name="quantity_not_zero"),
        CheckConstraint("kind IN ('receive', 'adjust', 'transfer_out', 'transfer_in', 'consume', 'sale', "
                        "'reversal')", name="kind"),
        CheckConstraint("(kind = 'reversal') = (reverses_id IS NOT NULL)", name="reversal_points_back"),
        Index("ix_stock_movements_store_item", "tenant_id", "store_id", "item_id", "seq"),
        Index("ix_stock_movements_store", "tenant_id", "store_id", "seq"),
        Index("ix_stock_movements_ref", "tenant_id", "ref_type", "ref_id"),
        Index("ix_stock_movements_transfer", "tenant_id", "transfer_id"),
    )
    __mapper_args__ = {"eager_defaults": True}  # seq comes back with the INSERT (RETURNING)

    # Ledger order: assigned while the balance row is locked, so per (store, item) it is the order the
    # balance moved in, and each row's balance_after is the running sum up to it.
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=True), nullable=False))
    store_id: UUID
    item_id: UUID
    item_kind: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    quantity: int = Field(sa_type=BigInteger)  # signed change in the item's unit
    balance_after: int = Field(sa_type=BigInteger)
    reason: str | None = Field(default=None, sa_type=Text)
    # What caused it: ("service_record", id), ("order", id), ("order_line", id), a delivery note…
    ref_type: str | None = Field(default=None, sa_type=Text)
    ref_id: str | None = Field(default=None, sa_type=Text)
    reverses_id: UUID | None = None
    # Both legs (and every line) of one transfer share it; counterpart_store_id is the other store.
    transfer_id: UUID | None = None
    counterpart_store_id: UUID | None = None
    actor_type: str = Field(sa_type=Text)
    actor_id: UUID | None = None


TENANT_TABLES.update({"stock_balances", "stock_movements"})
