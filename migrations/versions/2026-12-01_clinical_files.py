"""stored files and clinical photos (before/after per treatment area)

- `clinical_photos`: one metadata row per checked and stored file (photo or attachment) of a member; the bytes
  are in the file store (app.core.files) under `storage_key` (and `thumbnail_key`). Append-only (trigger):
  a photo is never edited, a wrong one is superseded by a new upload.

Revision ID: 0024_clinical_files
Revises: 0023_consents
Create Date: 2026-12-01 23:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.core import migration_helpers as mh

revision = '0024_clinical_files'
down_revision = '0023_consents'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('clinical_photos',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('treatment_area', sa.Text(), nullable=False),
    sa.Column('phase', sa.Text(), nullable=False),
    sa.Column('taken_on', sa.Date(), nullable=False),
    sa.Column('appointment_id', sa.Uuid(), nullable=True),
    sa.Column('service_record_id', sa.Uuid(), nullable=True),
    sa.Column('clinical_record_id', sa.Uuid(), nullable=True),
    sa.Column('staff_only', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('note_encrypted', sa.Text(), nullable=True),
    sa.Column('filename_encrypted', sa.Text(), nullable=True),
    sa.Column('content_type', sa.Text(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.Text(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('storage_key', sa.Text(), nullable=False),
    sa.Column('thumbnail_key', sa.Text(), nullable=True),
    sa.Column('uploaded_by_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint("kind IN ('photo', 'attachment')", name=op.f('ck_clinical_photos_kind_known')),
    sa.CheckConstraint("phase IN ('before', 'during', 'after')", name=op.f('ck_clinical_photos_phase_known')),
    sa.CheckConstraint('size_bytes > 0', name=op.f('ck_clinical_photos_size_positive')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'],
                            name=op.f('fk_clinical_photos_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'appointment_id'], ['appointments.tenant_id', 'appointments.id'],
                            name=op.f('fk_clinical_photos_tenant_id_appointment_id_appointments')),
    sa.ForeignKeyConstraint(['tenant_id', 'service_record_id'], ['service_records.tenant_id', 'service_records.id'],
                            name=op.f('fk_clinical_photos_tenant_id_service_record_id_service_records')),
    sa.ForeignKeyConstraint(['tenant_id', 'clinical_record_id'], ['clinical_records.tenant_id', 'clinical_records.id'],
                            name=op.f('fk_clinical_photos_tenant_id_clinical_record_id_clinical_records')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_clinical_photos_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_clinical_photos')),
    sa.UniqueConstraint('tenant_id', 'storage_key', name=op.f('uq_clinical_photos_tenant_id_storage_key'))
    )
    op.create_index('ix_clinical_photos_member', 'clinical_photos', ['tenant_id', 'member_id', 'id'], unique=False)
    op.create_index('ix_clinical_photos_member_area', 'clinical_photos',
                    ['tenant_id', 'member_id', 'treatment_area', 'taken_on'], unique=False)
    mh.append_only('clinical_photos')
    mh.tenant_table('clinical_photos', 'SELECT, INSERT')


def downgrade() -> None:
    op.drop_table('clinical_photos')
