"""audit_reads: reads of protected data, recorded without the chain lock and sealed into the chain after

Revision ID: 0014_audit_reads
Revises: 0013_member_health_sharing
Create Date: 2026-12-01 14:45:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import migration_helpers as mh

revision = '0014_audit_reads'
down_revision = '0013_member_health_sharing'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_reads',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
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
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_audit_reads_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_audit_reads'))
    )
    op.create_index('ix_audit_reads_order', 'audit_reads', ['occurred_at', 'id'], unique=False)
    # The application role only appends; the sealer (the schema owner) moves rows into the chain.
    mh.tenant_table('audit_reads', 'SELECT, INSERT')


def downgrade() -> None:
    op.drop_index('ix_audit_reads_order', table_name='audit_reads')
    op.drop_table('audit_reads')
