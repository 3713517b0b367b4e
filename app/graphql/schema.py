"""The GraphQL schema at /graphql (mini-program and WeCom sidebar): same services, same permissions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.fastapi import GraphQLRouter
from strawberry.tools import merge_types
from strawberry.types import Info

from app.api.docs_pages import offline_graphiql_html
from app.api.routing import TransactionalRoute
from app.core.errors import AppError
from app.core.pagination import PageParams
from app.core.settings import Settings
from app.domain.tenancy import service as tenancy
from app.graphql.booking import BookingMutations, BookingQueries
from app.graphql.care import CareMutations, CareQueries
from app.graphql.checkout import CheckoutMutations, CheckoutQueries
from app.graphql.clinical_consents import ConsentMutations, ConsentQueries
from app.graphql.clinical_photos import ClinicalPhotoQueries
from app.graphql.clinical_plans import ClinicalPlanQueries
from app.graphql.clinical_records import ClinicalMutations, ClinicalQueries
from app.graphql.context import Context, get_context, page_limit, parse_id
from app.graphql.growth import GrowthMutations, GrowthQueries
from app.graphql.input_checks import RefuseUnstorableText
from app.graphql.limits import CareLoopSchema, IntrospectionDepthLimit
from app.graphql.members import MemberMutations, MemberQueries
from app.graphql.patient import PatientMutations, PatientQueries
from app.graphql.patient_booking import PatientBookingMutations, PatientBookingQueries
from app.graphql.sidebar import SidebarMutations, SidebarQueries

if TYPE_CHECKING:
    from app.domain.tenancy.models import Store


@strawberry.type
class StoreType:
    id: strawberry.ID
    name: str
    timezone: str
    address: str | None
    phone: str | None
    active: bool
    created_at: datetime | None

    @classmethod
    def of(cls, store: Store) -> StoreType:
        return cls(id=strawberry.ID(str(store.id)), name=store.name, timezone=store.timezone,
                   address=store.address, phone=store.phone, active=store.active, created_at=store.created_at)


@strawberry.type
class StorePage:
    items: list[StoreType]
    next_cursor: str | None


@strawberry.type
class Me:
    id: strawberry.ID
    kind: str
    display_name: str | None
    roles: list[str]
    permissions: list[str]
    store_ids: strawberry.Private[list[UUID] | None]
    tenant_id: strawberry.Private[UUID]

    @strawberry.field(description="Stores this caller may act in (every store when unrestricted).")
    async def stores(self, info: Info[Context, None]) -> list[StoreType]:
        if self.store_ids is None:
            rows, _ = await tenancy.list_stores(info.context.session, await info.context.actor(),
                                                PageParams(limit=200))
            return [StoreType.of(s) for s in rows]
        loaded = await info.context.store_loader(self.tenant_id).load_many(self.store_ids)
        return [StoreType.of(s) for s in loaded if s is not None]


@strawberry.type
class PlatformQuery:
    @strawberry.field(description="The signed-in caller.")
    async def me(self, info: Info[Context, None]) -> Me:
        actor = await info.context.actor(audiences=("staff", "integration", "patient"))
        return Me(id=strawberry.ID(str(actor.id)), kind=actor.kind, display_name=actor.display_name,
                  roles=list(actor.roles), permissions=sorted(actor.permissions),
                  store_ids=None if actor.store_ids is None else sorted(actor.store_ids, key=str),
                  tenant_id=actor.tenant_id)

    @strawberry.field(description="The tenant's stores, a page at a time.")
    async def stores(self, info: Info[Context, None], limit: int = 50, cursor: str | None = None) -> StorePage:
        actor = await info.context.actor("stores:read")
        rows, next_cursor = await tenancy.list_stores(info.context.session, actor,
                                                      PageParams(limit=page_limit(limit), cursor=cursor))
        return StorePage(items=[StoreType.of(s) for s in rows], next_cursor=next_cursor)

    @strawberry.field(description="One store by id.")
    async def store(self, info: Info[Context, None], id: strawberry.ID) -> StoreType:
        actor = await info.context.actor("stores:read")
        return StoreType.of(await tenancy.get_store(info.context.session, actor, parse_id(id, "id")))


class ProblemCodes(SchemaExtension):
    """Give GraphQL errors the REST problem codes, and roll the transaction back when any occurred."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not getattr(result, "errors", None):
            return
        self.execution_context.context.mark_failed()
        for index, error in enumerate(result.errors):
            original = error.original_error
            if isinstance(original, AppError):
                extensions = {"code": original.code, "status": original.status, **original.extra}
            elif original is None:
                extensions = {"code": "graphql_validation", "status": 400}
            else:
                extensions = {"code": "internal_error", "status": 500}
            result.errors[index] = GraphQLError(
                error.message if original is None or isinstance(original, AppError)
                else "something went wrong; the change was not saved",
                nodes=error.nodes, source=error.source, positions=error.positions, path=error.path,
                original_error=original, extensions=extensions,
            )


Query = merge_types("Query", (PlatformQuery, MemberQueries, BookingQueries, CheckoutQueries, CareQueries,
                              SidebarQueries, PatientBookingQueries, PatientQueries, ClinicalQueries,
                              ClinicalPlanQueries, ClinicalPhotoQueries, ConsentQueries, GrowthQueries))
Mutation = merge_types("Mutation", (MemberMutations, BookingMutations, CheckoutMutations, CareMutations,
                                    SidebarMutations, PatientBookingMutations, PatientMutations,
                                    ClinicalMutations, ConsentMutations, GrowthMutations))


def build_schema(settings: Settings) -> strawberry.Schema:
    extensions: list[Any] = [
        lambda: QueryDepthLimiter(max_depth=settings.graphql_max_depth),
        IntrospectionDepthLimit,
        lambda: MaxTokensLimiter(max_token_count=settings.graphql_max_tokens),
        lambda: MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases),
        RefuseUnstorableText,
        ProblemCodes,
    ]
    if not settings.graphql_introspection_enabled:
        extensions.insert(0, DisableIntrospection)
    return CareLoopSchema(query=Query, mutation=Mutation, extensions=extensions)


class OfflineGraphQLRouter(GraphQLRouter):
    """GraphiQL with its scripts and styles served by the app (app/api/docs_pages.py)."""

    @property
    def graphql_ide_html(self) -> str:
        return offline_graphiql_html()


def graphql_router(settings: Settings) -> GraphQLRouter:
    return OfflineGraphQLRouter(build_schema(settings), context_getter=get_context, route_class=TransactionalRoute,
                                graphql_ide="graphiql" if settings.graphql_ide_enabled else None,
                                multipart_uploads_enabled=False)


