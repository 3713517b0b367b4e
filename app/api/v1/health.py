from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from app.core.db import get_engine
from app.core.errors import ServiceUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz", responses={503: {"description": "Database unreachable"}})
async def healthz() -> dict[str, str]:
    """200 `{"status": "ok"}` once the database answers."""
    try:
        async with get_engine().connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the database means not ready
        raise ServiceUnavailable("database unreachable", code="database_unavailable") from exc
    return {"status": "ok"}
