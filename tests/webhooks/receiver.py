"""A webhook receiver on a real local port: uvicorn in a thread, recording every POST it gets."""

from __future__ import annotations

import threading
from typing import Any

from app.integrations.local_server import ThreadedServer


class Receiver:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # answers to give, in order; then 200
        self._lock = threading.Lock()
        self._server: ThreadedServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/careloop"

    async def _app(self, scope, receive, send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        with self._lock:
            self.requests.append({"method": scope["method"], "path": scope["path"], "body": body,
                                  "headers": {k.decode().lower(): v.decode() for k, v in scope["headers"]}})
            status = self.statuses.pop(0) if self.statuses else 200
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok" if status < 300 else b"receiver says no"})

    def start(self) -> Receiver:
        self._server = ThreadedServer(self._app, "webhook-receiver", interface="asgi3")
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
