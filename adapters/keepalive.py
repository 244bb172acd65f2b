"""HTTP/1.1 over kept-alive connections to one server: a store's calls and a vault's reads without a client
library's per-request work.

aiohttp spends about 0.1 ms of CPU on each request (URL and header objects, the cookie jar, tracing hooks,
timers); here a request is one write of its bytes on a connection kept from an earlier one and httptools'
parser (the one uvicorn serves the gateway with) on the answer. Measured in one process against a real
`bao server -dev`: 10 GETs at once took 0.3 ms of CPU instead of 1.1 to 1.3 ms, and answered in 2.2 ms
instead of 3.4 ms (p50); the gateway's CPU per forwarded call is in docs/performance.md.

What it does, and no more: one request at a time per connection (no pipelining), a body given whole (bytes)
or none, interim answers (1xx) read and passed over, the answer's head first and its body as it comes
(`Answer`: read whole or in chunks; the connection stops reading while more than `HIGH_WATER` bytes of it
wait for the reader, so a large download holds little memory), connections kept while the server keeps them
(`Connection: close`, HTTP/1.0) and for at most `idle_seconds` unused, at most `max_connections` at once when
given (more wait for one, at most `connect_timeout`); http and https (the default trust store, as aiohttp's
default; no proxy, cookies or redirects, as the adapters' aiohttp sessions).
A failure is `HttpFailure`, telling whether the request may not have reached the server (`unsent`) and whether
it timed out. A request that fails on a connection kept from an earlier one before any byte of its answer came is sent
once more at once on a new connection (the server may have closed the idle one meanwhile), as aiohttp does.
`KeepAliveGets` is the vault's use: GETs answered whole, each within one time budget.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import deque
from collections.abc import Sequence
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict

MAX_BODY_BYTES = 16 * 1024 * 1024
# An answer's head (status line and headers, interim answers' included) larger than this ends the connection: httptools
# keeps every header of the head in memory, so a server sending headers without end (a broken proxy) would otherwise
# grow the gateway's memory until its read timeout, by a gigabyte a minute and more. MLflow's heads are under 1 KB.
# The same bound holds for what comes after a chunked body (trailer fields, parsed and kept alike) and for chunk
# extensions: bytes read while none of the body comes.
MAX_HEAD_BYTES = 256 * 1024
# Bytes of an answer that may wait for its reader before the connection stops reading from the server.
HIGH_WATER = 256 * 1024
# A request's target is visible ASCII (anything else is percent-encoded); a space or control character would end
# the request line early or be refused by the server. Header names and the method are tokens (RFC 9110 5.6.2);
# a header value holds no control character but the tab (a line break would end the header, a NUL the parse).
_TARGET = re.compile(r"[!-~]+")
_NOT_TOKEN = re.compile(r"[^!#$%&'*+.^_`|~0-9A-Za-z-]")
_NOT_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Methods without a body of their own: no Content-Length is sent for them when no body is given.
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class HttpFailure(Exception):
    """No (whole) answer: not connected (`unsent`), the connection lost or refused, or `timed_out`."""

    def __init__(self, message: str, *, unsent: bool = False, timed_out: bool = False) -> None:
        super().__init__(message)
        self.unsent = unsent
        self.timed_out = timed_out


class _Lost(HttpFailure):
    """The connection ended (or broke) before the whole answer came; `answered`: some of it had come."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


