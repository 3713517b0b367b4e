"""growth: channels, campaign codes and QR codes, spend; leads, their history and assignment rules

- `growth_leads`: the phone encrypted at rest with a blind index; one open lead per person through a
  partial unique index on `match_key` over open leads (concurrent intakes meet in ON CONFLICT).
- `growth_lead_touches` and `growth_lead_history`: append-only (trigger).
- `growth_assignment_rules`: the rule row is the round-robin cursor, locked by each assignment.
- `growth_intake_secrets`: the per-tenant HMAC key of the public intake endpoint, encrypted.
- Permissions `growth:read`, `growth:write` (consultant, store manager, owner) and `growth:admin` (owner).

Revision ID: 0027_growth_leads
Revises: 0026_clinical_visits
Create Date: 2026-12-01 23:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.core import migration_helpers as mh

revision = '0027_growth_leads'
down_revision = '0026_clinical_visits'
branch_labels = None
depends_on = None

OPEN = "status NOT IN ('won', 'lost')"


def _tenant_columns() -> list[sa.Column]:
    return [sa.Column('tenant_id', sa.Uuid(), nullable=False),
            sa.Column('id', sa.Uuid(), nullable=False),
            sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False)]


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(['tenant_id', column], [f'{target}.tenant_id', f'{target}.id'],
                                   name=f'fk_{table}_{column}')


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=f'fk_{table}_tenant_id_tenants')


def upgrade() -> None:
    t = 'growth_channels'
    op.create_table(t, *_tenant_columns(),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('code', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('paid_ads', 'platform', 'referral', 'walk_in', 'event', 'other')",
                       name=f'ck_{t}_kind_known'),
    _tenant_fk(t),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=f'pk_{t}'),
    sa.UniqueConstraint('tenant_id', 'name', name=f'uq_{t}_tenant_id_name'))
    op.create_index('uq_growth_channels_code', t, ['tenant_id', 'code'], unique=True,
                    postgresql_where=sa.text('code IS NOT NULL'))

    t = 'growth_campaign_codes'
    op.create_table(t, *_tenant_columns(),
    sa.Column('channel_id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=True),
    sa.Column('page', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    _fk(t, 'channel_id', 'growth_channels'), _fk(t, 'store_id', 'stores'), _tenant_fk(t),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=f'pk_{t}'),
    sa.UniqueConstraint('tenant_id', 'code', name=f'uq_{t}_tenant_id_code'))

    t = 'growth_channel_spend'
    op.create_table(t, *_tenant_columns(),
    sa.Column('channel_id', sa.Uuid(), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_by_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint('amount >= 0', name=f'ck_{t}_amount_not_negative'),
    sa.CheckConstraint('period_end >= period_start', name=f'ck_{t}_period_ordered'),
    _fk(t, 'channel_id', 'growth_channels'), _tenant_fk(t),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=f'pk_{t}'))
    op.create_index('ix_growth_channel_spend_channel', t, ['tenant_id', 'channel_id', 'period_start'])

    t = 'growth_intake_secrets'
    op.create_table(t,
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('secret_encrypted', sa.Text(), nullable=False),
    sa.Column('rotated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rotated_by_id', sa.Uuid(), nullable=True),
    _tenant_fk(t),
    sa.PrimaryKeyConstraint('tenant_id', name=f'pk_{t}'))

    t = 'growth_assignment_rules'
    op.create_table(t, *_tenant_columns(),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=True),
    sa.Column('strategy', sa.Text(), nullable=False),
    sa.Column('channel_kind', sa.Text(), nullable=True),
    sa.Column('campaign_code_id', sa.Uuid(), nullable=True),
    sa.Column('interest_tag', sa.Text(), nullable=True),
    sa.Column('on_shift_only', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('first_contact_minutes', sa.Integer(), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('last_assignee_id', sa.Uuid(), nullable=True),
    sa.Column('assigned_count', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("strategy IN ('round_robin', 'least_open')", name=f'ck_{t}_strategy_known'),
    sa.CheckConstraint('first_contact_minutes IS NULL OR first_contact_minutes > 0',
                       name=f'ck_{t}_deadline_positive'),
    _fk(t, 'store_id', 'stores'), _fk(t, 'campaign_code_id', 'growth_campaign_codes'), _tenant_fk(t),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=f'pk_{t}'))

    t = 'growth_leads'
    op.create_table(t, *_tenant_columns(),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('phone_encrypted', sa.Text(), nullable=True),
    sa.Column('phone_index', sa.Text(), nullable=True),
    sa.Column('openid', sa.Text(), nullable=True),
    sa.Column('unionid', sa.Text(), nullable=True),
    sa.Column('match_key', sa.Text(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('channel_id', sa.Uuid(), nullable=True),
    sa.Column('campaign_code_id', sa.Uuid(), nullable=True),
    sa.Column('store_id', sa.Uuid(), nullable=True),
    sa.Column('interests', sa.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('lost_reason', sa.Text(), nullable=True),
    sa.Column('assignee_id', sa.Uuid(), nullable=True),
    sa.Column('rule_id', sa.Uuid(), nullable=True),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('contact_due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_contacted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('touches', sa.Integer(), nullable=False),
    sa.Column('last_touch_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by_id', sa.Uuid(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('new', 'contacted', 'consultation_booked', 'arrived', 'consulted', 'won', "
                       "'lost')", name=f'ck_{t}_status_known'),
    sa.CheckConstraint("status <> 'lost' OR lost_reason IS NOT NULL", name=f'ck_{t}_lost_has_reason'),
    sa.CheckConstraint('phone_index IS NOT NULL OR openid IS NOT NULL OR unionid IS NOT NULL',
                       name=f'ck_{t}_reachable'),
    _fk(t, 'channel_id', 'growth_channels'), _fk(t, 'campaign_code_id', 'growth_campaign_codes'),
    _fk(t, 'store_id', 'stores'), _fk(t, 'member_id', 'members'), _fk(t, 'assignee_id', 'staff'),
    _fk(t, 'rule_id', 'growth_assignment_rules'), _tenant_fk(t),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=f'pk_{t}'))
    op.create_index('uq_growth_leads_open_match', t, ['tenant_id', 'match_key'], unique=True,
                    postgresql_where=sa.text(OPEN))
    op.create_index('ix_growth_leads_assignee', t, ['tenant_id', 'assignee_id', 'status'])
    op.create_index('ix_growth_leads_contact_due', t, ['contact_due_at'], postgresql_where=sa.text(
        "status = 'new' AND escalated_at IS NULL AND contact_due_at IS NOT NULL"))

    t = 'growth_lead_touches'
    op.create_table(t, *_tenant_columns(),
    sa.Column('lead_id', sa.Uuid(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('channel_id', sa.Uuid(), nullable=True),
    sa.Column('campaign_code_id', sa.Uuid(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    _fk(t, 'lead_id', 'growth_leads'), _tenant_fk(t),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=f'pk_{t}'))
    op.create_index('ix_growth_lead_touches_lead', t, ['tenant_id', 'lead_id', 'created_at'])

    t = 'growth_lead_history'
    op.create_table(t, *_tenant_columns(),
    sa.Column('lead_id', sa.Uuid(), nullable=False),
    sa.Column('change', sa.Text(), nullable=False),
    sa.Column('from_status', sa.Text(), nullable=True),
    sa.Column('to_status', sa.Text(), nullable=True),
    sa.Column('assignee_id', sa.Uuid(), nullable=True),
    sa.Column('actor_kind', sa.Text(), nullable=False),
    sa.Column('actor_id', sa.Uuid(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    _fk(t, 'lead_id', 'growth_leads'), _tenant_fk(t),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=f'pk_{t}'))
    op.create_index('ix_growth_lead_history_lead', t, ['tenant_id', 'lead_id', 'created_at'])

    mh.append_only('growth_lead_touches')
    mh.append_only('growth_lead_history')
    mh.tenant_table('growth_channels', 'SELECT, INSERT, UPDATE')
    mh.tenant_table('growth_campaign_codes', 'SELECT, INSERT, UPDATE')
    mh.tenant_table('growth_channel_spend', 'SELECT, INSERT, UPDATE, DELETE')
    mh.tenant_table('growth_intake_secrets', 'SELECT, INSERT, UPDATE')
    mh.tenant_table('growth_assignment_rules', 'SELECT, INSERT, UPDATE')
    mh.tenant_table('growth_leads', 'SELECT, INSERT, UPDATE')
    mh.tenant_table('growth_lead_touches', 'SELECT, INSERT')
    mh.tenant_table('growth_lead_history', 'SELECT, INSERT')

    grant_permissions()


def grant_permissions() -> None:
    """Existing tenants' presets get the new permissions, as the catalogue gives them to new tenants."""
    mh.grant_preset_permissions(['growth:read', 'growth:write'], ['owner', 'store_manager', 'consultant'])
    mh.grant_preset_permissions(['growth:admin'], ['owner'])


def downgrade() -> None:
    mh.revoke_preset_permissions(['growth:read', 'growth:write', 'growth:admin'])
    for table in ('growth_lead_history', 'growth_lead_touches', 'growth_leads', 'growth_assignment_rules',
                  'growth_intake_secrets', 'growth_channel_spend', 'growth_campaign_codes', 'growth_channels'):
        op.execute(f'DROP TRIGGER IF EXISTS {table}_append_only ON {table}')
        op.drop_table(table)
