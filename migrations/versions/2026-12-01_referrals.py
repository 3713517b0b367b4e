"""referral codes, reward rules and rewards

Revision ID: 0028_referrals
Revises: 0027_growth_leads
Create Date: 2026-12-01 23:30:00
"""
from __future__ import annotations

revision = '0028_referrals'
down_revision = '0027_growth_leads'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
