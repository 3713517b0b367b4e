"""The interactive API pages, served with their scripts and styles from the app (app/static/vendor).

FastAPI's `/docs` and Strawberry's GraphiQL load theirs from public CDNs by default, so on a clinic's private
network (or where a CDN is slow or blocked) both pages stayed blank. Here `/docs` is FastAPI's own Swagger UI
page pointed at the vendored files, and GraphiQL is Strawberry's page with its `https://unpkg.com/`
addresses rewritten to the same files (their `integrity` sums still hold: the files are identical).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from strawberry.http.ides import get_graphql_ide_html

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
STATIC_PATH = "/static"
VENDOR = f"{STATIC_PATH}/vendor"
SWAGGER_UI = f"{VENDOR}/swagger-ui-dist@5.35.0"
CDN = "https://unpkg.com/"


def offline_graphiql_html() -> str:
    html = get_graphql_ide_html(graphql_ide="graphiql").replace(CDN, f"{VENDOR}/")
    if "https://" in html:  # a Strawberry upgrade added an asset: vendor it too
        raise RuntimeError("GraphiQL page still loads from the network; vendor its new assets")
    return html


def install_docs_pages(app: FastAPI, *, openapi_url: str, title: str) -> None:
    """Mount the vendored assets and serve `/docs` from them (the app is created with `docs_url=None`)."""
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{title} — docs",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js", swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
            # No validator badge: it would ask a public service to validate our document.
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.include_router(router)
