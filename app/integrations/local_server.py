"""An ASGI app served by uvicorn in a background thread on a real local port: the fakes of WeChat, WeCom
and WeChat Pay (tests and `careloop fake-wechat`) and the tests' webhook receiver all run this way."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


class ThreadedServer:
    def __init__(self, app: Any, name: str, **config: Any) -> None:
        self.app, self.name, self.config = app, name, config  # config: more uvicorn.Config options
        self.host, self.port = "127.0.0.1", None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve on `host`:`port` (0: a free port) and return the port once the server accepts requests."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self.host, self.port = host, sock.getsockname()[1]
        # No log configuration of its own: uvicorn would reconfigure the process's `uvicorn.*` loggers (levels,
        # handlers), silencing the serving process's own uvicorn messages when this runs inside it (seed-demo).
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_config=None, log_level=None,
                                                     lifespan="off", **self.config))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name=self.name,
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.01)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
