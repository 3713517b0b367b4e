"""create_app(): the FastAPI application with its routers, GraphQL, middleware and error handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api.docs_pages import install_docs_pages
from app.api.errors import install_error_handlers
from app.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from app.api.v1 import (
    appointments,
    auth,
    availability,
    calendar,
    card_imports,
    cards,
    care,
    catalog,
    chatsync,
    clinical,
    clinical_photos,
    clinical_visits,
    consents,
    coupon_publications,
    fhir,
    files,
    growth_leads,
    health,
    inventory,
    loyalty,
    member_identifiers,
    member_imports,
    members,
    messaging,
    orders,
    patient_account,
    patient_bookings,
    patient_clinical,
    patient_consents,
    patient_listings,
    patient_messages,
    patient_orders,
    patient_storefront,
    platform,
    referrals,
    refunds,
    reports,
    schedule,
    staff,
    stores,
    treatment_plans,
    visits,
    waitlist,
    webhooks,
    wechat,
)
from app.core import db
from app.core.embedded import resolve_urls
from app.core.redis import create_redis
from app.core.settings import Settings, get_settings
from app.domain.iam.revocations import revoked_sessions

log = logging.getLogger("careloop")

API_PREFIX = "/api/v1"

DESCRIPTION = """
CareLoop runs a clinic or wellness chain's members: bookings, course cards, payments and the care loop.

**Authentication.** Send `Authorization: Bearer <access_token>`.
Staff sign in at `POST /api/v1/auth/token` (tenant code, username, password) and rotate with
`POST /api/v1/auth/refresh`; integrations (HIS/EMR) use OAuth 2.0 client credentials at
`POST /api/v1/oauth/token`. Tokens carry an audience (`staff`, `patient`, `integration`).

**Conventions.** Amounts are integer fen; times RFC 3339 with offset; ids are strings. Lists take
`limit` and `cursor` and answer `{"items": [...], "next_cursor": ...}`. Errors are
`application/problem+json` with a stable `code`. Every POST accepts `Idempotency-Key`.
"""


def create_app(settings: Settings | None = None, *, database_url: str | None = None,
               redis_url: str | None = None, app_database_url: str | None = None,
               run_worker: bool | None = None) -> FastAPI:
    """`database_url` connects as the schema owner; requests use `app_database_url` (or
    APP_DATABASE_URL) when given, else the owner connection switched to the application role."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db_url, r_url = database_url, redis_url
        if not db_url or not r_url:
            resolved = resolve_urls(settings)
            db_url, r_url = db_url or resolved[0], r_url or resolved[1]
        db.init_engine(db_url, settings, app_url=app_database_url)
        app.state.redis = create_redis(r_url)
        # Ended sign-ins, kept fresh in this process (the request path then checks tokens in memory).
        stop_polling = asyncio.Event()
        revocation_poller = asyncio.create_task(revoked_sessions.poll(db.session_scope, stop_polling),
                                                name="revocation-poller")
        app.state.database_url, app.state.redis_url = db_url, r_url
        worker = None
        in_process = run_worker if run_worker is not None else (
            settings.embedded_worker if settings.embedded_worker is not None else settings.embedded_redis)
        if in_process:
            from app.workers.runtime import BackgroundWorker

            worker = BackgroundWorker(db_url, r_url)
            await worker.start()
        try:
            yield
        finally:
            # Every step runs even when one fails: a skipped close leaves connections that keep the embedded
            # servers from stopping.
            stop_polling.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await revocation_poller
            if worker is not None:
                await worker.close()
            with contextlib.suppress(Exception):
                await app.state.redis.aclose()
            await db.dispose_engine()

    telemetry = {} if settings.telemetry_enabled else {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(
        telemetry=telemetry,  # type: ignore[arg-type]
        title="CareLoop API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served from vendored assets below: the page must work offline
        redoc_url=None,
    )
    install_docs_pages(app, openapi_url=f"{API_PREFIX}/openapi.json", title="CareLoop API")
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_body_bytes,
                       overrides={f"{API_PREFIX}/member-imports": settings.import_max_bytes,
                                  f"{API_PREFIX}/card-imports": settings.import_max_bytes,
                                  # the largest clinical file, and room for the form fields around it
                                  f"{API_PREFIX}/clinical-photos": max(settings.clinical_image_max_bytes,
                                                                       settings.clinical_pdf_max_bytes) + 65536},
                       # FHIR answers refused input as an OperationOutcome: its routes run the check themselves.
                       own_input_checks=("/graphql", f"{API_PREFIX}/fhir"))
    app.add_middleware(RequestContextMiddleware)

    app.include_router(health.router)
    for module in (auth, stores, staff, member_imports, members, catalog, inventory, cards, visits, platform,
                   calendar, waitlist):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(calendar.feed_router, prefix=API_PREFIX)
    # Before the cards router: /card-imports/template.xlsx is a path of its own.
    app.include_router(card_imports.router, prefix=API_PREFIX)
    app.include_router(availability.router, prefix=API_PREFIX)
    app.include_router(schedule.router, prefix=API_PREFIX)
    app.include_router(appointments.router, prefix=API_PREFIX)
    app.include_router(care.router, prefix=API_PREFIX)
    app.include_router(loyalty.router, prefix=API_PREFIX)
    app.include_router(orders.router, prefix=API_PREFIX)
    app.include_router(orders.notify_router, prefix=API_PREFIX)
    app.include_router(refunds.router, prefix=API_PREFIX)
    app.include_router(refunds.notify_router, prefix=API_PREFIX)
    app.include_router(reports.router, prefix=API_PREFIX)
    app.include_router(messaging.router, prefix=API_PREFIX)
    app.include_router(wechat.router, prefix=API_PREFIX)
    app.include_router(wechat.callback_router, prefix=API_PREFIX)
    app.include_router(chatsync.router, prefix=API_PREFIX)
    app.include_router(webhooks.router, prefix=API_PREFIX)
    app.include_router(clinical.router, prefix=API_PREFIX)
    app.include_router(growth_leads.router, prefix=API_PREFIX)
    app.include_router(clinical_photos.router, prefix=API_PREFIX)
    app.include_router(clinical_photos.patient_router, prefix=API_PREFIX)
    app.include_router(files.router, prefix=API_PREFIX)
    app.include_router(treatment_plans.router, prefix=API_PREFIX)
    app.include_router(clinical_visits.router, prefix=API_PREFIX)
    app.include_router(patient_clinical.router, prefix=API_PREFIX)
    app.include_router(consents.router, prefix=API_PREFIX)
    app.include_router(patient_consents.router, prefix=API_PREFIX)
    app.include_router(member_identifiers.router, prefix=API_PREFIX)
    app.include_router(fhir.router, prefix=API_PREFIX)
    app.include_router(referrals.router, prefix=API_PREFIX)
    app.include_router(referrals.patient_router, prefix=API_PREFIX)
    for module in (patient_orders, patient_bookings, patient_messages, coupon_publications):
        app.include_router(module.router, prefix=API_PREFIX)
    for module in (patient_storefront, patient_account, patient_listings):
        app.include_router(module.router, prefix=API_PREFIX)

    from app.graphql.schema import graphql_router

    app.include_router(graphql_router(settings), prefix="/graphql", include_in_schema=False)
    return app
