"""The topics care emits."""

from __future__ import annotations

from app.core.events import topic

RULE_DUE = topic("care.rule_due", "A rule run's time has come (written with the run, delayed to its time)",
                 "run_id", "rule_id")
TASK_OVERDUE = topic("task.overdue", "An open follow-up task passed its due time (once per due time)",
                     "task_id", "assignee_id", "store_id", "member_id", "kind", "due_at")
TASK_ASSIGNED = topic(
    "task.assigned", "A task got an assignee: created with one, reassigned by a manager, or handed over when its "
    "assignee left", "task_id", "assignee_id", "previous_assignee_id", "assigned_by_id", "store_id", "member_id",
    "kind", "title", "due_at")
