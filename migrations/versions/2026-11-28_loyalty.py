"""loyalty: points settings, balances and ledger; coupon templates, coupons and their events

Revision ID: 0007_loyalty
Revises: 0006_checkout
Create Date: 2026-11-28 00:20:46.751426
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import migration_helpers as mh

revision = '0007_loyalty'
down_revision = '0006_checkout'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('coupon_templates',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.Column('cap_fen', sa.BigInteger(), nullable=True),
    sa.Column('threshold_fen', sa.BigInteger(), nullable=True),
    sa.Column('item_service_ids', sa.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('item_product_ids', sa.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('valid_days', sa.Integer(), nullable=True),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=True),
    sa.Column('valid_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint("kind <> 'percent' OR value < 100", name=op.f('ck_coupon_templates_percent_range')),
    sa.CheckConstraint("kind <> 'threshold' OR threshold_fen > 0", name=op.f('ck_coupon_templates_threshold_needed')),
    sa.CheckConstraint("kind IN ('fixed', 'percent', 'threshold')", name=op.f('ck_coupon_templates_kind_known')),
    sa.CheckConstraint('value > 0', name=op.f('ck_coupon_templates_value_positive')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_coupon_templates_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_coupon_templates'))
    )
    op.create_table('loyalty_settings',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('earn_points_per_yuan', sa.Integer(), nullable=False),
    sa.Column('redeem_fen_per_point', sa.Integer(), nullable=False),
    sa.Column('max_redeem_percent', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('earn_points_per_yuan BETWEEN 0 AND 10000', name=op.f('ck_loyalty_settings_earn_range')),
    sa.CheckConstraint('max_redeem_percent BETWEEN 0 AND 100', name=op.f('ck_loyalty_settings_cap_range')),
    sa.CheckConstraint('redeem_fen_per_point BETWEEN 1 AND 10000', name=op.f('ck_loyalty_settings_redeem_range')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_loyalty_settings_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_loyalty_settings'))
    )
    op.create_table('coupons',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('template_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.Column('cap_fen', sa.BigInteger(), nullable=True),
    sa.Column('threshold_fen', sa.BigInteger(), nullable=True),
    sa.Column('item_service_ids', sa.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('item_product_ids', sa.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('used_ref_type', sa.Text(), nullable=True),
    sa.Column('used_ref_id', sa.Text(), nullable=True),
    sa.Column('discount_fen', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status <> 'used' OR (used_at IS NOT NULL AND discount_fen > 0)", name=op.f('ck_coupons_use_recorded')),
    sa.CheckConstraint("status IN ('issued', 'used', 'expired', 'revoked')", name=op.f('ck_coupons_status_known')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_coupons_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'template_id'], ['coupon_templates.tenant_id', 'coupon_templates.id'], name=op.f('fk_coupons_tenant_id_template_id_coupon_templates')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_coupons_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_coupons')),
    sa.UniqueConstraint('tenant_id', 'code', name=op.f('uq_coupons_tenant_id_code'))
    )
    op.create_index('ix_coupons_member', 'coupons', ['tenant_id', 'member_id', 'status'], unique=False)
    op.create_index('ix_coupons_used_ref', 'coupons', ['tenant_id', 'used_ref_type', 'used_ref_id'], unique=False)
    op.create_table('member_points',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('balance', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('balance >= 0', name=op.f('ck_member_points_balance_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_member_points_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_member_points_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'member_id', name=op.f('pk_member_points'))
    )
    op.create_table('points_ledger',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('delta', sa.BigInteger(), nullable=False),
    sa.Column('balance_after', sa.BigInteger(), nullable=False),
    sa.Column('ref_type', sa.Text(), nullable=True),
    sa.Column('ref_id', sa.Text(), nullable=True),
    sa.Column('reverses_id', sa.Uuid(), nullable=True),
    sa.Column('by_ref_type', sa.Text(), nullable=True),
    sa.Column('by_ref_id', sa.Text(), nullable=True),
    sa.Column('actor_type', sa.Text(), nullable=False),
    sa.Column('actor_id', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.CheckConstraint("kind IN ('earn', 'redeem', 'reverse', 'adjust', 'expire', 'merge')", name=op.f('ck_points_ledger_kind_known')),
    sa.CheckConstraint('balance_after >= 0', name=op.f('ck_points_ledger_balance_after_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_points_ledger_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'reverses_id'], ['points_ledger.tenant_id', 'points_ledger.id'], name=op.f('fk_points_ledger_tenant_id_reverses_id_points_ledger')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_points_ledger_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_points_ledger'))
    )
    op.create_index('ix_points_ledger_member', 'points_ledger', ['tenant_id', 'member_id', 'created_at'], unique=False)
    op.create_index('ix_points_ledger_ref', 'points_ledger', ['tenant_id', 'ref_type', 'ref_id'], unique=False)
    op.create_index('uq_points_ledger_earn_ref', 'points_ledger', ['tenant_id', 'ref_type', 'ref_id'], unique=True, postgresql_where=sa.text("kind = 'earn'"))
    op.create_index('uq_points_ledger_reversal', 'points_ledger', ['tenant_id', 'reverses_id', 'by_ref_type', 'by_ref_id'], unique=True, postgresql_where=sa.text('reverses_id IS NOT NULL'))
    op.create_table('coupon_events',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('coupon_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('delta', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('ref_type', sa.Text(), nullable=True),
    sa.Column('ref_id', sa.Text(), nullable=True),
    sa.Column('discount_fen', sa.BigInteger(), nullable=True),
    sa.Column('actor_type', sa.Text(), nullable=False),
    sa.Column('actor_id', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.CheckConstraint("kind IN ('issue', 'use', 'restore', 'revoke', 'expire', 'move')", name=op.f('ck_coupon_events_kind_known')),
    sa.CheckConstraint('delta BETWEEN -1 AND 1', name=op.f('ck_coupon_events_delta_range')),
    sa.ForeignKeyConstraint(['tenant_id', 'coupon_id'], ['coupons.tenant_id', 'coupons.id'], name=op.f('fk_coupon_events_tenant_id_coupon_id_coupons')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_coupon_events_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_coupon_events'))
    )
    op.create_index('ix_coupon_events_coupon', 'coupon_events', ['tenant_id', 'coupon_id', 'created_at'], unique=False)
    for table in ('loyalty_settings', 'member_points', 'coupon_templates', 'coupons'):
        mh.tenant_table(table)
    for table in ('points_ledger', 'coupon_events'):
        mh.tenant_table(table, "SELECT, INSERT")
        mh.append_only(table)


def downgrade() -> None:
    op.drop_index('ix_coupon_events_coupon', table_name='coupon_events')
    op.drop_table('coupon_events')
    op.drop_index('uq_points_ledger_reversal', table_name='points_ledger', postgresql_where=sa.text('reverses_id IS NOT NULL'))
    op.drop_index('uq_points_ledger_earn_ref', table_name='points_ledger', postgresql_where=sa.text("kind = 'earn'"))
    op.drop_index('ix_points_ledger_ref', table_name='points_ledger')
    op.drop_index('ix_points_ledger_member', table_name='points_ledger')
    op.drop_table('points_ledger')
    op.drop_table('member_points')
    op.drop_index('ix_coupons_used_ref', table_name='coupons')
    op.drop_index('ix_coupons_member', table_name='coupons')
    op.drop_table('coupons')
    op.drop_table('loyalty_settings')
    op.drop_table('coupon_templates')
