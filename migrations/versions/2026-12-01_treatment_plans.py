"""treatment plans: a course of planned sessions per member, progress per visit

Revision ID: 0022_treatment_plans
Revises: 0021_clinical_records
Create Date: 2026-12-01 23:00:00
"""
from __future__ import annotations

revision = '0022_treatment_plans'
down_revision = '0021_clinical_records'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
