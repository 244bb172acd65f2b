"""Waiting for what the gateway writes after it answered: a bounded poll that fails naming what it waited for.

Denials, refusals and session changes reach the audit log from a queue, deliveries and relayed copies come from
background loops, a change reaches other replicas through NOTIFY, and a log line or a request's metrics are written
once its answer is sent. A test reads such state with `until`, for exactly what it asserts, never after a sleep.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import requests

T = TypeVar("T")

PATIENCE = 60.0  # far above what any of these takes on a loaded machine; only a failing test waits this long


def until(read: Callable[[], T], holds: Callable[[T], bool], what: str, seconds: float = PATIENCE) -> T:
    """What `read` returns once `holds` is true of it; fails after `seconds`, with `what` and the last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if holds(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {seconds:.0f} s; last seen: {value!r:.2000}")
        time.sleep(0.1)


async def settled(condition: Callable[[], bool], what: str, seconds: float = PATIENCE) -> None:
    """In a test's own event loop: wait until `condition` holds (what tasks of the loop do by themselves), polling
    every millisecond; fails after `seconds`, with `what`. A fixed sleep instead is too short on a loaded machine."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {seconds:.0f} s")
        await asyncio.sleep(0.001)


def logged_so_far(url: str, log_path: Path | None) -> str:
    """A running gateway's log with every line of the calls it answered so far: a call of its own is made and the
    log read once that call's access line is in it (lines are written in order, each after its call's answer).
    The gateway must write its access log (`server.access_log`, on by default)."""
    assert log_path is not None
    marker = f"log-marker-{uuid.uuid4().hex}"
    answered = requests.get(f"{url}/health/live", headers={"X-Request-Id": marker}, timeout=30)
    assert answered.status_code == 200, answered.text
    return until(
        lambda: log_path.read_text(errors="replace"),
        lambda text: f'"request_id":"{marker}"' in text,
        f"the access line of request {marker} in {log_path}",
    )
