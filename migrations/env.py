"""Alembic environment: runs on the connection `app.core.migrate` hands it (async engine, run_sync)."""

from __future__ import annotations

from alembic import context

from app.models_registry import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `careloop migrate` (it provides the database connection)")

context.configure(connection=connection, target_metadata=metadata, compare_type=True,
                  transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
