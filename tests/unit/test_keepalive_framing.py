"""Every caller of a store's kept-alive connections (adapters/keepalive.py) gets its own answer and nobody else's.

The connections of a store are shared by all users of that store: an answer left on a connection, or a
connection handed on before its answer ended, would give the next caller, another user, someone else's answer.
A real socket server tags every answer (a header and the body) with the request it answers, and answers in every
framing HTTP/1.1 allows: a length, chunks with trailers, until the connection closes, after interim (1xx) answers,
204 and 304 (no body whatever the head says, and a 204 followed by one), HEAD, a large body read in parts, an
answer too late for the caller's timeout, an answer without a length cut short by a reset, a server that sends
more than it announced, and trailers without end. Callers read their answer whole, let it go after a part, or are
cancelled at any point; hypothesis draws the mix and the interleaving.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.keepalive import HIGH_WATER, MAX_HEAD_BYTES, Answer, HttpFailure, KeepAliveClient

BIG = 3 * HIGH_WATER
LATE_SECONDS = 1.0
READ_TIMEOUT = 0.5  # generous for a busy machine: only `late` answers may miss it


def expected_body(tag: str, mode: str, method: str) -> bytes:
    if method == "HEAD" or mode in ("nocontent", "bodied204", "notmodified"):
        return b""
    if mode == "big":
        unit = tag.encode() + b";"
        return (unit * (BIG // len(unit) + 1))[:BIG]
    return f"answer to {tag}".encode()


def expected_status(mode: str) -> int:
    return {"nocontent": 204, "bodied204": 204, "notmodified": 304}.get(mode, 200)


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
        elif mode == "reset":  # an answer that ends with its connection, cut short by a reset
            writer.write(f"HTTP/1.1 200 OK\r\n{tagged}Connection: close\r\n\r\n".encode() + body[:5])
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        elif mode in ("trailers", "longtrailer"):  # trailers without end (4 times the head's bound), then the end
            many, one = b"X-T: t\r\n" * (MAX_HEAD_BYTES // 2), b"X-T: " + b"t" * 4 * MAX_HEAD_BYTES
            fields = many if mode == "trailers" else one
            writer.write(
                f"HTTP/1.1 200 OK\r\n{tagged}Transfer-Encoding: chunked\r\n\r\n".encode()
                + b"%x\r\n%s\r\n0\r\n" % (len(body), body)
                + fields
                + b"\r\n\r\n"
            )
        elif mode == "nocontent":
            writer.write(f"HTTP/1.1 204 No Content\r\n{tagged}\r\n".encode())
        elif mode == "bodied204":  # a body after a 204, which has none: it must reach nobody
            forged = b"HTTP/1.1 200 OK\r\nX-Tag: forged\r\nContent-Length: 6\r\n\r\nforged"
            writer.write(f"HTTP/1.1 204 No Content\r\n{tagged}Content-Length: {len(forged)}\r\n\r\n".encode() + forged)
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


@dataclass(frozen=True)
class Call:
    tag: str
    mode: str
    method: str
    action: str  # read | part | cancel
    ticks: int  # loop turns before the caller starts (and, for `cancel`, before it is cancelled)


MODES = [
    *("plain", "chunked", "close", "reset", "continue", "hints"),
    *("nocontent", "bodied204", "notmodified", "big", "late", "extra"),
]
calls = st.lists(
    st.tuples(
        st.sampled_from(MODES),
        st.sampled_from(["GET", "GET", "POST", "HEAD"]),
        st.sampled_from(["read", "read", "part", "cancel"]),
        st.integers(0, 6),
    ),
    min_size=1,
    max_size=12,
).map(lambda drawn: [Call(f"t{index}", *fields) for index, fields in enumerate(drawn)])


@pytest.fixture(scope="module")
async def tagging() -> AsyncIterator[str]:
    server = Tagging()
    yield await server.start()
    await server.stop()


async def exchange(client: KeepAliveClient, call: Call) -> None:
    """One caller: its answer must be its own, whatever it does with it; a failure only where the answer came too
    late or was cut short."""
    for _ in range(call.ticks):
        await asyncio.sleep(0)
    try:
        answer = await client.request(
            call.method, f"/{call.tag}/{call.mode}", body=b"{}" if call.method == "POST" else None, resend=False
        )
        assert call.mode != "late", f"{call} was answered although its answer came after the timeout"
        assert (answer.status, answer.headers.get("X-Tag")) == (expected_status(call.mode), call.tag), call
        want = expected_body(call.tag, call.mode, call.method)
        if call.action == "part":
            first = await answer.chunk()
            assert want.startswith(first), call
            answer.release()
        else:
            body = await answer.read()
            assert call.mode != "reset" or call.method == "HEAD", f"{call}: an answer cut short was taken as whole"
            assert body == want, call
    except HttpFailure as failure:
        assert failure.timed_out == (call.mode == "late") and call.mode in ("late", "reset"), f"{call}: {failure}"


async def run_all(client: KeepAliveClient, drawn: list[Call]) -> None:
    tasks = [asyncio.create_task(exchange(client, call)) for call in drawn]
    for call, task in zip(drawn, tasks, strict=True):
        if call.action == "cancel":
            for _ in range(call.ticks):
                await asyncio.sleep(0)
            task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            raise outcome


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=calls, limit=st.integers(1, 3))
async def test_every_caller_gets_its_own_answer_whatever_the_framing_and_interleaving(
    tagging: str, drawn: list[Call], limit: int
) -> None:
    client = KeepAliveClient(tagging, connect_timeout=10.0, read_timeout=READ_TIMEOUT, max_connections=limit)
    try:
        await asyncio.wait_for(run_all(client, drawn), 30)
        # Afterwards, every place of the pool is free and every kept connection serves one caller at a time:
        # `limit` + 2 callers at once all get their own answers.
        after = [Call(f"after{index}", "plain", "GET", "read", 0) for index in range(limit + 2)]
        await asyncio.wait_for(run_all(client, after), 30)
    finally:
        await client.close()


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


@pytest.mark.parametrize("mode", ["trailers", "longtrailer"])
async def test_trailers_without_end_fail_the_call(tagging: str, mode: str) -> None:
    """Trailer fields after a chunked body, many or one long one: httptools parses and keeps each, as it does the
    head's headers, and only the head was bounded (16 MB of trailers grew the gateway by 260 MB, the call a
    success). Past the head's bound the call fails and the connection ends; the next caller gets its own answer."""
    client = KeepAliveClient(tagging, connect_timeout=2.0, read_timeout=5.0)
    try:
        with pytest.raises(HttpFailure, match="trailers are over"):
            await (await client.request("GET", f"/alice/{mode}")).read()
        assert await seen(await client.request("GET", "/bob/plain")) == (200, "bob", b"answer to bob")
    finally:
        await client.close()


