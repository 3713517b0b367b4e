"""The topics inventory emits (payloads as emitted; see docs/events.md for who consumes them)."""

from __future__ import annotations

from app.core.events import topic

# The item is named twice: as item_id and, by its kind, as consumable_id or product_id.
LOW_STOCK_TOPIC = topic(
    "inventory.low_stock", "A store's stock of an item fell to its low-stock threshold",
    "store_id", "item_kind", "item_id", "consumable_id/product_id", "name", "unit", "quantity", "threshold",
    "movement_id")
