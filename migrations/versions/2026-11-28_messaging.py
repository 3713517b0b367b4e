"""messaging: message templates, mini-program subscription consents, outbound messages

Revision ID: 0009_messaging
Revises: 0008_care
Create Date: 2026-11-28 00:24:52.715601
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import migration_helpers as mh

revision = '0009_messaging'
down_revision = '0008_care'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('message_templates',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('channel', sa.Text(), nullable=False),
    sa.Column('wechat_template_id', sa.Text(), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('variables', sa.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('wechat_fields', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('page', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("channel <> 'mini_program_subscribe' OR wechat_template_id IS NOT NULL", name=op.f('ck_message_templates_subscribe_needs_wechat_template')),
    sa.CheckConstraint("channel IN ('mini_program_subscribe', 'wecom_staff', 'sms')", name=op.f('ck_message_templates_channel_known')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_message_templates_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_message_templates')),
    sa.UniqueConstraint('tenant_id', 'key', name=op.f('uq_message_templates_tenant_id_key'))
    )
    op.create_table('message_consents',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('wechat_template_id', sa.Text(), nullable=False),
    sa.Column('granted', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('granted >= 0', name=op.f('ck_message_consents_granted_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_message_consents_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_message_consents_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'member_id', 'wechat_template_id', name=op.f('pk_message_consents'))
    )
    op.create_table('outbound_messages',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('staff_id', sa.Uuid(), nullable=True),
    sa.Column('channel', sa.Text(), nullable=False),
    sa.Column('template_key', sa.Text(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('variables', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('provider_msg_id', sa.Text(), nullable=True),
    sa.Column('cause', sa.Text(), nullable=False),
    sa.Column('consent_reserved', sa.Boolean(), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by_type', sa.Text(), nullable=True),
    sa.Column('created_by_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint("channel IN ('mini_program_subscribe', 'wecom_staff', 'sms')", name=op.f('ck_outbound_messages_channel_known')),
    sa.CheckConstraint("status IN ('queued', 'sending', 'sent', 'failed', 'dead', 'skipped')", name=op.f('ck_outbound_messages_status_known')),
    sa.CheckConstraint('(member_id IS NULL) <> (staff_id IS NULL)', name=op.f('ck_outbound_messages_one_recipient')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_outbound_messages_attempts_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_outbound_messages_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'staff_id'], ['staff.tenant_id', 'staff.id'], name=op.f('fk_outbound_messages_tenant_id_staff_id_staff')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_outbound_messages_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_outbound_messages')),
    sa.UniqueConstraint('tenant_id', 'cause', name=op.f('uq_outbound_messages_tenant_id_cause'))
    )
    op.create_index('ix_outbound_messages_member', 'outbound_messages', ['tenant_id', 'member_id', 'created_at'], unique=False)
    op.create_index('ix_outbound_messages_status', 'outbound_messages', ['tenant_id', 'status', 'id'], unique=False)
    for table in ('message_templates', 'message_consents', 'outbound_messages'):
        mh.tenant_table(table)


def downgrade() -> None:
    op.drop_index('ix_outbound_messages_status', table_name='outbound_messages')
    op.drop_index('ix_outbound_messages_member', table_name='outbound_messages')
    op.drop_table('outbound_messages')
    op.drop_table('message_consents')
    op.drop_table('message_templates')
