"""Clients that abuse the connection and stores that answer garbage: a clear MLflow error, bounded time and memory.

A gateway of its own (its request limits lowered to 2 s so that the slow clients are cut off quickly), in front of a
tiny store written here over a raw socket, which answers what the test asks for: MLflow's JSON, headers without end,
a body dripped a byte at a time, a head cut short. The gateway
must answer each in MLflow's error shape, never hang past its limits, never buffer without bound, and serve the
next call as before (its connections to the store are not poisoned).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from gateway.core.errors import mlflow_error
from gateway.devstack import LOOPBACK, GatewayProcess
from tests.conftest import ADMIN_TOKEN
from tests.support.own_gateway import own_gateway
from tests.support.waiting import until

pytestmark = pytest.mark.integration

LIMIT_SECONDS = 2
STORE_TIMEOUT = 3
BOUND = 60.0  # what a test waits at most for the gateway to act; a fixed gateway acts within a few seconds
WORKSPACE = "garbage"
AUTH = f"Authorization: Bearer {ADMIN_TOKEN}\r\n".encode()


@dataclass
class GarbageStore:
    """An HTTP server over a raw socket: `/health` answers 200, every other request what `mode` says."""

    mode: str = "ok"
    port: int = 0
    head_bytes_sent: int = 0  # of the last `endless-headers` answer, before the gateway stopped reading
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _server: asyncio.Server | None = field(default=None, repr=False)

    def start(self) -> GarbageStore:
        ready = threading.Event()

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._server = await asyncio.start_server(self._answer, LOOPBACK, 0)
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            async with self._server:
                with contextlib.suppress(asyncio.CancelledError):  # stop() closes it
                    await self._server.serve_forever()

        threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                if b" /health" in head.split(b"\r\n")[0]:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                elif not await self._garbage(writer):
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _garbage(self, writer: asyncio.StreamWriter) -> bool:
        """Answer as `mode` says; False when the connection is to end."""
        mode = self.mode
        if mode == "endless-headers":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            self.head_bytes_sent = 0
            while self.head_bytes_sent < 2**31:
                line = b"X-Padding: " + b"a" * 1000 + b"\r\n"
                writer.write(line)
                await writer.drain()
                self.head_bytes_sent += len(line)
            return False
        if mode == "drip":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            for _ in range(100000):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.5)
            return False
        if mode == "cut-short":
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"exp')
            await writer.drain()
            return False
        if mode == "html-502":
            page = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
            writer.write(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(page)
            )
            writer.write(page)
            return True
        if mode == "html-200":  # a sign-in page of a proxy in front of the store
            page = b"<html><body><script>alert(document.cookie)</script>Sign in</body></html>"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(page))
            writer.write(page)
            return True
        if mode == "inline-html":  # a store that serves a file a user uploaded as a page, not an attachment
            page = b"<html><body><script>fetch('/api/2.0/mlflow/experiments/create')</script>Report</body></html>"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(page))
            writer.write(page)
            return True
        if mode == "no-content":
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            return True
        if mode == "redirect":
            writer.write(b"HTTP/1.1 302 Found\r\nLocation: https://elsewhere.invalid/\r\nContent-Length: 0\r\n\r\n")
            return True
        body = json.dumps({"experiments": [{"experiment_id": "1", "name": "x"}]}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        return True


@dataclass
class Abused:
    gateway: GatewayProcess
    garbage: GarbageStore

    @property
    def port(self) -> int:
        return self.gateway.port

    def http(self) -> requests.Session:
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": WORKSPACE})
        return session

    def log(self) -> str:
        assert self.gateway.log_path is not None
        return self.gateway.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def abused(database_url: str, workdir: Path) -> Iterator[Abused]:
    garbage = GarbageStore().start()
    root = workdir / f"abuse-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    env = {
        "FEDGATE_SERVER_REQUEST_HEAD_SECONDS": str(LIMIT_SECONDS),
        "FEDGATE_SERVER_REQUEST_BODY_SECONDS": str(LIMIT_SECONDS),
        "FEDGATE_SERVER_INDEX_SYNC_INTERVAL_SECONDS": "0",
    }
    try:
        with own_gateway(
            database_url,
            root / "fedgate.toml",
            f'[stores.g]\nurl = "{garbage.url}"\ntimeout_seconds = {STORE_TIMEOUT}\n'
            f'[[workspaces]]\nname = "{WORKSPACE}"\nid = "1001"\nstore = "g"\n',
            prefix="abuse",
            env=env,
            log_path=root / "gateway.log",
            timeout=120,
        ) as own:
            yield Abused(own.process, garbage)
    finally:
        garbage.stop()


@pytest.fixture(autouse=True)
def answering(abused: Abused) -> Iterator[None]:
    """Every test starts and ends with a store that answers MLflow's JSON."""
    abused.garbage.mode = "ok"
    yield
    abused.garbage.mode = "ok"


