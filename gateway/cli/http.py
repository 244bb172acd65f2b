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
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.core.config import ServerSettings
from gateway.core.errors import error_bytes, mlflow_error
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
    body = error_bytes(mlflow_error(error_code, message))
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


_HEAD, _BODY = "head", "body"


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's `httptools` protocol (`http="httptools"`) over a `CoalescingTransport`, with `RequestLimits`.

    A request's head must come whole within `head_seconds` of its first byte (of the connection's opening, for the
    first request), its body within `body_seconds` plus a second per `body_min_bytes_per_second` bytes received.
    Time while the gateway holds the reading back (a body the handler has not asked for yet, a pipelined request
    waiting for the one before it) does not count. Past the time, a request not yet answered gets 408 and the
    connection ends.

    The limits cost next to nothing per request: a phase of a request (its head, its body, nothing) beginning only
    notes the time, and the connection's one timer, armed lazily, looks at the phase it finds when it fires: its
    time is over (408) or it fires again when it will be. Arming and cancelling a timer per phase cost about 8%
    of the gateway's CPU per forwarded call. The head's size is counted from the lengths of what was read, its
    URL and headers added up only when those lengths come near the limit."""

    def __init__(self, *args: Any, limits: RequestLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or RequestLimits()
        self.url = b""  # uvicorn's, (re)set as each request begins: the head's size reads it
        self._phase: str | None = None  # what of a request is being read: its head, its body, or nothing
        self._since = 0.0  # when the phase began (moved on while the reading was held back)
        self._due = 0.0  # when the phase's time is next looked at: its deadline as last computed
        self._received = 0  # the phase's bytes: raw bytes of the head so far (see `data_received`); the body's bytes
        self._read = 0  # length of the last read
        self._head_read = 0  # ... of the read a kept-alive connection's head began in
        self._unbodied = 0  # bytes of the body's reads that brought none of it, since the last that did
        self._idle_due = 0.0  # when a kept-alive connection without a request closes (0: it has one)
        self._timer: asyncio.TimerHandle | None = None  # one per connection, firing at `_timer_at`
        self._timer_at = 0.0
        self._refused: _Refused | None = None  # raised in a parser callback

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        self._begin(_HEAD, self.limits.head_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._idle_due = 0.0  # (uvicorn's keep-alive timer, cancelled by anything read)
        self._read = read = len(data)
        phase = self._phase
        if phase is _HEAD:
            self._received += read
        body_before = self._received
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
        if self._phase is _HEAD:
            if self._received > self.limits.max_head_bytes:
                # An unfinished head already over the limit (one endless header, say): refused without reading on.
                self._refuse(self._head_too_large())
        elif phase is _BODY and self._phase is _BODY:
            # A read that brought none of the body: chunk sizes, chunk extensions, trailer fields. Trailers are read
            # into a list nobody keeps (`on_headers_complete`), a field at a time but each field whole (httptools
            # joins its parts), so without a bound a client grew the gateway's memory by about 15 bytes per byte sent
            # (16 MB of trailers: 230 MB) for the body's whole time, before anyone knew who it was.
            if self._received != body_before:
                self._unbodied = 0
            elif (unbodied := self._unbodied + read) > self.limits.max_head_bytes:
                self._refuse(self._trailers_too_large())
            else:
                self._unbodied = unbodied

    def send_400_response(self, msg: str) -> None:
        """Bytes that are not HTTP: 400, unless another request's answer is under way or still to come."""
        self._refuse(_Refused(400, "Bad Request", "BAD_REQUEST", msg))

    # -- httptools callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        # An answer that broke off after its head was sent ends the connection this way, without uvicorn's error
        # log of an unfinished answer (gateway/observability/access.py).
        self.scope[ABORT_KEY] = self.transport.abort  # type: ignore[literal-required]
        if self._phase is not _HEAD:  # a kept-alive connection's next request (the first one's head began earlier)
            self._begin(_HEAD, self.limits.head_seconds)
            self._head_read = self._read

    def on_headers_complete(self) -> None:
        limit = self.limits.max_head_bytes
        # The head's bytes read (the reads it spans, whole) bound its URL and header lines (`_head_size`), give or
        # take a byte per header: added up only when that bound is near the limit.
        if self._received + self._head_read + len(self.headers) > limit and self._head_size() > limit:
            self._refused = self._head_too_large()
            raise self._refused
        # The body begins. A head begun and ended in one read (no bytes counted since it began) lends it its time.
        self._phase = _BODY
        self._since = now = self.loop.time() if self._received else self._since
        self._due = due = now + self.limits.body_seconds
        self._received = 0
        self._unbodied = 0
        if self._timer is None or self._timer_at > due:
            self._arm(due)
        HttpToolsProtocol.on_headers_complete(self)
        # What uvicorn reads as headers from here on are the trailer fields after a chunked body, appended to its
        # list. That list was the request's headers (`scope["headers"]`), so trailers were read as headers that came
        # with the request: the forwarder reads the workspace header and the headers a store may see once the body
        # is read, and a trailer `X-MLFLOW-WORKSPACE` chose the workspace. Trailers are not headers (RFC 9110
        # 6.5.1): no client of MLflow sends any, and the request keeps the headers of its head only.
        self.scope["headers"] = self.headers[:]

    def on_body(self, body: bytes) -> None:
        self._received += len(body)
        HttpToolsProtocol.on_body(self, body)

    def on_message_complete(self) -> None:
        self._phase = None
        HttpToolsProtocol.on_message_complete(self)

    def on_response_complete(self) -> None:
        """uvicorn's, its keep-alive timer the connection's one timer: no timer armed and cancelled per request."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_due = due = self.loop.time() + self.timeout_keep_alive
            if self._timer is None or self._timer_at > due:
                self._arm(due)

    # -- the timer -------------------------------------------------------------------------------------

    def _begin(self, phase: str, seconds: float) -> None:
        """The request's `phase` begins, with `seconds` to come whole (its bytes add to that of a body)."""
        self._phase = phase
        self._since = now = self.loop.time()
        self._due = due = now + seconds
        self._received = 0
        if self._timer is None or self._timer_at > due:
            self._arm(due)

    def _arm(self, when: float) -> None:
        """The timer fires at `when` (never later than any phase's or the keep-alive's due time)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._check)
        self._timer_at = when

    def _deadline(self) -> float:
        if self._phase is _HEAD:
            return self._since + self.limits.head_seconds
        return self._since + self.limits.body_seconds + self._received / self.limits.body_min_bytes_per_second

    def _check(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        idle_due = self._idle_due
        if idle_due and now >= idle_due:
            self.transport.close()  # kept alive `timeout_keep_alive` seconds without a request
            return
        if self._phase is None:
            if idle_due:
                self._arm(idle_due)
            return  # else armed again when a request begins, or a response completes
        if now < self._due:  # armed for an earlier phase, or for the keep-alive
            self._arm(min(self._due, idle_due) if idle_due else self._due)
            return
        held_back = self.flow.read_paused or (
            self._phase is _HEAD and self.cycle is not None and not self.cycle.response_complete
        )
        if held_back:
            # Not the client's delay: the gateway is not reading (or still answering the request before). The
            # phase's time starts again from now, its bytes kept.
            self._since = now if self._phase is _HEAD else now - self._received / self.limits.body_min_bytes_per_second
        if (deadline := self._deadline()) > now:
            self._due = deadline
            self._arm(min(deadline, idle_due) if idle_due else deadline)
            return
        what = "its headers" if self._phase is _HEAD else "its body"
        self._refuse(
            _Refused(
                408,
                "Request Timeout",
                "DEADLINE_EXCEEDED",
                f"The request did not arrive in time: {what} came too slowly.",
            )
        )

    def _head_size(self) -> int:
        """The parsed head's URL and header lines."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _head_too_large(self) -> _Refused:
        limit = self.limits.max_head_bytes
        if len(self.url) > limit:
            return _Refused(414, "URI Too Long", "INVALID_PARAMETER_VALUE", f"The URL is longer than {limit} bytes.")
        return _Refused(
            431,
            "Request Header Fields Too Large",
            "INVALID_PARAMETER_VALUE",
            f"The request's URL and headers are larger than {limit} bytes.",
        )

    def _trailers_too_large(self) -> _Refused:
        limit = self.limits.max_head_bytes
        return _Refused(
            431,
            "Request Header Fields Too Large",
            "INVALID_PARAMETER_VALUE",
            f"The request's chunked body sent more than {limit} bytes of chunk extensions or trailers.",
        )

    def _refuse(self, refused: _Refused) -> None:
        """Answer `refused` (unless the request already has an answer under way) and end the connection; the
        handler of a request being read sees the client gone."""
        # Unless a body is read, `cycle` is the connection's latest request whose head came (its answer may be under
        # way or still to come): a refusal written now would land inside that answer, or be taken for it.
        cycle = self.cycle
        if cycle is None:
            unanswered = True
        else:
            # A body read is of a request that is answered only once those before it are (`pipeline`).
            unanswered = (
                not cycle.response_started and not self.pipeline if self._phase is _BODY else cycle.response_complete
            )
        self._phase = None
        if unanswered:
            self.transport.write(_refusal(refused.status, refused.reason, refused.error_code, refused.message))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()
