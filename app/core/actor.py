"""The authenticated caller, as every service sees it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from app.core.errors import Forbidden


@dataclass(frozen=True)
class Actor:
    tenant_id: UUID
    kind: str  # staff | patient | integration | system
    id: UUID
    permissions: frozenset[str] = frozenset()
    # None: every store of the tenant; otherwise only these.
    store_ids: frozenset[UUID] | None = frozenset()
    roles: tuple[str, ...] = ()
    session_id: str | None = None
    display_name: str | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def can(self, permission: str) -> bool:
        # The system actor (the worker, seeding, migrations) holds every permission there is.
        return self.kind == "system" or permission in self.permissions

    def require(self, *permissions: str) -> None:
        missing = [p for p in permissions if not self.can(p)]
        if missing:
            raise Forbidden(
                f"this action needs the permission {', '.join(missing)}",
                code="permission_denied",
                missing_permissions=missing,
            )

    def can_act_in_store(self, store_id: UUID) -> bool:
        return self.store_ids is None or store_id in self.store_ids

    def require_store(self, store_id: UUID) -> None:
        if not self.can_act_in_store(store_id):
            raise Forbidden("you are not assigned to this store", code="store_forbidden")

    def visible_stores(self, requested: Iterable[UUID] | None = None) -> frozenset[UUID] | None:
        """The stores a list query may cover: the requested ones the actor may see, or all of theirs."""
        if requested is None:
            return self.store_ids
        wanted = frozenset(requested)
        if self.store_ids is None:
            return wanted
        return wanted & self.store_ids

    @classmethod
    def system(cls, tenant_id: UUID) -> Actor:
        return cls(tenant_id=tenant_id, kind="system", id=tenant_id, store_ids=None, roles=("system",))
