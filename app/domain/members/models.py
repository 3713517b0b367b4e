from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, CheckConstraint, Column, Date, DateTime, Index, Integer, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.models import TENANT_TABLES, TenantRow, tenant_fk, timestamp_field


class MemberStatus:
    ACTIVE = "active"
    MERGED = "merged"  # folded into another member (merged_into_id)
    ERASED = "erased"  # personal data anonymised on request; ledgers kept


class Member(TenantRow, table=True):
    __tablename__ = "members"
    __table_args__ = (
        # Exact phone lookup and uniqueness through the blind index (NULL once erased or merged).
        UniqueConstraint("tenant_id", "phone_index"),
        Index("ix_members_name", "tenant_id", "name", postgresql_ops={"name": "text_pattern_ops"}),
        Index("ix_members_pinyin_initials", "tenant_id", "pinyin_initials",
              postgresql_ops={"pinyin_initials": "text_pattern_ops"}),
        Index("ix_members_pinyin_full", "tenant_id", "pinyin_full", postgresql_ops={"pinyin_full": "text_pattern_ops"}),
        Index("ix_members_home_store", "tenant_id", "home_store_id", "id"),
        Index("ix_members_owner_staff", "tenant_id", "owner_staff_id", "id"),
        Index("ix_members_last_visit", "tenant_id", "last_visit_at"),
        Index("ix_members_id_index", "tenant_id", "id_number_index"),
        Index("ix_members_name_birthday", "tenant_id", "name", "birthday"),
        Index("ix_members_family", "tenant_id", "family_group_id"),
        Index("ix_members_other_phone_index", "tenant_id", "other_phone_index"),
        tenant_fk(["home_store_id"], "stores"),
        tenant_fk(["owner_staff_id"], "staff"),
        tenant_fk(["referrer_id"], "members"),
        tenant_fk(["merged_into_id"], "members"),
    )

    name: str = Field(sa_type=Text)
    pinyin_initials: str = Field(default="", sa_type=Text)
    pinyin_full: str = Field(default="", sa_type=Text)
    phone_encrypted: str | None = Field(default=None, sa_type=Text)
    phone_index: str | None = Field(default=None, sa_type=Text)
    phone_masked: str | None = Field(default=None, sa_type=Text)
    id_number_encrypted: str | None = Field(default=None, sa_type=Text)
    id_number_index: str | None = Field(default=None, sa_type=Text)
    id_number_masked: str | None = Field(default=None, sa_type=Text)
    gender: str | None = Field(default=None, sa_type=Text)  # female | male | other
    birthday: date | None = Field(default=None, sa_type=Date)
    address: str | None = Field(default=None, sa_type=Text)
    source_channel: str | None = Field(default=None, sa_type=Text)
    referrer_id: UUID | None = None
    owner_staff_id: UUID | None = None
    home_store_id: UUID | None = None
    notes: str | None = Field(default=None, sa_type=Text)
    # Health fields: readable only with members.health:read (and, for relationship-bound roles,
    # only for members in their care); every read is audited.
    allergy_history: str | None = Field(default=None, sa_type=Text)
    past_history: str | None = Field(default=None, sa_type=Text)
    family_history: str | None = Field(default=None, sa_type=Text)
    constitution: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False,
                                                                         server_default="{}"))
    health_summary: str | None = Field(default=None, sa_type=Text)
    # The member's consent to show their health data to their family's head in the mini-program (a minor's
    # guardian sees it without); given by the member themself or recorded by staff, and audited either way.
    share_health_with_family: bool = Field(default=False, sa_column_kwargs={"server_default": text("false")})
    custom_fields: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False,
                                                                               server_default="{}"))
    family_group_id: UUID | None = None
    family_role: str | None = Field(default=None, sa_type=Text)  # head | member
    family_relation: str | None = Field(default=None, sa_type=Text)  # spouse, child, parent, …
    status: str = Field(default=MemberStatus.ACTIVE, sa_type=Text)
    merged_into_id: UUID | None = None
    last_visit_at: datetime | None = timestamp_field()
    updated_at: datetime | None = timestamp_field()
    erased_at: datetime | None = timestamp_field()
    # Who created the row through which channel of import, for repeatable imports.
    external_ref: str | None = Field(default=None, sa_type=Text)
    # A second contact number (a landline, or any number that is not the mobile above), encrypted like the
    # phone; its blind index (of the digits, without an extension) finds members who have only a landline.
    other_phone_encrypted: str | None = Field(default=None, sa_type=Text)
    other_phone_index: str | None = Field(default=None, sa_type=Text)
    other_phone_masked: str | None = Field(default=None, sa_type=Text)


