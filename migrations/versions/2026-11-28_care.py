"""care: automation rules, rule runs and their log, follow-up tasks

Revision ID: 0008_care
Revises: 0007_loyalty
Create Date: 2026-11-28 00:26:00.575402
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import migration_helpers as mh

revision = '0008_care'
down_revision = '0007_loyalty'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('automation_rules',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('builtin', sa.Boolean(), nullable=False),
    sa.Column('trigger', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('conditions', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('delay', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('quiet_hours', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('actions', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_automation_rules_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_automation_rules')),
    sa.UniqueConstraint('tenant_id', 'key', name=op.f('uq_automation_rules_tenant_id_key'))
    )
    op.create_index('ix_automation_rules_enabled', 'automation_rules', ['tenant_id', 'enabled'], unique=False)
    op.create_table('rule_runs',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('rule_id', sa.Uuid(), nullable=False),
    sa.Column('cause_key', sa.Text(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('store_id', sa.Uuid(), nullable=True),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('run_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('context', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('scheduled', 'done', 'skipped', 'failed')", name=op.f('ck_rule_runs_status_known')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_rule_runs_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'rule_id'], ['automation_rules.tenant_id', 'automation_rules.id'], name=op.f('fk_rule_runs_tenant_id_rule_id_automation_rules')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_rule_runs_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_rule_runs')),
    sa.UniqueConstraint('tenant_id', 'rule_id', 'cause_key', name=op.f('uq_rule_runs_tenant_id_rule_id_cause_key'))
    )
    op.create_index('ix_rule_runs_member', 'rule_runs', ['tenant_id', 'member_id'], unique=False)
    op.create_index('ix_rule_runs_rule', 'rule_runs', ['tenant_id', 'rule_id', 'id'], unique=False)
    op.create_table('rule_run_log',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('run_id', sa.Uuid(), nullable=False),
    sa.Column('rule_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'run_id'], ['rule_runs.tenant_id', 'rule_runs.id'], name=op.f('fk_rule_run_log_tenant_id_run_id_rule_runs')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_rule_run_log_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_rule_run_log'))
    )
    op.create_index('ix_rule_run_log_run', 'rule_run_log', ['tenant_id', 'run_id', 'id'], unique=False)
    op.create_table('tasks',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('assignee_id', sa.Uuid(), nullable=True),
    sa.Column('store_id', sa.Uuid(), nullable=True),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('result_note', sa.Text(), nullable=True),
    sa.Column('rule_id', sa.Uuid(), nullable=True),
    sa.Column('run_id', sa.Uuid(), nullable=True),
    sa.Column('action_index', sa.Integer(), nullable=True),
    sa.Column('cause_key', sa.Text(), nullable=True),
    sa.Column('created_by_kind', sa.Text(), nullable=False),
    sa.Column('created_by_id', sa.Uuid(), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_by_id', sa.Uuid(), nullable=True),
    sa.Column('overdue_notified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(status = 'done') = (completed_at IS NOT NULL)", name=op.f('ck_tasks_completion_recorded')),
    sa.CheckConstraint("kind IN ('renewal', 'follow_up', 'wake_up', 'care', 'custom')", name=op.f('ck_tasks_kind_known')),
    sa.CheckConstraint("status IN ('open', 'done', 'cancelled')", name=op.f('ck_tasks_status_known')),
    sa.ForeignKeyConstraint(['tenant_id', 'assignee_id'], ['staff.tenant_id', 'staff.id'], name=op.f('fk_tasks_tenant_id_assignee_id_staff')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_tasks_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'rule_id'], ['automation_rules.tenant_id', 'automation_rules.id'], name=op.f('fk_tasks_tenant_id_rule_id_automation_rules')),
    sa.ForeignKeyConstraint(['tenant_id', 'run_id'], ['rule_runs.tenant_id', 'rule_runs.id'], name=op.f('fk_tasks_tenant_id_run_id_rule_runs')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_tasks_tenant_id_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_tasks_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_tasks')),
    sa.UniqueConstraint('tenant_id', 'run_id', 'action_index', name=op.f('uq_tasks_tenant_id_run_id_action_index'))
    )
    op.create_index('ix_tasks_assignee', 'tasks', ['tenant_id', 'assignee_id', 'status', 'due_at'], unique=False)
    op.create_index('ix_tasks_member', 'tasks', ['tenant_id', 'member_id', 'created_at'], unique=False)
    op.create_index('ix_tasks_open_due', 'tasks', ['tenant_id', 'status', 'due_at'], unique=False)
    # Open tasks past their due time, for managers' reports. security_invoker: the view is read with the
    # caller's rights, so row-level security on tasks still applies through it.
    op.execute("CREATE VIEW tasks_overdue WITH (security_invoker = true) AS "
               "SELECT t.*, now() - t.due_at AS overdue_by FROM tasks t WHERE t.status = 'open' AND t.due_at < now()")
    for table in ("automation_rules", "rule_runs", "tasks"):
        mh.tenant_table(table)
    mh.tenant_table("rule_run_log", "SELECT, INSERT")
    mh.append_only("rule_run_log")
    op.execute(f"GRANT SELECT ON tasks_overdue TO {mh.app_role()}")


def downgrade() -> None:
    op.drop_index('ix_tasks_open_due', table_name='tasks')
    op.drop_index('ix_tasks_member', table_name='tasks')
    op.drop_index('ix_tasks_assignee', table_name='tasks')
    op.drop_table('tasks')
    op.drop_index('ix_rule_run_log_run', table_name='rule_run_log')
    op.drop_table('rule_run_log')
    op.drop_index('ix_rule_runs_rule', table_name='rule_runs')
    op.drop_index('ix_rule_runs_member', table_name='rule_runs')
    op.drop_table('rule_runs')
    op.drop_index('ix_automation_rules_enabled', table_name='automation_rules')
    op.drop_table('automation_rules')
