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

Connections come from an asyncpg pool, not SQLAlchemy's: a transaction borrows one, begins on it in one
round trip, and ends it with COMMIT or ROLLBACK sent to the driver. The ORM session of a transaction is
laid over that same connection the first time the code uses the ORM (`_BorrowedConnectionPool`), so a
request that reads through prepared statements only (`fetch`) never runs SQLAlchemy's pool, connection or
session machinery — about two thirds of what a small request cost in the database layer.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, Protocol, cast
from uuid import UUID

import asyncpg
from greenlet import getcurrent, greenlet
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, Pool
from sqlalchemy.util import greenlet_spawn
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.errors import ServiceUnavailable
from app.core.settings import Settings, get_settings

log = logging.getLogger("careloop.db")
_engine: AsyncEngine | None = None  # the ORM over request and job transactions
_transactions: _Transactions | None = None  # request and job transactions
_system_transactions: _Transactions | None = None  # system transactions (the same without app_url)
_app_role: str | None = "careloop_app"  # None: connected as a non-owner login role already

SET_TENANT = text("SELECT set_config('app.tenant_id', :tenant_id, true)")
_DRIVER = "careloop.driver_connection"  # session.info key: the asyncpg connection of the transaction
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_ACQUIRE_TIMEOUT = 30.0  # seconds a transaction waits for a free connection before answering 503
# Errors that mean the connection is gone (a restarted server, a terminated backend, a dropped socket): the
# transaction never began, so it is safe to begin again on a fresh connection.
_CONNECTION_LOST = (asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.InterfaceError,
                    asyncpg.exceptions.InternalClientError,
                    asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.CannotConnectNowError,
                    ConnectionError, OSError)
# Errors of opening a connection: PostgreSQL is down, refusing, or every connection is busy for too long.
_NO_CONNECTION = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)

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


def _unavailable(exc: BaseException, why: str = "no database connection for a transaction") -> DatabaseUnavailable:
    """The 503 for a transaction that could not begin, with the reason in the log (the client sees none)."""
    log.warning("%s: %s: %s", why, type(exc).__name__, exc)
    return DatabaseUnavailable()


