"""Who a WeChat or WeCom identity is: mini-program openids and WeCom external contacts linked to members."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import ARRAY, CheckConstraint, Column, ForeignKeyConstraint, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.models import TENANT_TABLES, TenantRow, created_at_field, tenant_fk, timestamp_field


class MemberWechatLink(TenantRow, table=True):
    """A mini-program user (openid) bound to a member after proving the member's phone number.
    One openid names one member; a member may sign in from more than one WeChat account."""

    __tablename__ = "member_wechat_links"
    __table_args__ = (
        UniqueConstraint("tenant_id", "openid"),
        Index("ix_member_wechat_links_unionid", "tenant_id", "unionid"),
        Index("ix_member_wechat_links_member", "tenant_id", "member_id"),
        tenant_fk(["member_id"], "members", ondelete="CASCADE"),
    )

    member_id: UUID
    appid: str = Field(sa_type=Text)
    openid: str = Field(sa_type=Text)
    unionid: str | None = Field(default=None, sa_type=Text)
    last_login_at: datetime | None = timestamp_field()


class WecomExternalContact(SQLModel, table=True):
    """A WeCom external contact (a customer some staff member has added), as WeCom last described it."""

    __tablename__ = "wecom_external_contacts"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'deleted')", name="status_known"),
        Index("ix_wecom_external_contacts_unionid", "tenant_id", "unionid"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    external_userid: str = Field(primary_key=True, sa_type=Text)
    name: str | None = Field(default=None, sa_type=Text)
    unionid: str | None = Field(default=None, sa_type=Text)
    contact_type: int | None = None
    # Staff (WeCom userids) who have this customer as a contact.
    follow_userids: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    # 'deleted': no staff member has the customer any more (the link to the member is kept: it is who they are).
    status: str = Field(default="active", sa_type=Text)
    created_at: datetime | None = created_at_field()
    updated_at: datetime | None = timestamp_field()


class MemberWecomLink(SQLModel, table=True):
    """The member a WeCom external contact is, so the sidebar opens the right profile beside the chat."""

    __tablename__ = "member_wecom_links"
    __table_args__ = (
        CheckConstraint("source IN ('manual', 'unionid')", name="source_known"),
        Index("ix_member_wecom_links_member", "tenant_id", "member_id"),
        tenant_fk(["member_id"], "members", ondelete="CASCADE"),
        ForeignKeyConstraint(["tenant_id", "external_userid"],
                             ["wecom_external_contacts.tenant_id", "wecom_external_contacts.external_userid"],
                             ondelete="CASCADE"),
    )

    tenant_id: UUID = Field(primary_key=True, foreign_key="tenants.id")
    external_userid: str = Field(primary_key=True, sa_type=Text)
    member_id: UUID
    source: str = Field(sa_type=Text)  # manual: a staff member chose; unionid: matched a mini-program login
    linked_by: UUID | None = None  # the staff member, for manual links
    created_at: datetime | None = created_at_field()
    updated_at: datetime | None = timestamp_field()


class WecomCallbackReceipt(TenantRow, table=True):
    """Each accepted WeCom callback, once: the unique signature makes a redelivered or replayed callback
    fail in the database even if Redis forgot its nonce."""

    __tablename__ = "wecom_callback_receipts"
    __table_args__ = (UniqueConstraint("tenant_id", "msg_signature"),)

    msg_signature: str = Field(sa_type=Text)
    nonce: str = Field(sa_type=Text)
    event: str | None = Field(default=None, sa_type=Text)
    change_type: str | None = Field(default=None, sa_type=Text)


TENANT_TABLES.update({"member_wechat_links", "wecom_external_contacts", "member_wecom_links",
                      "wecom_callback_receipts"})
