from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import ARRAY, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from app.core.models import TENANT_TABLES, TenantRow, created_at_field, tenant_fk, timestamp_field


class Role(TenantRow, table=True):
    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    name: str = Field(sa_type=Text)
    description: str | None = Field(default=None, sa_type=Text)
    permissions: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    preset: bool = False


class Staff(TenantRow, table=True):
    __tablename__ = "staff"
    __table_args__ = (UniqueConstraint("tenant_id", "username"),)

    username: str = Field(sa_type=Text)
    password_hash: str | None = Field(default=None, sa_type=Text)
    display_name: str = Field(sa_type=Text)
    active: bool = True
    # WeCom member id, for OAuth login and messages to staff.
    wecom_userid: str | None = Field(default=None, sa_type=Text)
    # Grade for commission rules (e.g. junior, senior, expert): services may pay each level differently.
    level: str | None = Field(default=None, sa_type=Text)
    # The public profile patients see in the mini-program (PUT /staff/{id}/listing), once published.
    published: bool = Field(default=False, sa_column_kwargs={"server_default": text("false")})
    title: str | None = Field(default=None, sa_type=Text)  # 主治医师, 高级推拿师
    bio: str | None = Field(default=None, sa_type=Text)
    photo_url: str | None = Field(default=None, sa_type=Text)


class StaffRole(SQLModel, table=True):
    __tablename__ = "staff_roles"
    __table_args__ = (
        tenant_fk(["staff_id"], "staff", ondelete="CASCADE"),
        tenant_fk(["role_id"], "roles", ondelete="RESTRICT"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    staff_id: UUID = Field(primary_key=True)
    role_id: UUID = Field(primary_key=True)


class StaffStore(SQLModel, table=True):
    __tablename__ = "staff_stores"
    __table_args__ = (
        tenant_fk(["staff_id"], "staff", ondelete="CASCADE"),
        tenant_fk(["store_id"], "stores", ondelete="RESTRICT"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    staff_id: UUID = Field(primary_key=True)
    store_id: UUID = Field(primary_key=True)


class RefreshToken(TenantRow, table=True):
    """Opaque refresh tokens, stored as SHA-256. A token is used once; a family is one login."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        UniqueConstraint("tenant_id", "token_hash"),
        Index("ix_refresh_tokens_family", "tenant_id", "family_id"),
        # Each process reads the sign-ins ended since its last read (revocations.py).
        Index("ix_refresh_tokens_revoked", "revoked_at", postgresql_where=text("revoked_at IS NOT NULL")),
    )

    family_id: UUID
    subject_type: str = Field(sa_type=Text)  # staff | patient
    subject_id: UUID
    token_hash: str = Field(sa_type=Text)
    expires_at: datetime = timestamp_field(nullable=False)
    used_at: datetime | None = timestamp_field()
    revoked_at: datetime | None = timestamp_field()


class ApiClient(TenantRow, table=True):
    """An integration (HIS/EMR, scripts) using OAuth2 client credentials with scopes."""

    __tablename__ = "api_clients"
    __table_args__ = (UniqueConstraint("tenant_id", "client_id"),)

    client_id: str = Field(sa_type=Text)
    secret_hash: str = Field(sa_type=Text)
    name: str = Field(sa_type=Text)
    scopes: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    store_ids: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    active: bool = True
    revoked_at: datetime | None = timestamp_field()
    created_by: UUID | None = None
    last_used_at: datetime | None = timestamp_field()


TENANT_TABLES.update({"roles", "staff", "staff_roles", "staff_stores", "refresh_tokens", "api_clients"})

__all__ = ["ApiClient", "RefreshToken", "Role", "Staff", "StaffRole", "StaffStore", "created_at_field"]
