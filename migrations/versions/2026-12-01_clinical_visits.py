"""visit completion carrying a form; patients' view of their health-record access

Revision ID: 0026_clinical_visits
Revises: 0025_member_identifiers
Create Date: 2026-12-01 23:00:00
"""
from __future__ import annotations

revision = '0026_clinical_visits'
down_revision = '0025_member_identifiers'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
