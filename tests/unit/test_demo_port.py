"""`make demo` serves on 8080 again when it is started again at once: the port its last run closed is its own."""

from __future__ import annotations

import socket

from gateway.cli.demo import _port
from gateway.devstack import LOOPBACK


def _closed_with_a_connection_in_time_wait() -> int:
    """A port a server closed a moment ago after answering a connection, as the demo's gateway leaves 8080 when
    Ctrl-C stops it: its side of the connection waits in TIME_WAIT for a minute, nothing listens there."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        server.bind((LOOPBACK, 0))
        server.listen()
        port = int(server.getsockname()[1])
        with socket.create_connection((LOOPBACK, port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server closes first: its end of the connection is the one in TIME_WAIT
            client.recv(1)
    return port


def test_the_demo_takes_its_port_again_while_the_last_runs_connection_lingers() -> None:
    """Before, the demo's check bound the port without SO_REUSEADDR, which the lingering connection refuses though
    the gateway (uvicorn binds with it) could serve there: a second `make demo` right after the first moved to a
    random port, and the README's `MLFLOW_TRACKING_URI=http://127.0.0.1:8080` no longer reached it."""
    port = _closed_with_a_connection_in_time_wait()
    assert _port(port) == port


def test_the_demo_moves_to_a_free_port_when_its_own_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        chosen = _port(port)
    assert chosen != port
