"""Ports of local stacks: a port handed out once is never handed out again by the same process."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from gateway import devstack


class _Sockets:
    """The system's side of `bind(("127.0.0.1", 0))`: the ports it gives, in order, each once free again."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports

    def __call__(self, *args: Any) -> _Sockets:
        return self

    def __enter__(self) -> _Sockets:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def bind(self, address: tuple[str, int]) -> None:
        assert address == (devstack.LOOPBACK, 0)

    def getsockname(self) -> tuple[str, int]:
        return devstack.LOOPBACK, self.ports.pop(0)


def test_a_port_the_system_gives_again_is_not_handed_out_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devstack, "_handed_out", set(), raising=False)  # none handed out yet
    monkeypatch.setattr(devstack.socket, "socket", _Sockets([41001, 41001, 41002, 41001, 41002, 41003]))
    assert [devstack.free_port() for _ in range(3)] == [41001, 41002, 41003]


def test_ports_are_free_loopback_ports_each_handed_out_once() -> None:
    ports = [devstack.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind((devstack.LOOPBACK, port))  # nothing holds it
