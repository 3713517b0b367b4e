"""Apply Alembic migrations, serialised by an advisory lock so replicas can start together."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import async_url

ROOT = Path(__file__).resolve().parents[2]
MIGRATION_LOCK = 724_115_001


def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return config


async def upgrade(database_url: str, revision: str = "head") -> None:
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
                # Data that follows the code: preset roles get permissions a release added.
                from app.domain.iam.service import sync_preset_roles

                await sync_preset_roles(conn)
                await conn.commit()
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
                await conn.commit()
    finally:
        await engine.dispose()

