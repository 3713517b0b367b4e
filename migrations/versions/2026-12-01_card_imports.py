"""card imports: prepaid cards, points and visit history from the old system; members' other phone

`card_imports` keeps each run (dry or real) with its totals and report; `card_import_refs` holds every old-system
reference already imported, keyed (tenant, kind, reference), so a second run of the same file writes nothing.
The points ledger gains the `migration` kind (the opening balance carried over), and members a second contact
number (a landline), encrypted like the phone. Preset roles that hold the new `cards:import` permission get it
in existing tenants (owner and store manager hold every permission they do not exclude; finance reconciles).

Revision ID: 0019_card_imports
Revises: 0018_staff_alerts
Create Date: 2026-12-01 20:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import migration_helpers as mh

revision = '0019_card_imports'
down_revision = '0018_staff_alerts'
branch_labels = None
depends_on = None

NEW_PERMISSIONS = ['cards:import']
PRESETS = ['owner', 'store_manager', 'finance']
POINTS_KINDS_BEFORE = "kind IN ('earn', 'redeem', 'reverse', 'adjust', 'expire', 'merge')"
POINTS_KINDS = "kind IN ('earn', 'redeem', 'reverse', 'adjust', 'expire', 'merge', 'migration')"


def upgrade() -> None:
    op.add_column('members', sa.Column('other_phone_encrypted', sa.Text(), nullable=True))
    op.add_column('members', sa.Column('other_phone_index', sa.Text(), nullable=True))
    op.add_column('members', sa.Column('other_phone_masked', sa.Text(), nullable=True))
    op.create_index('ix_members_other_phone_index', 'members', ['tenant_id', 'other_phone_index'], unique=False)

    op.drop_constraint(op.f('ck_points_ledger_kind_known'), 'points_ledger', type_='check')
    op.create_check_constraint(op.f('ck_points_ledger_kind_known'), 'points_ledger', POINTS_KINDS)

    op.create_table('card_imports',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('filename', sa.Text(), nullable=False),
    sa.Column('file_sha256', sa.Text(), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('skip_bad_rows', sa.Boolean(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('error_count', sa.Integer(), nullable=False),
    sa.Column('totals', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('report', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_card_imports_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_card_imports'))
    )
    op.create_table('card_import_refs',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('external_ref', sa.Text(), nullable=False),
    sa.Column('target_id', sa.Uuid(), nullable=False),
    sa.Column('import_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('card', 'points', 'visit')", name=op.f('ck_card_import_refs_kind_known')),
    sa.ForeignKeyConstraint(['tenant_id', 'import_id'], ['card_imports.tenant_id', 'card_imports.id'],
                            name=op.f('fk_card_import_refs_tenant_id_import_id_card_imports')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_card_import_refs_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'kind', 'external_ref', name=op.f('pk_card_import_refs'))
    )
    op.create_index('ix_card_import_refs_import', 'card_import_refs', ['tenant_id', 'import_id', 'kind'],
                    unique=False)
    mh.tenant_table('card_imports', 'SELECT, INSERT')
    # What was imported stays imported: the references are append-only, like the ledgers they opened.
    mh.tenant_table('card_import_refs', 'SELECT, INSERT')
    mh.append_only('card_import_refs')

    mh.grant_preset_permissions(NEW_PERMISSIONS, PRESETS)


def downgrade() -> None:
    mh.revoke_preset_permissions(NEW_PERMISSIONS)
    op.drop_index('ix_card_import_refs_import', table_name='card_import_refs')
    op.drop_table('card_import_refs')
    op.drop_table('card_imports')
    op.drop_constraint(op.f('ck_points_ledger_kind_known'), 'points_ledger', type_='check')
    op.create_check_constraint(op.f('ck_points_ledger_kind_known'), 'points_ledger', POINTS_KINDS_BEFORE)
    op.drop_index('ix_members_other_phone_index', table_name='members')
    op.drop_column('members', 'other_phone_masked')
    op.drop_column('members', 'other_phone_index')
    op.drop_column('members', 'other_phone_encrypted')
