"""Spreadsheets over REST: reading an uploaded file within the import limit, answering with an .xlsx."""

from __future__ import annotations

from typing import Any

from fastapi import Response, UploadFile

from app.core.errors import PayloadTooLarge
from app.core.settings import get_settings
from app.domain.members.spreadsheets import XLSX_MEDIA_TYPE

XLSX_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"description": "An .xlsx workbook", "content": {
    XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}}}


def xlsx_response(content: bytes, filename: str) -> Response:
    return Response(content=content, media_type=XLSX_MEDIA_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "no-store"})


async def read_upload(file: UploadFile) -> bytes:
    """The uploaded file, refused with 413 `file_too_large` past IMPORT_MAX_BYTES (read no further than that)."""
    limit = get_settings().import_max_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the file is larger than {limit} bytes", code="file_too_large")
    return data
