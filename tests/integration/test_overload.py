"""Overload protection of a real gateway process (docs/operations.md, gateway/authn/limits.py).

A gateway with small limits gets ten times what they allow: concurrent log-batch calls of 800 KB each from
several users (the in-flight cap and the bounded queue), and one user calling far faster than its token
bucket refills (the per-principal rate limit). Refusals are 503 and 429 in MLflow's error shape with
Retry-After; the process's memory stays within a stated bound however many bytes the burst carries; the
gauges come back to zero and normal calls, the stock client's included, succeed right after.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import mlflow
import psutil
import pytest
import requests
from mlflow import MlflowClient

from gateway.devstack import GatewayProcess
from tests.conftest import GATEWAY_ENV, Stack
from tests.support.identity import Admin, Person, unique
from tests.support.waiting import until

pytestmark = pytest.mark.integration
MAX_IN_FLIGHT, MAX_QUEUED = 4, 8
CAPACITY = MAX_IN_FLIGHT + MAX_QUEUED  # requests held at once; the rest is refused before it is read
PER_SECOND, BURST = 10, 30
USERS = 6
WAVES = 5  # bursts of 10 x CAPACITY concurrent calls, one after the other
BODY_BYTES = 800 * 1024  # MLflow's log-batch allows 100 tags of 8,000 characters
RSS_BOUND = 100 * 1024 * 1024  # what the burst may add to the process's resident memory at most


@dataclass
class Limited:
    gateway: GatewayProcess
    users: list[Person]
    runs: list[str]  # one run of each user's, in team-a


@pytest.fixture(scope="module")
def limited(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    env = {
        **GATEWAY_ENV,
        "FEDGATE_SERVER_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
        "FEDGATE_SERVER_MAX_QUEUED": str(MAX_QUEUED),
        "FEDGATE_SERVER_QUEUE_WAIT_SECONDS": "5",
        "FEDGATE_SERVER_PRINCIPAL_REQUESTS_PER_SECOND": str(PER_SECOND),
        "FEDGATE_SERVER_PRINCIPAL_BURST": str(BURST),
        "FEDGATE_SERVER_ACCESS_LOG": "false",
    }
    log = tmp_path_factory.mktemp("overload") / "gateway.log"
    gateway = GatewayProcess(stack.gateway.config_path, env, log_path=log).start()
    try:
        admin = Admin(gateway.url)
        users, runs = [], []
        for index in range(USERS):
            user = admin.person(unique(f"burst-{index}") + "@example.com")
            admin.grant("workspaces/team-a", "CAN_USE", user=user.name)
            http = user.http(stack)
            experiment = http.post(
                f"{gateway.url}/api/2.0/mlflow/experiments/create", json={"name": unique("burst")}, timeout=30
            ).json()["experiment_id"]
            created = http.post(
                f"{gateway.url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment}, timeout=30
            )
            assert created.status_code == 200, created.text
            users.append(user)
            runs.append(created.json()["run"]["info"]["run_id"])
        yield Limited(gateway, users, runs)
    finally:
        gateway.stop()


def _metrics(gateway: GatewayProcess) -> dict[str, float]:
    text = requests.get(f"{gateway.url}/metrics", timeout=10).text
    found = re.findall(
        r'^(fedgate_(?:in_flight_requests|queued_requests|overload_refused_total)(?:\{reason="(\w+)"\})?) (\S+)$',
        text,
        re.MULTILINE,
    )
    return {name: float(value) for name, _, value in found}


class Peak:
    """The largest resident set size of a process, sampled every 10 ms while in use."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


async def _burst(limited: Limited, calls: int) -> list[tuple[int, str | None, Any]]:
    """`calls` concurrent log-batch calls of BODY_BYTES each, spread over the users: (status, Retry-After,
    answer) of each."""
    url = f"{limited.gateway.url}/api/2.0/mlflow/runs/log-batch"

    async def one(session: aiohttp.ClientSession, index: int) -> tuple[int, str | None, Any]:
        user = index % USERS
        tags = [{"key": f"blob-{i}", "value": f"{index:08d}" * 1000} for i in range(100)]
        body = {"run_id": limited.runs[user], "tags": tags}
        headers = {"Authorization": f"Bearer {limited.users[user].token}", "X-MLFLOW-WORKSPACE": "team-a"}
        async with session.post(url, json=body, headers=headers) as answer:
            return answer.status, answer.headers.get("Retry-After"), await answer.json(content_type=None)

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        return await asyncio.gather(*(one(session, index) for index in range(calls)))


async def _gets(url: str, token: str, run_id: str, calls: int) -> list[tuple[int, str | None, Any]]:
    """`calls` GETs of a run by one principal, MAX_IN_FLIGHT at a time (so none waits in, or is refused by, the
    admission queue): (status, Retry-After, answer) of each."""
    places = asyncio.Semaphore(MAX_IN_FLIGHT)
    headers = {"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": "team-a"}

    async def one(session: aiohttp.ClientSession) -> tuple[int, str | None, Any]:
        async with places, session.get(url, params={"run_id": run_id}, headers=headers) as answer:
            return answer.status, answer.headers.get("Retry-After"), await answer.json(content_type=None)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        return await asyncio.gather(*(one(session) for _ in range(calls)))


