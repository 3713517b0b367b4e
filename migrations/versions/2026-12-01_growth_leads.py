"""growth: channels, campaign codes and QR codes, spend; leads, their history and assignment rules

Revision ID: 0027_growth_leads
Revises: 0026_clinical_visits
Create Date: 2026-12-01 23:30:00
"""
from __future__ import annotations

revision = '0027_growth_leads'
down_revision = '0026_clinical_visits'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
