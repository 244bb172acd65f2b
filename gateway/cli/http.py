"""uvicorn's httptools protocol with its writes coalesced: what one turn of the event loop writes leaves in one send.

uvicorn writes a response's status line and headers, then its body, each with its own `send()` on the socket,
and every send on a TCP connection costs a full trip through the kernel's network stack (on loopback, the
receiver's side too). A small JSON answer therefore cost two sends where one does. Here the writes of one
turn of the loop are gathered and sent together at the end of the turn (at once when they reach
`FLUSH_BYTES`, so a streamed download leaves as fast as before and the transport's flow control still
sees it); closing the connection sends what is pending first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's `httptools` protocol (`http="httptools"`) over a `CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
