"""consent templates (versioned text), signed consents and their withdrawals; services that require one

Revision ID: 0023_consents
Revises: 0022_treatment_plans
Create Date: 2026-12-01 23:00:00
"""
from __future__ import annotations

revision = '0023_consents'
down_revision = '0022_treatment_plans'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
