"""revocations read from PostgreSQL: an index over revoked refresh tokens

Revision ID: 0012_revocations
Revises: 0011_chat_webhooks
Create Date: 2026-12-01 14:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012_revocations'
down_revision = '0011_chat_webhooks'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every process reads the sign-ins ended since its last read (app/domain/iam/revocations.py).
    op.create_index('ix_refresh_tokens_revoked', 'refresh_tokens', ['revoked_at'], unique=False,
                    postgresql_where=sa.text('revoked_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_refresh_tokens_revoked', table_name='refresh_tokens',
                  postgresql_where=sa.text('revoked_at IS NOT NULL'))
