"""booking: resources, schedules, appointments and their holds

Revision ID: 0005_booking
Revises: 0004_cards_visits
Create Date: 2026-11-27 23:40:55.283930
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import migration_helpers as mh

revision = '0005_booking'
down_revision = '0004_cards_visits'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bookables',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('bookable_no', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('ref_id', sa.Uuid(), nullable=False),
    sa.CheckConstraint("kind IN ('staff', 'resource')", name=op.f('ck_bookables_kind_known')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_bookables_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'bookable_no', name=op.f('pk_bookables')),
    sa.UniqueConstraint('tenant_id', 'kind', 'ref_id', name=op.f('uq_bookables_tenant_id_kind_ref_id'))
    )
    op.create_table('booking_policies',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('slot_step_minutes', sa.Integer(), nullable=False),
    sa.Column('lead_time_minutes', sa.Integer(), nullable=False),
    sa.Column('horizon_days', sa.Integer(), nullable=False),
    sa.Column('cancel_window_hours', sa.Integer(), nullable=False),
    sa.Column('late_cancel_action', sa.Text(), nullable=False),
    sa.Column('late_cancel_fee', sa.BigInteger(), nullable=False),
    sa.Column('no_show_action', sa.Text(), nullable=False),
    sa.Column('no_show_fee', sa.BigInteger(), nullable=False),
    sa.Column('reminder_hours_before', sa.Integer(), nullable=False),
    sa.Column('follow_up_hours_after', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("late_cancel_action IN ('none', 'fee', 'deduct_session')", name=op.f('ck_booking_policies_late_cancel_known')),
    sa.CheckConstraint("no_show_action IN ('none', 'fee', 'deduct_session')", name=op.f('ck_booking_policies_no_show_known')),
    sa.CheckConstraint('lead_time_minutes >= 0 AND horizon_days BETWEEN 1 AND 365', name=op.f('ck_booking_policies_window_range')),
    sa.CheckConstraint('no_show_fee >= 0 AND late_cancel_fee >= 0', name=op.f('ck_booking_policies_fees_not_negative')),
    sa.CheckConstraint('slot_step_minutes BETWEEN 5 AND 240', name=op.f('ck_booking_policies_step_range')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_booking_policies_tenant_id_store_id_stores'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_booking_policies_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'store_id', name=op.f('pk_booking_policies'))
    )
    op.create_table('calendar_feeds',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.Text(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id', 'staff_id'], ['staff.tenant_id', 'staff.id'], name=op.f('fk_calendar_feeds_tenant_id_staff_id_staff'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_calendar_feeds_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_calendar_feeds')),
    sa.UniqueConstraint('tenant_id', 'token_hash', name=op.f('uq_calendar_feeds_tenant_id_token_hash'))
    )
    op.create_table('resources',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('pool', sa.Text(), nullable=True),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('bookable_no', sa.BigInteger(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('room', 'bed', 'device')", name=op.f('ck_resources_kind_known')),
    sa.CheckConstraint('capacity BETWEEN 1 AND 100', name=op.f('ck_resources_capacity_range')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_resources_tenant_id_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_resources_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_resources')),
    sa.UniqueConstraint('tenant_id', 'store_id', 'name', name=op.f('uq_resources_tenant_id_store_id_name'))
    )
    op.create_index('ix_resources_store', 'resources', ['tenant_id', 'store_id', 'active'], unique=False)
    op.create_table('shift_patterns',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('weekdays', sa.ARRAY(sa.SmallInteger()), nullable=False),
    sa.Column('starts', sa.Time(), nullable=False),
    sa.Column('ends', sa.Time(), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'staff_id'], ['staff.tenant_id', 'staff.id'], name=op.f('fk_shift_patterns_tenant_id_staff_id_staff')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_shift_patterns_tenant_id_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_shift_patterns_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_shift_patterns'))
    )
    op.create_index('ix_shift_patterns_store', 'shift_patterns', ['tenant_id', 'store_id'], unique=False)
    op.create_table('shifts',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.CheckConstraint("ends_at > starts_at AND ends_at <= starts_at + interval '24 hours'", name=op.f('ck_shifts_span')),
    sa.ForeignKeyConstraint(['tenant_id', 'staff_id'], ['staff.tenant_id', 'staff.id'], name=op.f('fk_shifts_tenant_id_staff_id_staff')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_shifts_tenant_id_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_shifts_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_shifts'))
    )
    op.create_index('ix_shifts_staff_time', 'shifts', ['tenant_id', 'staff_id', 'starts_at'], unique=False)
    op.create_index('ix_shifts_store_time', 'shifts', ['tenant_id', 'store_id', 'starts_at'], unique=False)
    op.create_table('staff_skills',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'service_id'], ['services.tenant_id', 'services.id'], name=op.f('fk_staff_skills_tenant_id_service_id_services')),
    sa.ForeignKeyConstraint(['tenant_id', 'staff_id'], ['staff.tenant_id', 'staff.id'], name=op.f('fk_staff_skills_tenant_id_staff_id_staff'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_staff_skills_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'staff_id', 'service_id', name=op.f('pk_staff_skills'))
    )
    op.create_index('ix_staff_skills_service', 'staff_skills', ['tenant_id', 'service_id'], unique=False)
    op.create_table('store_closures',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_store_closures_tenant_id_store_id_stores'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_store_closures_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_store_closures')),
    sa.UniqueConstraint('tenant_id', 'store_id', 'day', name=op.f('uq_store_closures_tenant_id_store_id_day'))
    )
    op.create_table('store_hours',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('weekday', sa.SmallInteger(), nullable=False),
    sa.Column('opens', sa.Time(), nullable=False),
    sa.Column('closes', sa.Time(), nullable=False),
    sa.CheckConstraint('weekday BETWEEN 1 AND 7', name=op.f('ck_store_hours_weekday_range')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_store_hours_tenant_id_store_id_stores'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_store_hours_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_store_hours'))
    )
    op.create_index('ix_store_hours_store', 'store_hours', ['tenant_id', 'store_id', 'weekday'], unique=False)
    op.create_table('time_off',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.CheckConstraint("kind IN ('leave', 'break')", name=op.f('ck_time_off_kind_known')),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_time_off_span')),
    sa.ForeignKeyConstraint(['tenant_id', 'staff_id'], ['staff.tenant_id', 'staff.id'], name=op.f('fk_time_off_tenant_id_staff_id_staff')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_time_off_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_time_off'))
    )
    op.create_index('ix_time_off_staff_time', 'time_off', ['tenant_id', 'staff_id', 'starts_at'], unique=False)
    op.create_table('appointments',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('visit_id', sa.Uuid(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('blocked_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('channel', sa.Text(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('booked_by_kind', sa.Text(), nullable=False),
    sa.Column('booked_by_id', sa.Uuid(), nullable=True),
    sa.Column('cancel_reason', sa.Text(), nullable=True),
    sa.Column('service_record_id', sa.Uuid(), nullable=True),
    sa.Column('schedule_version', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("channel IN ('mini_program', 'wecom', 'front_desk', 'phone', 'his')", name=op.f('ck_appointments_channel_known')),
    sa.CheckConstraint("status IN ('booked', 'checked_in', 'completed', 'cancelled', 'no_show')", name=op.f('ck_appointments_status_known')),
    sa.CheckConstraint('ends_at > starts_at AND blocked_until >= ends_at', name=op.f('ck_appointments_span')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_appointments_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'service_id'], ['services.tenant_id', 'services.id'], name=op.f('fk_appointments_tenant_id_service_id_services')),
    sa.ForeignKeyConstraint(['tenant_id', 'staff_id'], ['staff.tenant_id', 'staff.id'], name=op.f('fk_appointments_tenant_id_staff_id_staff')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_appointments_tenant_id_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_appointments_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_appointments'))
    )
    op.create_index('ix_appointments_member_time', 'appointments', ['tenant_id', 'member_id', 'starts_at'], unique=False)
    op.create_index('ix_appointments_staff_time', 'appointments', ['tenant_id', 'staff_id', 'starts_at'], unique=False)
    op.create_index('ix_appointments_store_time', 'appointments', ['tenant_id', 'store_id', 'starts_at'], unique=False)
    op.create_index('ix_appointments_visit', 'appointments', ['tenant_id', 'visit_id'], unique=False)
    op.create_table('shift_exceptions',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('pattern_id', sa.Uuid(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id', 'pattern_id'], ['shift_patterns.tenant_id', 'shift_patterns.id'], name=op.f('fk_shift_exceptions_tenant_id_pattern_id_shift_patterns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_shift_exceptions_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_shift_exceptions')),
    sa.UniqueConstraint('tenant_id', 'pattern_id', 'day', name=op.f('uq_shift_exceptions_tenant_id_pattern_id_day'))
    )
    op.create_table('waitlist_entries',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=True),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('offered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('offered_starts_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('appointment_id', sa.Uuid(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('waiting', 'offered', 'booked', 'cancelled', 'expired')", name=op.f('ck_waitlist_entries_status_known')),
    sa.ForeignKeyConstraint(['tenant_id', 'member_id'], ['members.tenant_id', 'members.id'], name=op.f('fk_waitlist_entries_tenant_id_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id', 'service_id'], ['services.tenant_id', 'services.id'], name=op.f('fk_waitlist_entries_tenant_id_service_id_services')),
    sa.ForeignKeyConstraint(['tenant_id', 'store_id'], ['stores.tenant_id', 'stores.id'], name=op.f('fk_waitlist_entries_tenant_id_store_id_stores')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_waitlist_entries_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_waitlist_entries'))
    )
    op.create_index('ix_waitlist_entries_day', 'waitlist_entries', ['tenant_id', 'store_id', 'day', 'status'], unique=False)
    op.create_table('appointment_holds',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('appointment_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('ref_id', sa.Uuid(), nullable=False),
    sa.Column('bookable_no', sa.BigInteger(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('exclusive', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint("kind IN ('staff', 'resource')", name=op.f('ck_appointment_holds_kind_known')),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_appointment_holds_span')),
    sa.ForeignKeyConstraint(['tenant_id', 'appointment_id'], ['appointments.tenant_id', 'appointments.id'], name=op.f('fk_appointment_holds_tenant_id_appointment_id_appointments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_appointment_holds_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_appointment_holds'))
    )
    op.create_index('ix_appointment_holds_appointment', 'appointment_holds', ['tenant_id', 'appointment_id'], unique=False)
    op.create_index('ix_appointment_holds_bookable_time', 'appointment_holds', ['bookable_no', 'starts_at'], unique=False)
    op.create_table('appointment_status_history',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('appointment_id', sa.Uuid(), nullable=False),
    sa.Column('from_status', sa.Text(), nullable=True),
    sa.Column('to_status', sa.Text(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('actor_kind', sa.Text(), nullable=False),
    sa.Column('actor_id', sa.Uuid(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'appointment_id'], ['appointments.tenant_id', 'appointments.id'], name=op.f('fk_appointment_status_history_tenant_id_appointment_id_appointments')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_appointment_status_history_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_appointment_status_history'))
    )
    op.create_index('ix_appointment_status_history_appointment', 'appointment_status_history', ['tenant_id', 'appointment_id', 'created_at'], unique=False)
    # No two active exclusive holds of one staff member or resource overlap (see app/domain/booking/models.py).
    op.execute("""
        ALTER TABLE appointment_holds ADD CONSTRAINT ex_appointment_holds_no_overlap
        EXCLUDE USING gist (int8range(bookable_no, bookable_no, '[]') WITH =, tstzrange(starts_at, ends_at) WITH &&)
        WHERE (active AND exclusive)
    """)
    for table in ("bookables", "resources", "staff_skills", "store_hours", "store_closures", "booking_policies",
                  "shift_patterns", "shift_exceptions", "shifts", "time_off", "appointments", "appointment_holds",
                  "waitlist_entries", "calendar_feeds"):
        mh.tenant_table(table)
    mh.tenant_table("appointment_status_history", "SELECT, INSERT")
    mh.append_only("appointment_status_history")


def downgrade() -> None:
    op.drop_index('ix_appointment_status_history_appointment', table_name='appointment_status_history')
    op.drop_table('appointment_status_history')
    op.drop_index('ix_appointment_holds_bookable_time', table_name='appointment_holds')
    op.drop_index('ix_appointment_holds_appointment', table_name='appointment_holds')
    op.drop_table('appointment_holds')
    op.drop_index('ix_waitlist_entries_day', table_name='waitlist_entries')
    op.drop_table('waitlist_entries')
    op.drop_table('shift_exceptions')
    op.drop_index('ix_appointments_visit', table_name='appointments')
    op.drop_index('ix_appointments_store_time', table_name='appointments')
    op.drop_index('ix_appointments_staff_time', table_name='appointments')
    op.drop_index('ix_appointments_member_time', table_name='appointments')
    op.drop_table('appointments')
    op.drop_index('ix_time_off_staff_time', table_name='time_off')
    op.drop_table('time_off')
    op.drop_index('ix_store_hours_store', table_name='store_hours')
    op.drop_table('store_hours')
    op.drop_table('store_closures')
    op.drop_index('ix_staff_skills_service', table_name='staff_skills')
    op.drop_table('staff_skills')
    op.drop_index('ix_shifts_store_time', table_name='shifts')
    op.drop_index('ix_shifts_staff_time', table_name='shifts')
    op.drop_table('shifts')
    op.drop_index('ix_shift_patterns_store', table_name='shift_patterns')
    op.drop_table('shift_patterns')
    op.drop_index('ix_resources_store', table_name='resources')
    op.drop_table('resources')
    op.drop_table('calendar_feeds')
    op.drop_table('booking_policies')
    op.drop_table('bookables')
