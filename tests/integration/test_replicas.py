"""Three gateway replicas over one PostgreSQL behave as one service (docs/operations.md).

Three `fedgate serve` processes on their own ports share a database and two real mlflow servers (a dual
workspace's own store and the central store). A balancer in front of them (tests/support/balancer.py)
sends each request to the next ready replica, as a Kubernetes Service with an ingress does. Faults are
real: replicas get SIGTERM and are started again, stores are stopped and restarted on the same port.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from gateway.devstack import GatewayProcess, MlflowServer
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, _start_all, _stop_all
from tests.support.balancer import Balancer
from tests.support.identity import Admin, unique
from tests.support.own_gateway import own_config
from tests.support.waiting import until

pytestmark = pytest.mark.integration
WORKSPACE = "ops"  # dual: its own store `primary`, mirrored into `central`
STEADY = "steady"  # another workspace, on the central store
# The policy version backstop and the whole reload: never within the module, so a change that reaches the other
# replicas can only have come through NOTIFY.
POLL_SECONDS = 3600.0
# How long a test waits for a change to reach every replica: a bound for a loaded machine, not a measure (the
# times taken are printed); only a failing test waits it out.
PROPAGATION_SECONDS = 60.0
DRAIN_SECONDS = 120.0


@dataclass
class Replicas:
    gateways: list[GatewayProcess]
    primary: MlflowServer
    central: MlflowServer
    database_url: str

    def admin(self, index: int = 0, workspace: str | None = WORKSPACE) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        if workspace:
            session.headers["X-MLFLOW-WORKSPACE"] = workspace
        return session

    def link(self, workspace: str = WORKSPACE, index: int = 0) -> dict[str, Any]:
        answer = self.admin(workspace=None).get(f"{self.gateways[index].url}/api/2.0/fedgate/links", timeout=30)
        assert answer.status_code == 200, answer.text
        return next(link for link in answer.json()["links"] if link["workspace"] == workspace)

    def drained(self, timeout: float = DRAIN_SECONDS) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.link()
            if status["pending"] == 0:
                return status
            assert time.monotonic() < deadline, f"outbox not drained: {status}"
            time.sleep(0.5)


def _start_side_by_side(gateways: list[GatewayProcess]) -> None:
    errors: list[BaseException] = []

    def start(gateway: GatewayProcess) -> None:
        try:
            gateway.start(timeout=120)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(g,)) for g in gateways]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def replicas(workdir: Path, database_url: str) -> Iterator[Replicas]:
    root = workdir / "replicas"
    primary = MlflowServer(root / "primary")
    central = MlflowServer(root / "central", workspaces=True)
    _start_all([primary, central])
    created = requests.post(f"{central.url}/api/3.0/mlflow/workspaces", json={"name": STEADY}, timeout=30)
    assert created.status_code == 201, created.text
    with own_config(
        database_url,
        root / "fedgate.toml",
        f"""
