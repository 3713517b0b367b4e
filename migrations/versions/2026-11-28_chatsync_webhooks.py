"""chatsync and webhooks: WeCom chat records and their sync cursor, webhook subscriptions and deliveries

Revision ID: 0011_chat_webhooks
Revises: 0010_wechat
Create Date: 2026-11-28 00:29:22.148345
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import migration_helpers as mh

revision = '0011_chat_webhooks'
down_revision = '0010_wechat'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('chat_sync_cursors',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('records_stored', sa.BigInteger(), nullable=False),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('seq >= 0', name=op.f('ck_chat_sync_cursors_seq_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_chat_sync_cursors_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_chat_sync_cursors'))
    )
    op.create_table('webhook_subscriptions',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('event_types', sa.ARRAY(sa.Text()), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('secret_encrypted', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_webhook_subscriptions_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_webhook_subscriptions'))
    )
    op.create_index('ix_webhook_subscriptions_active', 'webhook_subscriptions', ['tenant_id'], unique=False, postgresql_where=sa.text('active'))
    op.create_table('webhook_deliveries',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('subscription_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('topic', sa.Text(), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('event_created_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('response_code', sa.Integer(), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'dead')", name=op.f('ck_webhook_deliveries_status_known')),
    sa.ForeignKeyConstraint(['tenant_id', 'subscription_id'], ['webhook_subscriptions.tenant_id', 'webhook_subscriptions.id'], name=op.f('fk_webhook_deliveries_tenant_id_subscription_id_webhook_subscriptions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_webhook_deliveries_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('tenant_id', 'subscription_id', 'event_id', name=op.f('uq_webhook_deliveries_tenant_id_subscription_id_event_id'))
    )
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries', ['next_attempt_at'], unique=False, postgresql_where=sa.text("status IN ('pending', 'failed')"))
    op.create_index('ix_webhook_deliveries_subscription', 'webhook_deliveries', ['tenant_id', 'subscription_id', 'id'], unique=False)
    op.create_table('chat_records',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('msgid', sa.Text(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('external_userid', sa.Text(), nullable=True),
    sa.Column('staff_userid', sa.Text(), nullable=True),
    sa.Column('sender', sa.Text(), nullable=False),
    sa.Column('receivers', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('room_id', sa.Text(), nullable=True),
    sa.Column('direction', sa.Text(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('msgtype', sa.Text(), nullable=False),
    sa.Column('content_encrypted', sa.Text(), nullable=True),
    sa.Column('media', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('publickey_ver', sa.Integer(), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("direction IN ('inbound', 'outbound', 'internal')", name=op.f('ck_chat_records_direction_known')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_chat_records_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_chat_records_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_chat_records')),
    sa.UniqueConstraint('tenant_id', 'msgid', name=op.f('uq_chat_records_tenant_id_msgid'))
    )
    op.create_index('ix_chat_records_member_time', 'chat_records', ['tenant_id', 'member_id', 'sent_at'], unique=False)
    op.create_index('ix_chat_records_unmapped', 'chat_records', ['tenant_id', 'external_userid'], unique=False, postgresql_where=sa.text('member_id IS NULL'))
    # No DELETE for the app role: chat records are the clinic's archive (erasure blanks their content).
    for table in ("chat_sync_cursors", "chat_records", "webhook_subscriptions", "webhook_deliveries"):
        mh.tenant_table(table, "SELECT, INSERT, UPDATE")


def downgrade() -> None:
    op.drop_index('ix_chat_records_unmapped', table_name='chat_records', postgresql_where=sa.text('member_id IS NULL'))
    op.drop_index('ix_chat_records_member_time', table_name='chat_records')
    op.drop_table('chat_records')
    op.drop_index('ix_webhook_deliveries_subscription', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_due', table_name='webhook_deliveries', postgresql_where=sa.text("status IN ('pending', 'failed')"))
    op.drop_table('webhook_deliveries')
    op.drop_index('ix_webhook_subscriptions_active', table_name='webhook_subscriptions', postgresql_where=sa.text('active'))
    op.drop_table('webhook_subscriptions')
    op.drop_table('chat_sync_cursors')
