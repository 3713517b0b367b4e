"""The topics the webhooks context emits (the topics integrators subscribe to are in `topics.py`)."""

from __future__ import annotations

from app.core.events import topic

WEBHOOKS_DISPATCH = topic("webhooks.dispatch", "Webhook deliveries were created or replayed and are due now",
                          "delivery_ids")