[account]
id = "7004"
[server]
policy_poll_seconds = {POLL_SECONDS}
policy_rebuild_seconds = {POLL_SECONDS}
shutdown_delay_seconds = 2
shutdown_grace_seconds = 60
store_check_interval_seconds = 0.5
reconcile_interval_seconds = 0     # what reaches the central store goes through the outbox alone
[stores.primary]
url = "{primary.url}"
[stores.central]
url = "{central.url}"
workspaces = true
[central]
store = "central"
[[workspaces]]
name = "{WORKSPACE}"
id = "4001"
store = "primary"
mode = "dual"
[[workspaces]]
name = "{STEADY}"
id = "4002"
store = "central"
upstream_workspace = "{STEADY}"
""",
        prefix="replicas",
    ) as config:
        gateways = [GatewayProcess(config.path, GATEWAY_ENV, log_path=root / f"replica-{i}.log") for i in range(3)]
        try:
            gateways[0].start(timeout=120)  # migrates the database
            _start_side_by_side(gateways[1:])
            yield Replicas(gateways, primary, central, config.database_url)
        finally:
            for gateway in gateways:
                gateway.stop()
            _stop_all([primary, central])


def _until(check: Callable[[], bool], seconds: float, what: str) -> float:
    """Poll `check` until it holds; how long that took. Fails once `seconds` have passed."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, f"{what}: not within {seconds:.0f} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_revocation_through_one_replica_is_enforced_by_the_others(replicas: Replicas) -> None:
    first, *others = replicas.gateways
    admin = Admin(first.url)
    bob = admin.person(unique("bob") + "@example.com")
    admin.grant(f"workspaces/{WORKSPACE}", "CAN_USE", user=bob.name)
    experiment = (
        replicas.admin()
        .post(f"{first.url}/api/2.0/mlflow/experiments/create", json={"name": unique("revoked")}, timeout=30)
        .json()["experiment_id"]
    )
    admin.grant(f"experiments/{experiment}", "CAN_READ", user=bob.name, workspace=WORKSPACE)
    as_bob = requests.Session()
    as_bob.headers.update({"Authorization": f"Bearer {bob.token}", "X-MLFLOW-WORKSPACE": WORKSPACE})

    def reads(gateway: GatewayProcess) -> int:
        url = f"{gateway.url}/api/2.0/mlflow/experiments/get"
        return as_bob.get(url, params={"experiment_id": experiment}, timeout=30).status_code

    for gateway in others:
        _until(lambda gateway=gateway: reads(gateway) == 200, PROPAGATION_SECONDS, "the grant")

    # The grant is taken away through replica 1: replicas 2 and 3 refuse Bob, told by NOTIFY (their own poll of
    # the policy version and their whole reload do not come within the module).
    revoked = admin.http(WORKSPACE).put(
        f"{first.url}/api/2.0/permissions/experiments/{experiment}", json={"access_control_list": []}, timeout=30
    )
    assert revoked.status_code == 200, revoked.text
    assert reads(first) == 404  # the replica that made the change reloads before answering
    took = [
        _until(lambda gateway=gateway: reads(gateway) == 404, PROPAGATION_SECONDS, "the revocation")
        for gateway in others
    ]
    refused = as_bob.get(f"{others[-1].url}/api/2.0/mlflow/experiments/get", params={"experiment_id": experiment})
    assert refused.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    # Bob's token, revoked through replica 1, stops working on the others.
    listed = admin.http().get(f"{first.url}/api/2.0/token-management/tokens", params={"owner_id": bob.id}, timeout=30)
    [token_id] = [t["token_id"] for t in listed.json()["token_infos"]]
    deleted = admin.http().delete(f"{first.url}/api/2.0/token-management/tokens/{token_id}", timeout=30)
    assert deleted.status_code == 200, deleted.text
    took += [
        _until(lambda gateway=gateway: reads(gateway) == 401, PROPAGATION_SECONDS, "the token revocation")
        for gateway in others
    ]
    print(f"revocations enforced by the other replicas after {', '.join(f'{t * 1000:.0f}' for t in took)} ms")


def _applied(gateway: GatewayProcess) -> float:
    """fedgate_outbox_applied_total of the replica (one worker: the whole process)."""
    text = requests.get(f"{gateway.url}/metrics", timeout=30).text
    found = re.search(r"^fedgate_outbox_applied_total ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _relayed(replicas: Replicas) -> list[float]:
    """Each replica's fedgate_outbox_applied_total once they add up to the entries marked applied in the database.

    A relay counts what it applied just after the mark commits, so a status read in between already shows the
    entries as applied; every entry applied since the module's database was made was applied by these processes."""

    async def done() -> int:
        connection = await asyncpg.connect(replicas.database_url)
        try:
            return int(await connection.fetchval("SELECT count(*) FROM outbox WHERE state = 'done'"))
        finally:
            await connection.close()

    def read() -> tuple[int, list[float]]:
        counted = [_applied(gateway) for gateway in replicas.gateways]  # first: each was marked before it was counted
        return asyncio.run(done()), counted

    marked, counted = until(read, lambda found: sum(found[1]) >= found[0], "the relays' counts of what they applied")
    assert sum(counted) == marked, (marked, counted)  # more counted than marked: an entry was applied twice
    return counted


def _central_copies(replicas: Replicas, run_id: str) -> list[dict[str, Any]]:
    central = replicas.admin()  # the workspace's namespace on the central store
    experiments = central.post(
        f"{replicas.central.url}/api/2.0/mlflow/experiments/search", json={"max_results": 1000}, timeout=30
    ).json()
    ids = [e["experiment_id"] for e in experiments.get("experiments") or []]
    found = central.post(
        f"{replicas.central.url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": ids, "filter": f"tags.`fedgate.source_run_id` = '{run_id}'", "run_view_type": "ALL"},
        timeout=30,
    )
    assert found.status_code == 200, found.text
    return list(found.json().get("runs") or [])


