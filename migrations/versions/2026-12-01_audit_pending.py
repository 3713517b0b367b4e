"""audit_pending: every audit entry is written without the chain lock and sealed into the chain after

`audit_reads` held only reads of health data; writes chained themselves at commit under the tenant's head
lock, which serialised a tenant's writes. Both now append here; pending reads carry over.

Revision ID: 0015_audit_pending
Revises: 0014_audit_reads
Create Date: 2026-12-01 17:20:00
"""
from __future__ import annotations

from alembic import op

revision = '0015_audit_pending'
down_revision = '0014_audit_reads'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.rename_table('audit_reads', 'audit_pending')
    op.execute('ALTER TABLE audit_pending RENAME CONSTRAINT pk_audit_reads TO pk_audit_pending')
    op.execute('ALTER TABLE audit_pending RENAME CONSTRAINT fk_audit_reads_tenant_id_tenants '
               'TO fk_audit_pending_tenant_id_tenants')
    op.drop_index('ix_audit_reads_order', table_name='audit_pending')
    # Identity values are taken in the order rows are inserted; existing rows get theirs in time order.
    op.execute('ALTER TABLE audit_pending ADD COLUMN position bigint')
    op.execute('UPDATE audit_pending p SET position = o.n FROM (SELECT tenant_id, id, '
               'row_number() OVER (ORDER BY occurred_at, id) AS n FROM audit_pending) o '
               'WHERE (p.tenant_id, p.id) = (o.tenant_id, o.id)')
    op.execute('ALTER TABLE audit_pending ALTER COLUMN position SET NOT NULL')
    op.execute('ALTER TABLE audit_pending ALTER COLUMN position ADD GENERATED ALWAYS AS IDENTITY')
    op.execute("SELECT setval(pg_get_serial_sequence('audit_pending', 'position'), "
               "coalesce((SELECT max(position) FROM audit_pending), 0) + 1, false)")
    op.create_index('ix_audit_pending_position', 'audit_pending', ['position'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_pending_position', table_name='audit_pending')
    op.execute('ALTER TABLE audit_pending DROP COLUMN position')
    op.create_index('ix_audit_reads_order', 'audit_pending', ['occurred_at', 'id'], unique=False)
    op.execute('ALTER TABLE audit_pending RENAME CONSTRAINT pk_audit_pending TO pk_audit_reads')
    op.execute('ALTER TABLE audit_pending RENAME CONSTRAINT fk_audit_pending_tenant_id_tenants '
               'TO fk_audit_reads_tenant_id_tenants')
    op.rename_table('audit_pending', 'audit_reads')
