from __future__ import annotations

from fastapi import APIRouter

from app.core import db
from app.core.errors import ServiceUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz", responses={503: {"description": "Database unreachable"}})
async def healthz() -> dict[str, str]:
    """200 `{"status": "ok"}` once the database answers."""
    try:
        await db.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the database means not ready
        raise ServiceUnavailable("database unreachable", code="database_unavailable") from exc
    return {"status": "ok"}
