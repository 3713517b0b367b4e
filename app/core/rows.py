"""Fetching one tenant row by its key, or answering 404 with a stable code."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

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
