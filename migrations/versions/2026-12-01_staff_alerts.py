"""staff alerts: which kinds of WeCom alerts to staff a tenant has switched off

A kind without a row is on, so existing tenants get every alert kind from this release on.

Revision ID: 0018_staff_alerts
Revises: 0017_patient_portal
Create Date: 2026-12-01 20:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.core import migration_helpers as mh

revision = '0018_staff_alerts'
down_revision = '0017_patient_portal'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('staff_alert_settings',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_by_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_staff_alert_settings_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'kind', name=op.f('pk_staff_alert_settings'))
    )
    mh.tenant_table('staff_alert_settings')


def downgrade() -> None:
    op.drop_table('staff_alert_settings')
