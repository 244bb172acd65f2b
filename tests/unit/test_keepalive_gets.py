"""The vault adapter's GETs over kept-alive connections (adapters/keepalive.py), against servers in the test:
aiohttp's web server, and plain asyncio servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from adapters.keepalive import MAX_BODY_BYTES, HttpFailure, KeepAliveGets
from gateway.devstack import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Raw:
    """A TCP server whose connections `handler` serves; counts the connections it accepted."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def request_of(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def answer(body: bytes, *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@pytest.fixture
async def web_server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """aiohttp's server under the path /base: echoes what it was asked, in JSON."""
    seen: list[web.Request] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        if request.path.endswith("/chunked"):
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in (b'{"a": ', b'"chunked"}'):
                await response.write(part)
            await response.write_eof()
            return response
        return web.json_response(
            {"path": request.path, "token": request.headers.get("X-Vault-Token"), "host": request.headers["Host"]},
            status=int(request.query.get("status", "200")),
        )

    app = web.Application()
    app.router.add_get("/base/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/base/", seen
    finally:
        await runner.cleanup()


def gets(base: str, *, read: float = 5.0) -> KeepAliveGets:
    return KeepAliveGets(base, connect_timeout=2.0, read_timeout=read)


async def test_gets_answer_status_and_body_and_reuse_one_connection(
    web_server: tuple[str, list[web.Request]],
) -> None:
    base, seen = web_server
    client = gets(base)
    try:
        for index in range(5):
            status, body = await client.get(f"v1/secret/data/k{index}%2Fx", {"X-Vault-Token": "tok"})
            assert status == 200
            host = base.split("/")[2]
            assert json.loads(body) == {"path": f"/base/v1/secret/data/k{index}/x", "token": "tok", "host": host}
        status, _ = await client.get("v1/missing?status=404", {})
        assert status == 404
        assert await client.get("v1/chunked", {}) == (200, b'{"a": "chunked"}')
    finally:
        await client.close()
    peers = {request.transport.get_extra_info("peername") for request in seen if request.transport is not None}
    assert len(seen) == 7
    assert len(peers) == 1  # one connection for all seven, one after another


async def test_gets_at_once_each_take_a_connection_kept_for_the_next_ones() -> None:
    started = asyncio.Event()
    waiting = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal waiting
        while True:
            await request_of(reader)
            waiting += 1
            if waiting == 4:
                started.set()
            await started.wait()  # all four in flight at once before any answer
            writer.write(answer(b"{}"))
            await writer.drain()

    server = Raw(serve)
    client = gets(await server.start())
    try:
        first = await asyncio.gather(*(client.get(f"k{i}", {}) for i in range(4)))
        second = await asyncio.gather(*(client.get(f"k{i}", {}) for i in range(4)))
    finally:
        await client.close()
        await server.stop()
    assert first == second == [(200, b"{}")] * 4
    assert server.connections == 4


async def test_a_kept_connection_the_server_dropped_unanswered_is_replaced_at_once() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if server.connections == 1:
            await request_of(reader)
            writer.write(answer(b'{"n": 1}'))
            await writer.drain()
            await request_of(reader)  # the second request on the kept connection: dropped unanswered
            return
        await request_of(reader)
        writer.write(answer(b'{"n": 2}'))
        await writer.drain()

    server = Raw(serve)
    client = gets(await server.start())
    try:
        assert await client.get("a", {}) == (200, b'{"n": 1}')
        assert await client.get("b", {}) == (200, b'{"n": 2}')
    finally:
        await client.close()
        await server.stop()
    assert server.connections == 2


async def test_an_answer_cut_short_is_a_failure_not_sent_again() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_of(reader)
        writer.write(answer(b'{"n": 1}'))
        await request_of(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{")  # then the connection closes
        await writer.drain()

    server = Raw(serve)
    client = gets(await server.start())
    try:
        await client.get("a", {})
        with pytest.raises(HttpFailure) as failed:
            await client.get("b", {})
    finally:
        await client.close()
        await server.stop()
    assert not failed.value.unsent and not failed.value.timed_out
    assert server.connections == 1


async def test_connection_close_is_obeyed() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_of(reader)
        writer.write(answer(b"{}", "Connection: close"))
        await writer.drain()
        await reader.read()

    server = Raw(serve)
    client = gets(await server.start())
    try:
        for _ in range(3):
            assert await client.get("a", {}) == (200, b"{}")
    finally:
        await client.close()
        await server.stop()
    assert server.connections == 3


async def test_no_answer_in_time_is_a_timeout_and_the_connection_is_not_kept() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = server.connections == 1
        await request_of(reader)
        if first:
            await asyncio.sleep(30)  # never answers in time
        writer.write(answer(b"{}"))
        await writer.drain()

    server = Raw(serve)
    client = gets(await server.start(), read=0.2)
    try:
        with pytest.raises(HttpFailure) as failed:
            await client.get("a", {})
        assert failed.value.timed_out and not failed.value.unsent
        assert await client.get("a", {}) == (200, b"{}")
    finally:
        await client.close()
        await server.stop()
    assert server.connections == 2


async def test_a_wait_on_a_kept_connection_has_its_whole_read_timeout() -> None:
    """A connection's one timer is armed by the first wait and not re-armed by later ones while it fires sooner: when
    it fires during a later wait that is not due yet, that wait goes on (the answer here comes after the first wait's
    time was up, well within the second's), and it is armed again for it."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_of(reader)
        writer.write(answer(b"{}"))
        await writer.drain()
        await request_of(reader)
        await asyncio.sleep(1.4)  # the first wait's time is up 2 s after it began; this one's 2 s after 1.2 s
        writer.write(answer(b"[]"))
        await writer.drain()
        await request_of(reader)
        await asyncio.sleep(30)  # the third gets no answer: its own timer ends it

    server = Raw(serve)
    client = gets(await server.start(), read=2.0)
    try:
        assert await client.get("a", {}) == (200, b"{}")
        await asyncio.sleep(1.2)
        assert await client.get("a", {}) == (200, b"[]")
        with pytest.raises(HttpFailure) as failed:
            await client.get("a", {})
        assert failed.value.timed_out
    finally:
        await client.close()
        await server.stop()
    assert server.connections == 1


async def test_a_cancelled_get_does_not_leave_its_connection_for_the_next() -> None:
    answered = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = server.connections == 1
        await request_of(reader)
        if first:
            await answered.wait()
        writer.write(answer(b'{"late": true}' if first else b'{"fresh": true}'))
        await writer.drain()

    server = Raw(serve)
    client = gets(await server.start())
    try:
        first = asyncio.create_task(client.get("a", {}))
        while server.connections == 0:
            await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        answered.set()
        # A new connection answers: the late answer of the cancelled GET is never taken for this one's.
        assert await client.get("b", {}) == (200, b'{"fresh": true}')
    finally:
        await client.close()
        await server.stop()
    assert server.connections == 2


async def test_nobody_listening_is_unsent() -> None:
    client = gets(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(HttpFailure) as failed:
            await client.get("a", {})
    finally:
        await client.close()
    assert failed.value.unsent and not failed.value.timed_out


async def test_garbage_and_oversized_answers_are_failures() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = server.connections == 1
        await request_of(reader)
        if first:
            writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        else:
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_BODY_BYTES + 10}\r\n\r\n".encode())
            writer.write(b"x" * (MAX_BODY_BYTES + 10))
        await writer.drain()
        await reader.read()

    server = Raw(serve)
    client = gets(await server.start())
    try:
        with pytest.raises(HttpFailure, match="not HTTP"):
            await client.get("a", {})
        with pytest.raises(HttpFailure, match="over"):
            await client.get("a", {})
    finally:
        await client.close()
        await server.stop()


@pytest.mark.parametrize(
    ("path", "headers"),
    [("a\r\nX-Injected: 1", {}), ("a", {"X-Vault-Token": "t\r\nX-Injected: 1"}), ("a", {"X-Vault-Token": "t\n"})],
)
async def test_line_breaks_in_the_path_or_a_header_are_refused_before_anything_is_sent(
    path: str, headers: dict[str, str]
) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = Raw(serve)
    client = gets(await server.start())
    try:
        with pytest.raises(HttpFailure, match="line break") as failed:
            await client.get(path, headers)
    finally:
        await client.close()
        await server.stop()
    assert failed.value.unsent
    assert server.connections == 0


def test_only_http_addresses_are_taken() -> None:
    with pytest.raises(ValueError, match="not an http"):
        gets("ftp://vault.example.com")
    client = gets("https://[::1]:8200/prefix/")
    assert client._host_header == "[::1]:8200" and client._prefix == "/prefix"
