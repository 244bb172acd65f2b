"""Fields a client sends after a chunked body (trailers) are not headers of its request: a real gateway in front of
real `mlflow server` stores.

uvicorn appended trailers to the request's headers, and the forwarder reads the workspace header and the headers a
store may see once the body is read: a trailer `X-MLFLOW-WORKSPACE` chose the workspace of a request whose head
named none, and one naming another workspace than the head's made the request 400 ("sent more than once"). The
request is now the head's alone (gateway/cli/http.py; tests/unit/test_request_limits.py for the protocol itself).
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.conftest import ADMIN_TOKEN, Stack

pytestmark = pytest.mark.integration
PATIENCE = 60

SEARCH = b'{"max_results": 1}'


def _chunked_search(stack: Stack, head_workspace: str | None, trailer_workspace: str) -> tuple[int, dict[str, str]]:
    """`experiments/search` with a chunked body and a trailer naming `trailer_workspace`: the status and the JSON."""
    host, port = stack.url.removeprefix("http://").split(":")
    head = (
        f"POST /api/2.0/mlflow/experiments/search HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    )
    if head_workspace is not None:
        head += f"X-MLFLOW-WORKSPACE: {head_workspace}\r\n"
    request = (
        head.encode()
        + b"\r\n%x\r\n%s\r\n0\r\n" % (len(SEARCH), SEARCH)
        + f"X-MLFLOW-WORKSPACE: {trailer_workspace}\r\n\r\n".encode()
    )
    with socket.create_connection((host, int(port)), timeout=PATIENCE) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            assert data, f"the gateway closed the connection: {received!r}"
            received += data
        answer_head, _, body = received.partition(b"\r\n\r\n")
        lines = answer_head.decode("latin-1").split("\r\n")
        length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length:"))
        while len(body) < length:
            data = sock.recv(65536)
            assert data, "the gateway closed the connection"
            body += data
    return int(lines[0].split()[1]), json.loads(body)


def test_a_trailer_does_not_choose_the_workspace(stack: Stack) -> None:
    status, answer = _chunked_search(stack, None, "team-a")
    assert status == 400, answer
    assert "No workspace selected" in answer["message"], answer


def test_a_trailer_naming_another_workspace_is_not_read(stack: Stack) -> None:
    status, answer = _chunked_search(stack, "team-a", "team-b")
    assert status == 200, answer
    assert "experiments" in answer, answer
