"""patient booking and paying: waitlist offers hold their slot, coupons published for claiming, consent records,
one prepay per appointment

- A waitlist offer now holds the offered slot for the member until `hold_expires_at`: its holds are
  `appointment_holds` rows owned by the waitlist entry (`waitlist_entry_id`) instead of an appointment, so
  the exclusion constraint refuses anyone else's booking of that time meanwhile.
- `coupon_publications` / `coupon_claims`: coupon templates published for patients to claim (领券中心).
- `message_consent_records`: each answer to `wx.requestSubscribeMessage`, append-only.
- `uq_orders_patient_appointment`: one open or paid mini-program order per booked appointment.

Revision ID: 0020_patient_booking
Revises: 0019_card_imports
Create Date: 2026-12-01 19:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.core import migration_helpers as mh

revision = '0020_patient_booking'
down_revision = '0019_card_imports'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Waitlist offers hold their slot.
    op.add_column('waitlist_entries', sa.Column('offered_staff_id', sa.Uuid(), nullable=True))
    op.add_column('waitlist_entries', sa.Column('hold_expires_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_waitlist_entries_hold_expiry', 'waitlist_entries', ['hold_expires_at'], unique=False,
                    postgresql_where=sa.text("status = 'offered'"))
    op.alter_column('appointment_holds', 'appointment_id', existing_type=sa.Uuid(), nullable=True)
    op.add_column('appointment_holds', sa.Column('waitlist_entry_id', sa.Uuid(), nullable=True))
    op.create_foreign_key(op.f('fk_appointment_holds_tenant_id_waitlist_entry_id_waitlist_entries'),
                          'appointment_holds', 'waitlist_entries', ['tenant_id', 'waitlist_entry_id'],
                          ['tenant_id', 'id'], ondelete='CASCADE')
    op.create_check_constraint(op.f('ck_appointment_holds_one_owner'), 'appointment_holds',
                               '(appointment_id IS NULL) <> (waitlist_entry_id IS NULL)')
    op.create_index('ix_appointment_holds_waitlist_entry', 'appointment_holds', ['tenant_id', 'waitlist_entry_id'],
                    unique=False)

    # Coupons published for claiming.
    op.create_table('coupon_publications',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('template_id', sa.Uuid(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('total_quantity', sa.Integer(), nullable=True),
    sa.Column('per_member_limit', sa.Integer(), nullable=False),
    sa.Column('claimed_count', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('claimed_count >= 0 AND (total_quantity IS NULL OR claimed_count <= total_quantity)',
                       name=op.f('ck_coupon_publications_claimed_within_total')),
    sa.CheckConstraint('ends_at IS NULL OR ends_at > starts_at', name=op.f('ck_coupon_publications_window_order')),
    sa.CheckConstraint('per_member_limit BETWEEN 1 AND 10', name=op.f('ck_coupon_publications_per_member_limit_range')),
    sa.CheckConstraint('total_quantity IS NULL OR total_quantity > 0',
                       name=op.f('ck_coupon_publications_total_quantity_positive')),
    sa.ForeignKeyConstraint(['tenant_id', 'template_id'], ['coupon_templates.tenant_id', 'coupon_templates.id'],
                            name=op.f('fk_coupon_publications_tenant_id_template_id_coupon_templates')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_coupon_publications_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_coupon_publications'))
    )
    op.create_index('ix_coupon_publications_open', 'coupon_publications', ['tenant_id', 'active', 'starts_at'],
                    unique=False)
    op.create_table('coupon_claims',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('publication_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('claim_no', sa.Integer(), nullable=False),
    sa.Column('coupon_id', sa.Uuid(), nullable=False),
    sa.CheckConstraint('claim_no >= 1', name=op.f('ck_coupon_claims_claim_no_positive')),
    sa.ForeignKeyConstraint(['tenant_id', 'coupon_id'], ['coupons.tenant_id', 'coupons.id'],
                            name=op.f('fk_coupon_claims_tenant_id_coupon_id_coupons')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'],
                            name=op.f('fk_coupon_claims_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'publication_id'],
                            ['coupon_publications.tenant_id', 'coupon_publications.id'],
                            name=op.f('fk_coupon_claims_tenant_id_publication_id_coupon_publications')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_coupon_claims_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_coupon_claims')),
    sa.UniqueConstraint('tenant_id', 'coupon_id', name=op.f('uq_coupon_claims_tenant_id_coupon_id')),
    sa.UniqueConstraint('tenant_id', 'publication_id', 'member_id', 'claim_no',
                        name=op.f('uq_coupon_claims_tenant_id_publication_id_member_id_claim_no'))
    )
    op.create_index('ix_coupon_claims_member', 'coupon_claims', ['tenant_id', 'member_id'], unique=False)

    # Subscribe-message answers, as given.
    op.create_table('message_consent_records',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('wechat_template_id', sa.Text(), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.Column('template_key', sa.Text(), nullable=True),
    sa.Column('scene', sa.Text(), nullable=True),
    sa.CheckConstraint("result IN ('accept', 'reject', 'ban', 'filter')",
                       name=op.f('ck_message_consent_records_result_known')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'],
                            name=op.f('fk_message_consent_records_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_message_consent_records_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_message_consent_records'))
    )
    op.create_index('ix_message_consent_records_member', 'message_consent_records',
                    ['tenant_id', 'member_id', 'created_at'], unique=False)

    # One prepay per appointment from the mini-program.
    op.create_index('uq_orders_patient_appointment', 'orders', ['tenant_id', 'appointment_id'], unique=True,
                    postgresql_where=sa.text("opened_by_kind = 'patient' AND appointment_id IS NOT NULL "
                                             "AND status IN ('pending', 'paid', 'partially_refunded')"))

    mh.tenant_table('coupon_publications')
    mh.tenant_table('coupon_claims', 'SELECT, INSERT')
    mh.tenant_table('message_consent_records', 'SELECT, INSERT')
    mh.append_only('message_consent_records')


def downgrade() -> None:
    op.drop_index('uq_orders_patient_appointment', table_name='orders')
    op.drop_index('ix_message_consent_records_member', table_name='message_consent_records')
    op.drop_table('message_consent_records')
    op.drop_index('ix_coupon_claims_member', table_name='coupon_claims')
    op.drop_table('coupon_claims')
    op.drop_index('ix_coupon_publications_open', table_name='coupon_publications')
    op.drop_table('coupon_publications')
    op.drop_index('ix_appointment_holds_waitlist_entry', table_name='appointment_holds')
    op.drop_constraint(op.f('ck_appointment_holds_one_owner'), 'appointment_holds', type_='check')
    op.drop_constraint(op.f('fk_appointment_holds_tenant_id_waitlist_entry_id_waitlist_entries'),
                       'appointment_holds', type_='foreignkey')
    op.execute('DELETE FROM appointment_holds WHERE appointment_id IS NULL')
    op.drop_column('appointment_holds', 'waitlist_entry_id')
    op.alter_column('appointment_holds', 'appointment_id', existing_type=sa.Uuid(), nullable=False)
    op.drop_index('ix_waitlist_entries_hold_expiry', table_name='waitlist_entries')
    op.drop_column('waitlist_entries', 'hold_expires_at')
    op.drop_column('waitlist_entries', 'offered_staff_id')
