"""The sidebar's narrow permissions reach the preset roles of tenants created before them (the migration), and
the presets hold exactly what the catalogue says."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from uuid import UUID

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import async_url
from app.domain.iam.permissions import PERMISSIONS, PRESET_ROLES
from tests.cards.helpers import owner_sql
from tests.factories import new_tenant

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "2026-12-01_sidebar_permissions.py"
NEW = ("appointments:book_own", "members.notes:write")


def _migration():
    spec = importlib.util.spec_from_file_location("sidebar_permissions_migration", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_catalogue_gives_the_narrow_permissions_to_therapists_not_to_front_desk():
    assert set(NEW) <= set(PERMISSIONS)
    for role in ("therapist", "owner", "store_manager"):
        assert set(NEW) <= PRESET_ROLES[role][1], role
    for role in ("front_desk", "marketing", "finance", "consultant", "doctor"):
        assert not set(NEW) & PRESET_ROLES[role][1], role


async def _presets(tenant_id: UUID) -> dict[str, list[str]]:
    rows = await owner_sql("SELECT name, permissions FROM roles WHERE tenant_id = :t AND preset", t=tenant_id)
    return {name: list(permissions) for name, permissions in rows}


async def test_the_migration_adds_them_to_existing_tenants_presets_as_the_catalogue_sorts_them(client, database_url):
    kit = await new_tenant(client)
    tenant_id = UUID(kit.tenant_id)
    # The tenant as it was before this release: presets without the new permissions.
    await owner_sql("UPDATE roles SET permissions = array_remove(array_remove(permissions, :a), :b) "
                    "WHERE tenant_id = :t", a=NEW[0], b=NEW[1], t=tenant_id)
    assert not any(set(NEW) & set(p) for p in (await _presets(tenant_id)).values())

    engine = create_async_engine(async_url(database_url))  # the schema owner, as migrations run
    module = _migration()

    def upgrade(connection) -> None:
        with Operations.context(MigrationContext.configure(connection)):
            module.upgrade()

    try:
        async with engine.begin() as connection:
            await connection.run_sync(upgrade)
    finally:
        await engine.dispose()
    presets = await _presets(tenant_id)
    for role in ("therapist", "owner", "store_manager"):
        # Sorted as Python sorts them: the start-up sync of preset roles has nothing left to do.
        assert presets[role] == sorted(PRESET_ROLES[role][1]), role
    for role in ("front_desk", "consultant"):
        assert presets[role] == sorted(PRESET_ROLES[role][1]), role
