"""Inventory's reactions: low stock tells the store's managers (a WeCom alert to staff)."""

from __future__ import annotations

from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.events import OutboxEvent, on
from app.domain.iam import service as iam
from app.domain.inventory.events import LOW_STOCK_TOPIC
from app.domain.messaging import alerts
from app.domain.tenancy import service as tenancy


@on(LOW_STOCK_TOPIC)
async def alert_store_managers(session: AsyncSession, event: OutboxEvent) -> None:
    """The stock of an item fell to its threshold: the store's managers reorder it."""
    payload = event.payload
    store_id = UUID(payload["store_id"])
    store = await tenancy.store_row(session, event.tenant_id, store_id)
    managers = await iam.active_staff_with_role(session, event.tenant_id, "store_manager", store_id=store_id)
    await alerts.send_staff_alert(session, event.tenant_id, alerts.LOW_STOCK, staff_ids=managers,
                                  subject=str(event.id), variables={
                                      "store_name": store.name if store else "", "item_name": payload["name"],
                                      "quantity": str(payload["quantity"]), "unit": payload.get("unit") or "",
                                      "threshold": str(payload["threshold"])})