async def test_a_caller_cancelled_while_waiting_for_a_place_is_cancelled(tagging: str) -> None:
    """A caller waiting for a place is cancelled, and a place is given back before it runs again: the place goes
    to nobody (it passes the cancelled caller by), and the caller ends cancelled, not with an error of the pool."""
    client = KeepAliveClient(tagging, connect_timeout=2.0, read_timeout=5.0, max_connections=1)
    try:
        held = await client.request("GET", "/alice/big")
        waiting = asyncio.create_task(client.request("GET", "/bob/plain"))
        for _ in range(3):
            await asyncio.sleep(0)
        waiting.cancel()
        held.release()  # the place is given back at once, before the cancelled caller runs
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await seen(await client.request("GET", "/carol/plain")) == (200, "carol", b"answer to carol")
    finally:
        await client.close()


async def test_a_caller_waits_for_a_place_at_most_the_connect_timeout(tagging: str) -> None:
    """All of a store's connections held (by downloads their clients read slowly, say): the next caller fails as
    a timeout, unsent, after `connect_timeout`, as aiohttp's pool did, instead of waiting for ever while it holds
    a place of the gateway's own."""
    client = KeepAliveClient(tagging, connect_timeout=0.5, read_timeout=5.0, max_connections=1)
    try:
        held = await client.request("GET", "/alice/big")
        with pytest.raises(HttpFailure) as failure:
            await asyncio.wait_for(client.request("GET", "/bob/plain"), 30)
        assert failure.value.timed_out and failure.value.unsent
        assert len(await held.read()) == BIG
        assert await seen(await client.request("GET", "/carol/plain")) == (200, "carol", b"answer to carol")
    finally:
        await client.close()
