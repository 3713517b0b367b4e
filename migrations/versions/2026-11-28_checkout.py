"""checkout: orders, tenders, refunds and their approvals, tier discounts, daily closes

Revision ID: 0006_checkout
Revises: 0005_booking
Create Date: 2026-11-28 00:19:21.253886
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import migration_helpers as mh

revision = '0006_checkout'
down_revision = '0005_booking'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('checkout_settings',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('refund_approval_threshold', sa.BigInteger(), nullable=False),
    sa.Column('approval_levels', postgresql.JSONB(astext_type=sa.Text()), server_default='[["store_manager"], ["finance"]]', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_checkout_settings_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_checkout_settings'))
    )
    op.create_table('tier_discounts',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('tag_name', sa.Text(), nullable=False),
    sa.Column('percent_off', sa.Integer(), nullable=False),
    sa.Column('line_types', postgresql.JSONB(astext_type=sa.Text()), server_default='["service", "product"]', nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint('percent_off BETWEEN 1 AND 90', name=op.f('ck_tier_discounts_percent_range')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_tier_discounts_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_tier_discounts')),
    sa.UniqueConstraint('tenant_id', 'tag_name', name=op.f('uq_tier_discounts_tenant_id_tag_name'))
    )
    op.create_table('daily_closes',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('figures', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('closed_by_id', sa.Uuid(), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_daily_closes_tenant_id_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_daily_closes_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_daily_closes')),
    sa.UniqueConstraint('tenant_id', 'store_id', 'day', name=op.f('uq_daily_closes_tenant_id_store_id_day'))
    )
    op.create_table('orders',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('order_no', sa.Text(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('subtotal', sa.BigInteger(), nullable=False),
    sa.Column('discount_total', sa.BigInteger(), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('paid_total', sa.BigInteger(), nullable=False),
    sa.Column('refunded_total', sa.BigInteger(), nullable=False),
    sa.Column('order_discount', sa.BigInteger(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('opened_by_kind', sa.Text(), nullable=False),
    sa.Column('opened_by_id', sa.Uuid(), nullable=True),
    sa.Column('appointment_id', sa.Uuid(), nullable=True),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('draft', 'pending', 'paid', 'partially_refunded', 'refunded', 'cancelled')", name=op.f('ck_orders_status_known')),
    sa.CheckConstraint('paid_total >= 0 AND refunded_total >= 0 AND refunded_total <= paid_total', name=op.f('ck_orders_paid_and_refunded')),
    sa.CheckConstraint('subtotal >= 0 AND discount_total >= 0 AND total >= 0 AND total = subtotal - discount_total', name=op.f('ck_orders_totals_consistent')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_orders_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_orders_tenant_id_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_orders_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_orders')),
    sa.UniqueConstraint('tenant_id', 'order_no', name=op.f('uq_orders_tenant_id_order_no'))
    )
    op.create_index('ix_orders_member_time', 'orders', ['tenant_id', 'member_id', 'created_at'], unique=False)
    op.create_index('ix_orders_pending', 'orders', ['tenant_id', 'status', 'expires_at'], unique=False)
    op.create_index('ix_orders_store_time', 'orders', ['tenant_id', 'store_id', 'created_at'], unique=False)
    op.create_table('order_lines',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=True),
    sa.Column('product_id', sa.Uuid(), nullable=True),
    sa.Column('card_template_id', sa.Uuid(), nullable=True),
    sa.Column('card_id', sa.Uuid(), nullable=True),
    sa.Column('service_record_id', sa.Uuid(), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price', sa.BigInteger(), nullable=False),
    sa.Column('list_amount', sa.BigInteger(), nullable=False),
    sa.Column('line_discount', sa.BigInteger(), nullable=False),
    sa.Column('tier_discount', sa.BigInteger(), nullable=False),
    sa.Column('order_discount_share', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('settled_by_card', sa.Boolean(), nullable=False),
    sa.Column('issued_card_id', sa.Uuid(), nullable=True),
    sa.Column('top_up_principal', sa.BigInteger(), nullable=False),
    sa.Column('top_up_bonus', sa.BigInteger(), nullable=False),
    sa.Column('refunded_amount', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("type IN ('service', 'product', 'card', 'top_up')", name=op.f('ck_order_lines_type_known')),
    sa.CheckConstraint('amount = list_amount - line_discount - tier_discount - order_discount_share', name=op.f('ck_order_lines_amount_consistent')),
    sa.CheckConstraint('line_discount >= 0 AND tier_discount >= 0 AND order_discount_share >= 0', name=op.f('ck_order_lines_discounts_not_negative')),
    sa.CheckConstraint('quantity >= 1 AND unit_price >= 0 AND list_amount >= 0 AND amount >= 0', name=op.f('ck_order_lines_amounts')),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id'], ['orders.tenant_id', 'orders.id'], name=op.f('fk_order_lines_tenant_id_order_id_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_order_lines_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_order_lines')),
    sa.UniqueConstraint('tenant_id', 'order_id', 'line_no', name=op.f('uq_order_lines_tenant_id_order_id_line_no'))
    )
    op.create_table('payments',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('method', sa.Text(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('refunded_amount', sa.BigInteger(), nullable=False),
    sa.Column('card_id', sa.Uuid(), nullable=True),
    sa.Column('principal_used', sa.BigInteger(), nullable=False),
    sa.Column('bonus_used', sa.BigInteger(), nullable=False),
    sa.Column('coupon_id', sa.Uuid(), nullable=True),
    sa.Column('points', sa.BigInteger(), nullable=True),
    sa.Column('cash_received', sa.BigInteger(), nullable=True),
    sa.Column('change_given', sa.BigInteger(), nullable=True),
    sa.Column('out_trade_no', sa.Text(), nullable=True),
    sa.Column('prepay_id', sa.Text(), nullable=True),
    sa.Column('transaction_id', sa.Text(), nullable=True),
    sa.Column('succeeded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("method IN ('cash', 'stored_value', 'points', 'coupon', 'wechat_pay')", name=op.f('ck_payments_method_known')),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'closed')", name=op.f('ck_payments_status_known')),
    sa.CheckConstraint('amount > 0 AND refunded_amount >= 0 AND refunded_amount <= amount', name=op.f('ck_payments_amounts')),
    sa.CheckConstraint('cash_received IS NULL OR cash_received >= amount', name=op.f('ck_payments_cash_covers')),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id'], ['orders.tenant_id', 'orders.id'], name=op.f('fk_payments_tenant_id_order_id_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_payments_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_payments')),
    sa.UniqueConstraint('tenant_id', 'out_trade_no', name=op.f('uq_payments_tenant_id_out_trade_no'))
    )
    op.create_index('ix_payments_order', 'payments', ['tenant_id', 'order_id'], unique=False)
    op.create_index('ix_payments_out_trade_no', 'payments', ['out_trade_no'], unique=False)
    op.create_index('ix_payments_store_day', 'payments', ['tenant_id', 'store_id', 'succeeded_at'], unique=False)
    op.create_table('refunds',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('refund_no', sa.Text(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('lines', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('levels_required', sa.Integer(), nullable=False),
    sa.Column('levels_approved', sa.Integer(), nullable=False),
    sa.Column('requested_by_id', sa.Uuid(), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending_approval', 'approved', 'processing', 'completed', 'rejected', 'failed')", name=op.f('ck_refunds_status_known')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_refunds_amount_positive')),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id'], ['orders.tenant_id', 'orders.id'], name=op.f('fk_refunds_tenant_id_order_id_orders')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_refunds_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_refunds')),
    sa.UniqueConstraint('tenant_id', 'refund_no', name=op.f('uq_refunds_tenant_id_refund_no'))
    )
    op.create_index('ix_refunds_order', 'refunds', ['tenant_id', 'order_id'], unique=False)
    op.create_index('ix_refunds_store_day', 'refunds', ['tenant_id', 'store_id', 'completed_at'], unique=False)
    op.create_table('refund_allocations',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('refund_id', sa.Uuid(), nullable=False),
    sa.Column('payment_id', sa.Uuid(), nullable=False),
    sa.Column('method', sa.Text(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('out_refund_no', sa.Text(), nullable=True),
    sa.Column('wechat_refund_id', sa.Text(), nullable=True),
    sa.Column('succeeded_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name=op.f('ck_refund_allocations_status_known')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_refund_allocations_amount_positive')),
    sa.ForeignKeyConstraint(['tenant_id', 'payment_id'], ['payments.tenant_id', 'payments.id'], name=op.f('fk_refund_allocations_tenant_id_payment_id_payments')),
    sa.ForeignKeyConstraint(['tenant_id', 'refund_id'], ['refunds.tenant_id', 'refunds.id'], name=op.f('fk_refund_allocations_tenant_id_refund_id_refunds')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_refund_allocations_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_refund_allocations'))
    )
    op.create_index('ix_refund_allocations_out_refund_no', 'refund_allocations', ['out_refund_no'], unique=False)
    op.create_index('ix_refund_allocations_refund', 'refund_allocations', ['tenant_id', 'refund_id'], unique=False)
    op.create_table('refund_approvals',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('refund_id', sa.Uuid(), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('decision', sa.Text(), nullable=False),
    sa.Column('decided_by_id', sa.Uuid(), nullable=False),
    sa.Column('role', sa.Text(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.CheckConstraint("decision IN ('approve', 'reject')", name=op.f('ck_refund_approvals_decision_known')),
    sa.ForeignKeyConstraint(['tenant_id', 'refund_id'], ['refunds.tenant_id', 'refunds.id'], name=op.f('fk_refund_approvals_tenant_id_refund_id_refunds')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_refund_approvals_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_refund_approvals')),
    sa.UniqueConstraint('tenant_id', 'refund_id', 'level', name=op.f('uq_refund_approvals_tenant_id_refund_id_level'))
    )
    for table in ("orders", "order_lines", "payments", "refunds", "refund_allocations", "checkout_settings",
                  "tier_discounts", "daily_closes"):
        mh.tenant_table(table)
    mh.tenant_table("refund_approvals", "SELECT, INSERT")
    mh.append_only("refund_approvals")


def downgrade() -> None:
    op.drop_table('refund_approvals')
    op.drop_index('ix_refund_allocations_refund', table_name='refund_allocations')
    op.drop_index('ix_refund_allocations_out_refund_no', table_name='refund_allocations')
    op.drop_table('refund_allocations')
    op.drop_index('ix_refunds_store_day', table_name='refunds')
    op.drop_index('ix_refunds_order', table_name='refunds')
    op.drop_table('refunds')
    op.drop_index('ix_payments_store_day', table_name='payments')
    op.drop_index('ix_payments_out_trade_no', table_name='payments')
    op.drop_index('ix_payments_order', table_name='payments')
    op.drop_table('payments')
    op.drop_table('order_lines')
    op.drop_index('ix_orders_store_time', table_name='orders')
    op.drop_index('ix_orders_pending', table_name='orders')
    op.drop_index('ix_orders_member_time', table_name='orders')
    op.drop_table('orders')
    op.drop_table('daily_closes')
    op.drop_table('tier_discounts')
    op.drop_table('checkout_settings')
