"""HTTP/1.1 GETs over kept-alive connections to one server: a vault's reads without a client library's per-request work.

A run's read of 10 secrets from OpenBao is 10 GETs sent at once, and the gateway's one event loop does
their client side while the read's statement and other requests wait for it. aiohttp spends about 0.1 ms
of CPU on each GET (URL and header objects, the cookie jar, tracing hooks, timers); here a GET is one write
of the request's bytes on a connection kept from an earlier GET and httptools' parser (the one uvicorn
serves the gateway with) on the answer, about a quarter of that. Measured in one process against a real
`bao server -dev`: 10 GETs at once took 0.3 ms of CPU instead of 1.1 to 1.3 ms, and answered in 2.2 ms
instead of 3.4 ms (p50).

What it does, and no more: `GET` with the caller's headers, one request at a time per connection (no
pipelining), connections kept while the server keeps them (`Connection: close`, HTTP/1.0) and for at most
`idle_seconds` unused; http and https (the default trust store, as aiohttp's default; no proxy, as the
adapter's aiohttp session, which has `trust_env=False`). A failure is `HttpFailure`, telling whether the
request may not have reached the server (`unsent`) and whether it timed out; a GET that fails on a
connection kept from an earlier one before any byte of its answer came is sent once more at once on a new
connection (the server may have closed the idle one meanwhile), as aiohttp does.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from urllib.parse import urlsplit

import httptools

MAX_BODY_BYTES = 16 * 1024 * 1024
_BREAKS = frozenset("\r\n\0")


class HttpFailure(Exception):
    """A GET without an answer: not connected (`unsent`), the connection lost or refused, or `timed_out`."""

    def __init__(self, message: str, *, unsent: bool = False, timed_out: bool = False) -> None:
        super().__init__(message)
        self.unsent = unsent
        self.timed_out = timed_out


class _Lost(HttpFailure):
    """The connection ended (or broke) before the whole answer came; `answered`: some of it had come."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one exchange at a time, the answer parsed as it comes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._body: list[bytes] = []
        self._size = 0
        self._answered = False
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing asked: a server speaking out of turn is not trusted further
            self.close()
            return
        self._answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            long = self._size > MAX_BODY_BYTES
            self._fail(HttpFailure(f"the answer is over {MAX_BODY_BYTES} bytes" if long else "the answer is not HTTP"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(_Lost("the server closed the connection", answered=self._answered))

    # -- httptools callbacks ---------------------------------------------------------------------------

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY_BYTES:
            raise ValueError("too long")  # stops the parser: data_received answers the failure
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter = self._finish()
        if waiter is not None:
            keep = self._parser.should_keep_alive()
            waiter.set_result((self._parser.get_status_code(), b"".join(self._body), keep))

    # -- the exchange ----------------------------------------------------------------------------------

    def exchange(self, request: bytes, timeout: float) -> asyncio.Future[tuple[int, bytes, bool]]:
        """Send the request; the future of (status, body, whether the connection may be used again)."""
        assert self._transport is not None and self._waiter is None
        self._body, self._size, self._answered = [], 0, False
        self._waiter = self._loop.create_future()
        self._timer = self._loop.call_later(timeout, self._timed_out)
        self._transport.write(request)
        return self._waiter

    def _timed_out(self) -> None:
        self._fail(HttpFailure("no answer in time", timed_out=True))

    def _finish(self) -> asyncio.Future[tuple[int, bytes, bool]] | None:
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return waiter if waiter is not None and not waiter.done() else None

    def _fail(self, error: HttpFailure) -> None:
        waiter = self._finish()
        self.close()
        if waiter is not None:
            waiter.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()  # nothing of a half-done exchange is worth sending


class KeepAliveGets:
    """GETs to the server of `base_url` (`http[s]://host[:port][/path]`), over connections kept between them."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_idle: int = 64,
        idle_seconds: float = 15.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) address: {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = _tls_context() if parts.scheme == "https" else None
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = host if parts.port is None else f"{host}:{parts.port}"
        self._prefix = parts.path.rstrip("/")
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_idle = max_idle
        self._idle_seconds = idle_seconds
        self._idle: list[_Connection] = []  # the most recently used last
        self._closed = False

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """GET `path` (already percent-encoded, below the address's own path): status and body, whatever the
        status. Raises `HttpFailure`."""
        request = self._request(path, headers)
        connection = self._kept()
        if connection is not None:
            try:
                return await self._exchange(connection, request)
            except _Lost as lost:
                if lost.answered:
                    raise
                # The server closed the kept connection before reading this request: once more, on a new one.
        return await self._exchange(await self._connect(), request)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _request(self, path: str, headers: dict[str, str]) -> bytes:
        parts = [f"{self._prefix}/{path.lstrip('/')}", *headers, *headers.values()]
        if any(_BREAKS.intersection(part) for part in parts):
            raise HttpFailure("a header or the path holds a line break", unsent=True)
        lines = [f"GET {parts[0]} HTTP/1.1", f"Host: {self._host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        try:
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        except UnicodeEncodeError:
            raise HttpFailure("a header or the path holds characters HTTP/1.1 cannot carry", unsent=True) from None

    def _kept(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < self._idle_seconds:
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop), self._host, self._port, ssl=self._ssl
                )
        except TimeoutError:
            raise HttpFailure("could not connect in time", unsent=True, timed_out=True) from None
        except (OSError, ssl.SSLError) as exc:
            raise HttpFailure(f"could not connect ({type(exc).__name__})", unsent=True) from None
        return connection

    async def _exchange(self, connection: _Connection, request: bytes) -> tuple[int, bytes]:
        try:
            status, body, keep = await connection.exchange(request, self._read_timeout)
        except BaseException:  # failed, timed out or cancelled: the connection is in an unknown state
            connection.close()
            raise
        if keep and not self._closed and len(self._idle) < self._max_idle:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        return status, body


def _tls_context() -> ssl.SSLContext:
    """Certificates checked against the default trust store, as aiohttp's default context does."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context
