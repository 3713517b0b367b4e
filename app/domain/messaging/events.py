"""The topics messaging emits."""

from __future__ import annotations

from app.core.events import topic

MESSAGE_SEND = topic("message.send", "A queued message is due for a delivery attempt", "message_id", "attempt")
