"""A background loop that meets the gateway's database down logs one warning naming it, not a stack trace at error
level; any other error keeps its trace. The failures are real: asyncpg connecting to a port nothing listens on."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import asyncpg
import pytest

from gateway.core.background import BackgroundLoop
from gateway.devstack import free_port
from gateway.observability.logging import DatabaseOutage, JsonFormatter
from tests.support.waiting import settled


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(DatabaseOutage())
    logger = logging.getLogger("gateway.core.background")
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


async def test_a_loop_meeting_the_database_down_logs_one_warning_without_a_trace(captured: io.StringIO) -> None:
    port = free_port()

    async def step() -> None:
        await asyncpg.connect(f"postgresql://nobody@127.0.0.1:{port}/none", timeout=2)

    loop = BackgroundLoop("outage probe", step, 0.05)
    loop.start()
    try:
        await settled(lambda: len(captured.getvalue().splitlines()) >= 2, "two failed steps logged")
    finally:
        await loop.stop()
    lines = _lines(captured)
    assert {line["level"] for line in lines} == {"warning"}, lines
    assert all("exc" not in line for line in lines), lines
    assert lines[0]["msg"] == "outage probe failed; trying again shortly"
    assert lines[0]["database"] == "did not answer: ConnectionRefusedError"


async def test_any_other_failure_keeps_its_error_and_trace(captured: io.StringIO) -> None:
    async def step() -> None:
        raise KeyError("a bug")

    loop = BackgroundLoop("buggy", step, 0.05)
    loop.start()
    try:
        await settled(lambda: bool(captured.getvalue()), "a failed step logged")
    finally:
        await loop.stop()
    line = _lines(captured)[0]
    assert line["level"] == "error"
    assert "KeyError" in str(line["exc"])


def test_a_warning_with_a_trace_of_the_database_down_keeps_one_line(captured: io.StringIO) -> None:
    """asyncpg's pools log a failed reconnection as a warning with its trace."""
    logger = logging.getLogger("gateway.core.background")
    port = free_port()

    async def connect() -> None:
        await asyncpg.connect(f"postgresql://nobody@127.0.0.1:{port}/none", timeout=2)

    try:
        asyncio.run(connect())
    except OSError:
        logger.warning("Failed to restore the pool connection floor; retrying", exc_info=True)
    line = _lines(captured)[0]
    assert line["level"] == "warning"
    assert "exc" not in line
    assert line["database"] == "did not answer: ConnectionRefusedError"