def _history(url: str, workspace: str | None, run_id: str, key: str) -> list[tuple[float, int, int]]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    if workspace:
        session.headers["X-MLFLOW-WORKSPACE"] = workspace
    answer = session.get(
        f"{url}/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run_id, "metric_key": key, "max_results": 25000},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return sorted((m["value"], m["step"], m["timestamp"]) for m in answer.json().get("metrics") or [])


def test_an_outbox_backlog_is_drained_exactly_once_across_replicas(replicas: Replicas) -> None:
    gateways = replicas.gateways
    http = replicas.admin()
    experiment = http.post(
        f"{gateways[0].url}/api/2.0/mlflow/experiments/create", json={"name": unique("backlog")}, timeout=30
    ).json()["experiment_id"]
    runs = [
        http.post(
            f"{gateways[i % 3].url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment}, timeout=30
        ).json()["run"]["info"]["run_id"]
        for i in range(6)
    ]
    replicas.drained()
    before = _relayed(replicas)
    steps = 12
    replicas.central.stop()
    try:
        for step in range(steps):  # each write through another replica than the one before
            for i, run_id in enumerate(runs):
                point = {"key": "m", "value": float(step), "timestamp": 1000 + step, "step": step}
                written = http.post(
                    f"{gateways[(step + i) % 3].url}/api/2.0/mlflow/runs/log-batch",
                    json={"run_id": run_id, "metrics": [point], "tags": [{"key": "last", "value": str(step)}]},
                    timeout=30,
                )
                assert written.status_code == 200, written.text
        backlog = replicas.link()
        assert backlog["pending"] == steps * len(runs), backlog  # one entry per write, none applied yet
    finally:
        replicas.central.start()
    status = replicas.drained()
    assert status["dead_letters"] == 0
    applied = [now - earlier for now, earlier in zip(_relayed(replicas), before, strict=True)]
    # Every entry was applied by exactly one replica: the relays' counts add up to the backlog, not more.
    assert sum(applied) == backlog["pending"], applied
    for run_id in runs:
        [copy] = _central_copies(replicas, run_id)  # one copy per run
        tags = {t["key"]: t["value"] for t in copy["data"].get("tags") or []}
        assert tags["last"] == str(steps - 1)  # applied in order
        assert _history(replicas.central.url, WORKSPACE, copy["info"]["run_id"], "m") == [
            (float(step), step, 1000 + step) for step in range(steps)
        ]
    print(f"backlog of {backlog['pending']} entries applied by the replicas: {applied}")


@dataclass
class Client:
    """The stock MLflow client, pointed at the balancer, logging and uploading until told to stop."""

    client: MlflowClient
    run_id: str
    artifact: Path
    stop: threading.Event
    logged: list[int]
    uploaded: list[str]
    errors: list[str]

    def log_metrics(self) -> None:
        step = 0
        while not self.stop.is_set():
            try:
                self.client.log_metric(self.run_id, "loss", 1.0 / (step + 1), timestamp=1000 + step, step=step)
            except Exception as exc:
                self.errors.append(f"log_metric {step}: {exc!r}")
                return
            self.logged.append(step)
            step += 1

    def upload(self, uploader: int) -> None:
        index = 0
        while not self.stop.is_set():
            path = f"uploads/{uploader}-{index}"
            try:
                self.client.log_artifact(self.run_id, str(self.artifact), artifact_path=path)
            except Exception as exc:
                self.errors.append(f"log_artifact {path}: {exc!r}")
                return
            self.uploaded.append(path)
            index += 1


def _stock_client(url: str, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """As a user configures it: token, workspace, and the client's own retries (7, with back-off)."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ADMIN_TOKEN)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    mlflow.set_workspace(WORKSPACE)
    return MlflowClient(tracking_uri=url)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def test_a_rolling_restart_under_load_loses_nothing(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    artifact = tmp_path / "weights.bin"
    with artifact.open("wb") as file:
        for _ in range(50):
            file.write(os.urandom(1024 * 1024))
    digest = _sha256(artifact)
    # Uploads cross the balancer at 16 MB/s: about 3 s each, so the upload a replica is stopped during is
    # still streaming when the shutdown delay (2 s) ends and the replica stops taking connections.
    with Balancer([g.url for g in replicas.gateways], upload_bytes_per_second=16 * 2**20) as balancer:
        _until(lambda: len(balancer.ready) == 3, 30, "every replica ready at the balancer")
        client = _stock_client(balancer.url, monkeypatch)
        experiment = client.create_experiment(unique("rolling"))
        run_id = client.create_run(experiment).info.run_id
        work = Client(client, run_id, artifact, threading.Event(), [], [], [])
        threads = [
            threading.Thread(target=work.log_metrics),
            *(threading.Thread(target=work.upload, args=(uploader,)) for uploader in range(2)),
        ]
        for thread in threads:
            thread.start()
        exits: list[int] = []
        remaining = list(replicas.gateways)
        try:
            while remaining:
                # Each replica in turn, stopped while an upload streams through it.
                busy: list[GatewayProcess] = []

                def streaming(busy: list[GatewayProcess] = busy, remaining: list[GatewayProcess] = remaining) -> bool:
                    busy[:] = [g for g in remaining if balancer.active[(g.url, "PUT")] > 0]
                    return bool(busy or work.errors)

                _until(streaming, 60, "an upload streaming through a replica not restarted yet")
                assert not work.errors, work.errors
                gateway = busy[0]
                remaining.remove(gateway)
                assert gateway.process is not None
                logged_before = len(work.logged)
                os.kill(gateway.process.pid, signal.SIGTERM)
                exits.append(gateway.process.wait(90))
                gateway.start(timeout=120)  # the same port: the balancer takes it back once it is ready
                _until(lambda gateway=gateway: gateway.url in balancer.ready, 30, "the restarted replica ready")
                _until(lambda n=logged_before: len(work.logged) > n + 20 or bool(work.errors), 60, "progress")
            _until(lambda: len(work.uploaded) >= 4 or bool(work.errors), 120, "four uploads")
        finally:
            work.stop.set()
            for thread in threads:
                thread.join(180)
        assert not work.errors, work.errors
        assert exits == [0, 0, 0]  # every replica stopped cleanly
        assert balancer.dropped == [], balancer.dropped  # no replica dropped a request it had taken
        assert balancer.failures == [], balancer.failures  # and none answered a 5xx the client may not retry
        statuses = dict(balancer.statuses)

    # Nothing lost: every point the client was told was logged, once, in the store and in the central copy.
    expected = sorted((1.0 / (step + 1), step, 1000 + step) for step in work.logged)
    assert work.logged == list(range(len(work.logged)))
    assert _history(replicas.primary.url, None, run_id, "loss") == expected
    primary = requests.Session()
    for path in work.uploaded:
        listed = primary.get(
            f"{replicas.primary.url}/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": path}
        ).json()
        assert [(f["path"], int(f["file_size"])) for f in listed["files"]] == [
            (f"{path}/weights.bin", artifact.stat().st_size)
        ]
    downloaded = tmp_path / "downloaded.bin"
    last = work.uploaded[-1]
    with primary.get(
        f"{replicas.primary.url}/get-artifact", params={"run_id": run_id, "path": f"{last}/weights.bin"}, stream=True
    ) as answer:
        assert answer.status_code == 200
        with downloaded.open("wb") as file:
            for chunk in answer.iter_content(1024 * 1024):
                file.write(chunk)
    assert _sha256(downloaded) == digest
    replicas.drained()
    [copy] = _central_copies(replicas, run_id)
    assert _history(replicas.central.url, WORKSPACE, copy["info"]["run_id"], "loss") == expected
    print(
        f"rolling restart: {len(work.logged)} points and {len(work.uploaded)} uploads of 50 MB, "
        f"each SIGTERM during an upload; answers by replica and status: {statuses}"
    )


def _stores(gateway: GatewayProcess) -> dict[str, Any]:
    answer = requests.get(f"{gateway.url}/health/stores", timeout=10)
    assert answer.status_code == 200
    return dict(answer.json())


def _ready(gateway: GatewayProcess) -> int:
    return requests.get(f"{gateway.url}/health/ready", timeout=10).status_code


def test_one_store_down_its_dual_workspace_fails_over_and_catches_up(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gateways = replicas.gateways
    with Balancer([g.url for g in gateways]) as balancer:
        _until(lambda: len(balancer.ready) == 3, 30, "every replica ready at the balancer")
        client = _stock_client(balancer.url, monkeypatch)
        name = unique("failover")
        experiment = client.create_experiment(name)
        run_id = client.create_run(experiment, run_name="resilient").info.run_id
        client.log_batch(run_id, metrics=[Metric("acc", i / 10, 100 + i, i) for i in range(10)],
                         params=[Param("optimizer", "adam")], tags=[RunTag("team", "ops")])  # fmt: skip
        replicas.drained()
        # A backlog that needs the workspace's own store: artifacts written while the central store is down
        # are copied from the workspace store once it answers again.
        replicas.central.stop()
        try:
            for i in range(3):
                file = tmp_path / f"notes-{i}.txt"
                file.write_text(f"notes {i} " * 500)
                client.log_artifact(run_id, str(file), artifact_path="notes")
            client.log_batch(run_id, metrics=[Metric("acc", 1.0 + i / 10, 200 + i, 10 + i) for i in range(5)])
            replicas.primary.stop()
        finally:
            replicas.central.start()
        try:
            # Every replica stays ready and reports the store down.
            for gateway in gateways:
                _until(lambda g=gateway: _stores(g)["down"] == ["primary"], 15, "the store reported down")
                assert _ready(gateway) == 200
            report = _stores(gateways[0])
            assert report["status"] == "degraded" and report["stores"]["central"]["state"] == "ok"
            assert report["stores"]["primary"]["state"] == "unreachable"
            assert len(balancer.ready) == 3
            # The backlog waits for the store it copies the files from, in order (the points logged after
            # the files wait behind them), retried rather than given up on.
            backlog = replicas.link()
            assert (backlog["pending"], backlog["dead_letters"]) == (4, 0), backlog
            # Reads are answered from the central copy (what was relayed before), through any replica, with
            # the client's own ids.
            read = client.get_run(run_id)
            assert (read.info.run_id, read.info.experiment_id) == (run_id, experiment)
            assert read.data.params == {"optimizer": "adam"} and read.data.tags["team"] == "ops"
            assert sorted(m.step for m in client.get_metric_history(run_id, "acc")) == list(range(10))
            assert client.get_experiment_by_name(name).experiment_id == experiment
            raw = requests.get(
                f"{balancer.url}/api/2.0/mlflow/runs/get",
                params={"run_id": run_id},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": WORKSPACE},
                timeout=30,
            )
            assert raw.status_code == 200 and raw.headers["X-Fedgate-Served-By"] == "central"
            # Writes are refused with Retry-After, in MLflow's shape: nothing is written anywhere.
            late = {"run_id": run_id, "key": "late", "value": 1.0, "timestamp": 1, "step": 0}
            refused = requests.post(
                f"{balancer.url}/api/2.0/mlflow/runs/log-metric",
                json=late,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": WORKSPACE},
                timeout=30,
            )
            assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error_code"] == "TEMPORARILY_UNAVAILABLE" and refused.json()["message"]
            # The other workspace, on the central store, does not notice.
            mlflow.set_workspace(STEADY)
            other = client.create_run(client.create_experiment(unique("steady"))).info.run_id
            client.log_metric(other, "x", 1.0)
            assert client.get_run(other).data.metrics == {"x": 1.0}
            mlflow.set_workspace(WORKSPACE)
            # A client that keeps writing is held back by its own retries until the store is back.
            retried: list[object] = []
            writer = threading.Thread(
                target=lambda: retried.append(_write_during_outage(client, run_id)), name="writer"
            )
            writer.start()
            after = replicas.link()
            assert (after["pending"], after["dead_letters"]) == (4, 0), after
            assert all(_ready(g) == 200 for g in gateways)
        finally:
            replicas.primary.start()
        writer.join(300)
        assert retried == [None], retried  # the write went through once the store answered
        for gateway in gateways:
            _until(lambda g=gateway: _stores(g)["status"] == "ok", 15, "the store reported up again")
        assert balancer.dropped == [] and balancer.failures == []

    # The backlog drains and both stores agree.
    status = replicas.drained()
    assert status["dead_letters"] == 0
    direct = requests.Session()
    primary_run = direct.get(f"{replicas.primary.url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()["run"]
    [copy] = _central_copies(replicas, run_id)
    assert {p["key"]: p["value"] for p in copy["data"]["params"]} == {
        p["key"]: p["value"] for p in primary_run["data"]["params"]
    }
    own_tags = {t["key"]: t["value"] for t in copy["data"]["tags"] if not t["key"].startswith("fedgate.")}
    assert own_tags == {t["key"]: t["value"] for t in primary_run["data"]["tags"]}
    for key in ("acc", "during"):
        points = _history(replicas.primary.url, None, run_id, key)
        assert points and _history(replicas.central.url, WORKSPACE, copy["info"]["run_id"], key) == points
    central_files = replicas.admin().get(
        f"{replicas.central.url}/api/2.0/mlflow/artifacts/list",
        params={"run_id": copy["info"]["run_id"], "path": "notes"},
        timeout=30,
    )
    primary_files = direct.get(
        f"{replicas.primary.url}/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": "notes"}
    )
    assert sorted((f["path"], f["file_size"]) for f in central_files.json()["files"]) == sorted(
        (f["path"], f["file_size"]) for f in primary_files.json()["files"]
    )
    assert len(primary_files.json()["files"]) == 3


def _write_during_outage(client: MlflowClient, run_id: str) -> None:
    client.log_metric(run_id, "during", 0.5, timestamp=5000, step=0)
