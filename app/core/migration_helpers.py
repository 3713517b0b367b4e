"""What every migration that adds tenant tables does: row-level security and grants to the app role."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.core.settings import get_settings

TENANT_POLICY = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def app_role() -> str:
    return get_settings().db_app_role


def create_app_role() -> None:
    role = app_role()
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
            CREATE ROLE {role} NOLOGIN NOBYPASSRLS;
          END IF;
        END $$;
        """
    )
    # The schema owner switches to this role per transaction (SET LOCAL ROLE), so it must be a member.
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
             AND NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
            EXECUTE format('GRANT {role} TO %I', current_user);
          END IF;
        END $$;
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {role}")


def tenant_table(table: str, privileges: str = "SELECT, INSERT, UPDATE, DELETE") -> None:
    """Enable RLS keyed on app.tenant_id and grant the app role `privileges` on `table`."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({TENANT_POLICY}) WITH CHECK ({TENANT_POLICY})")
    op.execute(f"GRANT {privileges} ON {table} TO {app_role()}")


def append_only(table: str) -> None:
    """Refuse UPDATE and DELETE on `table` for everyone, the owner included."""
    op.execute(
        """
        CREATE OR REPLACE FUNCTION careloop_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'table % is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
        END $$;
        """
    )
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION careloop_append_only()"
    )


def grant_preset_permissions(permissions: list[str], presets: list[str]) -> None:
    """Give the preset roles named `presets` of every existing tenant the new `permissions`.

    Sorted by code point (COLLATE "C"), as the catalogue writes them, so the start-up sync of preset roles
    finds nothing left to change."""
    op.get_bind().execute(sa.text(
        'UPDATE roles SET permissions = ARRAY(SELECT p FROM (SELECT DISTINCT unnest(permissions || '
        'CAST(:new AS text[])) AS p) AS d ORDER BY p COLLATE "C") '
        'WHERE preset AND name = ANY(CAST(:presets AS text[])) AND NOT permissions @> CAST(:new AS text[])'),
        {'new': permissions, 'presets': presets})


def revoke_preset_permissions(permissions: list[str]) -> None:
    """Take `permissions` back from every preset role (the downgrade of `grant_preset_permissions`)."""
    op.get_bind().execute(sa.text(
        'UPDATE roles SET permissions = ARRAY(SELECT p FROM unnest(permissions) AS p '
        'WHERE p <> ALL(CAST(:new AS text[])) ORDER BY p COLLATE "C") WHERE preset'),
        {'new': permissions})
