"""An unexpected error is one 500 that leaves the connection usable; a Redis outage is a 503, not a 500."""

from __future__ import annotations

import socket

import httpx
from redis.asyncio import Redis

from app.core.settings import get_settings
from app.integrations.local_server import ThreadedServer
from app.main import create_app


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-body")
        body += chunk
    return int(lines[0].split(" ")[1]), body


def test_an_unhandled_error_is_a_500_and_the_keep_alive_connection_survives():
    app = create_app(get_settings(), database_url="postgresql://unused/unused", redis_url="redis://unused",
                     run_worker=False)

    @app.get("/__test/boom")
    async def boom() -> dict:
        raise RuntimeError("a bug")

    @app.get("/__test/ok")
    async def ok() -> dict:
        return {"ok": True}

    server = ThreadedServer(app, "keep-alive-test")
    port = server.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /__test/boom HTTP/1.1\r\nHost: careloop.test\r\n\r\n")
            status, body = _read_response(sock)
            assert status == 500 and b'"internal_error"' in body and b"a bug" not in body
            sock.sendall(b"GET /__test/ok HTTP/1.1\r\nHost: careloop.test\r\n\r\n")
            status, body = _read_response(sock)  # the same connection answers the next request
            assert status == 200 and body == b'{"ok":true}'
    finally:
        server.stop()


async def test_sign_in_while_redis_is_down_is_a_503_with_retry_after(app, client: httpx.AsyncClient):
    working = app.state.redis
    app.state.redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)  # nothing listens
    try:
        r = await client.post("/api/v1/auth/token", json={"tenant": "demo", "username": "owner",
                                                          "password": "whatever-it-is"})
    finally:
        await app.state.redis.aclose()
        app.state.redis = working
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "redis_unavailable" and r.headers["retry-after"] == "5"
