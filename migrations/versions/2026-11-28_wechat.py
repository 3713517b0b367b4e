"""wechat: mini-program openid links, WeCom external contacts and their member links, callback receipts

Revision ID: 0010_wechat
Revises: 0009_messaging
Create Date: 2026-11-28 00:25:32.699377
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.core import migration_helpers as mh

revision = '0010_wechat'
down_revision = '0009_messaging'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('wecom_callback_receipts',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('msg_signature', sa.Text(), nullable=False),
    sa.Column('nonce', sa.Text(), nullable=False),
    sa.Column('event', sa.Text(), nullable=True),
    sa.Column('change_type', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_wecom_callback_receipts_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_wecom_callback_receipts')),
    sa.UniqueConstraint('tenant_id', 'msg_signature', name=op.f('uq_wecom_callback_receipts_tenant_id_msg_signature'))
    )
    op.create_table('wecom_external_contacts',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('external_userid', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('unionid', sa.Text(), nullable=True),
    sa.Column('contact_type', sa.Integer(), nullable=True),
    sa.Column('follow_userids', sa.ARRAY(sa.Text()), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('active', 'deleted')", name=op.f('ck_wecom_external_contacts_status_known')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_wecom_external_contacts_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'external_userid', name=op.f('pk_wecom_external_contacts'))
    )
    op.create_index('ix_wecom_external_contacts_unionid', 'wecom_external_contacts', ['tenant_id', 'unionid'], unique=False)
    op.create_table('member_wechat_links',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('appid', sa.Text(), nullable=False),
    sa.Column('openid', sa.Text(), nullable=False),
    sa.Column('unionid', sa.Text(), nullable=True),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_member_wechat_links_tenant_id_member_id_members'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_member_wechat_links_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_member_wechat_links')),
    sa.UniqueConstraint('tenant_id', 'openid', name=op.f('uq_member_wechat_links_tenant_id_openid'))
    )
    op.create_index('ix_member_wechat_links_member', 'member_wechat_links', ['tenant_id', 'member_id'], unique=False)
    op.create_index('ix_member_wechat_links_unionid', 'member_wechat_links', ['tenant_id', 'unionid'], unique=False)
    op.create_table('member_wecom_links',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('external_userid', sa.Text(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('linked_by', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("source IN ('manual', 'unionid')", name=op.f('ck_member_wecom_links_source_known')),
    sa.ForeignKeyConstraint(['tenant_id', 'external_userid'], ['wecom_external_contacts.tenant_id', 'wecom_external_contacts.external_userid'], name=op.f('fk_member_wecom_links_tenant_id_external_userid_wecom_external_contacts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_member_wecom_links_tenant_id_member_id_members'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_member_wecom_links_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'external_userid', name=op.f('pk_member_wecom_links'))
    )
    op.create_index('ix_member_wecom_links_member', 'member_wecom_links', ['tenant_id', 'member_id'], unique=False)
    for table in ("member_wechat_links", "wecom_external_contacts", "member_wecom_links"):
        mh.tenant_table(table)
    # Receipts prove a callback was handled once; nothing rewrites them.
    mh.tenant_table("wecom_callback_receipts", "SELECT, INSERT")


def downgrade() -> None:
    op.drop_index('ix_member_wecom_links_member', table_name='member_wecom_links')
    op.drop_table('member_wecom_links')
    op.drop_index('ix_member_wechat_links_unionid', table_name='member_wechat_links')
    op.drop_index('ix_member_wechat_links_member', table_name='member_wechat_links')
    op.drop_table('member_wechat_links')
    op.drop_index('ix_wecom_external_contacts_unionid', table_name='wecom_external_contacts')
    op.drop_table('wecom_external_contacts')
    op.drop_table('wecom_callback_receipts')
