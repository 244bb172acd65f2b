"""Every caller of a store's kept-alive connections (adapters/keepalive.py) gets its own answer and nobody else's.

The connections of a store are shared by all users of that store: an answer left on a connection, or a
connection handed on before its answer ended, would give the next caller, another user, someone else's answer.
A real socket server tags every answer (a header and the body) with the request it answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from adapters.keepalive import HIGH_WATER, Answer, KeepAliveClient

BIG = 3 * HIGH_WATER
LATE_SECONDS = 0.3
READ_TIMEOUT = 0.15


def expected_body(tag: str, mode: str, method: str) -> bytes:
    if method == "HEAD" or mode in ("nocontent", "notmodified"):
        return b""
    if mode == "big":
        unit = tag.encode() + b";"
        return (unit * (BIG // len(unit) + 1))[:BIG]
    return f"answer to {tag}".encode()


def expected_status(mode: str) -> int:
    return {"nocontent": 204, "notmodified": 304}.get(mode, 200)


class Tagging:
    """A socket server answering each request `/<tag>/<mode>` in the framing its mode names, tagged with `tag`."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ")
                fields = dict(line.split(": ", 1) for line in lines[1:] if line)
                await reader.readexactly(int(fields.get("Content-Length", "0")))
                _, tag, mode = target.split("/")
                if not await self._answer(writer, method, tag, mode):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self.handlers.discard(task)

    async def _answer(self, writer: asyncio.StreamWriter, method: str, tag: str, mode: str) -> bool:
        """Answer one request; False when the connection ends with the answer."""
        body = expected_body(tag, mode, "GET")
        tagged = f"X-Tag: {tag}\r\n"
        if mode in ("continue", "hints"):
            interim = "100 Continue\r\n" if mode == "continue" else "103 Early Hints\r\nLink: </a.css>; rel=preload\r\n"
            writer.write(f"HTTP/1.1 {interim}\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.01)
        if mode == "late":
            await asyncio.sleep(LATE_SECONDS)
        if mode == "chunked":
            half = len(body) // 2
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]))
            writer.write(
                f"HTTP/1.1 200 OK\r\n{tagged}Transfer-Encoding: chunked\r\n\r\n".encode()
                + chunks
                + f"0\r\nX-Trailer: {tag}\r\n\r\n".encode()
            )
        elif mode == "close":
            writer.write(f"HTTP/1.1 200 OK\r\n{tagged}Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
            return False
        elif mode == "nocontent":
            writer.write(f"HTTP/1.1 204 No Content\r\n{tagged}\r\n".encode())
        elif mode == "notmodified":
            writer.write(f"HTTP/1.1 304 Not Modified\r\n{tagged}Content-Length: 40\r\n\r\n".encode())
        else:
            announced = f"HTTP/1.1 200 OK\r\n{tagged}Content-Length: {len(body)}\r\n\r\n".encode()
            extra = b""
            if mode == "extra":  # more than announced: an answer nobody asked for, in the same write
                extra = b"HTTP/1.1 200 OK\r\nX-Tag: forged\r\nContent-Length: 6\r\n\r\nforged"
            writer.write(announced + (b"" if method == "HEAD" else body) + extra)
        await writer.drain()
        return True


async def seen(answer: Answer) -> tuple[int, str | None, bytes]:
    """What a caller got: the status, the tag and the body of its answer."""
    return answer.status, answer.headers.get("X-Tag"), await answer.read()


@pytest.fixture(scope="module")
async def tagging() -> AsyncIterator[str]:
    server = Tagging()
    yield await server.start()
    await server.stop()


async def test_an_interim_answer_is_not_the_answer(tagging: str) -> None:
    """100 Continue and 103 Early Hints come before the answer (RFC 9110 15.2: a client must read them even
    unasked); taken for the answer, the real one would reach whoever uses the connection next."""
    client = KeepAliveClient(tagging, connect_timeout=2.0, read_timeout=5.0)
    try:
        for first in ("continue", "hints"):
            assert await seen(await client.request("GET", f"/alice/{first}")) == (200, "alice", b"answer to alice")
            assert await seen(await client.request("GET", "/bob/plain")) == (200, "bob", b"answer to bob")
    finally:
        await client.close()


async def test_bytes_past_the_end_of_an_answer_end_the_connection(tagging: str) -> None:
    """An answer longer than its head announced, in the same read: the connection is not kept (it was kept twice,
    once per answer, and two callers at once were given it), so what followed reaches nobody."""
    client = KeepAliveClient(tagging, connect_timeout=2.0, read_timeout=5.0)
    try:
        assert await seen(await client.request("GET", "/alice/extra")) == (200, "alice", b"answer to alice")
        bob, carol = await asyncio.gather(
            client.request("GET", "/bob/plain", resend=False), client.request("GET", "/carol/plain", resend=False)
        )
        assert await seen(bob) == (200, "bob", b"answer to bob")
        assert await seen(carol) == (200, "carol", b"answer to carol")
    finally:
        await client.close()
