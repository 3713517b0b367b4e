"""The topics members emits (see docs/events.md for who consumes them)."""

from __future__ import annotations

from app.core.events import topic

MEMBER_CREATED = topic("member.created", "A member was registered (one by one or by an import)",
                       "member_id", "home_store_id")
MEMBER_MERGED = topic("member.merged", "A duplicate member was merged into another, which keeps its rows",
                      "member_id", "duplicate_id")
MEMBER_ERASED = topic("member.erased", "A member's personal data was erased (the row and its ledgers stay)",
                      "member_id")
