"""The permission catalogue and the preset roles every tenant starts with.

Permissions are `<context>:<action>` (with a sub-resource after a dot: `members.health:read`).
`stores:all` lets a role act in every store; without it a staff member acts only in assigned stores.
"""

from __future__ import annotations

PERMISSIONS: dict[str, str] = {
    "stores:read": "See stores",
    "stores:write": "Create and change stores",
    "stores:all": "Act in every store of the tenant, not only assigned ones",
    "staff:read": "See staff accounts",
    "staff:write": "Create and change staff accounts and their roles",
    "roles:read": "See roles",
    "roles:write": "Define tenant roles",
    "api_clients:write": "Create and revoke integration clients",
    "audit:read": "Read and verify the audit log",
    "outbox:read": "See background events and dead letters",
    "outbox:write": "Retry dead-lettered background events",
    "members:read": "See member profiles",
    "members:write": "Create and change member profiles",
    "members.contact:read": "See unmasked phone numbers and ID numbers",
    "members.health:read": "See health fields (allergies, history, constitution) of members in your care",
    "members.health:all": "See health fields of every member, not only those in your care",
    "members.health:write": "Change health fields",
    "members.notes:write": "Add notes to the timeline of members in your care",
    "members:export": "Export member data",
    "members:erase": "Erase (anonymise) a member",
    "members:merge": "Merge duplicate members",
    "catalog:read": "See services, products and consumables",
    "catalog:write": "Change services, products and consumables",
    "cards:read": "See cards and their ledgers",
    "cards:issue": "Issue cards without an order",
    "cards:deduct": "Deduct sessions or balance",
    "cards:adjust": "Freeze, transfer, extend cards",
    "cards:import": "Import prepaid cards, points balances and visit history from the old system",
    "inventory:read": "See stock",
    "inventory:write": "Receive, adjust and transfer stock",
    "appointments:read": "See appointments",
    "appointments:write": "Book, reschedule, cancel and check in",
    "appointments:book_own": "Book a member you serve into your own schedule, within the store's booking policy",
    "schedule:write": "Manage shifts and resources",
    "visits:complete": "Complete a service",
    "visits:reverse": "Reverse a completed service",
    "commissions:read": "See commissions",
    "orders:read": "See orders",
    "orders:write": "Open and pay orders",
    "refunds:write": "Request refunds",
    "refunds:approve": "Approve refunds",
    "reports:read": "See reports and the daily close",
    "reports:close": "Close a store's day (日结): its figures are frozen",
    "loyalty:write": "Issue coupons and adjust points",
    "marketing:write": "Run campaigns",
    "clinical:read": "Read clinical records",
    "clinical:write": "Write clinical records",
    "tasks:read": "See follow-up tasks",
    "tasks:write": "Create and complete follow-up tasks",
    "automation:write": "Edit automation rules",
    "messaging:write": "Edit templates and send messages",
    "growth:read": "See channels, campaign codes, spend, leads and assignment rules",
    "growth:write": "Enter leads, work them through the funnel, record channel spend",
    "growth:admin": "Define channels, campaign codes and assignment rules; rotate the lead-intake secret",
    # Owner and store managers (the manager preset takes every permission it does not exclude).
    "chat_sync:run": "Start a WeCom chat-record sync now instead of waiting for the schedule",
}

_ALL = set(PERMISSIONS)
_READ_BASE = {"stores:read", "catalog:read", "appointments:read", "members:read", "tasks:read"}

PRESET_ROLES: dict[str, tuple[str, set[str]]] = {
    "owner": ("Owner: everything", _ALL),
    "store_manager": (
        "Store manager: runs assigned stores",
        _ALL
        - {"stores:all", "stores:write", "roles:write", "api_clients:write", "members:erase", "members:merge"}
        - {"audit:read", "outbox:write"}
        # Channels, rules and the intake secret shape the whole chain's funnel: the owner's.
        - {"growth:admin"},
    ),
    "doctor": (
        "Doctor: clinical work for members in their care",
        _READ_BASE
        | {"members:write", "members.contact:read", "members.health:read", "members.health:write"}
        | {"clinical:read", "clinical:write", "appointments:write", "visits:complete"}
        | {"cards:read", "tasks:write"},
    ),
    "therapist": (
        "Therapist: serves members in their appointments",
        _READ_BASE
        | {"members.health:read", "members.health:write", "cards:read", "visits:complete"}
        | {"clinical:read", "clinical:write", "tasks:write", "commissions:read"}
        # The WeCom sidebar: book the next visit on their own schedule, note what the member said.
        | {"appointments:book_own", "members.notes:write"},
    ),
    "consultant": (
        "Consultant: owns member relationships, sells cards, follows up",
        _READ_BASE
        | {"members:write", "members.contact:read", "cards:read", "orders:read", "orders:write"}
        | {"appointments:write", "tasks:write", "commissions:read"}
        | {"growth:read", "growth:write"},
    ),
    "front_desk": (
        "Front desk: check-in, booking and checkout; never health data",
        _READ_BASE
        | {"members:write", "members.contact:read", "cards:read", "cards:deduct"}
        | {"orders:read", "orders:write", "refunds:write", "appointments:write"}
        | {"visits:complete", "inventory:read", "tasks:write", "staff:read"},
    ),
    "marketing": (
        "Marketing: campaigns and segments; phone numbers masked",
        _READ_BASE | {"marketing:write", "loyalty:write", "messaging:write", "automation:write"}
        | {"stores:all", "reports:read"},
    ),
    "finance": (
        "Finance: money, reports and approvals across stores",
        {"stores:read", "stores:all", "orders:read", "refunds:approve", "reports:read", "reports:close"}
        | {"commissions:read", "cards:read", "members:read", "audit:read", "inventory:read"}
        # Bringing the old system's prepaid balances over is reconciled against its books by finance.
        | {"cards:import"},
    ),
}
