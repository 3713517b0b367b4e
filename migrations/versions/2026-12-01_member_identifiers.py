"""external identifiers of members (HIS patient ids), for FHIR

- `member_identifiers`: (system, value) pairs other systems give a member; unique per tenant, so one
  identifier names one person. Rows move to the survivor of a merge; staff and integrations remove them.

Revision ID: 0025_member_identifiers
Revises: 0024_clinical_files
Create Date: 2026-12-01 23:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.core import migration_helpers as mh

revision = '0025_member_identifiers'
down_revision = '0024_clinical_files'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('member_identifiers',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('system', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('set_by_kind', sa.Text(), nullable=False),
    sa.Column('set_by_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'],
                            name=op.f('fk_member_identifiers_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_member_identifiers_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_member_identifiers')),
    sa.UniqueConstraint('tenant_id', 'system', 'value', name=op.f('uq_member_identifiers_tenant_id_system_value'))
    )
    op.create_index('ix_member_identifiers_member', 'member_identifiers', ['tenant_id', 'member_id'], unique=False)
    mh.tenant_table('member_identifiers', 'SELECT, INSERT, UPDATE, DELETE')


def downgrade() -> None:
    op.drop_table('member_identifiers')
