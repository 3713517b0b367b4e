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

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol
from uuid import UUID

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.errors import ServiceUnavailable
from app.core.settings import Settings, get_settings

_engine: AsyncEngine | None = None  # request and job transactions
_owner_engine: AsyncEngine | None = None  # system transactions (the same engine without app_url)
_sessions: async_sessionmaker[AsyncSession] | None = None
_owner_sessions: async_sessionmaker[AsyncSession] | None = None
_app_role: str | None = "careloop_app"  # None: connected as a non-owner login role already

SET_TENANT = text("SELECT set_config('app.tenant_id', :tenant_id, true)")
_DRIVER = "careloop.driver_connection"  # session.info key: the asyncpg connection of the transaction
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Errors that mean the connection is gone (a restarted server, a terminated backend, a dropped socket): the
# transaction never began, so it is safe to begin again on a fresh connection.
_CONNECTION_LOST = (asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.InterfaceError,
                    asyncpg.exceptions.InternalClientError,
                    asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.CannotConnectNowError,
                    ConnectionError, OSError)

BeforeCommit = Callable[[AsyncSession], Awaitable[None]]


class SessionFactory(Protocol):
    """Opens one transaction (`session_scope`'s signature). The worker's runner hands it to jobs and to
    handlers that call out between transactions; domain code never opens transactions on its own."""

    def __call__(
        self, tenant_id: UUID | None = None, *, system: bool = False, info: dict[str, Any] | None = None
    ) -> AbstractAsyncContextManager[AsyncSession]: ...


class DatabaseUnavailable(ServiceUnavailable):
    """No connection to PostgreSQL could begin a transaction: a wait, not a failure of the request."""

    code = "database_unavailable"

    def __init__(self) -> None:
        super().__init__("the database is unavailable; try again shortly", retry_after=2)


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
    _owner_engine = _create_engine(url, settings.db_pool_size if app_url is None else 3,
                                   settings.db_max_overflow if app_url is None else 5)
    _engine = _owner_engine if app_url is None else _create_engine(
        app_url, settings.db_pool_size, settings.db_max_overflow)
    _app_role = settings.db_app_role if app_url is None else None
    if _app_role is not None and not _ROLE_NAME.match(_app_role):
        raise ValueError(f"DB_APP_ROLE must be a plain role name, not {_app_role!r}")
    # Every connection the pool can hold may be found dead after a restart, and one more is a fresh one.
    _sessions = async_sessionmaker(_engine, class_=AsyncSession, expire_on_commit=False, info={
        "begin_tries": settings.db_pool_size + settings.db_max_overflow + 1})
    _owner_sessions = async_sessionmaker(_owner_engine, class_=AsyncSession, expire_on_commit=False, info={
        "begin_tries": (settings.db_pool_size + settings.db_max_overflow if app_url is None else 8) + 1})
    return _engine


