"""patient portal: what the mini-program lists (stores, services, staff profiles, card templates) and the
privacy-policy acceptances of members who register there

Nothing existing is published: a tenant chooses what patients see (PUT …/listing) after this release.

Revision ID: 0017_patient_portal
Revises: 0016_sidebar_permissions
Create Date: 2026-12-01 19:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.core import migration_helpers as mh

revision = '0017_patient_portal'
down_revision = '0016_sidebar_permissions'
branch_labels = None
depends_on = None


def _published(table: str) -> None:
    op.add_column(table, sa.Column('published', sa.Boolean(), server_default=sa.text('false'), nullable=False))


def upgrade() -> None:
    _published('stores')
    op.add_column('stores', sa.Column('description', sa.Text(), nullable=True))
    op.add_column('stores', sa.Column('latitude', sa.Double(), nullable=True))
    op.add_column('stores', sa.Column('longitude', sa.Double(), nullable=True))
    op.add_column('stores', sa.Column('photos', sa.ARRAY(sa.Text()), server_default='{}', nullable=False))
    op.create_check_constraint(op.f('ck_stores_coordinates_paired'), 'stores',
                               '(latitude IS NULL) = (longitude IS NULL)')
    op.create_check_constraint(op.f('ck_stores_coordinates_range'), 'stores',
                               'latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180')

    _published('services')
    op.add_column('services', sa.Column('aftercare_note', sa.Text(), nullable=True))
    op.add_column('services', sa.Column('photo_url', sa.Text(), nullable=True))

    _published('staff')
    op.add_column('staff', sa.Column('title', sa.Text(), nullable=True))
    op.add_column('staff', sa.Column('bio', sa.Text(), nullable=True))
    op.add_column('staff', sa.Column('photo_url', sa.Text(), nullable=True))

    _published('card_templates')

    op.create_table('member_consents',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('version', sa.Text(), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('channel', sa.Text(), nullable=False),
    sa.Column('openid', sa.Text(), nullable=True),
    sa.CheckConstraint("kind IN ('privacy_policy')", name=op.f('ck_member_consents_kind_known')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'],
                            name=op.f('fk_member_consents_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_member_consents_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_member_consents')),
    sa.UniqueConstraint('tenant_id', 'member_id', 'kind', 'version',
                        name=op.f('uq_member_consents_tenant_id_member_id_kind_version'))
    )
    # A record of what was accepted: never changed, never removed (a withdrawal would be a new row).
    mh.tenant_table('member_consents', 'SELECT, INSERT')
    mh.append_only('member_consents')


def downgrade() -> None:
    op.drop_table('member_consents')
    op.drop_column('card_templates', 'published')
    for column in ('photo_url', 'bio', 'title', 'published'):
        op.drop_column('staff', column)
    for column in ('photo_url', 'aftercare_note', 'published'):
        op.drop_column('services', column)
    op.drop_constraint(op.f('ck_stores_coordinates_range'), 'stores', type_='check')
    op.drop_constraint(op.f('ck_stores_coordinates_paired'), 'stores', type_='check')
    for column in ('photos', 'longitude', 'latitude', 'description', 'published'):
        op.drop_column('stores', column)
