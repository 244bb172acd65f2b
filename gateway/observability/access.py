"""Outermost ASGI layer: request ids, structured access logs and request metrics for every response."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Send

from gateway.core.ports import StreamCutShort
from gateway.observability.metrics import REQUEST_LATENCY, REQUESTS

REQUEST_ID_KEY = "fedgate.request_id"
# The route a handler served when it is not the one it is named after (federation/routes.py): the metrics' label.
ROUTE_KEY = "fedgate.route"
NOTES_KEY = "fedgate.notes"
# Set by the gateway's HTTP protocol (gateway/cli/http.py): ends the request's connection at once.
ABORT_KEY = "fedgate.abort_connection"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")

access_log = logging.getLogger("fedgate.access")


class RandomIds:
    """Request ids: 16 random bytes as 32 hex digits, taken from one `os.urandom` call per 256 ids (one system
    call per request was 2.5% of a forwarded call's CPU). A forked child starts with none of its parent's bytes."""

    BATCH = 4096

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0
        os.register_at_fork(after_in_child=self.forget)

    def __call__(self) -> bytes:
        at = self._at
        if at + 16 > len(self._pool):
            self._pool = os.urandom(self.BATCH)
            at = 0
        self._at = at + 16
        return self._pool[at : at + 16].hex().encode()

    def forget(self) -> None:
        self._pool, self._at = b"", 0


_random_id = RandomIds()


def note(scope: Any, **fields: str) -> None:
    """Attach fields (workspace, principal...) to the access log line of this request."""
    scope.setdefault(NOTES_KEY, {}).update(fields)


@functools.cache
def _counted(route: str, method: str, status: int) -> Any:
    """The labelled counter of one route, method and status (looked up once; labels are few and fixed)."""
    return REQUESTS.labels(route, method, str(status))


@functools.cache
def _timed(route: str) -> Any:
    return REQUEST_LATENCY.labels(route)


def _cut_short(exc: BaseException) -> bool:
    """Whether `exc` is, or comes from, a `StreamCutShort` (Litestar raises its own error around an exception
    after the answer started, and a task group its group)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, StreamCutShort):
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


# An answer that says nothing of caching is kept by no cache: a browser keeps a GET's answer without Cache-Control
# in its disk cache, where the data of a person who signed out (MLflow's JSON, the gateway's own APIs) stayed for the
# next user of the machine. Answers that decide for themselves (the UI's files, downloads) keep what they say.
NO_STORE = (b"cache-control", b"no-store")


class AccessLog:
    """Every answer: its request id, the access log line and metrics, and `no-store` unless it says otherwise."""

    def __init__(self, app: ASGIApp, *, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[arg-type]
            return
        started = time.perf_counter()
        request_id = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id" and _VALID_REQUEST_ID.match(value):
                request_id = value
                break
        if not request_id:
            request_id = _random_id()
        scope[REQUEST_ID_KEY] = request_id.decode()
        status = 500
        sent = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id)]
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append(NO_STORE)
                message["headers"] = headers
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)  # type: ignore[arg-type]
        except Exception as exc:
            abort = scope.get(ABORT_KEY)
            if abort is None or status == 500 or not _cut_short(exc):
                raise
            # A stream that broke off after its head went out, logged where it broke (federation/routes.py): the
            # connection ends short of the length, so the client sees a failed download. Raised on, the server
            # would log a stack trace at error level; returned, it would log an error for the unfinished answer
            # unless it has seen the connection go, which it does within this turn of the loop.
            abort()
            await asyncio.sleep(0)
        finally:
            elapsed = time.perf_counter() - started
            handler = scope.get("route_handler")
            route = scope.get(ROUTE_KEY) or (handler.name if handler is not None and handler.name else "unmatched")
            _counted(route, scope["method"], status).inc()
            _timed(route).observe(elapsed)
            if self.enabled:
                notes: dict[str, str] = scope.get(NOTES_KEY, {})
                access_log.info(
                    "request",
                    extra={
                        "request_id": scope[REQUEST_ID_KEY],
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "bytes_sent": sent,
                        **notes,
                    },
                )