def async_url(url: str) -> str:
    """Accept `postgresql://` / `postgres://` URLs as users write them and use the asyncpg driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


class _DriverConnection(asyncpg.Connection):
    """A pooled driver connection. Nothing is reset when it goes back to the pool (a round trip per
    transaction): every setting a transaction makes is transaction-local (`set_config(..., true)`), and the
    pool rolls back a transaction left open. It keeps SQLAlchemy's record of it once the ORM has used it."""

    __slots__ = ("orm_record",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.orm_record: ConnectionPoolEntry | None = None

    def get_reset_query(self) -> str:
        return ""

    def _on_release(self, stacklevel: int = 1) -> None:
        # asyncpg retires every prepared statement made during a lease when the connection goes back to the
        # pool. SQLAlchemy's record keeps its prepared statements with the connection across transactions
        # (as it did over its own pool): they belong to the connection, not to one lease of it.
        lease_counter = self._pool_release_ctr  # type: ignore[has-type]
        super()._on_release(stacklevel + 1)
        self._pool_release_ctr = lease_counter  # type: ignore[misc]


async def _decode_json_as_sqlalchemy_does(connection: asyncpg.Connection) -> None:
    """JSON columns read through `fetch` come back decoded and take text, as through the ORM (the same
    codecs SQLAlchemy's dialect installs when it first uses a connection)."""
    await connection.set_type_codec("json", encoder=str.encode, decoder=lambda b: json.loads(b.decode()),
                                    schema="pg_catalog", format="binary")
    await connection.set_type_codec("jsonb", encoder=lambda v: b"\x01" + v.encode(),
                                    decoder=lambda b: json.loads(b[1:].decode()),
                                    schema="pg_catalog", format="binary")


class _BorrowedConnectionPool(Pool):
    """SQLAlchemy's pool for an engine whose connections the transactions lend it.

    The ORM session of a transaction names its driver connection (`lend`) before anything it does could
    connect (`_TransactionSession`); the pool hands out SQLAlchemy's record of exactly that connection,
    made the first time the ORM uses it and kept with it, so SQLAlchemy's per-connection set-up and its
    prepared statements last as long as the connection. Giving a connection back does nothing: the
    transaction returns the driver connection to its own pool after COMMIT or ROLLBACK. Lending is per
    greenlet (the one SQLAlchemy runs the session's call in), so concurrent tasks never see each other's."""

    def __init__(self, creator: Any, **kw: Any) -> None:
        super().__init__(creator, **kw)
        self._lent: dict[greenlet, _DriverConnection] = {}
        self._adopting: _DriverConnection | None = None

    @contextmanager
    def lending(self, driver: _DriverConnection | None) -> Iterator[None]:
        current = getcurrent()
        if driver is None or current in self._lent:  # not a transaction's session, or lent further up
            yield
            return
        self._lent[current] = driver
        try:
            yield
        finally:
            del self._lent[current]

    def adopting(self) -> _DriverConnection:
        driver, self._adopting = self._adopting, None
        if driver is None:  # SQLAlchemy reconnecting by itself: a connection is the driver pool's to make
            raise asyncpg.exceptions.ConnectionDoesNotExistError("the transaction's connection was lost")
        return driver

    def _invalidate(self, connection: Any, exception: BaseException | None = None, _checkin: bool = True) -> None:
        # SQLAlchemy would also mark every other connection stale after one was lost and close each at its
        # next use; they are the driver pool's, which finds a dead one by itself (`_begin`).
        if _checkin and getattr(connection, "is_valid", False):
            connection.invalidate(exception)

    def _do_get(self) -> ConnectionPoolEntry:
        driver = self._lent.get(getcurrent())
        if driver is None:
            raise RuntimeError("the ORM runs inside session_scope only: no transaction lent a connection")
        record = driver.orm_record
        if record is None or record.dbapi_connection is None:
            # The creator (adopt_lent_connection) runs synchronously from here up to its first await.
            self._adopting = driver
            record = driver.orm_record = self._create_connection()
        return record

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        pass

    def dispose(self) -> None:
        pass

    def recreate(self) -> _BorrowedConnectionPool:
        return self.__class__(self._creator, recycle=self._recycle, echo=self.echo,
                              logging_name=self._orig_logging_name, reset_on_return=self._reset_on_return,
                              pre_ping=self._pre_ping, _dispatch=self.dispatch, dialect=self._dialect)

    def status(self) -> str:
        return "connections lent by the transactions"


class _TransactionSession(Session):
    """The ORM session of one transaction: whatever it runs goes over that transaction's connection. The
    two ways SQLAlchemy's session reaches for a connection (a statement, and a flush) lend it first."""

    def _connection_for_bind(self, engine: Any, execution_options: Any = None, **kw: Any) -> Connection:
        with engine.pool.lending(self.info.get(_DRIVER)):
            return super()._connection_for_bind(engine, execution_options, **kw)

    def _flush(self, objects: Any = None) -> None:
        with self.get_bind().pool.lending(self.info.get(_DRIVER)):  # type: ignore[union-attr]
            super()._flush(objects)


def _in_turn(name: str) -> Any:
    method = getattr(AsyncSession, name)

    @functools.wraps(method)
    async def in_turn(self: TransactionSession, *args: Any, **kwargs: Any) -> Any:
        async with self.turn:
            return await method(self, *args, **kwargs)

    return in_turn


class TransactionSession(AsyncSession):
    """The session of one transaction. Its statements take turns: GraphQL resolves the fields of a query
    concurrently, all on the request's one transaction, and one connection runs one statement at a time
    (asyncpg refuses a second, SQLAlchemy's session a concurrent use). Only the methods that reach the
    connection themselves wait (`scalars` goes through `execute`, so it is not wrapped twice); `fetch` and
    `execute` of this module wait too. Each waits per statement, so DataLoaders still batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.turn = asyncio.Lock()

    refresh = _in_turn("refresh")
    run_sync = _in_turn("run_sync")
    execute = _in_turn("execute")
    exec = _in_turn("exec")
    scalar = _in_turn("scalar")
    get = _in_turn("get")
    get_one = _in_turn("get_one")
    stream = _in_turn("stream")
    delete = _in_turn("delete")
    delete_all = _in_turn("delete_all")
    merge = _in_turn("merge")
    merge_all = _in_turn("merge_all")
    flush = _in_turn("flush")
    connection = _in_turn("connection")
    commit = _in_turn("commit")
    rollback = _in_turn("rollback")


class _Transactions:
    """One kind of transaction (requests and jobs, or system): the driver pool its connections come from
    and the ORM sessions laid over them."""

    def __init__(self, engine: AsyncEngine, size: int) -> None:
        self.engine = engine
        self.size = size
        # After a restart every pooled connection is dead, so as many tries as the pool holds, and one more.
        self.begin_tries = size + 1
        self.sessions = async_sessionmaker(engine, class_=TransactionSession, expire_on_commit=False,
                                           sync_session_class=_TransactionSession)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    _, params = self.engine.dialect.create_connect_args(self.engine.url)
                    pool = await asyncpg.create_pool(
                        **params, min_size=0, max_size=self.size, connection_class=_DriverConnection,
                        init=_decode_json_as_sqlalchemy_does)
                    try:
                        await self._introduce_orm(pool)
                    except BaseException as exc:
                        pool.terminate()
                        if isinstance(exc, _NO_CONNECTION):  # the first transaction met PostgreSQL down
                            raise _unavailable(exc) from exc
                        raise
                    self._pool = pool
        return self._pool

    async def _introduce_orm(self, pool: asyncpg.Pool) -> None:
        """Let SQLAlchemy's dialect learn the server on a connection outside any transaction: it does so
        once per engine, in a transaction of its own that could not begin inside one of ours."""
        borrowed: Any = self.engine.sync_engine.pool

        def connect_once(driver: _DriverConnection) -> None:
            with borrowed.lending(driver):
                self.engine.sync_engine.connect().close()

        async with pool.acquire() as lease:
            await greenlet_spawn(connect_once, lease._con)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await self.engine.dispose()


def init_engine(url: str, settings: Settings | None = None, *, app_url: str | None = None) -> AsyncEngine:
    """`url` connects as the schema owner; `app_url`, when given, as the non-owner login role."""
    global _engine, _transactions, _system_transactions, _app_role
    settings = settings or get_settings()
    app_url = app_url or settings.app_database_url
    size = settings.db_pool_size + settings.db_max_overflow
    _system_transactions = _Transactions(_create_engine(url), size if app_url is None else 8)
    _transactions = _system_transactions if app_url is None else _Transactions(_create_engine(app_url), size)
    _engine = _transactions.engine
    _app_role = settings.db_app_role if app_url is None else None
    if _app_role is not None and not _ROLE_NAME.match(_app_role):
        raise ValueError(f"DB_APP_ROLE must be a plain role name, not {_app_role!r}")
    return _engine


def _create_engine(url: str) -> AsyncEngine:
    """The ORM's engine over connections the transactions lend it (see `_BorrowedConnectionPool`).

    SQLAlchemy's driver adapter is told the connections are in autocommit, so it sends no BEGIN or COMMIT
    of its own: `session_scope` begins and ends the transaction on the driver connection."""
    holder: list[_BorrowedConnectionPool] = []

    async def adopt_lent_connection() -> _DriverConnection:
        return holder[0].adopting()

    engine = create_async_engine(async_url(url), poolclass=_BorrowedConnectionPool,
                                 async_creator=adopt_lent_connection, isolation_level="AUTOCOMMIT")
    holder.append(engine.sync_engine.pool)  # type: ignore[arg-type]
    return engine


def get_engine() -> AsyncEngine:
    """The engine request and job transactions use (for SQLAlchemy events; it connects only inside them)."""
    if _engine is None:
        raise RuntimeError("database engine not initialised; call init_engine() first")
    return _engine


async def dispose_engine() -> None:
    global _engine, _transactions, _system_transactions
    for transactions in {id(t): t for t in (_transactions, _system_transactions) if t is not None}.values():
        await transactions.close()
    _engine = _transactions = _system_transactions = None


async def ping() -> None:
    """One `SELECT 1` on a pooled connection (readiness)."""
    if _transactions is None:
        raise RuntimeError("database engine not initialised; call init_engine() first")
    pool = await _transactions.pool()
    async with pool.acquire(timeout=5) as connection:
        await connection.fetchval("SELECT 1")


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
    transactions = _system_transactions if system else _transactions
    if transactions is None:
        raise RuntimeError("database engine not initialised; call init_engine() first")
    # One round trip opens the transaction, drops to the application role and scopes it to the tenant.
    # The values are formatted into the statement (the simple protocol takes no parameters): the tenant is
    # a UUID and the role name was checked in init_engine.
    settings = [f"set_config('app.tenant_id', '{UUID(str(tenant_id)) if tenant_id else ''}', true)"]
    if not system and _app_role is not None:
        settings.insert(0, f"set_config('role', '{_app_role}', true)")
    pool = await transactions.pool()
    lease = await _begin(pool, "BEGIN; SELECT " + ", ".join(settings), transactions.begin_tries)
    driver: _DriverConnection = lease._con  # the connection itself: the pool's proxy adds a call per use
    try:
        session = transactions.sessions()
        session.info.update(info or {})
        session.info.update({"system": system, "tenant_id": tenant_id, _DRIVER: driver})
        try:
            yield session
            await run_before_commit(session)
            if _pending(session):
                await session.flush()
            await _commit(driver)
        except BaseException:
            await _rollback(driver)
            raise
        finally:
            await _end_orm_session(session, driver)
    finally:
        if not driver.is_closed() and driver.is_in_transaction():
            driver.terminate()  # its ROLLBACK was cancelled too: closed rather than pooled mid-transaction
        await pool.release(lease)
    for hook in session.info.pop("after_commit", {}).values():
        hook()


async def fetch(session: AsyncSession, sql: str, *args: Any) -> list[asyncpg.Record]:
    """A hot read as a prepared statement on the transaction's own connection: PostgreSQL SQL with `$1`
    placeholders, rows as asyncpg records (`row["name"]`). It skips SQLAlchemy's statement building, result
    processing and ORM loading (most of a simple read's cost); JSON values come back decoded (the engine's
    codec) and take text as parameters. Row-level security applies as to any statement of the transaction."""
    if _pending(session):
        await session.flush()  # what the ORM would do before a query: the read sees this transaction's changes
    async with _turn(session):
        return await _session_driver(session).fetch(sql, *args)


async def execute(session: AsyncSession, sql: str, *args: Any) -> None:
    """`fetch` for a statement that returns nothing (an INSERT of a hot path)."""
    async with _turn(session):
        await _session_driver(session).execute(sql, *args)


def _session_driver(session: AsyncSession) -> asyncpg.Connection:
    """The transaction's asyncpg connection (kept in the session by `session_scope`)."""
    driver: asyncpg.Connection = session.info[_DRIVER]
    return driver


def _turn(session: AsyncSession) -> asyncio.Lock:
    """Every session is a `TransactionSession` (session_scope makes them; nothing else can connect)."""
    return cast(TransactionSession, session).turn


def _pending(session: AsyncSession) -> bool:
    return bool(session.new or session.dirty or session.deleted)


async def _begin(pool: asyncpg.Pool, begin: str, tries: int) -> asyncpg.pool.PoolConnectionProxy:
    """Begin on a pooled connection. One found dead (the server restarted, an idle backend was killed) is
    closed and the next one tried: nothing had been sent, so nothing can happen twice. After a restart every
    pooled connection is dead, so as many tries as the pool holds, and one for a fresh connection."""
    for attempt in range(1, tries + 1):
        # The wait is bounded only when the pool is exhausted: a timeout is a timer per acquisition, a
        # visible share of a small request, and with a free slot nothing waits (no await until it is taken).
        exhausted = pool.get_size() - pool.get_idle_size() >= pool.get_max_size()
        try:
            lease = await pool.acquire(timeout=_ACQUIRE_TIMEOUT if exhausted else None)
        except _NO_CONNECTION as exc:  # PostgreSQL is down or refusing, or every connection stayed busy
            raise _unavailable(exc) from exc
        driver = lease._con  # a connection found closed is detached from its lease (asyncpg)
        try:
            await driver.execute(begin)
            return lease
        except BaseException as exc:
            lost = isinstance(exc, _CONNECTION_LOST) or driver.is_closed()
            if lost or driver.is_in_transaction():  # cancelled once BEGIN had run: never pooled mid-transaction
                driver.terminate()
            await pool.release(lease)
            if not lost or not isinstance(exc, Exception):
                raise
            if attempt == tries:
                raise _unavailable(exc, f"no live database connection after {tries} tries") from exc
    raise AssertionError("unreachable")


async def _commit(driver: asyncpg.Connection) -> None:
    try:
        await driver.execute("COMMIT")
    except _CONNECTION_LOST as exc:
        # Whether the commit reached the server is unknown: the client retries (with its Idempotency-Key).
        driver.terminate()
        raise DatabaseUnavailable() from exc


async def _rollback(driver: asyncpg.Connection) -> None:
    if driver.is_closed() or not driver.is_in_transaction():
        return
    try:
        await driver.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - the error being handled is the one to report
        driver.terminate()
    except BaseException:  # cancelled meanwhile: the connection must not be reused mid-transaction
        driver.terminate()
        raise


async def _end_orm_session(session: AsyncSession, driver: _DriverConnection) -> None:
    """Forget the ORM's state of a transaction that ended. A session the code never used for a statement
    holds no connection: dropping its objects needs no greenlet (a visible share of a small request)."""
    if not session.sync_session.in_transaction():
        session.sync_session.close()
        return
    try:
        await session.close()
    except Exception:  # noqa: BLE001 - the transaction already ended; the connection is what matters
        driver.terminate()
