"""The store adapter's calls over kept-alive connections (adapters/keepalive.py), against aiohttp's web server and
plain asyncio servers: what the store receives, answers of every framing, large answers read with little held,
answers let go, the connection limit, timeouts and failures as the gateway's own errors."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from adapters.keepalive import HIGH_WATER, KeepAliveClient
from adapters.stores.auth import StaticStoreAuth
from adapters.stores.mlflow_rest import KeptStoreResponse, MlflowRestStore
from gateway.core.ports import StoreTimedOut, StoreUnreachable
from tests.unit.test_keepalive_gets import Raw, answer, request_of

LARGE = os.urandom(8 * 1024 * 1024)


class Upstream:
    """aiohttp's server: echoes what it received; `/large` streams LARGE, `/chunked` and `/slow` as named."""

    def __init__(self) -> None:
        self.peers: list[object] = []
        self.unauthorized = 0  # answer 401 this many times first
        self.in_flight = 0
        self.most_in_flight = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        if self.unauthorized:
            self.unauthorized -= 1
            return web.json_response({"error_code": "UNAUTHENTICATED"}, status=401)
        if request.path == "/large":
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            response.content_length = len(LARGE)
            await response.prepare(request)
            for start in range(0, len(LARGE), 1024 * 1024):
                await response.write(LARGE[start : start + 1024 * 1024])
            return response
        if request.path == "/chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in (b'{"a": ', b'"chunked"}'):
                await response.write(part)
            await response.write_eof()
            return response
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if request.path == "/slow":
                await asyncio.sleep(0.05)
            body = await request.read()
        finally:
            self.in_flight -= 1
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "raw_path": request.raw_path,
                "headers": {name.lower(): value for name, value in request.headers.items()},
                "body": body.decode(),
            },
            status=int(request.query.get("status", "200")),
        )


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, Upstream]]:
    state = Upstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", state
    await runner.cleanup()


async def test_a_call_carries_what_aiohttp_sent_and_connections_are_kept(upstream: tuple[str, Upstream]) -> None:
    url, state = upstream
    store = MlflowRestStore("s", url + "/prefix/", auth=StaticStoreAuth.bearer("store-token"))
    try:
        got = await store.request(
            "POST",
            "/api/2.0/mlflow/runs/search",
            query="a=1&b=%2F",
            headers=[("content-type", "application/json"), ("x-mlflow-workspace", "client's"), ("traceparent", "t")],
            body=b'{"x": 1}',
            workspace="team-a",
        )
        assert isinstance(got, KeptStoreResponse) and got.status == 200
        assert got.headers["content-type"].startswith("application/json")
        assert got.content_length is not None
        seen = json.loads(await got.read())
        for method in ("GET", "DELETE"):
            answer_ = await store.request(method, "/api/2.0/mlflow/runs/get", headers=[("accept", "application/json")])
            headers = json.loads(await answer_.read())["headers"]
            assert headers["accept"] == "application/json"
            assert ("content-length" in headers) is (method == "DELETE") and headers.get("content-length", "0") == "0"
    finally:
        await store.close()
    assert seen["method"] == "POST" and seen["raw_path"] == "/prefix/api/2.0/mlflow/runs/search?a=1&b=%2F"
    assert seen["body"] == '{"x": 1}'
    headers = seen["headers"]
    assert headers["host"] == url.removeprefix("http://")
    assert headers["x-mlflow-workspace"] == "team-a"  # the gateway's, never the client's
    assert headers["authorization"] == "Bearer store-token"
    assert headers["accept"] == "*/*" and headers["content-length"] == "8" and headers["traceparent"] == "t"
    assert "cookie" not in headers and "user-agent" not in headers and "accept-encoding" not in headers
    assert len(set(state.peers)) == 1  # one connection, kept for all three calls


