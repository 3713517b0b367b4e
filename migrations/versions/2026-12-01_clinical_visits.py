"""visit completion carrying a form; patients' view of their health-record access

The patient's access log (GET /patient/health-record-access) finds the audit entries about one member: those
whose target is the member, or whose summary names them (`member_id`). An expression index on the sealed
chain serves it. It is on `audit_log` only: reads append to `audit_pending` without waiting on anything
(DESIGN invariant 8) and the background sealer maintains this index when it moves them into the chain, so
the read path is not slowed; the pending table stays small (sealed every few seconds) and is scanned.
No table is added: the visit completion with a form writes the existing clinical, booking and visits rows.

Revision ID: 0026_clinical_visits
Revises: 0025_member_identifiers
Create Date: 2026-12-01 23:00:00
"""
from __future__ import annotations

from alembic import op

revision = '0026_clinical_visits'
down_revision = '0025_member_identifiers'
branch_labels = None
depends_on = None

# The same expression as app/domain/clinical/access_log.py MEMBER_SUBJECT (the planner matches it literally).
MEMBER_SUBJECT = "COALESCE(summary ->> 'member_id', CASE WHEN target_type = 'member' THEN target_id END)"


def upgrade() -> None:
    op.execute(f"CREATE INDEX ix_audit_log_member_subject ON audit_log "
               f"(tenant_id, ({MEMBER_SUBJECT}), occurred_at DESC, id DESC)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_audit_log_member_subject")
