"""Signed downloads from the local file store: `GET /api/v1/files/{token}`.

The token is the permission (app.core.files.sign_download): it is handed out, short-lived, by an endpoint
that checked the caller's permissions and audited the read (a clinical photo's URL, for instance), so this
route takes no Authorization header — an `<img src>` in the mini-program cannot send one. Clients never
build these URLs, they follow them, so the route is left out of the OpenAPI document (as a presigned S3 URL
would not be in it either). With FILE_STORE=s3 the signed URLs point at the bucket and this route has
nothing to serve.
"""

from __future__ import annotations

from fastapi import APIRouter, Path, Response

from app.api.errors import PROBLEM_RESPONSES
from app.core.clock import utcnow
from app.core.files import FileMissing, LocalFileStore, file_store, verify_download

router = APIRouter(tags=["files"], responses=PROBLEM_RESPONSES)


@router.get("/files/{token}", operation_id="download_file", include_in_schema=False, response_class=Response)
async def download_file(token: str = Path(min_length=3, max_length=4000, pattern=r"^[A-Za-z0-9_.-]+$")) -> Response:
    """The file a signed link names: 403 `file_link_invalid` when the link was altered, 410
    `file_link_expired` once it has expired, 404 `file_not_found` when the file is gone."""
    grant = verify_download(token)
    store = file_store()
    if not isinstance(store, LocalFileStore):
        raise FileMissing("files are served by the configured object storage, not by this route")
    data = await store.get(grant.key)
    # Private: a shared cache must never keep health data; the browser may, until the link expires.
    max_age = max(0, int((grant.expires_at - utcnow()).total_seconds()))
    return Response(content=data, media_type=grant.content_type, headers={
        "Content-Disposition": grant.content_disposition, "Cache-Control": f"private, max-age={max_age}",
        "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"})
