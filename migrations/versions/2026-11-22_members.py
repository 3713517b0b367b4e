"""members

Revision ID: 0002_members
Revises: 0001_platform
Create Date: 2026-11-22 07:40:46.555677
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import migration_helpers as mh

revision = '0002_members'
down_revision = '0001_platform'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('member_field_definitions',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('label', sa.Text(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('required', sa.Boolean(), nullable=False),
    sa.Column('options', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('min_value', sa.Float(), nullable=True),
    sa.Column('max_value', sa.Float(), nullable=True),
    sa.Column('max_length', sa.Integer(), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('health', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('help_text', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_member_field_definitions_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_member_field_definitions')),
    sa.UniqueConstraint('tenant_id', 'key', name=op.f('uq_member_field_definitions_tenant_id_key'))
    )
    op.create_table('member_imports',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('filename', sa.Text(), nullable=False),
    sa.Column('file_sha256', sa.Text(), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('mode', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('total_rows', sa.Integer(), nullable=False),
    sa.Column('created_count', sa.Integer(), nullable=False),
    sa.Column('updated_count', sa.Integer(), nullable=False),
    sa.Column('skipped_count', sa.Integer(), nullable=False),
    sa.Column('error_count', sa.Integer(), nullable=False),
    sa.Column('report', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_member_imports_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_member_imports'))
    )
    op.create_table('tag_groups',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('exclusive', sa.Boolean(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_tag_groups_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_tag_groups')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_tag_groups_tenant_id_name'))
    )
    op.create_table('tag_synonyms',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('synonym', sa.Text(), nullable=False),
    sa.Column('tag_name', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_tag_synonyms_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_tag_synonyms')),
    sa.UniqueConstraint('tenant_id', 'synonym', name=op.f('uq_tag_synonyms_tenant_id_synonym'))
    )
    op.create_table('members',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('pinyin_initials', sa.Text(), nullable=False),
    sa.Column('pinyin_full', sa.Text(), nullable=False),
    sa.Column('phone_encrypted', sa.Text(), nullable=True),
    sa.Column('phone_index', sa.Text(), nullable=True),
    sa.Column('phone_masked', sa.Text(), nullable=True),
    sa.Column('id_number_encrypted', sa.Text(), nullable=True),
    sa.Column('id_number_index', sa.Text(), nullable=True),
    sa.Column('id_number_masked', sa.Text(), nullable=True),
    sa.Column('gender', sa.Text(), nullable=True),
    sa.Column('birthday', sa.Date(), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('source_channel', sa.Text(), nullable=True),
    sa.Column('referrer_id', sa.Uuid(), nullable=True),
    sa.Column('owner_staff_id', sa.Uuid(), nullable=True),
    sa.Column('home_store_id', sa.Uuid(), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('allergy_history', sa.Text(), nullable=True),
    sa.Column('past_history', sa.Text(), nullable=True),
    sa.Column('family_history', sa.Text(), nullable=True),
    sa.Column('constitution', sa.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('health_summary', sa.Text(), nullable=True),
    sa.Column('custom_fields', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('family_group_id', sa.Uuid(), nullable=True),
    sa.Column('family_role', sa.Text(), nullable=True),
    sa.Column('family_relation', sa.Text(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('merged_into_id', sa.Uuid(), nullable=True),
    sa.Column('last_visit_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('external_ref', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id', 'home_store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_members_tenant_id_home_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id', 'merged_into_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_members_tenant_id_merged_into_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'owner_staff_id'], ['staff.tenant_id', 'staff.id'], name=op.f('fk_members_tenant_id_owner_staff_id_staff')),
    sa.ForeignKeyConstraint(['tenant_id', 'referrer_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_members_tenant_id_referrer_id_members')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_members_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_members')),
    sa.UniqueConstraint('tenant_id', 'phone_index', name=op.f('uq_members_tenant_id_phone_index'))
    )
    op.create_index('ix_members_family', 'members', ['tenant_id', 'family_group_id'], unique=False)
    op.create_index('ix_members_home_store', 'members', ['tenant_id', 'home_store_id', 'id'], unique=False)
    op.create_index('ix_members_id_index', 'members', ['tenant_id', 'id_number_index'], unique=False)
    op.create_index('ix_members_last_visit', 'members', ['tenant_id', 'last_visit_at'], unique=False)
    op.create_index('ix_members_name', 'members', ['tenant_id', 'name'], unique=False, postgresql_ops={'name': 'text_pattern_ops'})
    op.create_index('ix_members_name_birthday', 'members', ['tenant_id', 'name', 'birthday'], unique=False)
    op.create_index('ix_members_owner_staff', 'members', ['tenant_id', 'owner_staff_id', 'id'], unique=False)
    op.create_index('ix_members_pinyin_full', 'members', ['tenant_id', 'pinyin_full'], unique=False, postgresql_ops={'pinyin_full': 'text_pattern_ops'})
    op.create_index('ix_members_pinyin_initials', 'members', ['tenant_id', 'pinyin_initials'], unique=False, postgresql_ops={'pinyin_initials': 'text_pattern_ops'})
    op.create_table('tags',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('group_id', sa.Uuid(), nullable=True),
    sa.Column('color', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id', 'group_id'], ['tag_groups.tenant_id', 'tag_groups.id'], name=op.f('fk_tags_tenant_id_group_id_tag_groups')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_tags_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_tags')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_tags_tenant_id_name'))
    )
    op.create_table('family_groups',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('head_member_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'head_member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_family_groups_tenant_id_head_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_family_groups_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_family_groups'))
    )
    op.create_table('member_notes',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('author_type', sa.Text(), nullable=False),
    sa.Column('author_id', sa.Uuid(), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_member_notes_tenant_id_member_id_members'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_member_notes_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_member_notes'))
    )
    op.create_index('ix_member_notes_member', 'member_notes', ['tenant_id', 'member_id', 'created_at'], unique=False)
    op.create_table('member_tags',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('tag_id', sa.Uuid(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_member_tags_tenant_id_member_id_members'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'tag_id'], ['tags.tenant_id', 'tags.id'], name=op.f('fk_member_tags_tenant_id_tag_id_tags'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_member_tags_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'member_id', 'tag_id', name=op.f('pk_member_tags'))
    )
    op.create_index('ix_member_tags_tag', 'member_tags', ['tenant_id', 'tag_id', 'member_id'], unique=False)
    for table in ("members", "tag_groups", "tags", "member_tags", "tag_synonyms", "member_field_definitions",
                  "family_groups", "member_notes", "member_imports"):
        mh.tenant_table(table)


def downgrade() -> None:
    op.drop_index('ix_member_tags_tag', table_name='member_tags')
    op.drop_table('member_tags')
    op.drop_index('ix_member_notes_member', table_name='member_notes')
    op.drop_table('member_notes')
    op.drop_table('family_groups')
    op.drop_table('tags')
    op.drop_index('ix_members_pinyin_initials', table_name='members', postgresql_ops={'pinyin_initials': 'text_pattern_ops'})
    op.drop_index('ix_members_pinyin_full', table_name='members', postgresql_ops={'pinyin_full': 'text_pattern_ops'})
    op.drop_index('ix_members_owner_staff', table_name='members')
    op.drop_index('ix_members_name_birthday', table_name='members')
    op.drop_index('ix_members_name', table_name='members', postgresql_ops={'name': 'text_pattern_ops'})
    op.drop_index('ix_members_last_visit', table_name='members')
    op.drop_index('ix_members_id_index', table_name='members')
    op.drop_index('ix_members_home_store', table_name='members')
    op.drop_index('ix_members_family', table_name='members')
    op.drop_table('members')
    op.drop_table('tag_synonyms')
    op.drop_table('tag_groups')
    op.drop_table('member_imports')
    op.drop_table('member_field_definitions')
