"""Course and stored-value cards: templates, the cards sold from them, and their ledger.

A card freezes its template's terms when it is issued (a later price change does not touch cards
already sold). Every change to what a card holds is a ledger row; `card_items.remaining` and the
card's principal/bonus balances are kept in the same transaction as the rows, and always equal
their sums. Corrections are new rows that point at the rows they reverse.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, BigInteger, CheckConstraint, Column, Date, Index, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.models import TENANT_TABLES, TenantRow, created_at_field, tenant_fk, timestamp_field


class CardKind:
    STORED_VALUE = "stored_value"  # 储值卡: principal + bonus
    COUNT = "count"  # 次卡: N sessions of one service
    PACKAGE = "package"  # 疗程卡/套餐: several services, each with a count, optionally a shared pool
    PERIOD = "period"  # 期限卡: unlimited within the validity, optional per-day cap
    ALL = (STORED_VALUE, COUNT, PACKAGE, PERIOD)


class CardStatus:
    ACTIVE = "active"
    FROZEN = "frozen"  # validity paused (illness, travel); unfreezing extends the expiry
    EXHAUSTED = "exhausted"  # nothing left; a reversal can reactivate it
    EXPIRED = "expired"
    CLOSED = "closed"  # refunded or otherwise ended


class CardTemplate(TenantRow, table=True):
    __tablename__ = "card_templates"
    __table_args__ = (CheckConstraint("price >= 0", name="price_not_negative"),)

    name: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    price: int = Field(sa_type=BigInteger)
    face_value: int = Field(default=0, sa_type=BigInteger)  # stored value: principal credited
    bonus: int = Field(default=0, sa_type=BigInteger)  # stored value: bonus credited (充1000送200)
    spend_order: str = Field(default="principal_first", sa_type=Text)  # principal_first | bonus_first | proportional
    valid_days: int | None = Field(default=None, sa_type=Integer)
    valid_until: date | None = Field(default=None, sa_type=Date)
    shared_pool_sessions: int | None = Field(default=None, sa_type=Integer)  # package: sessions for any item
    daily_cap: int | None = Field(default=None, sa_type=Integer)  # period: uses per store-local day
    usable_store_ids: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False,
                                                                             server_default="{}"))
    family_shareable: bool = False
    transferable: bool = True
    description: str | None = Field(default=None, sa_type=Text)
    active: bool = True
    # On sale in the mini-program (PUT /card-templates/{id}/listing); the front desk sells any active template.
    published: bool = Field(default=False, sa_column_kwargs={"server_default": text("false")})


class CardTemplateItem(TenantRow, table=True):
    __tablename__ = "card_template_items"
    __table_args__ = (
        tenant_fk(["template_id"], "card_templates", ondelete="CASCADE"),
        tenant_fk(["service_id"], "services"),
        CheckConstraint("sessions >= 0 AND gifted_sessions >= 0", name="sessions_not_negative"),
    )

    template_id: UUID
    service_id: UUID
    sessions: int = Field(default=0, sa_type=Integer)
    gifted_sessions: int = Field(default=0, sa_type=Integer)


class Card(TenantRow, table=True):
    __tablename__ = "cards"
    __table_args__ = (
        tenant_fk(["template_id"], "card_templates"),
        tenant_fk(["member_id"], "members"),
        tenant_fk(["store_id"], "stores"),
        Index("ix_cards_member", "tenant_id", "member_id", "status"),
        Index("ix_cards_expiry", "tenant_id", "status", "expires_at"),
        CheckConstraint("principal_balance >= 0 AND bonus_balance >= 0", name="balances_not_negative"),
    )

    template_id: UUID
    member_id: UUID
    store_id: UUID | None = None  # where it was sold
    name: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    status: str = Field(default=CardStatus.ACTIVE, sa_type=Text)
    price_paid: int = Field(default=0, sa_type=BigInteger)
    principal_balance: int = Field(default=0, sa_type=BigInteger)
    bonus_balance: int = Field(default=0, sa_type=BigInteger)
    starts_at: datetime | None = timestamp_field()
    expires_at: datetime | None = timestamp_field()
    frozen_at: datetime | None = timestamp_field()
    # The template's terms as sold: spend order, stores, family sharing, daily cap, transferability.
    terms: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}"))
    order_id: UUID | None = None
    expiring_notified_at: datetime | None = timestamp_field()


class CardItem(TenantRow, table=True):
    """What a session card holds per service (service_id null: a package's shared pool)."""

    __tablename__ = "card_items"
    __table_args__ = (
        tenant_fk(["card_id"], "cards", ondelete="CASCADE"),
        tenant_fk(["service_id"], "services"),
        Index("ix_card_items_card", "tenant_id", "card_id"),
        CheckConstraint("remaining >= 0", name="remaining_not_negative"),
    )

    card_id: UUID
    service_id: UUID | None = None
    sessions_total: int = Field(default=0, sa_type=Integer)  # paid + gifted, as issued
    gifted_sessions: int = Field(default=0, sa_type=Integer)
    remaining: int = Field(default=0, sa_type=Integer)
    # The paid price of one session, fen: the basis of commissions and refunds for card sessions.
    unit_value: int = Field(default=0, sa_type=BigInteger)


class CardLedgerEntry(TenantRow, table=True):
    __tablename__ = "card_ledger"
    __table_args__ = (
        tenant_fk(["card_id"], "cards", ondelete="CASCADE"),
        tenant_fk(["card_item_id"], "card_items"),
        Index("ix_card_ledger_card", "tenant_id", "card_id", "created_at"),
        Index("ix_card_ledger_ref", "tenant_id", "ref_type", "ref_id"),
        Index("ix_card_ledger_member", "tenant_id", "member_id", "created_at"),
    )

    card_id: UUID
    # issue | deduct | reverse | top_up | charge | transfer | freeze | unfreeze | extend | expire | adjust
    # | migration (the opening balance of a card carried over from the old system, ref_type card_import)
    kind: str = Field(sa_type=Text)
    card_item_id: UUID | None = None
    sessions_delta: int = Field(default=0, sa_type=Integer)
    principal_delta: int = Field(default=0, sa_type=BigInteger)
    bonus_delta: int = Field(default=0, sa_type=BigInteger)
    member_id: UUID | None = None  # who used or owns the card at this entry (a family member, say)
    store_id: UUID | None = None
    actor_type: str = Field(sa_type=Text)
    actor_id: str | None = Field(default=None, sa_type=Text)
    reason: str | None = Field(default=None, sa_type=Text)
    ref_type: str | None = Field(default=None, sa_type=Text)
    ref_id: str | None = Field(default=None, sa_type=Text)
    reverses_id: UUID | None = None
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}"))


