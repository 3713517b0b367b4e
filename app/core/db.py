"""Database engines and transactions.

Every transaction states whose data it may touch. Request and job transactions run as a non-owner
role and set `app.tenant_id`, so PostgreSQL's row-level security policies hide every other tenant's
rows, even from a query that forgets its filter. Only `system` transactions (migrations, the outbox
relay, tenant creation, cross-tenant cron scans) run as the schema owner.

Two ways to be the non-owner role:
- `app_url` (APP_DATABASE_URL): a separate LOGIN role that is a member of the application role. This
  is the production setting: no statement in a request can become the owner (`RESET ROLE` only
  returns to that login role).
- otherwise the owner's connection switches with `SET LOCAL ROLE` per transaction (development).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.settings import Settings, get_settings

_engine: AsyncEngine | None = None  # request and job transactions
_owner_engine: AsyncEngine | None = None  # system transactions (the same engine without app_url)
_sessions: async_sessionmaker[AsyncSession] | None = None
_owner_sessions: async_sessionmaker[AsyncSession] | None = None
_app_role: str | None = "careloop_app"  # None: connected as a non-owner login role already

SET_TENANT = text("SELECT set_config('app.tenant_id', :tenant_id, true)")
SET_ROLE_AND_TENANT = text(
    "SELECT set_config('role', :role, true), set_config('app.tenant_id', :tenant_id, true)"
)

BeforeCommit = Callable[[AsyncSession], Awaitable[None]]


class SessionFactory(Protocol):
    """Opens one transaction (`session_scope`'s signature). The worker's runner hands it to jobs and to
    handlers that call out between transactions; domain code never opens transactions on its own."""

    def __call__(
        self, tenant_id: UUID | None = None, *, system: bool = False, info: dict[str, Any] | None = None
    ) -> AbstractAsyncContextManager[AsyncSession]: ...


def async_url(url: str) -> str:
    """Accept `postgresql://` / `postgres://` URLs as users write them and use the asyncpg driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def init_engine(url: str, settings: Settings | None = None, *, app_url: str | None = None) -> AsyncEngine:
    """`url` connects as the schema owner; `app_url`, when given, as the non-owner login role."""
    global _engine, _owner_engine, _sessions, _owner_sessions, _app_role
    settings = settings or get_settings()
    app_url = app_url or settings.app_database_url
    _owner_engine = create_async_engine(
        async_url(url),
        pool_size=settings.db_pool_size if app_url is None else 3,
        max_overflow=settings.db_max_overflow if app_url is None else 5,
        pool_pre_ping=True,
    )
    _engine = _owner_engine if app_url is None else create_async_engine(
        async_url(app_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
    )
    _app_role = settings.db_app_role if app_url is None else None
    _sessions = async_sessionmaker(_engine, class_=AsyncSession, expire_on_commit=False)
    _owner_sessions = async_sessionmaker(_owner_engine, class_=AsyncSession, expire_on_commit=False)
    return _engine


def get_engine() -> AsyncEngine:
    """The engine request and job transactions use."""
    if _engine is None:
        raise RuntimeError("database engine not initialised; call init_engine() first")
    return _engine


async def dispose_engine() -> None:
    global _engine, _owner_engine, _sessions, _owner_sessions
    for engine in {id(e): e for e in (_engine, _owner_engine) if e is not None}.values():
        await engine.dispose()
    _engine = _owner_engine = _sessions = _owner_sessions = None


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


def after_commit(session: AsyncSession, hook: Callable[[], None], key: str) -> None:
    """Run `hook` once, after this transaction committed (e.g. forgetting what a process cached of the rows
    it changed: before the commit, a concurrent reader could cache the old rows again)."""
    hooks: dict[str, Callable[[], None]] = session.info.setdefault("after_commit", {})
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
    factory = _owner_sessions if system else _sessions
    if factory is None:
        raise RuntimeError("database engine not initialised; call init_engine() first")
    async with factory() as session:
        session.info.update(info or {})
        async with session.begin():
            tenant = str(tenant_id) if tenant_id else ""
            if system or _app_role is None:
                await session.execute(SET_TENANT, {"tenant_id": tenant})
            else:  # one round trip: drop to the application role and scope to the tenant
                await session.execute(SET_ROLE_AND_TENANT, {"role": _app_role, "tenant_id": tenant})
            session.info["system"] = system
            session.info["tenant_id"] = tenant_id
            yield session
            await run_before_commit(session)
            await session.flush()
        for hook in session.info.pop("after_commit", {}).values():
            hook()
