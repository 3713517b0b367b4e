"""referral codes, reward rules and rewards

- `referral_codes`: one share code per member (unique per tenant).
- `referrals`: who referred whom, one per referee (unique key), never oneself (check).
- `referral_reward_rules`: the tenant's reward rules as data (one row per tenant).
- `referral_rewards`: append-only (trigger): one `grant` per referee and role and one `reversal` per referee
  (unique key), so a redelivered or concurrent `order.paid` rewards once.

Revision ID: 0028_referrals
Revises: 0027_growth_leads
Create Date: 2026-12-01 23:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import migration_helpers as mh

revision = '0028_referrals'
down_revision = '0027_growth_leads'
branch_labels = None
depends_on = None


def _base() -> list[sa.Column]:
    return [sa.Column('tenant_id', sa.Uuid(), nullable=False),
            sa.Column('id', sa.Uuid(), nullable=False),
            sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False)]


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(['tenant_id', column], [f'{target}.tenant_id', f'{target}.id'],
                                   name=op.f(f'fk_{table}_tenant_id_{column}_{target}'))


def _tenant(table: str) -> list[sa.SchemaItem]:
    return [sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f(f'fk_{table}_tenant_id_tenants')),
            sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f(f'pk_{table}'))]


def upgrade() -> None:
    op.create_table('referral_codes', *_base(),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    _fk('referral_codes', 'member_id', 'members'), *_tenant('referral_codes'),
    sa.UniqueConstraint('tenant_id', 'member_id', name=op.f('uq_referral_codes_tenant_id_member_id')),
    sa.UniqueConstraint('tenant_id', 'code', name=op.f('uq_referral_codes_tenant_id_code'))
    )
    op.create_table('referrals', *_base(),
    sa.Column('referrer_id', sa.Uuid(), nullable=False),
    sa.Column('referee_id', sa.Uuid(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('code', sa.Text(), nullable=True),
    sa.Column('recorded_by_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint('referrer_id <> referee_id', name=op.f('ck_referrals_not_self')),
    sa.CheckConstraint("source IN ('registration', 'staff')", name=op.f('ck_referrals_source_known')),
    _fk('referrals', 'referrer_id', 'members'), _fk('referrals', 'referee_id', 'members'), *_tenant('referrals'),
    sa.UniqueConstraint('tenant_id', 'referee_id', name=op.f('uq_referrals_tenant_id_referee_id'))
    )
    op.create_index('ix_referrals_referrer', 'referrals', ['tenant_id', 'referrer_id'], unique=False)
    op.create_table('referral_reward_rules', *_base(),
    sa.Column('rules', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_by_id', sa.Uuid(), nullable=True),
    *_tenant('referral_reward_rules'),
    sa.UniqueConstraint('tenant_id', name=op.f('uq_referral_reward_rules_tenant_id'))
    )
    op.create_table('referral_rewards', *_base(),
    sa.Column('referral_id', sa.Uuid(), nullable=False),
    sa.Column('referee_id', sa.Uuid(), nullable=False),
    sa.Column('beneficiary_id', sa.Uuid(), nullable=False),
    sa.Column('role', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('reward_type', sa.Text(), nullable=True),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('coupon_id', sa.Uuid(), nullable=True),
    sa.Column('card_id', sa.Uuid(), nullable=True),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('refund_id', sa.Uuid(), nullable=True),
    sa.Column('reverses_id', sa.Uuid(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.CheckConstraint("role IN ('referrer', 'referee')", name=op.f('ck_referral_rewards_role_known')),
    sa.CheckConstraint("kind IN ('grant', 'reversal')", name=op.f('ck_referral_rewards_kind_known')),
    sa.CheckConstraint("(kind = 'grant') = (reverses_id IS NULL)",
                       name=op.f('ck_referral_rewards_reversal_points_back')),
    sa.CheckConstraint("reward_type IS NULL OR reward_type IN ('points', 'coupon', 'stored_value')",
                       name=op.f('ck_referral_rewards_reward_type_known')),
    sa.CheckConstraint("status IN ('granted', 'capped', 'not_configured', 'unavailable', 'reversed', "
                       "'partly_reversed')", name=op.f('ck_referral_rewards_status_known')),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_referral_rewards_amount_not_negative')),
    _fk('referral_rewards', 'referral_id', 'referrals'), _fk('referral_rewards', 'beneficiary_id', 'members'),
    _fk('referral_rewards', 'reverses_id', 'referral_rewards'), *_tenant('referral_rewards'),
    sa.UniqueConstraint('tenant_id', 'referee_id', 'role', 'kind',
                        name=op.f('uq_referral_rewards_tenant_id_referee_id_role_kind'))
    )
    op.create_index('ix_referral_rewards_beneficiary', 'referral_rewards',
                    ['tenant_id', 'beneficiary_id', 'created_at'], unique=False)

    mh.append_only('referral_rewards')
    # Codes and referrals are written once; the rules row is replaced in place (its history is in the audit log).
    # UPDATE on codes only because SELECT … FOR UPDATE needs it: a member's code row is the lock their rewards
    # are given under.
    mh.tenant_table('referral_codes', 'SELECT, INSERT, UPDATE')
    mh.tenant_table('referrals', 'SELECT, INSERT')
    mh.tenant_table('referral_reward_rules', 'SELECT, INSERT, UPDATE')
    mh.tenant_table('referral_rewards', 'SELECT, INSERT')


def downgrade() -> None:
    op.drop_table('referral_rewards')
    op.drop_table('referral_reward_rules')
    op.drop_table('referrals')
    op.drop_table('referral_codes')