class CardImport(TenantRow, table=True):
    """One run of the import from the old system (prepaid cards, points balances, visit history), dry or real,
    with its totals (to reconcile against the old system's books) and its per-row report."""

    __tablename__ = "card_imports"

    filename: str = Field(sa_type=Text)
    file_sha256: str = Field(sa_type=Text)
    dry_run: bool = True
    skip_bad_rows: bool = False
    status: str = Field(sa_type=Text)  # checked | imported | partially_imported
    error_count: int = Field(default=0, sa_type=Integer)
    totals: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}"))
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}"))
    created_by: UUID | None = None


class CardImportRef(SQLModel, table=True):
    """An old-system reference already imported (a card number, a member's points, a visit): the primary key
    is what makes a second run of the same file write nothing, also when two runs race."""

    __tablename__ = "card_import_refs"
    __table_args__ = (
        tenant_fk(["import_id"], "card_imports"),
        Index("ix_card_import_refs_import", "tenant_id", "import_id", "kind"),
        CheckConstraint("kind IN ('card', 'points', 'visit')", name="kind_known"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    kind: str = Field(primary_key=True, sa_type=Text)
    external_ref: str = Field(primary_key=True, sa_type=Text)
    target_id: UUID  # the card, the member whose points were opened, the service record
    import_id: UUID
    created_at: datetime | None = created_at_field()


TENANT_TABLES.update({"card_templates", "card_template_items", "cards", "card_items", "card_ledger", "card_imports",
                      "card_import_refs"})
