"""external identifiers of members (HIS patient ids), for FHIR

Revision ID: 0025_member_identifiers
Revises: 0024_clinical_files
Create Date: 2026-12-01 23:00:00
"""
from __future__ import annotations

revision = '0025_member_identifiers'
down_revision = '0024_clinical_files'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
