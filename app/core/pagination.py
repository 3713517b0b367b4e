"""Keyset (cursor) pagination: `?limit=&cursor=` → `{"items": [...], "next_cursor": ...}`.

The cursor is an opaque base64 token holding the sort key of the last row served; pages stay
stable while rows are inserted, and deep pages cost the same as the first.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.db import fetch
from app.core.errors import BadRequest

T = TypeVar("T")

MAX_LIMIT = 200


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class PageParams(BaseModel):
    limit: int = 50
    cursor: str | None = None


async def page_params(
    limit: int = Query(50, ge=1, le=MAX_LIMIT, description="Page size (1–200)"),
    cursor: str | None = Query(None, max_length=200, description="`next_cursor` of the previous page"),
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


def encode_cursor(value: Any) -> str:
    raw = json.dumps(str(value) if isinstance(value, UUID) else value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, convert: Callable[[Any], Any]) -> Any:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = convert(json.loads(raw))
    except Exception as exc:  # a forged cursor can make `convert` raise anything (UUID({}) → AttributeError)
        raise BadRequest("cursor is not one this API issued", code="invalid_cursor") from exc
    if not _issuable(value):
        raise BadRequest("cursor is not one this API issued", code="invalid_cursor")
    return value


def _issuable(value: Any) -> bool:
    """False for what no issued cursor holds and the database would choke on: naive datetimes, huge ints."""
    if isinstance(value, tuple | list):
        return all(_issuable(v) for v in value)
    if isinstance(value, datetime):
        return value.tzinfo is not None
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value < 2**63
    return True


async def paginate(
    session: AsyncSession,
    stmt: Select,
    key: InstrumentedAttribute[Any],
    params: PageParams,
    *,
    descending: bool = False,
    convert: Callable[[Any], Any] = UUID,
) -> tuple[Sequence[Any], str | None]:
    """Run `stmt` (selecting one entity) one page at a time, ordered by the unique column `key`."""
    if params.cursor:
        after = decode_cursor(params.cursor, convert)
        stmt = stmt.where(key < after if descending else key > after)
    stmt = stmt.order_by(key.desc() if descending else key.asc()).limit(params.limit + 1)
    rows = list((await session.execute(stmt)).scalars().all())
    return _one_page(rows, params.limit, lambda row: getattr(row, key.key))


async def fetch_page(session: AsyncSession, select_sql: str, args: Sequence[Any], params: PageParams, *,
                     key: str = "id", descending: bool = False,
                     convert: Callable[[Any], Any] = UUID) -> tuple[list[dict[str, Any]], str | None]:
    """`paginate` for hot reads (see `db.fetch`): `select_sql` is `SELECT … FROM … WHERE …` with `$n`
    placeholders for `args`; the cursor condition, order and limit on the unique column `key` are added here.
    Rows come back as dicts."""
    values = list(args)
    if params.cursor:
        values.append(decode_cursor(params.cursor, convert))
        select_sql += f" AND {key} {'<' if descending else '>'} ${len(values)}"
    values.append(params.limit + 1)
    sql = f"{select_sql} ORDER BY {key} {'DESC' if descending else 'ASC'} LIMIT ${len(values)}"
    rows = [dict(r) for r in await fetch(session, sql, *values)]
    return _one_page(rows, params.limit, lambda row: row[key])


def _one_page(rows: list[T], limit: int, key_of: Callable[[T], Any]) -> tuple[list[T], str | None]:
    """The first `limit` of `limit + 1` rows read, and the cursor after them when there is more."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(key_of(rows[-1]))
