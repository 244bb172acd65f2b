"""Who reaches the body read of the UI's upload button (`POST /ajax-api/2.0/mlflow/upload-artifact`).

The gateway reads that body whole (at most 10 MB, MLflow's own limit) before the guard decides on the run, so the
read must be reachable only by an authenticated caller, and an upload announcing more than the limit must be
refused before any of it is read. Each request here sends its head and no body: an answer that comes at all
shows the gateway decided without waiting for the body.
"""

from __future__ import annotations

import socket
import uuid

import pytest

from tests.conftest import ADMIN_TOKEN, Stack

pytestmark = pytest.mark.integration
LIMIT = 10 * 1024 * 1024


def _status_of_head_only(stack: Stack, length: int, token: str | None) -> int:
    """The status the gateway answers an upload of `length` bytes whose body never comes."""
    host, port = stack.url.removeprefix("http://").split(":")
    head = [
        f"POST /ajax-api/2.0/mlflow/upload-artifact?run_uuid={uuid.uuid4().hex}&path=x.bin HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/octet-stream",
        f"Content-Length: {length}",
        "X-MLFLOW-WORKSPACE: team-a",
    ]
    if token is not None:
        head.append(f"Authorization: Bearer {token}")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            assert data, "the gateway closed the connection without an answer"
            answer += data
    return int(answer.split(b" ", 2)[1])


def test_an_anonymous_upload_is_refused_before_its_body_is_read(stack: Stack) -> None:
    assert _status_of_head_only(stack, LIMIT, token=None) == 401
    assert _status_of_head_only(stack, LIMIT, token="not-a-token") == 401


def test_an_upload_announcing_more_than_the_limit_is_refused_before_its_body_is_read(stack: Stack) -> None:
    assert _status_of_head_only(stack, LIMIT + 1, token=ADMIN_TOKEN) == 413