class TagGroup(TenantRow, table=True):
    __tablename__ = "tag_groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    name: str = Field(sa_type=Text)
    # A member holds at most one tag of an exclusive group (e.g. VIP level).
    exclusive: bool = False
    position: int = Field(default=0, sa_type=Integer)


class Tag(TenantRow, table=True):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("tenant_id", "name"), tenant_fk(["group_id"], "tag_groups"))

    name: str = Field(sa_type=Text)
    group_id: UUID | None = None
    color: str | None = Field(default=None, sa_type=Text)


class MemberTag(SQLModel, table=True):
    __tablename__ = "member_tags"
    __table_args__ = (
        tenant_fk(["member_id"], "members", ondelete="CASCADE"),
        tenant_fk(["tag_id"], "tags", ondelete="CASCADE"),
        Index("ix_member_tags_tag", "tenant_id", "tag_id", "member_id"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    member_id: UUID = Field(primary_key=True)
    tag_id: UUID = Field(primary_key=True)
    source: str = Field(default="manual", sa_type=Text)  # manual | rule | import
    created_at: datetime | None = timestamp_field()


class TagSynonym(TenantRow, table=True):
    """Normalises free-text values into standard tags on import (肩颈痛/脖子疼/落枕 → 颈椎病)."""

    __tablename__ = "tag_synonyms"
    __table_args__ = (UniqueConstraint("tenant_id", "synonym"),)

    synonym: str = Field(sa_type=Text)
    tag_name: str = Field(sa_type=Text)


class CustomFieldDefinition(TenantRow, table=True):
    __tablename__ = "member_field_definitions"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)

    key: str = Field(sa_type=Text)
    label: str = Field(sa_type=Text)
    type: str = Field(sa_type=Text)  # text | number | date | single_select | multi_select | scale | boolean
    required: bool = False
    # [{"value": "齿痕", "label": "齿痕", "retired": false}]: retired options stay valid for old values.
    options: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False,
                                                                               server_default="[]"))
    min_value: float | None = None
    max_value: float | None = None
    max_length: int | None = Field(default=None, sa_type=Integer)
    position: int = Field(default=0, sa_type=Integer)
    # Health-sensitive fields (e.g. tongue diagnosis) follow the health permission, not the profile one.
    health: bool = False
    active: bool = True
    help_text: str | None = Field(default=None, sa_type=Text)


class FamilyGroup(TenantRow, table=True):
    __tablename__ = "family_groups"
    __table_args__ = (tenant_fk(["head_member_id"], "members"),)

    name: str = Field(sa_type=Text)
    head_member_id: UUID


class MemberNote(TenantRow, table=True):
    __tablename__ = "member_notes"
    __table_args__ = (
        tenant_fk(["member_id"], "members", ondelete="CASCADE"),
        Index("ix_member_notes_member", "tenant_id", "member_id", "created_at"),
    )

    member_id: UUID
    author_type: str = Field(sa_type=Text)
    author_id: UUID | None = None
    body: str = Field(sa_type=Text)


class MemberImport(TenantRow, table=True):
    """One import run (dry or real) with its per-row report."""

    __tablename__ = "member_imports"

    filename: str = Field(sa_type=Text)
    file_sha256: str = Field(sa_type=Text)
    dry_run: bool = True
    mode: str = Field(sa_type=Text)  # all_or_nothing | per_row
    status: str = Field(sa_type=Text)  # checked | imported | partially_imported | rejected
    total_rows: int = Field(default=0, sa_type=Integer)
    created_count: int = Field(default=0, sa_type=Integer)
    updated_count: int = Field(default=0, sa_type=Integer)
    skipped_count: int = Field(default=0, sa_type=Integer)
    error_count: int = Field(default=0, sa_type=Integer)
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}"))
    created_by: UUID | None = None


class MemberConsent(TenantRow, table=True):
    """A document the member accepted (the privacy policy at registration in the mini-program), by version.

    Append-only: a new version accepted is a new row; the first acceptance of a version is the one kept."""

    __tablename__ = "member_consents"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        UniqueConstraint("tenant_id", "member_id", "kind", "version"),
        CheckConstraint("kind IN ('privacy_policy')", name="kind_known"),
    )

    member_id: UUID
    kind: str = Field(sa_type=Text)
    version: str = Field(sa_type=Text)
    accepted_at: datetime = Field(sa_type=DateTime(timezone=True))
    channel: str = Field(sa_type=Text)  # mini_program
    # The WeChat account that accepted (the mini-program's openid), as evidence of who clicked.
    openid: str | None = Field(default=None, sa_type=Text)


TENANT_TABLES.update({"members", "tag_groups", "tags", "member_tags", "tag_synonyms", "member_field_definitions",
                      "family_groups", "member_notes", "member_imports", "member_consents"})