def _until_closed(connection: socket.socket, drip: bytes = b"") -> bytes:
    """What the gateway sends until it closes `connection`, sending `drip` every 0.2 s meanwhile; fails after BOUND."""
    connection.settimeout(0.2)
    received = b""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        if drip:
            try:
                connection.sendall(drip)
            except OSError:
                drip = b""  # the gateway closed its side: read what it said
        try:
            data = connection.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not data:
            break
        received += data
    else:
        raise AssertionError(f"the gateway kept the connection open for {BOUND:.0f} s; received {received!r:.300}")
    connection.close()
    return received


def _error(answer: bytes, status: int) -> dict[str, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
    assert b"content-type: application/json" in head.lower(), head
    error = json.loads(body)
    assert set(error) == set(mlflow_error(error["error_code"], "")), error
    return error  # type: ignore[no-any-return]


def _connect(abused: Abused) -> socket.socket:
    return socket.create_connection((LOOPBACK, abused.port), timeout=10)


# -- clients -------------------------------------------------------------------------------------------------------


def test_headers_sent_a_byte_at_a_time_are_cut_off_with_408(abused: Abused) -> None:
    connection = _connect(abused)
    connection.sendall(b"GET /api/2.0/mlflow/experiments/search HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    error = _error(_until_closed(connection, drip=b"a"), 408)
    assert error["error_code"] == "DEADLINE_EXCEEDED"
    assert "headers" in error["message"]


def test_a_connection_that_never_sends_a_request_is_closed(abused: Abused) -> None:
    connections = [_connect(abused) for _ in range(50)]
    # Meanwhile others are served as ever.
    assert abused.http().get(f"{abused.gateway.url}/api/2.0/mlflow/experiments/search?max_results=1").ok
    for connection in connections:
        assert _error(_until_closed(connection), 408)["error_code"] == "DEADLINE_EXCEEDED"


def test_a_body_dripped_slower_than_any_sane_rate_is_cut_off_and_logged_as_the_clients(abused: Abused) -> None:
    connection = _connect(abused)
    connection.sendall(
        b"POST /api/2.0/mlflow/runs/log-batch HTTP/1.1\r\nHost: x\r\n" + AUTH + b"X-MLFLOW-WORKSPACE: garbage\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
    )
    error = _error(_until_closed(connection, drip=b" "), 408)
    assert error["error_code"] == "DEADLINE_EXCEEDED"
    assert "body" in error["message"]
    until(abused.log, lambda log: "client went away" in log, "the handler's note that its client went away")
    assert "unexpected error" not in abused.log()


def test_a_body_shorter_than_its_content_length_then_closed_is_no_error_of_the_gateways(abused: Abused) -> None:
    before = abused.log().count("client went away")
    connection = _connect(abused)
    connection.sendall(
        b"POST /api/2.0/mlflow/runs/log-batch HTTP/1.1\r\nHost: x\r\n" + AUTH + b"X-MLFLOW-WORKSPACE: garbage\r\n"
        b'Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"run_id": "'
    )
    time.sleep(0.2)  # the handler is reading the body when the client goes
    connection.close()
    until(lambda: abused.log().count("client went away"), lambda n: n > before, "the handler's note")
    assert "unexpected error" not in abused.log()
    assert abused.http().get(f"{abused.gateway.url}/api/2.0/mlflow/experiments/search?max_results=1").ok


@pytest.mark.parametrize(
    ("what", "target", "headers", "status"),
    [
        ("a 1 MB URL", "/api/2.0/mlflow/experiments/search?x=" + "a" * (1 << 20), {}, 414),
        (
            "10,000 query parameters",
            "/api/2.0/mlflow/experiments/search?" + "&".join(f"p{i}=v" for i in range(10000)),
            {},
            414,
        ),
        ("100 KB of headers", "/api/2.0/mlflow/experiments/search", {f"X-P{i}": "a" * 1000 for i in range(100)}, 431),
    ],
)
def test_oversized_heads_are_refused_in_mlflow_shape(
    abused: Abused, what: str, target: str, headers: dict[str, str], status: int
) -> None:
    answer = abused.http().get(f"{abused.gateway.url}{target}", headers=headers, timeout=BOUND)
    assert answer.status_code == status, (what, answer.status_code, answer.text[:300])
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", what
    assert abused.http().get(f"{abused.gateway.url}/api/2.0/mlflow/experiments/search?max_results=1").ok


def test_ten_thousand_short_query_parameters_within_the_limit_are_no_failure(abused: Abused) -> None:
    target = "/api/2.0/mlflow/experiments/search?" + "&".join(["p=v"] * 10000)
    answer = abused.http().get(f"{abused.gateway.url}{target}", timeout=BOUND)
    assert answer.status_code < 500, answer.text[:300]
    assert set(answer.json()) >= ({"error_code", "message"} if answer.status_code >= 400 else set())


def test_bytes_that_are_not_http_get_an_mlflow_error(abused: Abused) -> None:
    connection = _connect(abused)
    connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad\x01Header: y\r\n\r\n")
    assert _error(_until_closed(connection), 400)["error_code"] == "BAD_REQUEST"


# -- stores ----------------------------------------------------------------------------------------------------------


def _search(abused: Abused) -> requests.Response:
    return abused.http().get(f"{abused.gateway.url}/api/2.0/mlflow/experiments/search?max_results=5", timeout=BOUND)


def test_a_store_sending_headers_without_end_is_unavailable_and_bounded(abused: Abused) -> None:
    abused.garbage.mode = "endless-headers"
    answer = _search(abused)
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    assert answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    # The gateway stopped reading after a bounded head (what the kernel's buffers held besides), rather than keep
    # every header in memory until the store's timeout.
    assert abused.garbage.head_bytes_sent < 16 * 1024 * 1024
    abused.garbage.mode = "ok"
    assert _search(abused).status_code == 200


def test_a_store_dripping_its_answer_is_bounded_by_its_timeout(abused: Abused) -> None:
    abused.garbage.mode = "drip"
    answer = _search(abused)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    abused.garbage.mode = "ok"
    assert _search(abused).status_code == 200


def test_a_store_answer_cut_short_is_never_a_success(abused: Abused) -> None:
    abused.garbage.mode = "cut-short"
    answer = _search(abused)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    abused.garbage.mode = "ok"
    assert _search(abused).status_code == 200


@pytest.mark.parametrize(
    ("mode", "status", "error_code"),
    [("html-502", 502, "TEMPORARILY_UNAVAILABLE"), ("redirect", 502, "INTERNAL_ERROR")],
)
def test_a_store_error_that_is_not_mlflows_reaches_the_client_in_mlflow_shape(
    abused: Abused, mode: str, status: int, error_code: str
) -> None:
    """A proxy's HTML error page in front of a store, or a redirect (which the gateway does not follow)."""
    abused.garbage.mode = mode
    answer = _search(abused)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
    error = answer.json()
    assert set(error) == set(mlflow_error(error["error_code"], "")), error
    assert error["error_code"] == error_code
    assert "Location" not in answer.headers
    if error_code == "TEMPORARILY_UNAVAILABLE":
        assert answer.headers["Retry-After"] == "5"
    abused.garbage.mode = "ok"
    assert _search(abused).status_code == 200


@pytest.mark.parametrize(("mode", "status"), [("html-200", 200), ("no-content", 204)])
def test_a_store_success_that_is_not_json_where_mlflow_answers_json_is_a_502(
    abused: Abused, mode: str, status: int
) -> None:
    """MLflow answers these routes with JSON whenever it succeeds; neither answer can be its own. Before, a proxy's
    HTML page reached the client as a 200 text/html, which the stock client failed to parse as a success and a
    browser rendered, script and all, in the gateway's origin (the web UI's session lives there); a 204 went out as
    a success with nothing to read."""
    abused.garbage.mode = mode
    answer = _search(abused)
    assert answer.status_code == 502, answer.text
    assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
    error = answer.json()
    assert set(error) == set(mlflow_error(error["error_code"], "")) and error["error_code"] == "INTERNAL_ERROR", error
    assert f"sent a {status} answer" in error["message"] and "script" not in answer.text
    abused.garbage.mode = "ok"
    assert _search(abused).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/get-artifact?run_uuid=0123456789abcdef0123456789abcdef&path=report.html",
        "/api/2.0/mlflow-artifacts/artifacts/1/0123456789abcdef0123456789abcdef/artifacts/report.html",
        "/ajax-api/2.0/mlflow-artifacts/artifacts/1/0123456789abcdef0123456789abcdef/artifacts/drawing.svg",
    ],
)
def test_a_file_a_store_serves_inline_goes_out_as_an_attachment_in_a_sandbox(abused: Abused, path: str) -> None:
    """A user's uploaded HTML or SVG, opened from the gateway, is a page of the gateway's origin, where the web UI's
    session lives: its script could call the API as whoever opens the link. MLflow 3.17.2 sends every file as an
    attachment with `nosniff`; a store that does not (another MLflow-compatible server, a proxy in front of one) had
    its file rendered, script and all. Whatever the store says, a download goes out as an attachment, unsniffed,
    and sandboxed with no script (`Content-Security-Policy: sandbox`) should a browser render it anyway."""
    abused.garbage.mode = "inline-html"
    answer = abused.http().get(f"{abused.gateway.url}{path}", timeout=BOUND)
    assert answer.status_code == 200, answer.text
    assert answer.content.startswith(b"<html>")  # the file itself, untouched
    assert answer.headers["Content-Disposition"].startswith("attachment"), answer.headers
    assert answer.headers["X-Content-Type-Options"] == "nosniff", answer.headers
    policy = answer.headers["Content-Security-Policy"]
    assert "sandbox" in policy and "default-src 'none'" in policy, policy
    assert "allow-scripts" not in policy and "allow-same-origin" not in policy
