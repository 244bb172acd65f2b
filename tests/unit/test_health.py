"""Readiness is about the replica (database, schema, policy, draining), never about stores; stores are
reported apart, and the schema check tells an older schema from a newer one."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from prometheus_client import REGISTRY

from gateway.db.migrate import head_revision, schema_state
from gateway.observability.health import Readiness, StoreHealth, drain_on_sigterm
from tests.support.waiting import settled


def test_a_schema_is_current_older_or_newer_than_the_code() -> None:
    head = head_revision()
    assert schema_state(head).state == "current" and schema_state(head).servable
    assert schema_state("0001").state == "older" and not schema_state("0001").servable
    assert schema_state(None).state == "older"  # never migrated
    newer = schema_state("9999_from_a_newer_release")
    assert newer.state == "newer" and newer.servable  # a rolling update migrated ahead of this replica
    assert schema_state("0001").report() == {"state": "older", "revision": "0001", "expected": head}


async def test_ready_needs_the_database_a_current_schema_a_loaded_policy_and_no_drain() -> None:
    revision: str | None = head_revision()
    loaded = True

    async def current() -> str | None:
        return revision

    readiness = Readiness(current, lambda: loaded)
    ok, report = await readiness.report()
    assert ok and report["status"] == "ok" and report["database"] == "ok" and report["policy"] == "loaded"
    assert report["schema"]["state"] == "current"

    revision = "0001"
    ok, report = await readiness.report()
    assert not ok and report["schema"]["state"] == "older" and report["status"] == "unavailable"

    revision, loaded = head_revision(), False
    ok, report = await readiness.report()
    assert not ok and report["policy"] == "not loaded"

    loaded, readiness.draining = True, True
    ok, report = await readiness.report()
    assert not ok and report["draining"] is True


async def test_a_database_that_does_not_answer_makes_the_replica_unready_in_bounded_time() -> None:
    async def hangs() -> str | None:
        await asyncio.sleep(60)
        return None

    async def fails() -> str | None:
        raise ConnectionRefusedError

    ok, report = await Readiness(hangs, lambda: True, timeout_seconds=0.05).report()
    assert not ok and report["database"] == "unreachable: TimeoutError" and "schema" not in report
    ok, report = await Readiness(fails, lambda: True).report()
    assert not ok and report["database"] == "unreachable: ConnectionRefusedError"


async def test_store_health_reports_each_store_and_sets_its_gauge() -> None:
    async def up() -> None:
        return None

    async def down() -> None:
        raise OSError("connection refused")

    async def slow() -> None:
        await asyncio.sleep(10)

    health = StoreHealth({"up-store": up, "down-store": down, "slow-store": slow}, timeout_seconds=0.05)
    assert health.report()["stores"]["up-store"]["state"] == "unknown"  # before the first round
    await health.check_all()
    report = health.report()
    assert report["status"] == "degraded" and report["down"] == ["down-store", "slow-store"]
    assert report["stores"]["up-store"]["state"] == "ok"
    assert report["stores"]["down-store"] == {**report["stores"]["down-store"], "state": "unreachable"}
    assert report["stores"]["down-store"]["detail"] == "unreachable: OSError"
    assert report["stores"]["slow-store"]["detail"] == "unreachable: TimeoutError"
    assert REGISTRY.get_sample_value("fedgate_store_up", {"store": "up-store"}) == 1
    assert REGISTRY.get_sample_value("fedgate_store_up", {"store": "down-store"}) == 0


async def test_sigterm_drops_readiness_at_once_and_reaches_the_server_after_the_delay() -> None:
    reached: list[float] = []
    loop = asyncio.get_running_loop()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: reached.append(loop.time()))

    async def current() -> str | None:
        return head_revision()

    readiness = Readiness(current, lambda: True)
    # A delay far above the few milliseconds the checks below take, however loaded the machine.
    undo = drain_on_sigterm(readiness, 1.0)
    try:
        sent = loop.time()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)
        assert readiness.draining and not reached  # unready, still serving
        assert not (await readiness.report())[0]
        await settled(lambda: bool(reached), "the server's handler reached")
        assert len(reached) == 1 and reached[0] - sent >= 0.95  # the server's handler, after the delay
    finally:
        undo()
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("delay", [0.0])
async def test_without_a_delay_sigterm_goes_straight_to_the_server(delay: float) -> None:
    reached: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: reached.append(signum))

    async def current() -> str | None:
        return head_revision()

    readiness = Readiness(current, lambda: True)
    undo = drain_on_sigterm(readiness, delay)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)
        assert readiness.draining and reached == [signal.SIGTERM]
    finally:
        undo()
        signal.signal(signal.SIGTERM, previous)
