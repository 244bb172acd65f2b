"""A store's connections are shared by every user of the store: a client that goes away must not keep one.

A gateway whose store `a` may hold two connections at once (`max_connections = 2`) serves a 4 MB artifact, which
it streams (it reads only what the client takes). Clients that ask for it and go away, before the first byte or
in the middle, must leave both connections to the next callers: a connection kept by a download nobody reads
any more would, two clients later, leave every call of every user of that store waiting for ever.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.devstack import GatewayProcess
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, Stack

pytestmark = pytest.mark.integration
CONNECTIONS = 2
SIZE = 4 * 1024 * 1024  # streamed (over 1 MB) and more than the store client holds before it stops reading
PATIENCE = 60  # seconds a call may take before it counts as stuck


def _close_abruptly(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


@pytest.fixture(scope="module")
def gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    env = {**GATEWAY_ENV, "FEDGATE_STORES__A__MAX_CONNECTIONS": str(CONNECTIONS), "FEDGATE_SERVER_ACCESS_LOG": "false"}
    log: Path = tmp_path_factory.mktemp("connections") / "gateway.log"
    process = GatewayProcess(stack.gateway.config_path, env, log_path=log).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def artifact(gateway: GatewayProcess, stack: Stack) -> str:
    path = f"/api/2.0/mlflow-artifacts/artifacts/0/{uuid.uuid4().hex}/artifacts/big.bin"
    uploaded = stack.http("team-a").put(f"{gateway.url}{path}", data=os.urandom(SIZE), timeout=PATIENCE)
    assert uploaded.status_code == 200, uploaded.text
    return path


def _ask_and_go(gateway: GatewayProcess, path: str, *, read: int) -> None:
    """GET `path` and go away once `read` bytes of the answer came (0: at once, before any answer)."""
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=PATIENCE) as sock:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
            "X-MLFLOW-WORKSPACE: team-a\r\n\r\n"
        )
        sock.sendall(request.encode())
        if not read:
            sock.shutdown(socket.SHUT_WR)  # the request is whole, and the client gone: nothing will be read
            return
        received = 0
        while received < read:
            data = sock.recv(65536)
            assert data, "the gateway closed the connection"
            received += len(data)
        _close_abruptly(sock)


def _still_served(gateway: GatewayProcess, stack: Stack, path: str) -> None:
    """More calls at once than the store has connections, each answered in full."""
    session = stack.http("team-a")
    for _ in range(CONNECTIONS + 1):
        whole = session.get(f"{gateway.url}{path}", timeout=PATIENCE)
        assert whole.status_code == 200 and len(whole.content) == SIZE
    found = session.post(f"{gateway.url}/api/2.0/mlflow/experiments/search", json={"max_results": 1}, timeout=PATIENCE)
    assert found.status_code == 200, found.text


def test_clients_gone_before_their_download_began_leave_the_store_connections(
    gateway: GatewayProcess, stack: Stack, artifact: str
) -> None:
    for _ in range(3 * CONNECTIONS):
        _ask_and_go(gateway, artifact, read=0)
    _still_served(gateway, stack, artifact)


def test_clients_gone_in_the_middle_of_their_download_leave_the_store_connections(
    gateway: GatewayProcess, stack: Stack, artifact: str
) -> None:
    for _ in range(3 * CONNECTIONS):
        _ask_and_go(gateway, artifact, read=512 * 1024)
    _still_served(gateway, stack, artifact)
