"""stored files and clinical photos (before/after per treatment area)

Revision ID: 0024_clinical_files
Revises: 0023_consents
Create Date: 2026-12-01 23:00:00
"""
from __future__ import annotations

revision = '0024_clinical_files'
down_revision = '0023_consents'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
