"""/docs (Swagger UI) and /graphql (GraphiQL) render in a real browser with the network closed: every script
and style comes from the app. Debian's Chromium, driven by Playwright (no browser download)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Route, async_playwright

from app.core.settings import get_settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
ROOT = Path(__file__).resolve().parents[2]
# The probe's flags: headless, no sandbox as root, and none of Chromium's own calls home.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(database_url: str, redis_url: str, tmp_path):
    """CareLoop served by `careloop serve` on a free port, on the test run's database and Redis."""
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "EMBEDDED_WORKER": "false",
           "CARELOOP_DATA_DIR": str(tmp_path), "LOG_JSON": "false", "REDIS_PREFIX": get_settings().redis_prefix}
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--no-migrate", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"careloop serve did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_docs_and_graphiql_render_with_the_network_closed(server: str):
    outside: list[str] = []

    async def only_this_server(route: Route) -> None:
        if route.request.url.startswith(server):
            await route.continue_()
        else:  # what a clinic's closed network does to a CDN request
            outside.append(route.request.url)
            await route.abort("internetdisconnected")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.route("**/*", only_this_server)

            await page.goto(f"{server}/docs")
            await page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
            assert "CareLoop API" in await page.inner_text(".swagger-ui .info .title")
            await page.wait_for_selector(".opblock", timeout=30_000)  # the operations, from our openapi.json
            assert "Failed to load API definition" not in await page.inner_text("body")
            if shots := os.environ.get("E2E_SCREENSHOTS"):  # a folder: see what the browser drew
                await page.screenshot(path=f"{shots}/docs.png")

            await page.goto(f"{server}/graphql")
            await page.wait_for_selector(".graphiql-container .graphiql-editors", timeout=30_000)
            assert "Loading..." not in await page.inner_text("#graphiql")
            if shots := os.environ.get("E2E_SCREENSHOTS"):  # a folder: see what the browser drew
                await page.screenshot(path=f"{shots}/graphiql.png")
        finally:
            await browser.close()
    assert outside == [], f"the pages asked the network for {outside}"
