"""uvicorn's httptools protocol with its writes coalesced: what one turn of the event loop writes leaves in one send.

uvicorn writes a response's status line and headers, then its body, each with its own `send()` on the socket,
and every send on a TCP connection costs a full trip through the kernel's network stack (on loopback, the
receiver's side too). A small JSON answer therefore cost two sends where one does. Here the writes of one
turn of the loop are gathered and sent together at the end of the turn (at once when they reach
`FLUSH_BYTES`, so a streamed download leaves as fast as before and the transport's flow control still
sees it); closing the connection sends what is pending first.

uvicorn bounds neither how long a request may take to arrive nor how large its head may be: a client could hold a
connection for ever by sending its headers a byte at a time (or nothing at all after connecting), send one endless
header, or drip its body. `RequestLimits` bounds each (docs/operations.md, "Slow and oversized requests"), and the
refusals, like uvicorn's own answer to bytes that are not HTTP, are MLflow errors.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.core.config import ServerSettings
from gateway.observability.access import ABORT_KEY

FLUSH_BYTES = 64 * 1024


class CoalescingTransport:
    """A transport whose writes of one turn of the loop leave in one `write` of the transport it wraps."""

    __slots__ = ("_loop", "_pending", "_size", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        pending = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        self._size = 0
        if not self.transport.is_closing():
            self.transport.write(pending)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._pending = []
        self._size = 0
        self.transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._size + self.transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@dataclass(frozen=True)
class RequestLimits:
    """How long a request may take to arrive, and how large its head may be (the `[server]` settings)."""

    head_seconds: float = 30.0
    max_head_bytes: int = 64 * 1024
    body_seconds: float = 30.0
    body_min_bytes_per_second: int = 1024

    @classmethod
    def of(cls, server: ServerSettings) -> RequestLimits:
        return cls(
            head_seconds=server.request_head_seconds,
            max_head_bytes=server.max_request_head_bytes,
            body_seconds=server.request_body_seconds,
            body_min_bytes_per_second=server.request_body_min_bytes_per_second,
        )


class _Refused(Exception):
    def __init__(self, status: int, reason: str, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.error_code, self.message = status, reason, error_code, message


def _refusal(status: int, reason: str, error_code: str, message: str) -> bytes:
    """A whole answer in MLflow's error shape that ends its connection."""
    body = json.dumps({"error_code": error_code, "message": message}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


_HEAD, _BODY = "head", "body"


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's `httptools` protocol (`http="httptools"`) over a `CoalescingTransport`, with `RequestLimits`.

    One timer per connection follows the request being read: its head must come whole within `head_seconds` of
    its first byte (of the connection's opening, for the first request), its body within `body_seconds` plus a
    second per `body_min_bytes_per_second` bytes received. Time while the gateway holds the reading back (a body
    the handler has not asked for yet, a pipelined request waiting for the one before it) does not count. Past
    the time, a request not yet answered gets 408 and the connection ends."""

    def __init__(self, *args: Any, limits: RequestLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or RequestLimits()
        self._phase: str | None = None  # what of a request is being read: its head, its body, or nothing
        self._since = 0.0  # when the phase began (moved on while the reading was held back)
        self._received = 0  # the phase's bytes: raw bytes of the head so far; the body's bytes
        self._head_size = 0  # the parsed head: URL and header lines
        self._url_size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._refused: _Refused | None = None  # raised in a parser callback

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        self._begin(_HEAD)

    def connection_lost(self, exc: Exception | None) -> None:
        self._begin(None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._phase == _HEAD:
            self._received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            # httptools raises a callback's exception as a parser error of its own: a refusal is kept aside.
            if (refused := self._refused) is not None:
                self._refused = None
                self._refuse(refused)
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._phase == _HEAD and self._received > self.limits.max_head_bytes:
            # An unfinished head already over the limit (one endless header, say): refused without reading on.
            self._refuse(self._head_too_large())

    def send_400_response(self, msg: str) -> None:
        self._begin(None)
        self.transport.write(_refusal(400, "Bad Request", "BAD_REQUEST", msg))
        self.transport.close()

    # -- httptools callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # An answer that broke off after its head was sent ends the connection this way, without uvicorn's error
        # log of an unfinished answer (gateway/observability/access.py).
        self.scope[ABORT_KEY] = self.transport.abort  # type: ignore[literal-required]
        if self._phase != _HEAD:  # a kept-alive connection's next request (the first one's head began earlier)
            self._begin(_HEAD)
        self._head_size = self._url_size = 0

    def on_url(self, url: bytes) -> None:
        self._url_size += len(url)
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._head_size > self.limits.max_head_bytes:
            self._refused = self._head_too_large()
            raise self._refused
        self._begin(_BODY)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._received += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._begin(None)
        super().on_message_complete()

    # -- the timer -------------------------------------------------------------------------------------

    def _begin(self, phase: str | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._phase = phase
        self._since = self.loop.time()
        self._received = 0
        if phase is not None:
            self._timer = self.loop.call_at(self._deadline(), self._check)

    def _deadline(self) -> float:
        if self._phase == _HEAD:
            return self._since + self.limits.head_seconds
        return self._since + self.limits.body_seconds + self._received / self.limits.body_min_bytes_per_second

    def _check(self) -> None:
        self._timer = None
        if self._phase is None or self.transport.is_closing():
            return
        now = self.loop.time()
        held_back = self.flow.read_paused or (
            self._phase == _HEAD and self.cycle is not None and not self.cycle.response_complete
        )
        if held_back:
            # Not the client's delay: the gateway is not reading (or still answering the request before). The
            # phase's time starts again from now, its bytes kept.
            self._since = now if self._phase == _HEAD else now - self._received / self.limits.body_min_bytes_per_second
        if (deadline := self._deadline()) > now:
            self._timer = self.loop.call_at(deadline, self._check)
            return
        what = "its headers" if self._phase == _HEAD else "its body"
        self._refuse(
            _Refused(
                408,
                "Request Timeout",
                "DEADLINE_EXCEEDED",
                f"The request did not arrive in time: {what} came too slowly.",
            )
        )

    def _head_too_large(self) -> _Refused:
        limit = self.limits.max_head_bytes
        if self._url_size > limit:
            return _Refused(414, "URI Too Long", "INVALID_PARAMETER_VALUE", f"The URL is longer than {limit} bytes.")
        return _Refused(
            431,
            "Request Header Fields Too Large",
            "INVALID_PARAMETER_VALUE",
            f"The request's URL and headers are larger than {limit} bytes.",
        )

    def _refuse(self, refused: _Refused) -> None:
        """Answer `refused` (unless the request already has an answer under way) and end the connection; the
        handler of a request being read sees the client gone."""
        # While a head is read, `cycle` is the connection's previous request (whose answer may still be leaving).
        cycle = self.cycle
        if cycle is None:
            unanswered = True
        else:
            unanswered = cycle.response_complete if self._phase == _HEAD else not cycle.response_started
        self._begin(None)
        if unanswered:
            self.transport.write(_refusal(refused.status, refused.reason, refused.error_code, refused.message))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()
