"""Treatment plans: a course of planned sessions for a member, and its progress ledger.

A plan has items (service × planned sessions). Progress is a ledger: one `visit` entry per service record
counted against the plan (+1) and one `reversal` entry when that service record is reversed (-1, pointing at
the entry it undoes). The `sessions_done` columns on the item and the plan are kept in the same transaction
so that `sessions_done == sum(delta)` always holds. The unique key (service record, kind) makes counting a
redelivered completion a no-op: at-least-once delivery, exactly-once effect.
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from sqlalchemy import CheckConstraint, Date, DateTime, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field

from app.core.models import TENANT_TABLES, TenantRow, tenant_fk, timestamp_field


class PlanStatus:
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class TreatmentPlan(TenantRow, table=True):
    __tablename__ = "treatment_plans"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        tenant_fk(["store_id"], "stores"),
        tenant_fk(["responsible_staff_id"], "staff"),
        tenant_fk(["card_id"], "cards"),
        Index("ix_treatment_plans_member", "tenant_id", "member_id", "status"),
        CheckConstraint("status IN ('active', 'completed', 'cancelled')", name="status_known"),
        CheckConstraint("interval_days BETWEEN 1 AND 365", name="interval_bounds"),
        CheckConstraint("sessions_done >= 0 AND sessions_done <= sessions_planned", name="done_within_plan"),
        CheckConstraint("(status = 'cancelled') = (cancelled_at IS NOT NULL)", name="cancelled_has_time"),
    )

    member_id: UUID
    store_id: UUID
    title: str = Field(sa_type=Text)
    # Clinical text: stored encrypted with the members' field encryption, as record values are.
    goals_encrypted: str = Field(sa_type=Text)
    interval_days: int = Field(sa_type=Integer)
    start_date: date = Field(sa_type=Date)
    responsible_staff_id: UUID
    card_id: UUID | None = None
    status: str = Field(default=PlanStatus.ACTIVE, sa_type=Text)
    sessions_planned: int = Field(sa_type=Integer)
    sessions_done: int = Field(default=0, sa_type=Integer)
    last_visit_at: datetime | None = timestamp_field()
    created_by_id: UUID | None = None
    updated_at: datetime | None = timestamp_field()
    completed_at: datetime | None = timestamp_field()
    cancelled_at: datetime | None = timestamp_field()
    cancelled_by_id: UUID | None = None
    cancel_reason: str | None = Field(default=None, sa_type=Text)


class TreatmentPlanItem(TenantRow, table=True):
    __tablename__ = "treatment_plan_items"
    __table_args__ = (
        tenant_fk(["plan_id"], "treatment_plans"),
        tenant_fk(["service_id"], "services"),
        UniqueConstraint("tenant_id", "plan_id", "service_id"),
        CheckConstraint("sessions_planned > 0", name="planned_positive"),
        CheckConstraint("sessions_done >= 0 AND sessions_done <= sessions_planned", name="done_within_plan"),
    )

    plan_id: UUID
    service_id: UUID
    position: int = Field(sa_type=Integer)
    sessions_planned: int = Field(sa_type=Integer)
    sessions_done: int = Field(default=0, sa_type=Integer)


class TreatmentPlanProgress(TenantRow, table=True):
    """Append-only: a visit counted against a plan item, or the reversal of one."""

    __tablename__ = "treatment_plan_progress"
    __table_args__ = (
        tenant_fk(["plan_id"], "treatment_plans"),
        tenant_fk(["item_id"], "treatment_plan_items"),
        tenant_fk(["service_record_id"], "service_records"),
        tenant_fk(["reverses_id"], "treatment_plan_progress"),
        UniqueConstraint("tenant_id", "service_record_id", "kind"),
        Index("ix_treatment_plan_progress_plan", "tenant_id", "plan_id", "occurred_at"),
        CheckConstraint("kind IN ('visit', 'reversal')", name="kind_known"),
        CheckConstraint("(kind = 'visit' AND delta = 1 AND reverses_id IS NULL) OR "
                        "(kind = 'reversal' AND delta = -1 AND reverses_id IS NOT NULL)", name="delta_matches_kind"),
    )

    plan_id: UUID
    item_id: UUID
    service_record_id: UUID
    kind: str = Field(sa_type=Text)
    delta: int = Field(sa_type=Integer)
    reverses_id: UUID | None = None
    staff_id: UUID | None = None
    occurred_at: datetime = Field(sa_type=DateTime(timezone=True))


TENANT_TABLES.update({"treatment_plans", "treatment_plan_items", "treatment_plan_progress"})