def _normal_calls(limited: Limited, count: int) -> list[int]:
    statuses = []
    for index in range(count):
        user = limited.users[index % USERS]
        http = requests.Session()
        http.headers.update({"Authorization": f"Bearer {user.token}", "X-MLFLOW-WORKSPACE": "team-a"})
        point = {"key": "after", "value": float(index), "timestamp": 1000 + index, "step": index}
        answer = http.post(
            f"{limited.gateway.url}/api/2.0/mlflow/runs/log-batch",
            json={"run_id": limited.runs[index % USERS], "metrics": [point]},
            timeout=30,
        )
        statuses.append(answer.status_code)
    return statuses


def test_a_burst_ten_times_the_capacity_is_refused_with_retry_after_in_bounded_memory(limited: Limited) -> None:
    assert limited.gateway.process is not None
    assert _normal_calls(limited, USERS) == [200] * USERS  # warm: every user's path has run once
    asyncio.run(_burst(limited, CAPACITY))  # and one burst within the capacity
    started = time.monotonic()
    assert _normal_calls(limited, 2 * USERS) == [200] * (2 * USERS)
    calm = time.monotonic() - started
    before = psutil.Process(limited.gateway.process.pid).memory_info().rss
    answers: list[tuple[int, str | None, Any]] = []
    with Peak(limited.gateway.process.pid) as peak:
        for _ in range(WAVES):
            answers += asyncio.run(_burst(limited, 10 * CAPACITY))
    accepted = [a for a in answers if a[0] == 200]
    refused = [a for a in answers if a[0] != 200]
    # Only the capacity's worth gets in; each refusal is a 503 in MLflow's shape with Retry-After.
    assert len(refused) >= len(answers) // 2, (len(accepted), len(refused))
    for status, retry_after, body in refused:
        assert status == 503, (status, body)
        assert body["error_code"] == "TEMPORARILY_UNAVAILABLE" and body["message"]
        assert retry_after is not None and 1 <= int(retry_after) <= 30
    grown = peak.peak - before
    offered = len(answers) * BODY_BYTES
    assert grown < RSS_BOUND, f"resident memory grew by {grown / 2**20:.0f} MB under {offered / 2**20:.0f} MB offered"

    # Recovered without a restart: nothing held (a call lets its place go once its answer is sent), and normal
    # calls succeed at once.
    gauges = until(
        lambda: _metrics(limited.gateway),
        lambda gauges: gauges["fedgate_in_flight_requests"] == 0 and gauges["fedgate_queued_requests"] == 0,
        "every place let go",
    )
    assert gauges['fedgate_overload_refused_total{reason="queue_full"}'] >= len(refused)
    started = time.monotonic()
    assert _normal_calls(limited, 2 * USERS) == [200] * (2 * USERS)
    print(
        f"{len(answers)} calls of {BODY_BYTES // 1024} KB in {WAVES} bursts: {len(accepted)} accepted, "
        f"{len(refused)} refused; RSS {before / 2**20:.0f} MB, +{grown / 2**20:.0f} MB at most "
        f"({offered / 2**20:.0f} MB offered); {2 * USERS} calls took {time.monotonic() - started:.2f} s right "
        f"after the bursts, {calm:.2f} s before"
    )


def test_a_principal_far_above_its_rate_gets_429_and_the_stock_client_backs_off(
    limited: Limited, stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    user, run_id = limited.users[0], limited.runs[0]
    url = f"{limited.gateway.url}/api/2.0/mlflow/runs/get"
    # Rounds of ten times the burst, from as many connections as the gateway works on at once, until some are
    # refused: however slow the machine, the calls come faster than the bucket refills. What got through is
    # bounded by the bucket itself (its burst plus its rate over the time the calls took), not by a guess at how
    # fast a call is.
    answers: list[tuple[int, str | None, Any]] = []
    started = time.monotonic()
    for _ in range(10):
        answers += asyncio.run(_gets(url, user.token, run_id, 10 * BURST))
        if any(status == 429 for status, _, _ in answers):
            break
    elapsed = time.monotonic() - started
    served = [answer for answer in answers if answer[0] == 200]
    limited_answers = [answer for answer in answers if answer[0] == 429]
    assert {status for status, _, _ in answers} == {200, 429}
    assert len(served) <= BURST + PER_SECOND * elapsed + 1, (len(served), len(limited_answers), elapsed)
    for _, retry_after, body in limited_answers:
        assert body["error_code"] == "REQUEST_LIMIT_EXCEEDED" and body["message"]
        assert retry_after is not None and 1 <= int(retry_after) <= 30
    # Others are not held back by one principal's spending.
    other = limited.users[1].http(stack)
    assert other.get(url, params={"run_id": limited.runs[1]}, timeout=30).status_code == 200
    # The stock client, with its own retries, honours Retry-After and gets through.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", user.token)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    mlflow.set_workspace("team-a")
    try:
        client = MlflowClient(tracking_uri=limited.gateway.url)
        for step in range(2 * BURST):  # twice the bucket, as fast as the client goes
            client.log_metric(run_id, "steady", float(step), timestamp=1000 + step, step=step)
        assert len(client.get_metric_history(run_id, "steady")) == 2 * BURST
    finally:
        mlflow.set_workspace(None)
    assert _metrics(limited.gateway)['fedgate_overload_refused_total{reason="principal_rate"}'] >= len(limited_answers)
