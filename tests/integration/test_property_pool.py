"""Property writes to a stalled store do not take the worker's database connections from everyone else.

A call that sets a run property holds the run's property lock until the store has answered
(gateway/properties/guard.py). A gateway of its own with a small pool (`database.pool_size = 2`: four engine
connections, two seconds' wait for one) in front of a real MLflow server of its own, which the test pauses
(SIGSTOP of its process group) while a user with CAN_EDIT on their own runs sends many property writes at once:
to one run, then to many. While they are pending, other work that needs the database (the admin adding a user,
a token and a grant; that user's first call, whose token is looked up, in a workspace on another store) must be
served. Once the store is back, the pending writes end in MLflow's error shape: one value per property, and
writes past the worker's bound answered 429 REQUEST_LIMIT_EXCEEDED with Retry-After, which MLflow's client
retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import psutil
import pytest
import requests

from gateway.devstack import GatewayProcess, MlflowServer
from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import Admin, Person, unique
from tests.support.own_gateway import own_gateway
from tests.support.waiting import until

pytestmark = pytest.mark.integration

TIMEOUT = 120
SLOW, OTHER = "slow", "other"
WRITERS = 12  # three times the engine's four connections


@dataclass
class Pooled:
    gateway: GatewayProcess
    database_url: str
    store: MlflowServer
    attacker: Person

    def rest(self, token: str, workspace: str, path: str, body: dict[str, Any]) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": workspace}
        return requests.post(f"{self.gateway.url}/api/2.0/mlflow/{path}", json=body, headers=headers, timeout=TIMEOUT)

    def run(self, experiment_id: str) -> str:
        created = self.rest(self.attacker.token, SLOW, "runs/create", {"experiment_id": experiment_id})
        assert created.status_code == 200, created.text
        run_id = str(created.json()["run"]["info"]["run_id"])
        # Located once (the guard's cache), so that nothing but the property check asks the store of it later.
        tagged = self.rest(self.attacker.token, SLOW, "runs/set-tag", {"run_id": run_id, "key": "k", "value": "v"})
        assert tagged.status_code == 200, tagged.text
        return run_id


@pytest.fixture(scope="module")
def pooled(stack: Stack) -> Iterator[Pooled]:
    root = stack.workdir / f"property-pool-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    store = MlflowServer(root / "store").start(timeout=180)
    try:
        with own_gateway(
            stack.database_url,
            root / "fedgate.toml",
            f"""pool_size = 2
timeout_seconds = 2
[account]
id = "7001"
[stores.{SLOW}]
url = "{store.url}"
[stores.{OTHER}]
url = "{stack.stores["b"].url}"
[[workspaces]]
name = "{SLOW}"
id = "6001"
store = "{SLOW}"
[[workspaces]]
name = "{OTHER}"
id = "6002"
store = "{OTHER}"
""",
            prefix="property_pool",
            log_path=root / "gateway.log",
        ) as own:
            admin = Admin(own.process.url)
            attacker = admin.person(f"{unique('many-writes')}@example.com")
            admin.grant(f"workspaces/{SLOW}", "CAN_USE", user=attacker.name)
            yield Pooled(own.process, own.config.database_url, store, attacker)
    finally:
        _signal(store, signal.SIGCONT)
        store.stop()


def _signal(store: MlflowServer, signum: int) -> None:
    """Every process of the store (its server and workers)."""
    assert store.process is not None
    leader = psutil.Process(store.process.pid)
    for process in [leader, *leader.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            os.kill(process.pid, signum)


@contextlib.contextmanager
def paused(store: MlflowServer) -> Iterator[None]:
    _signal(store, signal.SIGSTOP)
    try:
        yield
    finally:
        _signal(store, signal.SIGCONT)


def _in_flight(gateway: GatewayProcess) -> int:
    text = requests.get(f"{gateway.url}/metrics", timeout=30).text
    found = re.search(r"^fedgate_in_flight_requests (\S+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


def _slots_refused(gateway: GatewayProcess) -> int:
    text = requests.get(f"{gateway.url}/metrics", timeout=30).text
    found = re.search(r"^fedgate_property_slots_refused_total (\S+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


def _property_locks(database_url: str) -> int:
    """Property locks (`LockClass.RUN_PROPERTIES`) held on the gateway's database."""

    async def count() -> int:
        connection = await asyncpg.connect(database_url)
        try:
            return int(
                await connection.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7006 AND granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            )
        finally:
            await connection.close()

    return asyncio.run(count())


def _writes_under_way(
    pooled: Pooled, bodies: list[dict[str, Any]], *, each_answered_or_locking: bool = False
) -> tuple[list[threading.Thread], dict[int, Any]]:
    """The writes started at once, each in a thread of its own; returned once one holds a property lock (its store
    call hangs) and every one is answered or being worked on by the gateway, or, `each_answered_or_locking`, every
    one that holds no lock is answered."""
    answers: dict[int, Any] = {}

    def write(index: int, body: dict[str, Any]) -> None:
        try:
            answers[index] = pooled.rest(pooled.attacker.token, SLOW, "runs/set-tag", body)
        except requests.RequestException as exc:
            answers[index] = exc

    threads = [threading.Thread(target=write, args=(i, body), daemon=True) for i, body in enumerate(bodies)]
    for thread in threads:
        thread.start()
    if each_answered_or_locking:
        until(
            lambda: (len(answers), _property_locks(pooled.database_url)),
            lambda seen: seen[1] >= 1 and seen[0] + seen[1] >= len(bodies),
            "every write answered or holding its run's property lock",
        )
    else:
        until(
            lambda: (len(answers) + _in_flight(pooled.gateway), _property_locks(pooled.database_url)),
            lambda seen: seen[0] >= len(bodies) and seen[1] >= 1,
            "every write answered or under way, one holding its run's property lock",
        )
    return threads, answers


