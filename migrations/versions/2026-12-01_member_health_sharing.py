"""members: share_health_with_family, an adult member's consent to show their health data to their family's head

Revision ID: 0013_member_health_sharing
Revises: 0012_revocations
Create Date: 2026-12-01 14:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013_member_health_sharing'
down_revision = '0012_revocations'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No one has consented yet: every existing adult's health data stays with them (and staff).
    op.add_column('members', sa.Column('share_health_with_family', sa.Boolean(), server_default=sa.text('false'),
                                       nullable=False))


def downgrade() -> None:
    op.drop_column('members', 'share_health_with_family')
