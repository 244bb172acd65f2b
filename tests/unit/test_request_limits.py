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
async def _served(limits: RequestLimits, keep_alive: float = 60, app: Any = _app) -> AsyncIterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    protocol = functools.partial(CoalescingHttpToolsProtocol, limits=limits)
    config = uvicorn.Config(
        app,
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


# -- trailers, and refusals that must not land in another request's answer ------------------------------------------

CHUNKED_POST = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n"


def test_trailers_are_not_read_as_headers_of_the_request() -> None:
    """Fields after a chunked body are trailers, not headers: uvicorn appended them to the request's headers
    (`scope["headers"]`), where a handler reading its headers once the body was read (the forwarder does) found
    a trailer `X-MLFLOW-WORKSPACE` or `Authorization` as if the request's head had carried it."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        answer = json.dumps([[name.decode(), value.decode()] for name, value in scope["headers"]]).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async def scenario() -> None:
        async with _served(RequestLimits(), app=app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(CHUNKED_POST + b"X-MLFLOW-WORKSPACE: other\r\nAuthorization: Bearer t\r\n\r\n")
            status, body = await _answer(reader)
            assert status == 200
            assert json.loads(body) == [["host", "x"], ["transfer-encoding", "chunked"]]
            writer.write(_get())  # and the connection serves the next request
            assert (await _answer(reader))[0] == 200
            writer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("trailers", ["many fields", "one field"])
def test_trailers_without_end_are_refused(trailers: str) -> None:
    """Trailers were bounded by nothing but the body's time: 16 MB of them grew the gateway by 230 MB, from a
    client nobody had authenticated yet. Past the head's size limit they are 431, and the connection ends."""
    started = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            started.set()
        await _app(scope, receive, send)

    async def scenario() -> None:
        # (Before, the body's time ran out: 408.)
        async with _served(RequestLimits(max_head_bytes=LIMIT, body_seconds=2), app=app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(CHUNKED_POST)
            await asyncio.wait_for(started.wait(), BOUND)  # the head was read: what follows are reads of trailers
            # No end: the request stays unfinished, as a client sending trailers for ever leaves it.
            writer.write(b"X-T: t\r\n" * (2 * LIMIT // 8) if trailers == "many fields" else b"X-T: " + b"t" * 2 * LIMIT)
            status, body = await _answer(reader)
            assert status == 431 and "trailers" in json.loads(body)["message"]
            assert await asyncio.wait_for(reader.read(), BOUND) == b""
            writer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("after", ["not http", "a pipelined request with a broken body"])
@pytest.mark.parametrize("answer", ["under way", "not begun"])
def test_a_refusal_never_lands_in_or_before_another_requests_answer(after: str, answer: str) -> None:
    """Bytes that are not HTTP, read while a request's answer is under way (a download) or not yet begun: uvicorn
    wrote its 400 at once, inside that answer's body or where a client (or a proxy pipelining its users' requests)
    reads it as that request's answer. The connection ends without it; the answer under way stops short of its
    length, which tells the client it is incomplete."""
    gate = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"20")]
        if answer == "under way":
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"a" * 10, "more_body": True})
            await gate.wait()
            await send({"type": "http.response.body", "body": b"b" * 10})
        else:
            await gate.wait()
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"a" * 20})

    garbage = b"\x00\x01 not http\r\n\r\n"
    if after != "not http":
        garbage = b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nnot a chunk size\r\n"

    async def scenario() -> None:
        async with _served(RequestLimits(), app=app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                if answer == "under way":
                    writer.write(_get("/download"))
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND)
                    assert head.startswith(b"HTTP/1.1 200 ")
                    assert await asyncio.wait_for(reader.readexactly(10), BOUND) == b"a" * 10
                    writer.write(garbage)
                else:
                    writer.write(_get("/slow") + garbage)
                assert await asyncio.wait_for(reader.read(), BOUND) == b""
            finally:
                gate.set()
                writer.close()

    asyncio.run(scenario())
