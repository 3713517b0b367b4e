"""Per-request GraphQL context: the request's transaction, the caller, and DataLoaders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from fastapi import Request
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession
from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext

from app.api.deps import STAFF_AND_INTEGRATION, _load_actor
from app.core.actor import Actor
from app.core.errors import AppError
from app.domain.tenancy import service as tenancy

if TYPE_CHECKING:
    from app.domain.tenancy.models import Store


class Context(BaseContext):
    def __init__(self, request: Request) -> None:
        super().__init__()
        self._request = request
        self.loaders: dict[str, DataLoader] = {}

    @property
    def session(self) -> AsyncSession:
        return self._request.state.db

    async def actor(self, *permissions: str, audiences: tuple[str, ...] = STAFF_AND_INTEGRATION) -> Actor:
        actor = await _load_actor(self._request, audiences)
        actor.require(*permissions)
        return actor

    def mark_failed(self) -> None:
        """A mutation with errors must not commit its partial work."""
        self._request.state.rollback = True

    def loader(self, name: str, load_fn: Any) -> DataLoader:
        if name not in self.loaders:
            self.loaders[name] = DataLoader(load_fn=load_fn)
        return self.loaders[name]

    def store_loader(self, tenant_id: UUID) -> DataLoader[UUID, Store | None]:
        async def load(ids: list[UUID]) -> list[Store | None]:
            by_id = await tenancy.stores_by_id(self.session, tenant_id, set(ids))
            return [by_id.get(i) for i in ids]

        return self.loader("store", load)


def parse_id(value: Any, what: str) -> UUID:
    """An ID argument as a UUID, or the same 422 REST gives for a malformed id."""
    try:
        return UUID(str(value))
    except ValueError as exc:
        raise AppError(f"{what} is not a valid id", code="validation_error", status=422) from exc


def page_limit(limit: int) -> int:
    if not 1 <= limit <= 200:
        raise AppError("limit must be between 1 and 200", code="validation_error", status=422)
    return limit


def validated(model: Any, **values: Any) -> Any:
    """Build a REST request schema from GraphQL arguments (None = not given); its refusal is the same
    validation_error, naming the field."""
    try:
        return model(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise AppError(f"{field}: {first['msg']}" if field else first["msg"], code="validation_error", status=422,
                       field=field) from exc


async def get_context(request: Request) -> Context:
    return Context(request)
