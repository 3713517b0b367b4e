"""treatment plans: a course of planned sessions per member, progress per visit

- `treatment_plans`: the course (goals encrypted at rest), with `sessions_done` kept in step with the ledger.
- `treatment_plan_items`: planned sessions per service.
- `treatment_plan_progress`: append-only ledger (trigger), one `visit` and at most one `reversal` per service
  record (unique key): a redelivered completion counts once.

Revision ID: 0022_treatment_plans
Revises: 0021_clinical_records
Create Date: 2026-12-01 23:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.core import migration_helpers as mh

revision = '0022_treatment_plans'
down_revision = '0021_clinical_records'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('treatment_plans',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('goals_encrypted', sa.Text(), nullable=False),
    sa.Column('interval_days', sa.Integer(), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('responsible_staff_id', sa.Uuid(), nullable=False),
    sa.Column('card_id', sa.Uuid(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('sessions_planned', sa.Integer(), nullable=False),
    sa.Column('sessions_done', sa.Integer(), nullable=False),
    sa.Column('last_visit_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by_id', sa.Uuid(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_by_id', sa.Uuid(), nullable=True),
    sa.Column('cancel_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('active', 'completed', 'cancelled')", name=op.f('ck_treatment_plans_status_known')),
    sa.CheckConstraint('interval_days BETWEEN 1 AND 365', name=op.f('ck_treatment_plans_interval_bounds')),
    sa.CheckConstraint('sessions_done >= 0 AND sessions_done <= sessions_planned',
                       name=op.f('ck_treatment_plans_done_within_plan')),
    sa.CheckConstraint("(status = 'cancelled') = (cancelled_at IS NOT NULL)",
                       name=op.f('ck_treatment_plans_cancelled_has_time')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'],
                            name=op.f('fk_treatment_plans_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'],
                            name=op.f('fk_treatment_plans_tenant_id_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id', 'responsible_staff_id'], ['staff.tenant_id', 'staff.id'],
                            name=op.f('fk_treatment_plans_tenant_id_responsible_staff_id_staff')),
    sa.ForeignKeyConstraint(['tenant_id', 'card_id'], ['cards.tenant_id', 'cards.id'],
                            name=op.f('fk_treatment_plans_tenant_id_card_id_cards')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_treatment_plans_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_treatment_plans'))
    )
    op.create_index('ix_treatment_plans_member', 'treatment_plans', ['tenant_id', 'member_id', 'status'],
                    unique=False)
    op.create_table('treatment_plan_items',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('plan_id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('sessions_planned', sa.Integer(), nullable=False),
    sa.Column('sessions_done', sa.Integer(), nullable=False),
    sa.CheckConstraint('sessions_planned > 0', name=op.f('ck_treatment_plan_items_planned_positive')),
    sa.CheckConstraint('sessions_done >= 0 AND sessions_done <= sessions_planned',
                       name=op.f('ck_treatment_plan_items_done_within_plan')),
    sa.ForeignKeyConstraint(['tenant_id', 'plan_id'], ['treatment_plans.tenant_id', 'treatment_plans.id'],
                            name=op.f('fk_treatment_plan_items_tenant_id_plan_id_treatment_plans')),
    sa.ForeignKeyConstraint(['tenant_id', 'service_id'], ['services.tenant_id', 'services.id'],
                            name=op.f('fk_treatment_plan_items_tenant_id_service_id_services')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_treatment_plan_items_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_treatment_plan_items')),
    sa.UniqueConstraint('tenant_id', 'plan_id', 'service_id',
                        name=op.f('uq_treatment_plan_items_tenant_id_plan_id_service_id'))
    )
    op.create_table('treatment_plan_progress',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('plan_id', sa.Uuid(), nullable=False),
    sa.Column('item_id', sa.Uuid(), nullable=False),
    sa.Column('service_record_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('delta', sa.Integer(), nullable=False),
    sa.Column('reverses_id', sa.Uuid(), nullable=True),
    sa.Column('staff_id', sa.Uuid(), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('visit', 'reversal')", name=op.f('ck_treatment_plan_progress_kind_known')),
    sa.CheckConstraint("(kind = 'visit' AND delta = 1 AND reverses_id IS NULL) OR "
                       "(kind = 'reversal' AND delta = -1 AND reverses_id IS NOT NULL)",
                       name=op.f('ck_treatment_plan_progress_delta_matches_kind')),
    sa.ForeignKeyConstraint(['tenant_id', 'plan_id'], ['treatment_plans.tenant_id', 'treatment_plans.id'],
                            name=op.f('fk_treatment_plan_progress_tenant_id_plan_id_treatment_plans')),
    sa.ForeignKeyConstraint(['tenant_id', 'item_id'], ['treatment_plan_items.tenant_id', 'treatment_plan_items.id'],
                            name=op.f('fk_treatment_plan_progress_tenant_id_item_id_treatment_plan_items')),
    sa.ForeignKeyConstraint(['tenant_id', 'service_record_id'], ['service_records.tenant_id', 'service_records.id'],
                            name=op.f('fk_treatment_plan_progress_tenant_id_service_record_id_service_records')),
    sa.ForeignKeyConstraint(['tenant_id', 'reverses_id'],
                            ['treatment_plan_progress.tenant_id', 'treatment_plan_progress.id'],
                            name=op.f('fk_treatment_plan_progress_tenant_id_reverses_id_treatment_plan_progress')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_treatment_plan_progress_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_treatment_plan_progress')),
    sa.UniqueConstraint('tenant_id', 'service_record_id', 'kind',
                        name=op.f('uq_treatment_plan_progress_tenant_id_service_record_id_kind'))
    )
    op.create_index('ix_treatment_plan_progress_plan', 'treatment_plan_progress',
                    ['tenant_id', 'plan_id', 'occurred_at'], unique=False)

    mh.append_only('treatment_plan_progress')
    # Plans and items change status and counts (never deleted: a stopped course is cancelled, with its reason).
    mh.tenant_table('treatment_plans', 'SELECT, INSERT, UPDATE')
    mh.tenant_table('treatment_plan_items', 'SELECT, INSERT, UPDATE')
    mh.tenant_table('treatment_plan_progress', 'SELECT, INSERT')


def downgrade() -> None:
    op.drop_table('treatment_plan_progress')
    op.drop_table('treatment_plan_items')
    op.drop_table('treatment_plans')
