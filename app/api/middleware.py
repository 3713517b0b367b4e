"""ASGI middleware: request ids and structured access logs; the request body size limit and input checks."""

from __future__ import annotations

import json
import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import internal_error, validation_problem
from app.api.input_checks import media_type, reads_whole_body, unstorable_errors
from app.core.context import RequestContext, reset_context, set_context
from app.core.errors import PayloadTooLarge
from app.core.ids import new_id

log = logging.getLogger("careloop.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


class RequestContextMiddleware:
    """Give every request an id (the caller's `X-Request-ID` if sane), echo it, and log the outcome."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else str(new_id())
        client = scope.get("client")
        token = set_context(RequestContext(request_id=request_id, ip=client[0] if client else None,
                                           actor_type="anonymous"))
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # noqa: BLE001 - answered here, not re-raised: see below
            # An error no handler mapped. Re-raised, it would reach the server, which then closes the
            # keep-alive connection and fails the client's next request too; answered here, it is one 500.
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not response_started:
                await _send_problem(send_with_id, internal_error(scope["path"]))
        finally:
            log.info("request", extra={"method": scope["method"], "path": scope["path"], "status": status,
                                       "duration_ms": round((time.perf_counter() - started) * 1000, 1)})
            reset_context(token)


class BodyLimitMiddleware:
    """Refuse bodies over the limit with 413 (declared or counted as they arrive), and input no endpoint
    can store (NUL characters and lone surrogates, see app.api.input_checks) with 422, before it runs.

    `overrides` raises the limit for paths that take files (member imports), by path prefix.
    `own_input_checks` are path prefixes whose endpoint runs the same input check itself and answers in its
    own protocol's shape (GraphQL: `errors[]` with the problem code). JSON and URL-encoded form bodies are
    read in full first (the endpoint would buffer them anyway); other bodies stream through, counted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, overrides: dict[str, int] | None = None,
                 own_input_checks: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = overrides or {}
        self.own_input_checks = own_input_checks

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.overrides.items():
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if (declared is None or declared == b"0") and b"transfer-encoding" not in headers:
            # No body (most reads): nothing to count or replay, only the path and query to check.
            if not await self._refused_unstorable(scope, None, "", send):
                await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(scope["path"])
        too_large = PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            await _send_problem(send, too_large.problem(scope["path"]))
            return
        received = 0
        overflowed = False

        async def limited_receive() -> Message:
            # A chunked body without Content-Length is counted as it arrives.
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    overflowed = True
                    raise too_large
            return message

        async def send_unless_overflowed(message: Message) -> None:
            # The endpoint turns a failed body read into its own error answer; the client gets the 413.
            if not overflowed:
                await send(message)
            elif message["type"] == "http.response.start":
                await _send_problem(send, too_large.problem(scope["path"]))

        media = media_type(scope["headers"])
        body: bytes | None = None
        app_receive = limited_receive
        if reads_whole_body(media):
            chunks: list[bytes] = []
            try:
                while True:
                    message = await limited_receive()
                    if message["type"] != "http.request":
                        return  # the client went away before sending its body
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
            except PayloadTooLarge:
                await _send_problem(send, too_large.problem(scope["path"]))
                return
            body = b"".join(chunks)
            app_receive = _replay(body, receive)
        if not await self._refused_unstorable(scope, body, media, send):
            await self.app(scope, app_receive, send_unless_overflowed)

    async def _refused_unstorable(self, scope: Scope, body: bytes | None, media: str, send: Send) -> bool:
        """Answer 422 for input no endpoint can store (unless the path checks it itself); True when answered."""
        if scope["path"].startswith(self.own_input_checks):
            return False
        errors = unstorable_errors(scope, body, media)
        if errors:
            await _send_problem(send, validation_problem(errors, scope["path"]))
        return bool(errors)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that hands the endpoint the body already read, then the client's own messages."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_problem(send: Send, problem: dict) -> None:
    body = json.dumps(problem).encode()
    await send({"type": "http.response.start", "status": problem["status"],
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
