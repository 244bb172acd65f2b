"""The request limits of the gateway's HTTP protocol (gateway/cli/http.py) with the connection's one lazy timer.

A real uvicorn server in process, its limits lowered. The timer is armed once per connection and looks at the phase
it finds when it fires, so these hold it to each phase's own time: a body's shorter time is not outwaited by a
timer armed for a head, a kept-alive connection is not cut off by a time its earlier requests set, the keep-alive
timeout (folded into the same timer) still closes an idle connection, and the head's size limit is exact wherever
the reads split the head. tests/integration/test_abuse.py covers the limits through the whole gateway.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn

from gateway.cli.http import CoalescingHttpToolsProtocol, RequestLimits

BOUND = 60.0  # what a test waits at most for the server to act; it acts within a second when right


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = b"echo:" + body
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@asynccontextmanager
async def _served(limits: RequestLimits, keep_alive: float = 60) -> AsyncIterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    protocol = functools.partial(CoalescingHttpToolsProtocol, limits=limits)
    config = uvicorn.Config(
        _app,
        http=protocol,  # type: ignore[arg-type]
        log_config=None,
        lifespan="off",
        timeout_keep_alive=keep_alive,  # type: ignore[arg-type]
        timeout_graceful_shutdown=1,  # a failed test's connection left waiting for its body ends
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One answer's status and body (every answer here has a Content-Length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND)
    lines = head.decode().split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length:"))
    return int(lines[0].split()[1]), await asyncio.wait_for(reader.readexactly(length), BOUND)


def _get(target: str = "/", headers: bytes = b"") -> bytes:
    return b"GET " + target.encode() + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"


def test_a_body_is_cut_off_by_its_own_time_though_the_heads_is_longer() -> None:
    """The timer was armed for the head's hour when the connection opened: the body's moment must still count."""

    async def scenario() -> None:
        async with _served(RequestLimits(head_seconds=3600, body_seconds=0.2)) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            status, body = await _answer(reader)
            assert status == 408
            error = json.loads(body)
            assert error["error_code"] == "DEADLINE_EXCEEDED" and "body" in error["message"]
            assert await asyncio.wait_for(reader.read(), BOUND) == b""  # and the connection ends
            writer.close()

    asyncio.run(scenario())


def test_a_kept_alive_connection_is_not_cut_off_by_its_earlier_requests_times() -> None:
    """Requests one after another over many times the limits: each phase has its own time, whenever the timer
    fires (it was armed for the first request's head)."""

    async def scenario() -> None:
        async with _served(RequestLimits(head_seconds=0.2, body_seconds=0.2)) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for i in range(12):
                if i % 2:
                    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
                else:
                    writer.write(_get())
                assert await _answer(reader) == (200, b"echo:hi" if i % 2 else b"echo:")
                await asyncio.sleep(0.1)
            writer.close()

    asyncio.run(scenario())


def test_a_kept_alive_connections_next_head_dripped_is_cut_off() -> None:
    async def scenario() -> None:
        async with _served(RequestLimits(head_seconds=0.3)) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_get())
            assert (await _answer(reader))[0] == 200
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            status, body = await _answer(reader)
            assert status == 408 and "headers" in json.loads(body)["message"]
            writer.close()

    asyncio.run(scenario())


def test_an_idle_kept_alive_connection_is_closed_without_an_answer() -> None:
    """uvicorn's keep-alive timeout, which the connection's one timer keeps: closed, nothing sent."""

    async def scenario() -> None:
        async with _served(RequestLimits(head_seconds=3600), keep_alive=0.3) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_get())
            assert (await _answer(reader))[0] == 200
            assert await asyncio.wait_for(reader.read(), BOUND) == b""
            writer.close()

    asyncio.run(scenario())


LIMIT = 1000


def _sized_head(size: int, *, spaced: bool) -> bytes:
    """A GET whose URL and header lines (URL + name + value + 4 each, as the limit counts them) add up to `size`.
    Unspaced header lines (`a:b`) are one byte shorter on the wire than they count."""
    target = "/sized"
    lines = [b"Host: x"] + [b"X-%03d: v" % i if spaced else b"X-%03d:v" % i for i in range(60)]
    counted = len(target) + 4 * len(lines) + sum(len(line.replace(b": ", b":")) - 1 for line in lines)
    pad = size - counted - len(b"X-Pad") - 4
    lines.append(b"X-Pad: " + b"p" * pad)
    head = b"GET " + target.encode() + b" HTTP/1.1\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"
    return head


@pytest.mark.parametrize("spaced", [True, False])
@pytest.mark.parametrize("split", ["whole", "after-a-request", "in-pieces"])
def test_the_heads_size_limit_is_exact_wherever_the_reads_split_it(spaced: bool, split: str) -> None:
    """At the limit a head is served, a byte over it 431, whether it came in one read, began in the read that ended
    the request before it, or came in pieces."""

    async def send(size: int) -> int:
        async with _served(RequestLimits(max_head_bytes=LIMIT)) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = _sized_head(size, spaced=spaced)
            if split == "whole":
                writer.write(head)
            elif split == "after-a-request":
                writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n!" + head[:40])
                assert await _answer(reader) == (200, b"echo:!")
                await asyncio.sleep(0.05)
                writer.write(head[40:])
            else:
                for start in range(0, len(head), 150):
                    writer.write(head[start : start + 150])
                    await writer.drain()
                    await asyncio.sleep(0.01)
            status, _ = await _answer(reader)
            writer.close()
            return status

    async def scenario() -> None:
        assert await send(LIMIT) == 200
        assert await send(LIMIT + 1) == 431

    asyncio.run(scenario())


def test_a_url_over_the_limit_is_414() -> None:
    async def scenario() -> None:
        async with _served(RequestLimits(max_head_bytes=LIMIT)) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_get("/u?x=" + "a" * LIMIT))
            status, body = await _answer(reader)
            assert status == 414 and json.loads(body)["error_code"] == "INVALID_PARAMETER_VALUE"
            writer.close()

    asyncio.run(scenario())