def _other_work(pooled: Pooled) -> list[str]:
    """What others ask of the database meanwhile, each step's outcome ('' when it was served)."""
    admin = Admin(pooled.gateway.url)
    outcomes = []
    name = f"{unique('bystander')}@example.com"
    created = admin.http().post(
        f"{pooled.gateway.url}/api/2.0/preview/scim/v2/Users", json={"userName": name}, timeout=TIMEOUT
    )
    outcomes.append("" if created.status_code == 201 else f"add user: {created.status_code} {created.text[:300]}")
    if created.status_code != 201:
        return outcomes
    issued = admin.http().post(
        f"{pooled.gateway.url}/api/2.0/token-management/on-behalf-of/tokens",
        json={"user_name": name, "comment": "bystander"},
        timeout=TIMEOUT,
    )
    outcomes.append("" if issued.status_code == 200 else f"add token: {issued.status_code} {issued.text[:300]}")
    if issued.status_code != 200:
        return outcomes
    granted = admin.http().patch(
        f"{pooled.gateway.url}/api/2.0/permissions/workspaces/{OTHER}",
        json={"access_control_list": [{"user_name": name, "permission_level": "CAN_USE"}]},
        timeout=TIMEOUT,
    )
    outcomes.append("" if granted.status_code == 200 else f"grant: {granted.status_code} {granted.text[:300]}")
    made = pooled.rest(issued.json()["token_value"], OTHER, "experiments/create", {"name": unique("bystander")})
    outcomes.append("" if made.status_code == 200 else f"first call: {made.status_code} {made.text[:300]}")
    return outcomes


def _finished(threads: list[threading.Thread], answers: dict[int, Any]) -> list[requests.Response]:
    for thread in threads:
        thread.join(TIMEOUT + 10)
    assert not any(isinstance(a, Exception) for a in answers.values()), answers
    return [answers[i] for i in sorted(answers)]


def _statuses(answers: list[requests.Response]) -> dict[int, int]:
    return dict(sorted(Counter(a.status_code for a in answers).items()))


def _mlflow_shaped(answer: requests.Response) -> None:
    assert answer.status_code in (200, 400, 429, 503), (answer.status_code, answer.text)
    if answer.status_code != 200:
        body = answer.json()
        assert body["error_code"] and body["message"], answer.text
    if answer.status_code in (429, 503):
        assert int(answer.headers["Retry-After"]) >= 1, answer.headers


def test_many_writes_of_one_run_to_a_stalled_store_leave_the_database_to_others(pooled: Pooled) -> None:
    experiment = pooled.rest(pooled.attacker.token, SLOW, "experiments/create", {"name": unique("one-run")})
    assert experiment.status_code == 200, experiment.text
    run_id = pooled.run(experiment.json()["experiment_id"])
    key = "fedgate.property.owner"
    bodies = [{"run_id": run_id, "key": key, "value": f"writer-{i}"} for i in range(WRITERS)]
    with paused(pooled.store):
        threads, answers = _writes_under_way(pooled, bodies)
        outcomes = _other_work(pooled)
    writes = _finished(threads, answers)
    assert [o for o in outcomes if o] == [], outcomes

    print(f"one run, {WRITERS} writes: {_statuses(writes)}")
    for answer in writes:
        _mlflow_shaped(answer)
    winners = [bodies[i]["value"] for i, a in enumerate(writes) if a.status_code == 200]
    assert len(winners) == 1, [(a.status_code, a.text[:200]) for a in writes]
    got = requests.get(
        f"{pooled.gateway.url}/api/2.0/mlflow/runs/get",
        params={"run_id": run_id},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": SLOW},
        timeout=TIMEOUT,
    )
    assert got.status_code == 200, got.text
    assert {t["key"]: t["value"] for t in got.json()["run"]["data"]["tags"]}[key] == winners[0]


def test_writes_of_many_runs_to_a_stalled_store_are_bounded_per_worker(pooled: Pooled) -> None:
    experiment = pooled.rest(pooled.attacker.token, SLOW, "experiments/create", {"name": unique("many-runs")})
    assert experiment.status_code == 200, experiment.text
    runs = [pooled.run(experiment.json()["experiment_id"]) for _ in range(WRITERS)]
    key = "fedgate.property.data_version"
    bodies = [{"run_id": run_id, "key": key, "value": "2024-05"} for run_id in runs]
    refused_before = _slots_refused(pooled.gateway)
    with paused(pooled.store):
        threads, answers = _writes_under_way(pooled, bodies, each_answered_or_locking=True)
        outcomes = _other_work(pooled)
    writes = _finished(threads, answers)
    assert [o for o in outcomes if o] == [], outcomes

    print(f"{WRITERS} runs, one write each: {_statuses(writes)}")
    for answer in writes:
        _mlflow_shaped(answer)
    assert any(a.status_code == 200 for a in writes), [(a.status_code, a.text[:200]) for a in writes]
    limited = [a for a in writes if a.status_code == 429]
    assert limited, [(a.status_code, a.text[:200]) for a in writes]  # the writes past the worker's slots
    assert all(a.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED" for a in limited), [a.text for a in limited]
    # Each is counted, for an operator to see that property writes wait on the worker's slots.
    assert _slots_refused(pooled.gateway) == refused_before + len(limited)
    # Every refused write goes through when sent again, as MLflow's client sends it after Retry-After.
    for run_id, answer in zip(runs, writes, strict=True):
        if answer.status_code != 200:
            again = pooled.rest(
                pooled.attacker.token, SLOW, "runs/set-tag", {"run_id": run_id, "key": key, "value": "2024-05"}
            )
            assert again.status_code == 200, again.text
