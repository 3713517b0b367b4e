"""roles: the WeCom sidebar's narrow permissions in existing tenants' preset roles

`appointments:book_own` (book a member you serve into your own schedule, within the store's booking policy)
and `members.notes:write` (note on the timeline of a member in your care) are new in the catalogue. Preset
roles are stored per tenant, so tenants created before this release get them here: the therapist preset,
and the owner and store manager presets, which hold every permission they do not exclude. A tenant's own
roles are left as the tenant defined them.

Revision ID: 0016_sidebar_permissions
Revises: 0015_audit_pending
Create Date: 2026-12-01 18:00:00
"""
from __future__ import annotations

from app.core import migration_helpers as mh

revision = '0016_sidebar_permissions'
down_revision = '0015_audit_pending'
branch_labels = None
depends_on = None

NEW_PERMISSIONS = ['appointments:book_own', 'members.notes:write']
PRESETS = ['owner', 'store_manager', 'therapist']


def upgrade() -> None:
    mh.grant_preset_permissions(NEW_PERMISSIONS, PRESETS)


def downgrade() -> None:
    mh.revoke_preset_permissions(NEW_PERMISSIONS)
