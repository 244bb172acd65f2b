"""The server's writes of one turn of the event loop leave in one send, and nothing written is lost or reordered."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from gateway.cli.http import FLUSH_BYTES, CoalescingHttpToolsProtocol, CoalescingTransport


class Recording(asyncio.Transport):
    """The transport under the coalescing one: what reached it, send by send."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.sends.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0


async def _turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_writes_of_one_turn_leave_in_one_send() -> None:
    async def scenario() -> None:
        inner = Recording()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"")
        transport.write(b"{}")
        assert inner.sends == []
        await _turn()
        assert inner.sends == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        transport.write(b"next")
        await _turn()
        assert inner.sends[1:] == [b"next"]

    asyncio.run(scenario())


def test_a_large_write_leaves_at_once_and_close_sends_what_is_pending() -> None:
    async def scenario() -> None:
        inner = Recording()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())
        transport.write(b"head")
        transport.write(b"x" * FLUSH_BYTES)
        assert inner.sends == [b"head" + b"x" * FLUSH_BYTES]
        transport.write(b"tail")
        transport.close()
        assert inner.sends[1:] == [b"tail"] and inner.closed
        transport.write(b"after close")
        await _turn()
        assert len(inner.sends) == 2  # nothing is written to a closing transport

    asyncio.run(scenario())


def test_abort_drops_what_is_pending() -> None:
    async def scenario() -> None:
        inner = Recording()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())
        transport.write(b"lost")
        transport.abort()
        await _turn()
        assert inner.sends == [] and inner.aborted

    asyncio.run(scenario())


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one,", b"two,", b"x" * (FLUSH_BYTES * 2)):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    answer = b"echo:" + body
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


async def _served() -> AsyncIterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(_app, http=CoalescingHttpToolsProtocol, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def _exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    received = await reader.read()  # every request below ends with Connection: close
    writer.close()
    return received


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            [b"echo:abc", b"echo:"],
        ),
        (b"HEAD /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", []),
        (b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", [b"one,two," + b"x" * (FLUSH_BYTES * 2)]),
    ],
)
def test_a_real_server_answers_whole_and_in_order(request_bytes: bytes, expected: list[bytes]) -> None:
    async def scenario() -> bytes:
        async for port in _served():
            return await _exchange(port, request_bytes)
        raise AssertionError("not served")

    received = asyncio.run(scenario())
    responses = received.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(responses) == max(1, len(expected))
    for response, body in zip(responses, expected, strict=False):
        head, _, rest = response.partition(b"\r\n\r\n")
        if b"transfer-encoding: chunked" in head:
            decoded = b""
            while rest:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line, 16)
                decoded, rest = decoded + rest[:size], rest[size + 2 :]
            rest = decoded
        assert rest == body
