"""What reaches a store is exactly the request the gateway decided on: one request, its target and headers as given.

A socket server reads what the store clients send with httptools' request parser (the one `mlflow server`'s
uvicorn reads requests with) and records every request it parses.

- Serialisation (adapters/keepalive.py): whatever text a target or a header value holds, either the call is
  refused before anything is sent, or the server parses exactly one request with that target, those headers
  and that body. No byte given can end a header, the head or the request, or start another.
- The two clients (the kept-alive one for calls with a whole body or none, aiohttp for streamed uploads) send the
  same target for the same call, byte for byte; the query the store reads (werkzeug's parse, as MLflow's Flask
  handlers read `request.args`) holds exactly the pairs the guard parsed from the canonical query, and the path
  the store decodes is the artifact path the guard checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

import httptools
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from werkzeug.wrappers import Request

from adapters.keepalive import HttpFailure, KeepAliveClient
from adapters.stores.mlflow_rest import MlflowRestStore
from gateway.core.errors import InvalidParameter
from gateway.core.paths import canonical_artifact_path, quote_path
from gateway.federation.canonical import canonical_query
from gateway.federation.service import FORWARDED_REQUEST_HEADERS


@dataclass
class Parsed:
    method: str = ""
    target: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


class Recorder(asyncio.Protocol):
    """One connection of the recording server: every request parsed, answered `200 {}`; a parse error recorded."""

    def __init__(self, server: RecordingServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.current = Parsed()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.server.errors.append(f"{type(exc).__name__}: {exc}")
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.current = Parsed()

    def on_url(self, url: bytes) -> None:
        self.current.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.current.body += body

    def on_message_complete(self) -> None:
        self.current.method = self.parser.get_method().decode()
        self.server.requests.append(self.current)
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")


class RecordingServer:
    def __init__(self) -> None:
        self.requests: list[Parsed] = []
        self.errors: list[str] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: Recorder(self), "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def take(self) -> tuple[list[Parsed], list[str]]:
        taken = self.requests, self.errors
        self.requests, self.errors = [], []
        return taken


@pytest.fixture(scope="module")
async def recording() -> AsyncIterator[tuple[str, RecordingServer]]:
    server = RecordingServer()
    url = await server.start()
    yield url, server
    assert server.server is not None
    server.server.close()


# Every character a caller could try, the ones that end lines and heads first among them.
hostile = st.sampled_from("\r\n\0 \t\x0b\x0c\x1f\x7f:;?#%/&=+é\u2028\u0085\ufeff")
hostile_text = st.text(hostile | st.characters(exclude_categories=("Cs",)), max_size=24)
header_names = st.sampled_from([*sorted(FORWARDED_REQUEST_HEADERS), "X-Request-Id", "X-MLFLOW-WORKSPACE"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    target=hostile_text.map(lambda text: "/api/2.0/mlflow/" + text),
    headers=st.lists(st.tuples(header_names, hostile_text), max_size=4),
    body=st.none() | st.binary(max_size=64),
)
async def test_a_request_reaches_the_store_as_exactly_one_request_or_not_at_all(
    recording: tuple[str, RecordingServer],
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
) -> None:
    url, server = recording
    client = KeepAliveClient(url + "/prefix", connect_timeout=2.0, read_timeout=5.0, encoding="utf-8")
    try:
        answer = await client.request(method, target, headers, body if method != "GET" else None)
        await answer.read()
    except HttpFailure as failure:
        assert failure.unsent, failure
        assert server.take() == ([], [])  # refused before a byte left
        return
    finally:
        await client.close()
    parsed, errors = server.take()
    assert errors == [] and len(parsed) == 1
    request = parsed[0]
    assert request.method == method
    assert request.target == ("/prefix" + target).encode()
    given = [(name.encode(), value.encode().lstrip(b" \t")) for name, value in headers]  # the parser drops leading OWS
    assert request.headers[1 : 1 + len(given)] == given  # after Host; Content-Length last when a body is sent
    assert request.body == ((body or b"") if method != "GET" else b"")


# -- the two clients and the store's reading ------------------------------------------------------------

query_text = st.text(st.sampled_from("ab=&+%;/ é~*'!()2F0") | st.characters(max_codepoint=0x2FF), max_size=30)
segment_text = st.sampled_from("abc.~-_+ é%;:@=!*'()&?#") | st.characters(max_codepoint=0x2FF)
segment = st.text(segment_text, min_size=1, max_size=8)
artifact_paths = st.lists(segment, min_size=1, max_size=4).map("/".join)


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    yield body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw_query=query_text, raw_path=artifact_paths)
async def test_both_clients_send_the_target_the_guard_checked_byte_for_byte(
    recording: tuple[str, RecordingServer], raw_query: str, raw_path: str
) -> None:
    url, server = recording
    try:
        query = canonical_query(raw_query.encode().decode("latin-1"))  # as ASGI hands the query over
        artifact = canonical_artifact_path(raw_path)
    except InvalidParameter:
        assume(False)
        return
    path = "/api/2.0/mlflow-artifacts/artifacts/" + quote_path(artifact)
    store = MlflowRestStore("s", url + "/prefix/")
    try:
        kept = await store.request("PUT", path, query=query, body=b"x")
        await kept.read()
        streamed = await store.request("PUT", path, query=query, body=_chunks(b"x"))
        await streamed.read()
    finally:
        await store.close()
    parsed, errors = server.take()
    assert errors == [] and [request.target for request in parsed] == [parsed[0].target] * 2
    sent_path, _, sent_query = parsed[0].target.decode("ascii").partition("?")
    assert sent_path == "/prefix" + path and sent_query == query
    # What MLflow reads: uvicorn decodes the path once; Flask's request.args is werkzeug's parse of the query.
    assert unquote(sent_path) == "/prefix/api/2.0/mlflow-artifacts/artifacts/" + artifact
    environ = {"REQUEST_METHOD": "PUT", "QUERY_STRING": sent_query}  # as starlette's WSGI bridge passes it on
    store_reads = list(Request(environ).args.items(multi=True))
    assert store_reads == parse_qsl(query, keep_blank_values=True)
