"""Apply Alembic migrations, serialised by an advisory lock so replicas can start together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from app.core.db import async_url
from app.core.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
MIGRATION_LOCK = 724_115_001


def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return config


DataStep = Callable[[AsyncConnection], Awaitable[Any]]


async def upgrade(database_url: str, revision: str = "head", *, data_steps: Sequence[DataStep] = ()) -> None:
    """Migrate the schema, then run `data_steps` (data that follows the code, e.g. preset roles a release
    extended) in the same locked connection."""
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            await conn.commit()
            try:
                def run(sync_conn) -> None:
                    config = alembic_config()
                    config.attributes["connection"] = sync_conn
                    command.upgrade(config, revision)

                await conn.run_sync(run)
                for step in data_steps:
                    await step(conn)
                await conn.commit()
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
                await conn.commit()
    finally:
        await engine.dispose()


async def ensure_app_login(owner_url: str) -> str:
    """Create (once) a passwordless LOGIN role in the application role and return a URL for it.

    For the embedded server and local test clusters, which trust local connections; production
    creates its own login role with a password and sets APP_DATABASE_URL.
    """
    role = get_settings().db_app_role
    login = f"{role}_login"
    engine = create_async_engine(async_url(owner_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                f"""
                DO $$ BEGIN
                  CREATE ROLE {login} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS INHERIT;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                END $$;
                """))
            await conn.execute(text(f"GRANT {role} TO {login}"))
    finally:
        await engine.dispose()
    return make_url(async_url(owner_url)).set(username=login, password=None).render_as_string(hide_password=False)
