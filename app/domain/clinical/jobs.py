"""Clinical housekeeping run by the worker: files no photo refers to.

An upload stores its file before its row commits (a refused upload stores nothing), so a transaction that
fails at commit leaves a file behind. Such files are deleted once an hour has passed, tenant by tenant.
"""

from __future__ import annotations

import logging

from app.core.context import RequestContext, reset_context, set_context
from app.core.db import SessionFactory
from app.core.events import scheduled
from app.domain.clinical import photos
from app.domain.tenancy import service as tenancy

log = logging.getLogger("careloop.clinical")


@scheduled(hour={3}, minute={40})
async def sweep_orphan_clinical_files(sessions: SessionFactory) -> dict[str, int]:
    token = set_context(RequestContext(actor_type="system", actor_id="clinical-file-sweep"))
    deleted = 0
    try:
        async with sessions(system=True) as session:
            tenants = await tenancy.tenant_ids(session)
        for tenant_id in tenants:
            try:
                deleted += await photos.sweep_orphans(sessions, tenant_id)
            except Exception:  # noqa: BLE001 - log and go on with the other tenants
                log.exception("clinical file sweep failed", extra={"tenant_id": str(tenant_id)})
        return {"deleted": deleted}
    finally:
        reset_context(token)
