"""Overload protection in one worker: a cap on requests at once, a bounded FIFO queue, refusals in MLflow's
error shape with Retry-After, per-principal token buckets, and recovery once the burst is over."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.authn.limits import Admission, PrincipalLimiter, PrincipalRateLimited, TokenBuckets
from gateway.core.config import ConfigError, load_settings
from tests.support.waiting import settled


class Upstream:
    """An ASGI app whose requests finish when the test says so."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.started.append(scope["path"])
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def call(app: Admission, path: str = "/api/2.0/mlflow/runs/get") -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "method": "GET", "headers": []}, receive, send)
    headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


async def test_requests_past_the_cap_wait_in_order_and_past_the_queue_are_refused_503() -> None:
    upstream = Upstream()
    app = Admission(upstream, max_in_flight=2, max_queued=3, queue_wait=5)  # type: ignore[arg-type]
    calls = [asyncio.create_task(call(app, f"/r{i}")) for i in range(8)]
    await settled(lambda: all(task.done() for task in calls[5:]), "the calls past the queue answered")
    assert upstream.started == ["/r0", "/r1"] and app.in_flight == 2 and app.queued == 3
    refused = [task.result() for task in calls[5:]]  # answered at once, before anything was read
    for status, headers, body in refused:
        assert status == 503 and int(headers["retry-after"]) >= 1
        assert json.loads(body)["error_code"] == "TEMPORARILY_UNAVAILABLE"
    upstream.release.set()
    answers = await asyncio.gather(*calls[:5])
    assert [status for status, _, _ in answers] == [200] * 5
    assert upstream.started == ["/r0", "/r1", "/r2", "/r3", "/r4"]  # first come, first served
    assert app.in_flight == 0 and app.queued == 0


async def test_a_request_that_waits_too_long_is_refused_and_the_queue_recovers() -> None:
    upstream = Upstream()
    app = Admission(upstream, max_in_flight=1, max_queued=10, queue_wait=0.1)  # type: ignore[arg-type]
    first = asyncio.create_task(call(app))
    await settled(lambda: upstream.started != [], "the first call started")
    status, headers, _ = await call(app)
    assert status == 503 and "retry-after" in headers and app.queued == 0
    upstream.release.set()
    assert (await first)[0] == 200
    assert (await call(app))[0] == 200 and app.in_flight == 0  # nothing is left held after the burst


async def test_a_waiting_client_that_goes_away_gives_its_place_to_the_next() -> None:
    upstream = Upstream()
    app = Admission(upstream, max_in_flight=1, max_queued=10, queue_wait=5)  # type: ignore[arg-type]
    first = asyncio.create_task(call(app, "/first"))
    await settled(lambda: upstream.started == ["/first"], "the first call started")
    gone = asyncio.create_task(call(app, "/gone"))
    after = asyncio.create_task(call(app, "/after"))
    await settled(lambda: app.queued == 2, "two calls waiting")
    gone.cancel()
    await settled(lambda: gone.done() and app.queued == 1, "the cancelled call gone from the queue")
    upstream.release.set()
    assert (await first)[0] == 200 and (await after)[0] == 200
    assert upstream.started == ["/first", "/after"] and app.in_flight == 0 and app.queued == 0


async def test_health_probes_and_metrics_are_never_held() -> None:
    upstream = Upstream()
    app = Admission(upstream, max_in_flight=1, max_queued=0, queue_wait=1)  # type: ignore[arg-type]
    busy = asyncio.create_task(call(app))
    await settled(lambda: upstream.started != [], "the first call started")
    assert (await call(app))[0] == 503
    probe = asyncio.create_task(call(app, "/health/ready"))
    await settled(lambda: len(upstream.started) == 2, "the probe started")
    assert upstream.started[-1] == "/health/ready"  # passed straight through
    upstream.release.set()
    await asyncio.gather(busy, probe)


async def test_a_burst_far_above_capacity_holds_no_more_than_the_queue() -> None:
    upstream = Upstream()
    app = Admission(upstream, max_in_flight=4, max_queued=16, queue_wait=5)  # type: ignore[arg-type]
    calls = [asyncio.create_task(call(app)) for _ in range(2000)]
    await settled(lambda: sum(1 for task in calls if task.done()) >= 2000 - 20, "every call past the queue answered")
    assert app.in_flight == 4 and app.queued == 16
    assert sum(1 for task in calls if task.done()) == 2000 - 20  # every other one answered 503, nothing else
    upstream.release.set()
    statuses = [status for status, _, _ in await asyncio.gather(*calls)]
    assert statuses.count(200) == 20 and statuses.count(503) == 1980


def test_each_principal_has_a_bucket_of_its_own() -> None:
    limiter = PrincipalLimiter(per_second=10.0, burst=3)
    for _ in range(3):
        limiter.check("alice")
    with pytest.raises(PrincipalRateLimited) as refused:
        limiter.check("alice")
    assert refused.value.status == 429 and refused.value.error_code == "REQUEST_LIMIT_EXCEEDED"
    assert refused.value.headers["Retry-After"] == "1"
    limiter.check("bob")  # another principal is not held back


def test_a_bucket_refills_at_its_rate_and_forgets_idle_keys_past_its_bound() -> None:
    buckets = TokenBuckets(per_second=2.0, burst=2, max_keys=3)
    assert buckets.take("k", now=0) == 0 and buckets.take("k", now=0) == 0
    assert buckets.take("k", now=0) == pytest.approx(0.5)
    assert buckets.take("k", now=0.5) == 0  # one token back after half a second
    for key in "abcd":
        buckets.take(key, now=1)
    assert len(buckets) == 3
    assert TokenBuckets(per_second=0, burst=0).take("k") == 0  # off


@pytest.mark.parametrize(
    ("server", "fragment"),
    [
        ("max_in_flight = -1", "server.max_in_flight"),
        ("queue_wait_seconds = 0", "server.queue_wait_seconds"),
        ("principal_requests_per_second = 5\nprincipal_burst = 0", "server.principal_burst"),
        ("shutdown_grace_seconds = -1", "server.shutdown_grace_seconds"),
        ("store_check_interval_seconds = 0", "server.store_check_interval_seconds"),
    ],
)
def test_life_cycle_and_overload_settings_are_checked(tmp_path: Any, server: str, fragment: str) -> None:
    config = tmp_path / "fedgate.toml"
    config.write_text(f"[server]\n{server}\n")
    with pytest.raises(ConfigError, match=fragment):
        load_settings(config, environ={})
