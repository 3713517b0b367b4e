"""Fetching one tenant row by its key, or answering 404 with a stable code."""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import inspect
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.db import fetch
from app.core.errors import NotFound

Row = TypeVar("Row")


async def get_or_404(
    session: AsyncSession,
    model: type[Row],
    tenant_id: UUID,
    row_id: UUID,
    *,
    code: str,
    detail: str | None = None,
    lock: bool = False,
    fresh: bool = False,
    **extra: Any,
) -> Row:
    """The row `(tenant_id, row_id)` of `model`, or NotFound(`code`).

    `lock` takes a row lock (FOR UPDATE) and re-reads the row; `fresh` re-reads it without a lock, for a
    row this session may hold from before another transaction changed it. The default detail is the code
    read as words: `card_not_found` → "card not found"; `extra` goes into the problem (e.g. `field="card_id"`).
    """
    row = await session.get(model, (tenant_id, row_id), with_for_update=lock,
                            populate_existing=lock or fresh)
    if row is None:
        raise NotFound(detail or code.replace("_", " "), code=code, **extra)
    return row


@cache
def snapshot_columns(model: type, alias: str) -> tuple[str, tuple[str, ...]]:
    """The select list of every column of `model`'s table as `alias`.<column>, and each column's attribute,
    for a statement that loads snapshots (`snapshot_of`)."""
    columns: Any = inspect(model).columns
    return ", ".join(f'{alias}."{c.name}"' for c in columns.values()), tuple(columns.keys())


def snapshot_of(model: type[Row], keys: tuple[str, ...], values: Any) -> Row:
    """A row of `model` built from the first `len(keys)` values of a record, outside the ORM session: with
    pydantic's `model_construct` (no validation — table models do not validate anyway — and no ORM state, a
    tenth of the constructor's cost), so it can be read, never added to a session."""
    return model.model_construct(**dict(zip(keys, values, strict=False)))  # type: ignore[attr-defined]


async def read_or_404(session: AsyncSession, model: type[Row], tenant_id: UUID, row_id: UUID, *, code: str,
                      detail: str | None = None, **extra: Any) -> Row:
    """`get_or_404` for a row that is only read: one prepared statement, the row built outside the ORM
    session (a snapshot: changes to it are not saved, and it is not the session's instance of that row).
    For the hot paths, where loading through the session costs most of the statement."""
    listed, keys = snapshot_columns(model, "t")  # type: ignore[arg-type]  # model classes are hashable
    table = model.__tablename__  # type: ignore[attr-defined]
    rows = await fetch(session, f'SELECT {listed} FROM "{table}" t WHERE t.tenant_id = $1 AND t.id = $2',
                       tenant_id, row_id)
    if not rows:
        raise NotFound(detail or code.replace("_", " "), code=code, **extra)
    return snapshot_of(model, keys, rows[0])