class Answer:
    """A server's answer: `status`, `headers` and `content_length` as its head came; the body read once, whole
    (`read`) or in chunks (`chunk`), or let go (`release`)."""

    __slots__ = ("_buffered", "_chunks", "_connection", "_done", "_error", "content_length", "headers", "status")

    def __init__(self, connection: _Connection, status: int, headers: CIMultiDict[str]) -> None:
        self._connection = connection
        self.status = status
        self.headers = headers
        length = headers.get("Content-Length")
        self.content_length = int(length) if length is not None and length.isdigit() else None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: HttpFailure | None = None

    @property
    def complete(self) -> bool:
        """The whole body has come (it may still wait to be read)."""
        return self._done

    async def chunk(self, up_to: int = 0) -> bytes:
        """The next part of the body (what has come of it, up to `up_to` bytes when given and more than one
        part waits); b"" once it is all read. Raises `HttpFailure`."""
        chunks = self._chunks
        while not chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            await self._connection.more()
        data = chunks.popleft()
        if up_to and chunks and len(data) < up_to:
            parts = [data]
            size = len(data)
            while chunks and size + len(chunks[0]) <= up_to:
                part = chunks.popleft()
                parts.append(part)
                size += len(part)
            data = b"".join(parts)
        self._buffered -= len(data)
        if not self._done and self._buffered < HIGH_WATER:
            self._connection.resume()
        return data

    async def read(self, limit: int = 0) -> bytes:
        """The whole body (at most `limit` bytes, when given). Raises `HttpFailure`."""
        parts = []
        size = 0
        while data := await self.chunk():
            size += len(data)
            if limit and size > limit:
                self.release()
                raise HttpFailure(f"the answer is over {limit} bytes")
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Let the rest of the body go: a connection whose answer was not read to its end is not used again."""
        if not self._done:
            self._done = True
            self._connection.close()
        self._chunks.clear()
        self._buffered = 0

    # -- fed by the connection -------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER:
            self._connection.pause()

    def _fail(self, error: HttpFailure) -> None:
        if not self._done:
            self._done = True
            self._error = error


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one exchange at a time, the answer parsed as it comes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: KeepAliveClient) -> None:
        self._loop = loop
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        # What the exchange waits for: the answer once its head came, then (None) each part of its body.
        self._waiter: asyncio.Future[Answer | None] | None = None
        self._answer: Answer | None = None  # the answer whose body is coming
        self._header_fields: list[tuple[str, str]] = []
        self._answered = False
        self._until_close = False
        self._head = False  # the exchange asked HEAD: its answer has a head only, whatever its Content-Length
        self._paused = False
        self._body_bytes = 0  # of every answer on this connection
        self._unbodied = 0  # bytes received without any of the body (the head, trailers) since the last that had some
        self._timeout = 0.0
        self._deadline: float | None = None
        # One timer per connection, re-armed only when it fires early: a wait notes when it is due (`_due`, None while
        # nothing waits) and arms the timer only when none is armed to fire by then, instead of a timer armed and
        # cancelled per wait (a store call waits at least once).
        self._due: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.busy = False
        self.closed = False
        self.idle_since = 0.0
        self.exchanges = 0  # exchanges begun on this connection

    # -- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # nothing asked: a server speaking out of turn is not trusted further
            self.close()
            return
        self._answered = True
        body_before = self._body_bytes
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HttpFailure("the server switched protocols"))
            return
        except httptools.HttpParserError:
            self._fail(HttpFailure("the answer is not HTTP"))
            return
        if self._body_bytes != body_before:
            self._unbodied = 0
        else:
            self._unbodied += len(data)
            if self._unbodied > MAX_HEAD_BYTES and self.busy:
                # Before, only the head was bounded: 16 MB of trailers grew the gateway's memory by 260 MB.
                self._fail(HttpFailure(f"the answer's head or trailers are over {MAX_HEAD_BYTES} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is not None and self._until_close and not self._answer.complete and exc is None:
            # An answer without a length ends with its connection, when the server closed it: a reset cuts it short.
            self._answer._done = True
            self._answer = None
            self._end()
            self._wake(None)
            return
        self._fail(_Lost("the server closed the connection", answered=self._answered))

    # -- httptools callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if not self.busy:
            # Bytes after the end of the answer, in the same read: the server is out of step with its requests, and
            # what follows would be taken for the next caller's answer. The parser stops; the connection ends.
            raise HttpFailure("the server sent more than its answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_fields.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            # An interim answer (100 Continue, 103 Early Hints), which a client must read even unasked (RFC 9110
            # 15.2): the answer follows it. Taken for the answer, that one would reach the connection's next user.
            # (101 stops the parser: no protocol switch was asked for.)
            self._header_fields = []
            return
        headers = CIMultiDict(self._header_fields)
        self._header_fields = []  # trailers, if any, land there and are not read
        answer = self._answer = Answer(self, status, headers)
        if self._head:
            # The parser cannot know the request was HEAD and would wait for the body the length announces: the
            # answer ends here, and so does the connection (the parser's state is not to be trusted further).
            answer._done = True
            self._answer = None
            self._wake(answer)
            self.close()
            return
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self._until_close = answer.content_length is None and not chunked
        self._wake(answer)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._answer is not None:
            self._answer._feed(body)
            self._wake(None)

    def on_message_complete(self) -> None:
        answer, self._answer = self._answer, None
        if answer is None:
            return
        answer._done = True
        keep = self._parser.should_keep_alive()
        self._end()
        self._wake(None)
        if keep and not self.closed:
            self._pool.kept(self)
        else:
            self.close()

    # -- the exchange ----------------------------------------------------------------------------------

    async def exchange(self, request: bytes, seconds: float, *, whole: bool, head: bool = False) -> Answer:
        """Send the request; its answer once the head came. `seconds`: for each wait for the server
        (the head, each part of the body), or for the whole answer when `whole`."""
        assert self._transport is not None and not self.busy
        self.busy = True
        self.exchanges += 1
        self._answered = False
        self._until_close = False
        self._head = head
        self._header_fields = []
        self._unbodied = 0
        self._timeout = seconds
        self._deadline = self._loop.time() + seconds if whole else None
        self._transport.write(request)
        while (answer := await self._wait()) is None:
            pass
        return answer

    async def more(self) -> None:
        """Wait until the server sent more of the body (or failed); `HttpFailure` when it failed."""
        await self._wait()

    async def _wait(self) -> Answer | None:
        if self.closed:
            raise _Lost("the server closed the connection", answered=self._answered)
        # Kept in locals: once the answer is whole the connection may serve another exchange before this one's
        # waiting ends, and that exchange's waiter and timer are its own.
        waiter: asyncio.Future[Answer | None] = self._loop.create_future()
        self._waiter = waiter
        self._due = due = self._loop.time() + self._timeout if self._deadline is None else self._deadline
        if self._timer is None or self._timer_at > due:
            self._arm(due)
        try:
            return await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None
                self._due = None

    def pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self._transport is not None and not self.closed:
            self._paused = False
            self._transport.resume_reading()

    def _wake(self, answer: Answer | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(answer)

    def _end(self) -> None:
        """The exchange is over: the connection no longer counts as in use."""
        self.resume()
        if self.busy:
            self.busy = False
            self._pool.done(self)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._check)
        self._timer_at = when

    def _check(self) -> None:
        """The timer fired: the wait under way timed out if it is due, else the timer is armed again for it (it was
        armed for an earlier wait); nothing waiting, it is armed again by the next wait."""
        self._timer = None
        if self._due is None or self.closed:
            return
        if self._loop.time() < self._due:
            self._arm(self._due)
            return
        self._fail(HttpFailure("no answer in time", timed_out=True))

    def _fail(self, error: HttpFailure) -> None:
        answer, self._answer = self._answer, None
        waiter = self._waiter
        self.close()
        if answer is not None:
            answer._fail(error)
            self._wake(None)
        elif waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.abort()  # nothing of a half-done exchange is worth sending
        self._end()


class KeepAliveClient:
    """Requests to the server of `base_url` (`http[s]://host[:port][/path]`), over connections kept between them."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int = 0,
        max_idle: int = 64,
        idle_seconds: float = 15.0,
        encoding: str = "latin-1",
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
        self._max_connections = max_connections
        self._max_idle = max_idle
        self._idle_seconds = idle_seconds
        self._encoding = encoding
        self._idle: list[_Connection] = []  # the most recently used last
        self._in_use = 0
        self._queue: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        *,
        resend: bool = True,
        whole: bool = False,
    ) -> Answer:
        """`method` `target` (path and query, already percent-encoded, below the address's own path): the answer
        once its head came, whatever its status. `resend`: sent once more on a new connection when a kept one
        failed before any answer came. `whole`: the read timeout bounds the whole answer, not each wait for it.
        Raises `HttpFailure`."""
        request = self._request(method, target, headers, body)
        await self._take()
        held = True  # the place is this call's until an exchange takes it (the connection gives it back)
        try:
            connection = self._kept()
            if connection is not None:
                held = False
                try:
                    return await self._exchange(connection, request, whole, method == "HEAD")
                except _Lost as lost:
                    if lost.answered or not resend:
                        raise
                # The server closed the kept connection before reading this request: once more, on a new one.
                await self._take()
                held = True
            connection = await self._connect()
            held = False
            return await self._exchange(connection, request, whole, method == "HEAD")
        except BaseException:
            if held:
                self._give_back()
            raise

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # -- called by connections -------------------------------------------------------------------------

    def kept(self, connection: _Connection) -> None:
        """An exchange ended and its connection may serve the next one."""
        if not self._closed and len(self._idle) < self._max_idle:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()

    def done(self, connection: _Connection) -> None:
        """An exchange is over (answered whole, failed or let go): its place is free."""
        self._give_back()

    # -- internals -------------------------------------------------------------------------------------

    def _request(self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes | None) -> bytes:
        path = f"{self._prefix}/{target.lstrip('/')}"
        if (
            not _TARGET.fullmatch(path)
            or _NOT_VALUE.search("".join([value for _, value in headers]))
            or _NOT_TOKEN.search("".join([method, *(name for name, _ in headers)]))
            or not all(name for name, _ in headers)
            or not method
        ):
            raise HttpFailure(
                "a header or the path holds a line break or another character HTTP/1.1 cannot carry there", unsent=True
            )
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        elif method not in _BODILESS:
            lines.append("Content-Length: 0")
        try:
            head = ("\r\n".join(lines) + "\r\n\r\n").encode(self._encoding)
        except UnicodeEncodeError:
            raise HttpFailure("a header or the path holds characters HTTP/1.1 cannot carry", unsent=True) from None
        return head + body if body else head

    async def _take(self) -> None:
        """A place among `max_connections`, waiting for one while all are in use, at most `connect_timeout` (as
        aiohttp's connect timeout bounds the wait for a pooled connection): callers of a store whose connections
        are all held, by slow downloads say, fail in time instead of holding the gateway's own capacity for ever."""
        if not self._max_connections or (self._in_use < self._max_connections and not self._queue):
            self._in_use += 1
            return
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(place)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await place  # handed over with the place counted
        except BaseException as exc:
            if place.done() and not place.cancelled():
                self._give_back()
            elif place in self._queue:  # else a place given back meanwhile passed it by (it was cancelled)
                self._queue.remove(place)
            if isinstance(exc, TimeoutError):
                raise HttpFailure("no connection free in time", unsent=True, timed_out=True) from None
            raise

    def _give_back(self) -> None:
        while self._queue:
            place = self._queue.popleft()
            if not place.done():
                place.set_result(None)  # the place passes on, still counted
                return
        self._in_use -= 1

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
                    lambda: _Connection(loop, self), self._host, self._port, ssl=self._ssl
                )
        except TimeoutError:
            raise HttpFailure("could not connect in time", unsent=True, timed_out=True) from None
        except (OSError, ssl.SSLError) as exc:
            raise HttpFailure(f"could not connect ({type(exc).__name__})", unsent=True) from None
        return connection

    async def _exchange(self, connection: _Connection, request: bytes, whole: bool, head: bool) -> Answer:
        begun = connection.exchanges
        try:
            return await connection.exchange(request, self._read_timeout, whole=whole, head=head)
        except BaseException:
            # Failed, timed out or cancelled: the connection is in an unknown state and ends. Unless its answer was
            # whole before the caller was cancelled: then it went back to the pool, maybe on to another caller, whose
            # exchange this one must not end.
            if connection.exchanges == begun or (connection.exchanges == begun + 1 and connection.busy):
                connection.close()
            raise


class KeepAliveGets(KeepAliveClient):
    """A vault's reads: GETs answered whole (at most `MAX_BODY_BYTES`), each answer within `read_timeout`."""

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """GET `path` (already percent-encoded, below the address's own path): status and body, whatever the
        status. Raises `HttpFailure`."""
        answer = await self.request("GET", path, list(headers.items()), whole=True)
        try:
            return answer.status, await answer.read(MAX_BODY_BYTES)
        except BaseException:
            answer.release()
            raise


def _tls_context() -> ssl.SSLContext:
    """Certificates checked against the default trust store, as aiohttp's default context does."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context
