"""Database engine and transactions.

Every transaction states whose data it may touch. Request and job transactions switch to the
non-owner application role and set `app.tenant_id`, so PostgreSQL's row-level security policies
hide every other tenant's rows, even from a query that forgets its filter. Only `system` transactions
(migrations, the outbox relay, tenant creation, cross-tenant cron scans) run as the schema owner.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.settings import Settings, get_settings

_engine: AsyncEngine | None = None
_sessions: async_sessionmaker[AsyncSession] | None = None
_app_role: str = "careloop_app"

SET_TENANT = text("SELECT set_config('app.tenant_id', :tenant_id, true)")
SET_ROLE_AND_TENANT = text(
    "SELECT set_config('role', :role, true), set_config('app.tenant_id', :tenant_id, true)"
)

BeforeCommit = Callable[[AsyncSession], Awaitable[None]]


def async_url(url: str) -> str:
    """Accept `postgresql://` / `postgres://` URLs as users write them and use the asyncpg driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def init_engine(url: str, settings: Settings | None = None) -> AsyncEngine:
    global _engine, _sessions, _app_role
    settings = settings or get_settings()
    _app_role = settings.db_app_role
    _engine = create_async_engine(
        async_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
    )
    _sessions = async_sessionmaker(_engine, class_=AsyncSession, expire_on_commit=False)
    return _engine


def get_engine() -> AsyncEngine:
    if _engine is None:
        raise RuntimeError("database engine not initialised; call init_engine() first")
    return _engine


async def dispose_engine() -> None:
    global _engine, _sessions
    if _engine is not None:
        await _engine.dispose()
    _engine = _sessions = None


async def set_tenant(session: AsyncSession, tenant_id: UUID | None) -> None:
    """Scope the current transaction to one tenant (used once the tenant is known, e.g. at login)."""
    await session.execute(SET_TENANT, {"tenant_id": str(tenant_id) if tenant_id else ""})
    session.info["tenant_id"] = tenant_id


def current_tenant(session: AsyncSession) -> UUID | None:
    return session.info.get("tenant_id")


def before_commit(session: AsyncSession, hook: BeforeCommit, key: str) -> None:
    """Run `hook` once, just before this transaction commits (e.g. sealing audit rows)."""
    hooks: dict[str, BeforeCommit] = session.info.setdefault("before_commit", {})
    hooks.setdefault(key, hook)


async def run_before_commit(session: AsyncSession) -> None:
    hooks: dict[str, BeforeCommit] = session.info.get("before_commit", {})
    while hooks:
        key = next(iter(hooks))
        await hooks.pop(key)(session)


@asynccontextmanager
async def session_scope(
    tenant_id: UUID | None = None, *, system: bool = False, info: dict[str, Any] | None = None
) -> AsyncIterator[AsyncSession]:
    """One transaction: committed when the block ends normally, rolled back on any exception."""
    if _sessions is None:
        raise RuntimeError("database engine not initialised; call init_engine() first")
    async with _sessions() as session:
        session.info.update(info or {})
        async with session.begin():
            tenant = str(tenant_id) if tenant_id else ""
            if system:
                await session.execute(SET_TENANT, {"tenant_id": tenant})
            else:  # one round trip: drop to the application role and scope to the tenant
                await session.execute(SET_ROLE_AND_TENANT, {"role": _app_role, "tenant_id": tenant})
            session.info["system"] = system
            session.info["tenant_id"] = tenant_id
            yield session
            await run_before_commit(session)
            await session.flush()
