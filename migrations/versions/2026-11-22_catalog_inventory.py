"""catalog and inventory

Revision ID: 0003_catalog_inventory
Revises: 0002_members
Create Date: 2026-11-22 08:11:00.030135
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import migration_helpers as mh

revision = '0003_catalog_inventory'
down_revision = '0002_members'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('consumables',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('category', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('low_stock_threshold', sa.BigInteger(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('low_stock_threshold >= 0', name=op.f('ck_consumables_threshold_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_consumables_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_consumables'))
    )
    op.create_index('ix_consumables_active', 'consumables', ['tenant_id', 'active', 'id'], unique=False)
    op.create_table('products',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('sku', sa.Text(), nullable=True),
    sa.Column('category', sa.Text(), nullable=True),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('low_stock_threshold', sa.BigInteger(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('low_stock_threshold >= 0', name=op.f('ck_products_threshold_not_negative')),
    sa.CheckConstraint('price >= 0', name=op.f('ck_products_price_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_products_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_products')),
    sa.UniqueConstraint('tenant_id', 'sku', name=op.f('uq_products_tenant_id_sku'))
    )
    op.create_index('ix_products_active', 'products', ['tenant_id', 'active', 'id'], unique=False)
    op.create_table('services',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('category', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('duration_minutes', sa.Integer(), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('resource_requirements', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('buffer_minutes', sa.Integer(), nullable=False),
    sa.Column('commission', postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('buffer_minutes >= 0', name=op.f('ck_services_buffer_not_negative')),
    sa.CheckConstraint('duration_minutes > 0', name=op.f('ck_services_duration_positive')),
    sa.CheckConstraint('price >= 0', name=op.f('ck_services_price_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_services_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_services'))
    )
    op.create_index('ix_services_active', 'services', ['tenant_id', 'active', 'id'], unique=False)
    op.create_table('service_consumables',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('consumable_id', sa.Uuid(), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_service_consumables_quantity_positive')),
    sa.ForeignKeyConstraint(['tenant_id', 'consumable_id'], ['consumables.tenant_id', 'consumables.id'], name=op.f('fk_service_consumables_tenant_id_consumable_id_consumables')),
    sa.ForeignKeyConstraint(['tenant_id', 'service_id'], ['services.tenant_id', 'services.id'], name=op.f('fk_service_consumables_tenant_id_service_id_services'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_service_consumables_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'service_id', 'consumable_id', name=op.f('pk_service_consumables'))
    )
    op.create_index('ix_service_consumables_consumable', 'service_consumables', ['tenant_id', 'consumable_id'], unique=False)
    op.create_table('stock_balances',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('item_id', sa.Uuid(), nullable=False),
    sa.Column('item_kind', sa.Text(), nullable=False),
    sa.Column('consumable_id', sa.Uuid(), nullable=True),
    sa.Column('product_id', sa.Uuid(), nullable=True),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('low_stock_threshold', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(item_kind = 'consumable' AND consumable_id = item_id AND product_id IS NULL) OR (item_kind = 'product' AND product_id = item_id AND consumable_id IS NULL)", name=op.f('ck_stock_balances_item')),
    sa.CheckConstraint('low_stock_threshold IS NULL OR low_stock_threshold >= 0', name=op.f('ck_stock_balances_threshold_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id', 'consumable_id'], ['consumables.tenant_id', 'consumables.id'], name=op.f('fk_stock_balances_tenant_id_consumable_id_consumables')),
    sa.ForeignKeyConstraint(['tenant_id', 'product_id'], ['products.tenant_id', 'products.id'], name=op.f('fk_stock_balances_tenant_id_product_id_products')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_stock_balances_tenant_id_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_stock_balances_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'store_id', 'item_id', name=op.f('pk_stock_balances'))
    )
    op.create_index('ix_stock_balances_item', 'stock_balances', ['tenant_id', 'item_id', 'store_id'], unique=False)
    op.create_table('stock_movements',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('item_id', sa.Uuid(), nullable=False),
    sa.Column('item_kind', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('balance_after', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('ref_type', sa.Text(), nullable=True),
    sa.Column('ref_id', sa.Text(), nullable=True),
    sa.Column('reverses_id', sa.Uuid(), nullable=True),
    sa.Column('transfer_id', sa.Uuid(), nullable=True),
    sa.Column('counterpart_store_id', sa.Uuid(), nullable=True),
    sa.Column('actor_type', sa.Text(), nullable=False),
    sa.Column('actor_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint("(kind = 'reversal') = (reverses_id IS NOT NULL)", name=op.f('ck_stock_movements_reversal_points_back')),
    sa.CheckConstraint("kind IN ('receive', 'adjust', 'transfer_out', 'transfer_in', 'consume', 'sale', 'reversal')", name=op.f('ck_stock_movements_kind')),
    sa.CheckConstraint('quantity <> 0', name=op.f('ck_stock_movements_quantity_not_zero')),
    sa.ForeignKeyConstraint(['tenant_id', 'counterpart_store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_stock_movements_tenant_id_counterpart_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id', 'reverses_id'], ['stock_movements.tenant_id', 'stock_movements.id'], name=op.f('fk_stock_movements_tenant_id_reverses_id_stock_movements')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id', 'item_id'], ['stock_balances.tenant_id', 'stock_balances.store_id', 'stock_balances.item_id'], name=op.f('fk_stock_movements_tenant_id_store_id_item_id_stock_balances')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_stock_movements_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_stock_movements')),
    sa.UniqueConstraint('tenant_id', 'reverses_id', name=op.f('uq_stock_movements_tenant_id_reverses_id'))
    )
    op.create_index('ix_stock_movements_ref', 'stock_movements', ['tenant_id', 'ref_type', 'ref_id'], unique=False)
    op.create_index('ix_stock_movements_store', 'stock_movements', ['tenant_id', 'store_id', 'seq'], unique=False)
    op.create_index('ix_stock_movements_store_item', 'stock_movements', ['tenant_id', 'store_id', 'item_id', 'seq'], unique=False)
    op.create_index('ix_stock_movements_transfer', 'stock_movements', ['tenant_id', 'transfer_id'], unique=False)
    # Catalog rows are deactivated, never deleted; a recipe is replaced line by line.
    for table in ("consumables", "products", "services"):
        mh.tenant_table(table, "SELECT, INSERT, UPDATE")
    mh.tenant_table("service_consumables")
    mh.tenant_table("stock_balances", "SELECT, INSERT, UPDATE")
    # The stock ledger: written once, corrected only by reversal rows.
    mh.tenant_table("stock_movements", "SELECT, INSERT")
    mh.append_only("stock_movements")


def downgrade() -> None:
    op.drop_index('ix_stock_movements_transfer', table_name='stock_movements')
    op.drop_index('ix_stock_movements_store_item', table_name='stock_movements')
    op.drop_index('ix_stock_movements_store', table_name='stock_movements')
    op.drop_index('ix_stock_movements_ref', table_name='stock_movements')
    op.drop_table('stock_movements')
    op.drop_index('ix_stock_balances_item', table_name='stock_balances')
    op.drop_table('stock_balances')
    op.drop_index('ix_service_consumables_consumable', table_name='service_consumables')
    op.drop_table('service_consumables')
    op.drop_index('ix_services_active', table_name='services')
    op.drop_table('services')
    op.drop_index('ix_products_active', table_name='products')
    op.drop_table('products')
    op.drop_index('ix_consumables_active', table_name='consumables')
    op.drop_table('consumables')