def _create_engine(url: str, pool_size: int, max_overflow: int) -> AsyncEngine:
    """An engine whose transactions `session_scope` begins and ends itself (see there).

    SQLAlchemy's driver adapter is told the connections are in autocommit so that it sends no BEGIN of
    its own (a round trip before every transaction), and the pool does not ping a connection at checkout
    (three more): a connection that died in the pool fails the first statement of the next transaction,
    which `session_scope` then begins again on a fresh one."""
    engine = create_async_engine(async_url(url), pool_size=pool_size, max_overflow=max_overflow,
                                 isolation_level="AUTOCOMMIT", pool_pre_ping=False)

    @event.listens_for(engine.sync_engine.pool, "reset")
    def _end_abandoned_transaction(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
        # A transaction interrupted where its ROLLBACK could not run (a task cancelled twice) must never
        # reach the next borrower with its tenant and role still set: the connection is closed instead.
        if dbapi_connection.driver_connection.is_in_transaction():
            record.invalidate()

    return engine


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
    # One round trip opens the transaction, drops to the application role and scopes it to the tenant.
    # The values are formatted into the statement (the simple protocol takes no parameters): the tenant is
    # a UUID and the role name was checked in init_engine.
    settings = [f"set_config('app.tenant_id', '{UUID(str(tenant_id)) if tenant_id else ''}', true)"]
    if not system and _app_role is not None:
        settings.insert(0, f"set_config('role', '{_app_role}', true)")
    begin = "BEGIN; SELECT " + ", ".join(settings)
    async with factory() as session:
        session.info.update(info or {})
        session.info["system"] = system
        session.info["tenant_id"] = tenant_id
        connection = await _begin(session, begin)
        try:
            yield session
            await run_before_commit(session)
            if _pending(session):
                await session.flush()
            await _commit(connection, session.info[_DRIVER])
        except BaseException:
            await _rollback(connection, session.info[_DRIVER])
            raise
    for hook in session.info.pop("after_commit", {}).values():
        hook()


async def fetch(session: AsyncSession, sql: str, *args: Any) -> list[asyncpg.Record]:
    """A hot read as a prepared statement on the transaction's own connection: PostgreSQL SQL with `$1`
    placeholders, rows as asyncpg records (`row["name"]`). It skips SQLAlchemy's statement building, result
    processing and ORM loading (most of a simple read's cost); JSON values come back decoded (the engine's
    codec) and take text as parameters. Row-level security applies as to any statement of the transaction."""
    if _pending(session):
        await session.flush()  # what the ORM would do before a query: the read sees this transaction's changes
    return await (await _session_driver(session)).fetch(sql, *args)


async def execute(session: AsyncSession, sql: str, *args: Any) -> None:
    """`fetch` for a statement that returns nothing (an INSERT of a hot path)."""
    await (await _session_driver(session)).execute(sql, *args)


async def _session_driver(session: AsyncSession) -> asyncpg.Connection:
    """The transaction's asyncpg connection: kept by `_begin`, else (a session not from session_scope) asked for."""
    return session.info.get(_DRIVER) or await _driver(await session.connection())


def _pending(session: AsyncSession) -> bool:
    return bool(session.new or session.dirty or session.deleted)


async def _driver(connection: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under SQLAlchemy's, for the statements SQLAlchemy's layers add nothing to."""
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    return driver


async def _begin(session: AsyncSession, begin: str) -> AsyncConnection:
    """Begin on a pooled connection. One found dead (the server restarted, an idle backend was killed) is
    closed and the next one tried: nothing had been sent, so nothing can happen twice. After a restart every
    pooled connection is dead, so as many tries as the pool holds, and one for a fresh connection."""
    tries = session.info.get("begin_tries", 2)
    for attempt in range(1, tries + 1):
        try:
            connection = await session.connection()
        except (DBAPIError, OSError) as exc:  # no connection could be made: PostgreSQL is down or refusing
            raise DatabaseUnavailable() from exc
        driver = await _driver(connection)
        try:
            await driver.execute(begin)
            # Kept for `fetch`, `_commit` and `_rollback`: reaching it through SQLAlchemy again costs a
            # greenlet switch each time, a visible share of a small request.
            session.info[_DRIVER] = driver
            return connection
        except Exception as exc:
            if not (isinstance(exc, _CONNECTION_LOST) or driver.is_closed()):
                raise
            await connection.invalidate()
            await session.close()
            session.info.pop(_DRIVER, None)
            if attempt == tries:
                raise DatabaseUnavailable() from exc
    raise AssertionError("unreachable")


async def _commit(connection: AsyncConnection, driver: asyncpg.Connection) -> None:
    try:
        await driver.execute("COMMIT")
    except _CONNECTION_LOST as exc:
        # Whether the commit reached the server is unknown: the client retries (with its Idempotency-Key).
        await connection.invalidate()
        raise DatabaseUnavailable() from exc


async def _rollback(connection: AsyncConnection, driver: asyncpg.Connection) -> None:
    if connection.closed or connection.invalidated:
        return
    if driver.is_closed() or not driver.is_in_transaction():
        return
    try:
        await driver.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - the error being handled is the one to report
        await connection.invalidate()
    except BaseException:  # cancelled meanwhile: the connection must not be reused mid-transaction
        await connection.invalidate()
        raise
