"""platform foundation

Revision ID: 0001_platform
Revises: 
Create Date: 2026-11-22 07:31:07.999771
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import migration_helpers as mh

revision = '0001_platform'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    mh.create_app_role()
    op.create_table('tenants',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('settings', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants')),
    sa.UniqueConstraint('code', name=op.f('uq_tenants_code'))
    )
    op.create_table('api_clients',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('client_id', sa.Text(), nullable=False),
    sa.Column('secret_hash', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('scopes', sa.ARRAY(sa.Text()), nullable=False),
    sa.Column('store_ids', sa.ARRAY(sa.Text()), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_api_clients_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_api_clients')),
    sa.UniqueConstraint('tenant_id', 'client_id', name=op.f('uq_api_clients_tenant_id_client_id'))
    )
    op.create_table('audit_heads',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_hash', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_audit_heads_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_audit_heads'))
    )
    op.create_table('audit_log',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_type', sa.Text(), nullable=False),
    sa.Column('actor_id', sa.Text(), nullable=True),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('target_type', sa.Text(), nullable=False),
    sa.Column('target_id', sa.Text(), nullable=True),
    sa.Column('summary', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('request_id', sa.Text(), nullable=True),
    sa.Column('ip', sa.Text(), nullable=True),
    sa.Column('prev_hash', sa.Text(), nullable=False),
    sa.Column('hash', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_audit_log_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'seq', name=op.f('pk_audit_log')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_audit_log_tenant_id_id'))
    )
    op.create_index('ix_audit_log_action', 'audit_log', ['tenant_id', 'action', 'seq'], unique=False)
    op.create_index('ix_audit_log_target', 'audit_log', ['tenant_id', 'target_type', 'target_id'], unique=False)
    op.create_table('idempotency_keys',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('principal', sa.Text(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('request_hash', sa.Text(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('response_body', sa.LargeBinary(), nullable=True),
    sa.Column('response_headers', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_idempotency_keys_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'principal', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_table('outbox',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('topic', sa.Text(), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('request_id', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_outbox_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_outbox'))
    )
    op.create_index('ix_outbox_relay', 'outbox', ['available_at'], unique=False, postgresql_where=sa.text("status = 'pending'"))
    op.create_index('ix_outbox_tenant_status', 'outbox', ['tenant_id', 'status', 'id'], unique=False)
    op.create_table('refresh_tokens',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('family_id', sa.Uuid(), nullable=False),
    sa.Column('subject_type', sa.Text(), nullable=False),
    sa.Column('subject_id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.Text(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_refresh_tokens_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_refresh_tokens')),
    sa.UniqueConstraint('tenant_id', 'token_hash', name=op.f('uq_refresh_tokens_tenant_id_token_hash'))
    )
    op.create_index('ix_refresh_tokens_family', 'refresh_tokens', ['tenant_id', 'family_id'], unique=False)
    op.create_table('roles',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('permissions', sa.ARRAY(sa.Text()), nullable=False),
    sa.Column('preset', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_roles_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_roles')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_roles_tenant_id_name'))
    )
    op.create_table('staff',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('username', sa.Text(), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=True),
    sa.Column('display_name', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('wecom_userid', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_staff_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_staff')),
    sa.UniqueConstraint('tenant_id', 'username', name=op.f('uq_staff_tenant_id_username'))
    )
    op.create_table('stores',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('timezone', sa.Text(), nullable=False),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('phone', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_stores_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_stores'))
    )
    op.create_table('outbox_deliveries',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('outbox_id', sa.Uuid(), nullable=False),
    sa.Column('handler', sa.Text(), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'outbox_id'], ['outbox.tenant_id', 'outbox.id'], name=op.f('fk_outbox_deliveries_tenant_id_outbox_id_outbox'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_outbox_deliveries_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'outbox_id', 'handler', name=op.f('pk_outbox_deliveries'))
    )
    op.create_table('staff_roles',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('role_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'role_id'], ['roles.tenant_id', 'roles.id'], name=op.f('fk_staff_roles_tenant_id_role_id_roles'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['tenant_id', 'staff_id'], ['staff.tenant_id', 'staff.id'], name=op.f('fk_staff_roles_tenant_id_staff_id_staff'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_staff_roles_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'staff_id', 'role_id', name=op.f('pk_staff_roles'))
    )
    op.create_table('staff_stores',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'staff_id'], ['staff.tenant_id', 'staff.id'], name=op.f('fk_staff_stores_tenant_id_staff_id_staff'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_staff_stores_tenant_id_store_id_stores'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_staff_stores_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'staff_id', 'store_id', name=op.f('pk_staff_stores'))
    )

    # Tenants are looked up by code at sign-in, before a tenant is known: readable, never writable.
    op.execute(f"GRANT SELECT ON tenants TO {mh.app_role()}")
    for table in ("stores", "roles", "staff", "staff_roles", "staff_stores", "refresh_tokens",
                  "api_clients", "idempotency_keys"):
        mh.tenant_table(table)
    mh.tenant_table("audit_log", "SELECT, INSERT")
    mh.append_only("audit_log")
    mh.tenant_table("audit_heads", "SELECT, INSERT, UPDATE")
    mh.tenant_table("outbox", "SELECT, INSERT, UPDATE")
    mh.tenant_table("outbox_deliveries", "SELECT, INSERT")


def downgrade() -> None:
    op.drop_table('staff_stores')
    op.drop_table('staff_roles')
    op.drop_table('outbox_deliveries')
    op.drop_table('stores')
    op.drop_table('staff')
    op.drop_table('roles')
    op.drop_index('ix_refresh_tokens_family', table_name='refresh_tokens')
    op.drop_table('refresh_tokens')
    op.drop_index('ix_outbox_tenant_status', table_name='outbox')
    op.drop_index('ix_outbox_relay', table_name='outbox', postgresql_where=sa.text("status = 'pending'"))
    op.drop_table('outbox')
    op.drop_table('idempotency_keys')
    op.drop_index('ix_audit_log_target', table_name='audit_log')
    op.drop_index('ix_audit_log_action', table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_table('audit_heads')
    op.drop_table('api_clients')
    op.drop_table('tenants')
