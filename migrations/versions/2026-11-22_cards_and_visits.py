"""cards and visits

Revision ID: 0004_cards_visits
Revises: 0003_catalog_inventory
Create Date: 2026-11-22 08:15:48.744729
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import migration_helpers as mh

revision = '0004_cards_visits'
down_revision = '0003_catalog_inventory'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('card_templates',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('face_value', sa.BigInteger(), nullable=False),
    sa.Column('bonus', sa.BigInteger(), nullable=False),
    sa.Column('spend_order', sa.Text(), nullable=False),
    sa.Column('valid_days', sa.Integer(), nullable=True),
    sa.Column('valid_until', sa.Date(), nullable=True),
    sa.Column('shared_pool_sessions', sa.Integer(), nullable=True),
    sa.Column('daily_cap', sa.Integer(), nullable=True),
    sa.Column('usable_store_ids', sa.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('family_shareable', sa.Boolean(), nullable=False),
    sa.Column('transferable', sa.Boolean(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint('price >= 0', name=op.f('ck_card_templates_price_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_card_templates_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_card_templates'))
    )
    op.create_table('card_template_items',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('template_id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('sessions', sa.Integer(), nullable=False),
    sa.Column('gifted_sessions', sa.Integer(), nullable=False),
    sa.CheckConstraint('sessions >= 0 AND gifted_sessions >= 0', name=op.f('ck_card_template_items_sessions_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id', 'service_id'], ['services.tenant_id', 'services.id'], name=op.f('fk_card_template_items_tenant_id_service_id_services')),
    sa.ForeignKeyConstraint(['tenant_id', 'template_id'], ['card_templates.tenant_id', 'card_templates.id'], name=op.f('fk_card_template_items_tenant_id_template_id_card_templates'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_card_template_items_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_card_template_items'))
    )
    op.create_table('cards',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('template_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=True),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('price_paid', sa.BigInteger(), nullable=False),
    sa.Column('principal_balance', sa.BigInteger(), nullable=False),
    sa.Column('bonus_balance', sa.BigInteger(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('frozen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('terms', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('expiring_notified_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('principal_balance >= 0 AND bonus_balance >= 0', name=op.f('ck_cards_balances_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_cards_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_cards_tenant_id_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id', 'template_id'], ['card_templates.tenant_id', 'card_templates.id'], name=op.f('fk_cards_tenant_id_template_id_card_templates')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_cards_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_cards'))
    )
    op.create_index('ix_cards_expiry', 'cards', ['tenant_id', 'status', 'expires_at'], unique=False)
    op.create_index('ix_cards_member', 'cards', ['tenant_id', 'member_id', 'status'], unique=False)
    op.create_table('card_items',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('card_id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=True),
    sa.Column('sessions_total', sa.Integer(), nullable=False),
    sa.Column('gifted_sessions', sa.Integer(), nullable=False),
    sa.Column('remaining', sa.Integer(), nullable=False),
    sa.Column('unit_value', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('remaining >= 0', name=op.f('ck_card_items_remaining_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id', 'card_id'], ['cards.tenant_id', 'cards.id'], name=op.f('fk_card_items_tenant_id_card_id_cards'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'service_id'], ['services.tenant_id', 'services.id'], name=op.f('fk_card_items_tenant_id_service_id_services')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_card_items_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_card_items'))
    )
    op.create_index('ix_card_items_card', 'card_items', ['tenant_id', 'card_id'], unique=False)
    op.create_table('service_records',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('appointment_id', sa.Uuid(), nullable=True),
    sa.Column('settlement', sa.Text(), nullable=False),
    sa.Column('card_id', sa.Uuid(), nullable=True),
    sa.Column('card_entry_id', sa.Uuid(), nullable=True),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('list_price', sa.BigInteger(), nullable=False),
    sa.Column('earned_amount', sa.BigInteger(), nullable=False),
    sa.Column('duration_minutes', sa.Integer(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reversed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reversal_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id', 'card_id'], ['cards.tenant_id', 'cards.id'], name=op.f('fk_service_records_tenant_id_card_id_cards')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_service_records_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'service_id'], ['services.tenant_id', 'services.id'], name=op.f('fk_service_records_tenant_id_service_id_services')),
    sa.ForeignKeyConstraint(['tenant_id', 'staff_id'], ['staff.tenant_id', 'staff.id'], name=op.f('fk_service_records_tenant_id_staff_id_staff')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_service_records_tenant_id_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_service_records_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_service_records'))
    )
    op.create_index('ix_service_records_member', 'service_records', ['tenant_id', 'member_id', 'completed_at'], unique=False)
    op.create_index('ix_service_records_staff', 'service_records', ['tenant_id', 'staff_id', 'completed_at'], unique=False)
    op.create_index('ix_service_records_store_day', 'service_records', ['tenant_id', 'store_id', 'completed_at'], unique=False)
    op.create_index('ix_service_records_unsettled', 'service_records', ['tenant_id', 'member_id', 'settlement', 'order_id'], unique=False)
    op.create_table('card_ledger',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('card_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('card_item_id', sa.Uuid(), nullable=True),
    sa.Column('sessions_delta', sa.Integer(), nullable=False),
    sa.Column('principal_delta', sa.BigInteger(), nullable=False),
    sa.Column('bonus_delta', sa.BigInteger(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('store_id', sa.Uuid(), nullable=True),
    sa.Column('actor_type', sa.Text(), nullable=False),
    sa.Column('actor_id', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('ref_type', sa.Text(), nullable=True),
    sa.Column('ref_id', sa.Text(), nullable=True),
    sa.Column('reverses_id', sa.Uuid(), nullable=True),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'card_id'], ['cards.tenant_id', 'cards.id'], name=op.f('fk_card_ledger_tenant_id_card_id_cards'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'card_item_id'], ['card_items.tenant_id', 'card_items.id'], name=op.f('fk_card_ledger_tenant_id_card_item_id_card_items')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_card_ledger_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_card_ledger'))
    )
    op.create_index('ix_card_ledger_card', 'card_ledger', ['tenant_id', 'card_id', 'created_at'], unique=False)
    op.create_index('ix_card_ledger_member', 'card_ledger', ['tenant_id', 'member_id', 'created_at'], unique=False)
    op.create_index('ix_card_ledger_ref', 'card_ledger', ['tenant_id', 'ref_type', 'ref_id'], unique=False)
    op.create_table('commissions',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('service_record_id', sa.Uuid(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('basis', sa.BigInteger(), nullable=False),
    sa.Column('rule', postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True),
    sa.Column('staff_level', sa.Text(), nullable=True),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('reverses_id', sa.Uuid(), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'service_record_id'], ['service_records.tenant_id', 'service_records.id'], name=op.f('fk_commissions_tenant_id_service_record_id_service_records')),
    sa.ForeignKeyConstraint(['tenant_id', 'staff_id'], ['staff.tenant_id', 'staff.id'], name=op.f('fk_commissions_tenant_id_staff_id_staff')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_commissions_tenant_id_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_commissions_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_commissions'))
    )
    op.create_index('ix_commissions_staff', 'commissions', ['tenant_id', 'staff_id', 'occurred_at'], unique=False)
    op.create_index('ix_commissions_store', 'commissions', ['tenant_id', 'store_id', 'occurred_at'], unique=False)
    op.add_column('staff', sa.Column('level', sa.Text(), nullable=True))
    for table in ("card_templates", "card_template_items", "cards", "card_items", "service_records"):
        mh.tenant_table(table)
    # Ledgers: append-only, for the application and the owner alike.
    for table in ("card_ledger", "commissions"):
        mh.tenant_table(table, "SELECT, INSERT")
        mh.append_only(table)


def downgrade() -> None:
    op.drop_column('staff', 'level')
    op.drop_index('ix_commissions_store', table_name='commissions')
    op.drop_index('ix_commissions_staff', table_name='commissions')
    op.drop_table('commissions')
    op.drop_index('ix_card_ledger_ref', table_name='card_ledger')
    op.drop_index('ix_card_ledger_member', table_name='card_ledger')
    op.drop_index('ix_card_ledger_card', table_name='card_ledger')
    op.drop_table('card_ledger')
    op.drop_index('ix_service_records_unsettled', table_name='service_records')
    op.drop_index('ix_service_records_store_day', table_name='service_records')
    op.drop_index('ix_service_records_staff', table_name='service_records')
    op.drop_index('ix_service_records_member', table_name='service_records')
    op.drop_table('service_records')
    op.drop_index('ix_card_items_card', table_name='card_items')
    op.drop_table('card_items')
    op.drop_index('ix_cards_member', table_name='cards')
    op.drop_index('ix_cards_expiry', table_name='cards')
    op.drop_table('cards')
    op.drop_table('card_template_items')
    op.drop_table('card_templates')