async def test_answers_in_chunks_and_without_a_length_are_read_whole(upstream: tuple[str, Upstream]) -> None:
    url, _ = upstream
    store = MlflowRestStore("s", url)
    try:
        chunked = await store.request("GET", "/chunked")
        assert chunked.content_length is None and await chunked.read() == b'{"a": "chunked"}'
    finally:
        await store.close()

    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_of(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        await writer.drain()

    server = Raw(until_close)
    store = MlflowRestStore("s", await server.start())
    try:
        answered = await store.request("GET", "/x")
        assert answered.content_length is None and await answered.read() == b"all of it"
    finally:
        await store.close()
        await server.stop()


async def test_a_large_answer_streams_with_little_of_it_held(upstream: tuple[str, Upstream]) -> None:
    url, state = upstream
    store = MlflowRestStore("s", url)
    try:
        got = await store.request("GET", "/large")
        assert isinstance(got, KeptStoreResponse) and got.content_length == len(LARGE)
        await asyncio.sleep(0.2)  # the server could send all of it now, if the connection kept reading
        held = got._answer._buffered
        assert held <= 2 * HIGH_WATER, held
        parts = []
        async for chunk in got.iter_chunks():
            assert got._answer._buffered <= 2 * HIGH_WATER
            parts.append(chunk)
        assert b"".join(parts) == LARGE
        # Read to its end, the connection serves the next call.
        again = await store.request("GET", "/api/2.0/mlflow/runs/get")
        await again.read()
    finally:
        await store.close()
    assert len(set(state.peers)) == 1


async def test_an_answer_let_go_unread_is_not_used_again(upstream: tuple[str, Upstream]) -> None:
    url, state = upstream
    store = MlflowRestStore("s", url)
    try:
        got = await store.request("GET", "/large")
        chunks = got.iter_chunks()
        assert await anext(chunks)
        await chunks.aclose()  # released with most of the body still coming
        after = await store.request("GET", "/api/2.0/mlflow/runs/get")
        assert json.loads(await after.read())["path"] == "/api/2.0/mlflow/runs/get"
    finally:
        await store.close()
    assert len(set(state.peers)) == 2


async def test_at_most_max_connections_calls_at_once_and_the_rest_wait(upstream: tuple[str, Upstream]) -> None:
    url, state = upstream
    store = MlflowRestStore("s", url, max_connections=2)
    try:
        answers = await asyncio.gather(*(store.request("GET", "/slow") for _ in range(6)))
        assert [json.loads(await got.read())["path"] for got in answers] == ["/slow"] * 6
    finally:
        await store.close()
    assert state.most_in_flight == 2 and len(set(state.peers)) == 2


async def test_a_refused_credential_is_renewed_and_the_call_repeated_when_safe(upstream: tuple[str, Upstream]) -> None:
    url, state = upstream
    store = MlflowRestStore("s", url)
    try:
        state.unauthorized = 1
        repeated = await store.request("GET", "/api/2.0/mlflow/runs/get", idempotent=True)
        assert repeated.status == 200
        await repeated.read()
        state.unauthorized = 1
        once = await store.request("POST", "/api/2.0/mlflow/runs/create", body=b"{}")
        assert once.status == 401
        await once.read()
    finally:
        await store.close()


async def test_no_answer_in_time_is_a_timeout_and_nobody_listening_is_unreachable() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_of(reader)
        await asyncio.sleep(5)

    server = Raw(silent)
    store = MlflowRestStore("s", await server.start(), timeout_seconds=0.1)
    try:
        with pytest.raises(StoreTimedOut):
            await store.request("POST", "/api/2.0/mlflow/runs/create", body=b"{}")
    finally:
        await store.close()
        await server.stop()
    assert server.connections == 1  # a write is not sent twice

    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_of(reader)
        writer.write(answer(b"0123456789")[:-4])
        await writer.drain()

    server = Raw(cut_short)
    store = MlflowRestStore("s", await server.start())
    try:
        got = await store.request("GET", "/x")
        with pytest.raises(StoreUnreachable, match="dropped"):
            await got.read()
    finally:
        await store.close()
        await server.stop()

    closed = Raw(silent)
    address = await closed.start()
    await closed.stop()
    store = MlflowRestStore("s", address)
    try:
        with pytest.raises(StoreUnreachable, match="unreachable"):
            await store.request("GET", "/x", idempotent=True)
    finally:
        await store.close()


async def test_a_head_answer_ends_with_its_head_although_it_announces_a_length(upstream: tuple[str, Upstream]) -> None:
    """A HEAD answer carries the Content-Length of the GET it stands for and no body: waiting for that body would
    time out. The answer ends at its head and its connection is not used again."""
    url, state = upstream
    store = MlflowRestStore("s", url, timeout_seconds=5)
    try:
        head = await store.request("HEAD", "/echo")
        assert head.status == 200 and head.content_length and await head.read() == b""
        after = await store.request("GET", "/echo")
        assert json.loads(await after.read())["method"] == "GET"
    finally:
        await store.close()
    assert len(state.peers) == 2 and state.peers[0] != state.peers[1]


async def test_a_caller_cancelled_after_its_answer_came_leaves_the_connection_to_the_next_caller() -> None:
    """A caller cancelled (its client went away) once its answer was whole, before it ran again: the connection went
    back to the pool and on to the next caller, whose exchange the cancelled one must not end. It did: t2's call
    failed with the connection closed under it (a sequence hypothesis found in test_keepalive_framing.py, kept
    here as it came, since a draw may not meet it again)."""
    from tests.unit.test_keepalive_framing import READ_TIMEOUT, Call, Tagging, run_all

    server = Tagging()
    url = await server.start()
    try:
        drawn = [
            Call(f"t{index}", *fields)
            for index, fields in enumerate(
                [
                    ("plain", "GET", "read", 0),
                    ("plain", "GET", "read", 0),
                    ("plain", "GET", "read", 1),
                    ("plain", "GET", "cancel", 2),
                    ("plain", "GET", "cancel", 3),
                    ("plain", "GET", "cancel", 4),
                    ("plain", "GET", "cancel", 0),
                ]
            )
        ]
        for _ in range(5):
            client = KeepAliveClient(url, connect_timeout=10.0, read_timeout=READ_TIMEOUT, max_connections=3)
            try:
                await asyncio.wait_for(run_all(client, drawn), 30)
            finally:
                await client.close()
    finally:
        await server.stop()
