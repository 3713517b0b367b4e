"""Automation rules, their runs (one per rule and real-world cause), the run log, and follow-up tasks.

A rule is data the tenant edits: a trigger (an outbox topic, or a schedule), conditions on the member,
a delay, quiet hours and a list of actions. `rule_runs` holds one row per (rule, cause key); the unique
constraint is what makes "a rule never fires twice for the same cause" hold under redelivery and
concurrent workers. `rule_run_log` is the append-only history of what each run did.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import CheckConstraint, Column, Index, Integer, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from app.core.models import TENANT_TABLES, TenantRow, tenant_fk, timestamp_field


class RunStatus:
    SCHEDULED = "scheduled"  # waiting for run_at (a delayed care.rule_due event)
    DONE = "done"
    SKIPPED = "skipped"  # nothing to do any more (rule disabled, cause gone stale, member inactive)
    FAILED = "failed"  # an action was refused, or the job gave up after its retries
    ALL = (SCHEDULED, DONE, SKIPPED, FAILED)


class TaskStatus:
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"
    ALL = (OPEN, DONE, CANCELLED)


TASK_KINDS = ("renewal", "follow_up", "wake_up", "care", "custom")


class AutomationRule(TenantRow, table=True):
    __tablename__ = "automation_rules"
    __table_args__ = (
        UniqueConstraint("tenant_id", "key"),
        Index("ix_automation_rules_enabled", "tenant_id", "enabled"),
    )

    key: str = Field(sa_type=Text)  # stable slug; built-in rules keep theirs so upgrades can find them
    name: str = Field(sa_type=Text)
    description: str | None = Field(default=None, sa_type=Text)
    enabled: bool = False
    builtin: bool = False
    trigger: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    conditions: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False,
                                                                             server_default="{}"))
    delay: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False,
                                                                        server_default="{}"))
    quiet_hours: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    actions: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    version: int = Field(default=1, sa_type=Integer)
    updated_at: datetime | None = timestamp_field()


class RuleRun(TenantRow, table=True):
    __tablename__ = "rule_runs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "rule_id", "cause_key"),
        tenant_fk(["rule_id"], "automation_rules"),
        tenant_fk(["member_id"], "members"),
        Index("ix_rule_runs_rule", "tenant_id", "rule_id", "id"),
        Index("ix_rule_runs_member", "tenant_id", "member_id"),
        CheckConstraint("status IN ('scheduled', 'done', 'skipped', 'failed')", name="status_known"),
    )

    rule_id: UUID
    cause_key: str = Field(sa_type=Text)
    member_id: UUID | None = None
    store_id: UUID | None = None
    source: str = Field(sa_type=Text)  # the outbox topic, or schedule:<kind>
    event_id: UUID | None = None
    status: str = Field(default=RunStatus.SCHEDULED, sa_type=Text)
    run_at: datetime = timestamp_field(nullable=False)
    # What the actions may use (payload, names for message variables) and what must still hold at run time.
    context: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False,
                                                                          server_default="{}"))
    # {"actions": [{"index", "type", "status", ...}], "reason": ...}: per-action progress makes retries resume.
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False,
                                                                         server_default="{}"))
    attempts: int = Field(default=0, sa_type=Integer)
    last_error: str | None = Field(default=None, sa_type=Text)
    finished_at: datetime | None = timestamp_field()
    updated_at: datetime | None = timestamp_field()


class RuleRunLog(TenantRow, table=True):
    """Append-only: every state a run passed through, and each action's outcome."""

    __tablename__ = "rule_run_log"
    __table_args__ = (
        tenant_fk(["run_id"], "rule_runs"),
        Index("ix_rule_run_log_run", "tenant_id", "run_id", "id"),
    )

    run_id: UUID
    rule_id: UUID
    status: str = Field(sa_type=Text)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False,
                                                                         server_default="{}"))


class Task(TenantRow, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        tenant_fk(["member_id"], "members"),
        tenant_fk(["assignee_id"], "staff"),
        tenant_fk(["store_id"], "stores"),
        tenant_fk(["rule_id"], "automation_rules"),
        tenant_fk(["run_id"], "rule_runs"),
        # One task per action of a run, whatever retries happen (NULLs of manual tasks never clash).
        UniqueConstraint("tenant_id", "run_id", "action_index"),
        Index("ix_tasks_assignee", "tenant_id", "assignee_id", "status", "due_at"),
        Index("ix_tasks_member", "tenant_id", "member_id", "created_at"),
        Index("ix_tasks_open_due", "tenant_id", "status", "due_at"),
        CheckConstraint("status IN ('open', 'done', 'cancelled')", name="status_known"),
        CheckConstraint("kind IN ('renewal', 'follow_up', 'wake_up', 'care', 'custom')", name="kind_known"),
        CheckConstraint("(status = 'done') = (completed_at IS NOT NULL)", name="completion_recorded"),
    )

    kind: str = Field(sa_type=Text)
    member_id: UUID | None = None
    assignee_id: UUID | None = None  # None: nobody could be resolved; managers see it and assign it
    store_id: UUID | None = None
    title: str = Field(sa_type=Text)
    description: str | None = Field(default=None, sa_type=Text)
    due_at: datetime = timestamp_field(nullable=False)
    status: str = Field(default=TaskStatus.OPEN, sa_type=Text)
    result_note: str | None = Field(default=None, sa_type=Text)
    rule_id: UUID | None = None
    run_id: UUID | None = None
    action_index: int | None = Field(default=None, sa_type=Integer)
    cause_key: str | None = Field(default=None, sa_type=Text)
    created_by_kind: str = Field(default="system", sa_type=Text)
    created_by_id: UUID | None = None
    completed_at: datetime | None = timestamp_field()
    completed_by_id: UUID | None = None
    overdue_notified_at: datetime | None = timestamp_field()
    updated_at: datetime | None = timestamp_field()


TENANT_TABLES.update({"automation_rules", "rule_runs", "rule_run_log", "tasks"})
