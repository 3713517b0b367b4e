"""consent templates (versioned text), signed consents and their withdrawals; services that require one

- `consent_templates`: one row per version of a consent text (insert-only for the application role: an edit is
  a new version). The built-in consents (version 1) are installed here for every existing tenant; new tenants
  get them at creation (`clinical.consents.install_builtin_consents`).
- `signed_consents`: the signature and device details encrypted at rest; refused any UPDATE or DELETE by a
  trigger, whoever runs it, and the app role is granted neither.
- `consent_withdrawals`: append-only (trigger), one per consent, hash-chained to the consent.
- `service_consent_requirements`: clinical's own setting per service (catalog is untouched).

Revision ID: 0023_consents
Revises: 0022_treatment_plans
Create Date: 2026-12-01 23:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.core import migration_helpers as mh

revision = '0023_consents'
down_revision = '0022_treatment_plans'
branch_labels = None
depends_on = None


def _install_builtin_consents() -> None:
    # The texts as the code had them at this release.
    import uuid

    from app.domain.clinical.builtin_consents import BUILTIN_CONSENTS

    bind = op.get_bind()
    tenant_ids = [row[0] for row in bind.execute(sa.text('SELECT id FROM tenants'))]
    insert = sa.text(
        'INSERT INTO consent_templates (tenant_id, id, code, version, title, body, builtin) '
        'VALUES (:tenant_id, :id, :code, 1, :title, :body, true) '
        'ON CONFLICT (tenant_id, code, version) DO NOTHING')
    for builtin in BUILTIN_CONSENTS:
        for tenant_id in tenant_ids:
            bind.execute(insert, {'tenant_id': tenant_id, 'id': uuid.uuid4(), 'code': builtin['code'],
                                  'title': builtin['title'], 'body': builtin['body']})


def upgrade() -> None:
    op.create_table('consent_templates',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('builtin', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_by_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint('version >= 1', name=op.f('ck_consent_templates_version_positive')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_consent_templates_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_consent_templates')),
    sa.UniqueConstraint('tenant_id', 'code', 'version', name=op.f('uq_consent_templates_tenant_id_code_version'))
    )
    op.create_table('signed_consents',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('template_id', sa.Uuid(), nullable=False),
    sa.Column('template_code', sa.Text(), nullable=False),
    sa.Column('template_version', sa.Integer(), nullable=False),
    sa.Column('text_hash', sa.Text(), nullable=False),
    sa.Column('signature_encrypted', sa.Text(), nullable=False),
    sa.Column('signature_hash', sa.Text(), nullable=False),
    sa.Column('device_encrypted', sa.Text(), nullable=False),
    sa.Column('signed_by_kind', sa.Text(), nullable=False),
    sa.Column('signed_by_id', sa.Uuid(), nullable=False),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('content_hash', sa.Text(), nullable=False),
    sa.CheckConstraint("signed_by_kind IN ('patient', 'staff')", name=op.f('ck_signed_consents_signer_kind_known')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'],
                            name=op.f('fk_signed_consents_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'template_id'], ['consent_templates.tenant_id', 'consent_templates.id'],
                            name=op.f('fk_signed_consents_tenant_id_template_id_consent_templates')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_signed_consents_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_signed_consents'))
    )
    op.create_index('ix_signed_consents_member_code', 'signed_consents', ['tenant_id', 'member_id', 'template_code'],
                    unique=False)
    op.create_table('consent_withdrawals',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('consent_id', sa.Uuid(), nullable=False),
    sa.Column('withdrawn_by_kind', sa.Text(), nullable=False),
    sa.Column('withdrawn_by_id', sa.Uuid(), nullable=False),
    sa.Column('reason_encrypted', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.Text(), nullable=False),
    sa.Column('hash', sa.Text(), nullable=False),
    sa.CheckConstraint("withdrawn_by_kind IN ('patient', 'staff')",
                       name=op.f('ck_consent_withdrawals_withdrawer_kind_known')),
    sa.ForeignKeyConstraint(['tenant_id', 'consent_id'], ['signed_consents.tenant_id', 'signed_consents.id'],
                            name=op.f('fk_consent_withdrawals_tenant_id_consent_id_signed_consents')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_consent_withdrawals_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_consent_withdrawals')),
    sa.UniqueConstraint('tenant_id', 'consent_id', name=op.f('uq_consent_withdrawals_tenant_id_consent_id'))
    )
    op.create_table('service_consent_requirements',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('template_code', sa.Text(), nullable=False),
    sa.Column('required_before', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_by_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint("required_before IN ('booking', 'completion')",
                       name=op.f('ck_service_consent_requirements_required_before_known')),
    sa.ForeignKeyConstraint(['tenant_id', 'service_id'], ['services.tenant_id', 'services.id'],
                            name=op.f('fk_service_consent_requirements_tenant_id_service_id_services')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'],
                            name=op.f('fk_service_consent_requirements_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'service_id', name=op.f('pk_service_consent_requirements'))
    )

    # A signed consent is final, whoever runs the statement: withdrawing it is a row of its own.
    mh.append_only('signed_consents')
    mh.append_only('consent_withdrawals')

    mh.tenant_table('consent_templates', 'SELECT, INSERT')
    mh.tenant_table('signed_consents', 'SELECT, INSERT')
    mh.tenant_table('consent_withdrawals', 'SELECT, INSERT')
    mh.tenant_table('service_consent_requirements', 'SELECT, INSERT, UPDATE, DELETE')
    _install_builtin_consents()


def downgrade() -> None:
    op.drop_table('service_consent_requirements')
    op.drop_table('consent_withdrawals')
    op.drop_table('signed_consents')
    op.drop_table('consent_templates')
