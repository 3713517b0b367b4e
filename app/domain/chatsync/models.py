"""Chat records pulled from the WeCom archive, and each tenant's position in it.

`chat_sync_cursors.seq` is the highest archive sequence number whose batch is stored; it advances in the
same transaction as the batch's records, so a crash loses nothing and a rerun re-fetches from there.
`chat_records` is unique per (tenant, msgid): a batch fetched twice stores each message once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, CheckConstraint, Column, DateTime, Index, Integer, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.models import TENANT_TABLES, TenantRow, tenant_fk, timestamp_field


class ChatDirection:
    INBOUND = "inbound"  # the external contact (patient) wrote to staff
    OUTBOUND = "outbound"  # staff wrote to the external contact
    INTERNAL = "internal"  # staff among themselves (kept: the archive is the clinic's record)
    ALL = (INBOUND, OUTBOUND, INTERNAL)


class ChatSyncCursor(SQLModel, table=True):
    __tablename__ = "chat_sync_cursors"
    __table_args__ = (CheckConstraint("seq >= 0", name="seq_not_negative"),)

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    seq: int = Field(default=0, sa_type=BigInteger)
    records_stored: int = Field(default=0, sa_type=BigInteger)
    last_run_at: datetime | None = timestamp_field()
    last_success_at: datetime | None = timestamp_field()
    last_error: str | None = Field(default=None, sa_type=Text)
    updated_at: datetime | None = timestamp_field()


class ChatRecord(TenantRow, table=True):
    __tablename__ = "chat_records"
    __table_args__ = (
        UniqueConstraint("tenant_id", "msgid"),
        CheckConstraint("direction IN ('inbound', 'outbound', 'internal')", name="direction_known"),
        tenant_fk(["member_id"], "members"),
        Index("ix_chat_records_member_time", "tenant_id", "member_id", "sent_at"),
        # Records waiting for their contact to be linked to a member (re-mapped later).
        Index("ix_chat_records_unmapped", "tenant_id", "external_userid", postgresql_where=text("member_id IS NULL")),
    )

    msgid: str = Field(sa_type=Text)
    seq: int = Field(sa_type=BigInteger)
    member_id: UUID | None = Field(default=None)
    # The external contact (patient) taking part, when there is one; its link to a member may come later.
    external_userid: str | None = Field(default=None, sa_type=Text)
    staff_userid: str | None = Field(default=None, sa_type=Text)  # the WeCom userid of the staff side
    sender: str = Field(sa_type=Text)
    receivers: list[str] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False,
                                                                       server_default=text("'[]'::jsonb")))
    room_id: str | None = Field(default=None, sa_type=Text)
    direction: str = Field(sa_type=Text)
    action: str = Field(sa_type=Text)  # send | recall | switch
    msgtype: str = Field(sa_type=Text)
    # Text content, encrypted like phone numbers (app.core.crypto): chats carry health details.
    content_encrypted: str | None = Field(default=None, sa_type=Text)
    # Media metadata only (sdkfileid, md5sum, filesize, …); the media itself is not downloaded.
    media: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    publickey_ver: int = Field(sa_type=Integer)
    sent_at: datetime = Field(sa_type=DateTime(timezone=True))


TENANT_TABLES.update({"chat_sync_cursors", "chat_records"})
