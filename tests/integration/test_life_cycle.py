"""The life cycle of a real gateway process: start-up waits for the database and refuses an older schema;
SIGTERM makes it unready, lets requests in flight (artifact streams included) finish, and exits 0."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import requests

from gateway.devstack import GatewayProcess, free_port
from tests.conftest import GATEWAY_ENV, Stack
from tests.databases import migrated_database
from tests.support.waiting import until

pytestmark = pytest.mark.integration


def _run_serve(config: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port", str(free_port())]
    return subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout, check=False
    )


class LateProxy:
    """A TCP port that starts forwarding to the database's socket only after `delay` seconds."""

    def __init__(self, socket_path: str, delay: float) -> None:
        self.port = free_port()
        self._target = socket_path
        self._delay = delay
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._stop = threading.Event()

    def __enter__(self) -> LateProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _serve(self) -> None:
        await asyncio.sleep(self._delay)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

        async def forward(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
            server_r, server_w = await asyncio.open_unix_connection(self._target)
            await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

        server = await asyncio.start_server(forward, "127.0.0.1", self.port)
        async with server:
            while not self._stop.is_set():
                await asyncio.sleep(0.1)


def _socket_of(database_url: str) -> str:
    directory = urlsplit(database_url).query.split("host=", 1)[1].split("&", 1)[0]
    sockets = [p for p in Path(directory).iterdir() if p.name.startswith(".s.PGSQL.") and not p.name.endswith("lock")]
    assert sockets, f"no PostgreSQL socket in {directory}"
    return str(sockets[0])


def test_start_up_waits_for_the_database_then_serves(stack: Stack, tmp_path: Path) -> None:
    database = urlsplit(stack.database_url).path
    with LateProxy(_socket_of(stack.database_url), delay=4) as proxy:
        env = {**GATEWAY_ENV, "FEDGATE_DATABASE_URL": f"postgresql://postgres:@127.0.0.1:{proxy.port}{database}"}
        gateway = GatewayProcess(stack.gateway.config_path, env, log_path=tmp_path / "late.log")
        started = time.monotonic()
        gateway.start(timeout=60)
        try:
            assert time.monotonic() - started >= 3.5  # it waited for the database instead of failing
            assert requests.get(f"{gateway.url}/health/ready", timeout=10).status_code == 200
            log = (tmp_path / "late.log").read_text()
            assert '"msg":"waiting for the database"' in log and '"msg":"database reachable"' in log
        finally:
            gateway.stop()


def test_start_up_gives_up_on_an_unreachable_database_with_a_clear_message(stack: Stack) -> None:
    env = {
        **GATEWAY_ENV,
        "FEDGATE_DATABASE_URL": f"postgresql://postgres:@127.0.0.1:{free_port()}/none",
        "FEDGATE_DATABASE_CONNECT_TIMEOUT_SECONDS": "2",
    }
    started = time.monotonic()
    done = _run_serve(stack.gateway.config_path, env, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert time.monotonic() - started < 30
    assert "the database did not answer within 2 s" in done.stderr
    assert done.stderr.count('"msg":"waiting for the database"') >= 2


async def test_an_older_schema_stops_start_up_when_the_gateway_may_not_migrate(stack: Stack) -> None:
    async with migrated_database(stack.database_url, "older") as url:
        admin = await asyncpg.connect(url)
        try:
            await admin.execute("UPDATE alembic_version SET version_num = '0012'")  # as a release before
        finally:
            await admin.close()
        env = {**GATEWAY_ENV, "FEDGATE_DATABASE_URL": url, "FEDGATE_DATABASE_MIGRATE_ON_START": "false"}
        done = await asyncio.to_thread(_run_serve, stack.gateway.config_path, env, 60)
        assert done.returncode == 2, done.stderr[-2000:]
        assert "the database schema is at revision 0012 and this gateway needs" in done.stderr
        assert "fedgate db upgrade" in done.stderr


def _ready(url: str) -> int:
    try:
        return requests.get(f"{url}/health/ready", timeout=5).status_code
    except requests.ConnectionError:
        return -1


def test_sigterm_drains_lets_an_artifact_stream_finish_and_exits_0(stack: Stack, tmp_path: Path) -> None:
    env = {**GATEWAY_ENV, "FEDGATE_SERVER_SHUTDOWN_DELAY_SECONDS": "5", "FEDGATE_SERVER_SHUTDOWN_GRACE_SECONDS": "60"}
    gateway = GatewayProcess(stack.gateway.config_path, env, log_path=tmp_path / "drain.log").start()
    session = stack.http("team-a")
    size = 50 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256(block * (size // len(block))).hexdigest()
    path = f"/api/2.0/mlflow-artifacts/artifacts/0/{uuid.uuid4().hex}/artifacts/draining.bin"
    halfway, resume = threading.Event(), threading.Event()

    def slowly() -> Iterator[bytes]:  # half the file, and the rest once the gateway takes no new connection
        for index in range(size // len(block)):
            if index == size // len(block) // 2:
                halfway.set()
                resume.wait(120)
            yield block

    answers: list[requests.Response] = []
    upload = threading.Thread(target=lambda: answers.append(session.put(f"{gateway.url}{path}", data=slowly())))
    try:
        upload.start()
        assert halfway.wait(60)
        assert gateway.process is not None
        os.kill(gateway.process.pid, signal.SIGTERM)
        # Unready at once, still serving for the shutdown delay (load balancers catch up meanwhile).
        until(lambda: _ready(gateway.url), lambda status: status == 503, "unready after SIGTERM")
        searched = session.post(f"{gateway.url}/api/2.0/mlflow/experiments/search", json={"max_results": 1})
        assert searched.status_code == 200, searched.text
        # Then no new connection is taken, while the stream, held halfway until now, goes on.
        until(lambda: _ready(gateway.url), lambda status: status == -1, "new connections refused after the delay")
        resume.set()
        upload.join(60)
        assert answers and answers[0].status_code == 200, answers[0].text if answers else "no answer"
        assert gateway.process.wait(60) == 0  # a clean exit
    finally:
        resume.set()
        gateway.stop()
    stored = session.get(f"{stack.url}{path}")  # through the session's gateway: the whole file arrived
    assert stored.status_code == 200 and hashlib.sha256(stored.content).hexdigest() == digest
    log = (tmp_path / "drain.log").read_text()
    assert "SIGTERM: unready" in log


def test_a_replica_refuses_new_connections_only_after_the_delay(stack: Stack) -> None:
    """Without a delay, SIGTERM goes straight to the server: it stops accepting and exits 0 at once."""
    gateway = GatewayProcess(stack.gateway.config_path, GATEWAY_ENV).start()
    try:
        assert gateway.process is not None
        os.kill(gateway.process.pid, signal.SIGTERM)
        assert gateway.process.wait(30) == 0
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", gateway.port), timeout=2):
            pass
    finally:
        gateway.stop()
