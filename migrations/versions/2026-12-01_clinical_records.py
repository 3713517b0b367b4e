"""clinical records: versioned form templates, records (draft → signed), append-only amendments

- `form_templates`: one row per version of a form (insert-only for the application role: an edit is a new
  version). The built-in forms (version 1) are installed here for every existing tenant; new tenants get
  them at creation (`clinical.service.install_builtin_templates`).
- `clinical_records`: values encrypted at rest; a signed row is refused any UPDATE by a trigger, whoever
  runs it, and DELETE is not granted.
- `clinical_amendments`: append-only (trigger), hash-chained to the record's content hash.

Revision ID: 0021_clinical_records
Revises: 0020_patient_booking
Create Date: 2026-12-01 21:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import migration_helpers as mh

revision = '0021_clinical_records'
down_revision = '0020_patient_booking'
branch_labels = None
depends_on = None


def _install_builtin_templates() -> None:
    # The definitions as the code had them at this release, normalised as the service stores them.
    import json
    import uuid

    from app.domain.clinical.builtin_templates import BUILTIN_TEMPLATES
    from app.domain.clinical.forms import FormDefinition

    bind = op.get_bind()
    tenant_ids = [row[0] for row in bind.execute(sa.text('SELECT id FROM tenants'))]
    insert = sa.text(
        'INSERT INTO form_templates (tenant_id, id, code, version, name, kind, builtin, definition) '
        'VALUES (:tenant_id, :id, :code, 1, :name, :kind, true, CAST(:definition AS jsonb)) '
        'ON CONFLICT (tenant_id, code, version) DO NOTHING')
    for builtin in BUILTIN_TEMPLATES:
        definition = json.dumps(FormDefinition.model_validate(builtin['definition'])
                                .model_dump(mode='json', exclude_none=True), ensure_ascii=False)
        for tenant_id in tenant_ids:
            bind.execute(insert, {'tenant_id': tenant_id, 'id': uuid.uuid4(), 'code': builtin['code'],
                                  'name': builtin['name'], 'kind': builtin['kind'], 'definition': definition})


def upgrade() -> None:
    op.create_table('form_templates',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('builtin', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('definition', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_by_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint('version >= 1', name=op.f('ck_form_templates_version_positive')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_form_templates_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_form_templates')),
    sa.UniqueConstraint('tenant_id', 'code', 'version', name=op.f('uq_form_templates_tenant_id_code_version'))
    )
    op.create_table('clinical_records',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('template_id', sa.Uuid(), nullable=False),
    sa.Column('template_code', sa.Text(), nullable=False),
    sa.Column('template_version', sa.Integer(), nullable=False),
    sa.Column('appointment_id', sa.Uuid(), nullable=True),
    sa.Column('service_record_id', sa.Uuid(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('values_encrypted', sa.Text(), nullable=False),
    sa.Column('author_id', sa.Uuid(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('signed_by_id', sa.Uuid(), nullable=True),
    sa.Column('content_hash', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('draft', 'signed')", name=op.f('ck_clinical_records_status_known')),
    sa.CheckConstraint("(status = 'signed') = (content_hash IS NOT NULL AND signed_at IS NOT NULL)",
                       name=op.f('ck_clinical_records_signed_has_hash')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'],
                            name=op.f('fk_clinical_records_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'template_id'], ['form_templates.tenant_id', 'form_templates.id'],
                            name=op.f('fk_clinical_records_tenant_id_template_id_form_templates')),
    sa.ForeignKeyConstraint(['tenant_id', 'appointment_id'], ['appointments.tenant_id', 'appointments.id'],
                            name=op.f('fk_clinical_records_tenant_id_appointment_id_appointments')),
    sa.ForeignKeyConstraint(['tenant_id', 'service_record_id'], ['service_records.tenant_id', 'service_records.id'],
                            name=op.f('fk_clinical_records_tenant_id_service_record_id_service_records')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_clinical_records_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_clinical_records'))
    )
    op.create_index('ix_clinical_records_member', 'clinical_records', ['tenant_id', 'member_id', 'id'], unique=False)
    op.create_table('clinical_amendments',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('record_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Uuid(), nullable=True),
    sa.Column('reason_encrypted', sa.Text(), nullable=False),
    sa.Column('values_encrypted', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.Text(), nullable=False),
    sa.Column('hash', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'record_id'], ['clinical_records.tenant_id', 'clinical_records.id'],
                            name=op.f('fk_clinical_amendments_tenant_id_record_id_clinical_records')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_clinical_amendments_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_clinical_amendments')),
    sa.UniqueConstraint('tenant_id', 'record_id', 'seq', name=op.f('uq_clinical_amendments_tenant_id_record_id_seq'))
    )

    # A signed record is final: no UPDATE reaches it, whoever runs it (corrections are amendments).
    op.execute(
        """
        CREATE OR REPLACE FUNCTION careloop_signed_record_final() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF OLD.status = 'signed' THEN
            RAISE EXCEPTION 'clinical record % is signed', OLD.id USING ERRCODE = 'insufficient_privilege';
          END IF;
          RETURN NEW;
        END $$;
        """
    )
    op.execute("CREATE TRIGGER clinical_records_signed_final BEFORE UPDATE ON clinical_records "
               "FOR EACH ROW EXECUTE FUNCTION careloop_signed_record_final()")
    mh.append_only('clinical_amendments')

    mh.tenant_table('form_templates', 'SELECT, INSERT')
    mh.tenant_table('clinical_records', 'SELECT, INSERT, UPDATE')
    mh.tenant_table('clinical_amendments', 'SELECT, INSERT')
    _install_builtin_templates()


def downgrade() -> None:
    op.drop_table('clinical_amendments')
    op.execute('DROP TRIGGER IF EXISTS clinical_records_signed_final ON clinical_records')
    op.drop_table('clinical_records')
    op.execute('DROP FUNCTION IF EXISTS careloop_signed_record_final()')
    op.drop_table('form_templates')
