"""Table conventions shared by every context.

Every business table carries `tenant_id` as the first column of its primary key (and of every unique
and foreign key), so a chain can later be distributed by tenant, and row-level security can key on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import DateTime, ForeignKeyConstraint, func
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow
from app.core.ids import new_id

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Tables whose rows belong to one tenant; the migration helper enables RLS on each of them.
TENANT_TABLES: set[str] = set()


def created_at_field() -> Any:
    # Set in Python too, so a freshly flushed row knows its time without a round trip.
    return Field(
        default_factory=utcnow,
        sa_type=DateTime(timezone=True),
        sa_column_kwargs={"server_default": func.now(), "nullable": False},
    )


def timestamp_field(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=DateTime(timezone=True), nullable=nullable)


class TenantRow(SQLModel):
    """Mixin for tenant-owned rows with a (tenant_id, id) primary key."""

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    id: UUID = Field(default_factory=new_id, primary_key=True)
    created_at: datetime | None = created_at_field()


def tenant_fk(columns: list[str], table: str, *, ondelete: str | None = None) -> ForeignKeyConstraint:
    """A composite foreign key that includes tenant_id (`["store_id"], "stores"`)."""
    return ForeignKeyConstraint(
        ["tenant_id", *columns], [f"{table}.tenant_id", f"{table}.id"], ondelete=ondelete
    )
