"""Dual workspaces: writes land in the workspace store and, through the outbox, in the central store.

Faults are real: the central `mlflow server` is stopped and restarted on the same port; two gateway
processes relay the same backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus, Metric, Param, RunTag

from gateway.cli import main
from gateway.devstack import GatewayProcess, MlflowServer
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, _start_all, _stop_all
from tests.databases import execute
from tests.support.waiting import until

pytestmark = pytest.mark.integration
WORKSPACE = "lab"


@dataclass
class DualStack:
    primary: MlflowServer
    central: MlflowServer
    legacy: MlflowServer  # a store with history, linked later
    spares: tuple[MlflowServer, MlflowServer]  # stores a workspace moves between
    archive: MlflowServer  # a store with a long history, backfilled while the gateway is killed
    later: MlflowServer  # a store whose workspace holds a promoted version before it becomes dual
    cut: MlflowServer  # a store whose workspace holds a promotion's failed attempt before it becomes dual
    early: MlflowServer  # a store whose workspace holds a logged model before it becomes dual
    bare: MlflowServer  # a store started with --no-serve-artifacts
    gateway: GatewayProcess
    config: Path
    database: str  # the gateway's PostgreSQL

    def status(self, workspace: str = WORKSPACE) -> dict[str, Any]:
        url = f"{self.gateway.url}/api/2.0/fedgate/links"
        links = requests.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30).json()["links"]
        return next(link for link in links if link["workspace"] == workspace)

    def dead_letters(self, workspace: str = WORKSPACE) -> list[int]:
        url = f"{self.gateway.url}/api/2.0/fedgate/links/{workspace}/dead-letters"
        letters = requests.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30).json()
        return sorted(letter["id"] for letter in letters["dead_letters"])

    def drained(self, timeout: float = 180.0, workspace: str = WORKSPACE) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(workspace)
            if status["pending"] == 0:
                return status
            time.sleep(0.5)
        raise AssertionError(f"outbox not drained: {self.status(workspace)}")


@pytest.fixture(scope="module")
def dual(workdir: Path) -> Iterator[DualStack]:
    from gateway.db.engine import start_embedded

    root = workdir / "dual"
    embedded = start_embedded(root / "postgres")
    database = embedded.url
    primary = MlflowServer(root / "primary")
    central = MlflowServer(root / "central", workspaces=True)
    legacy = MlflowServer(root / "legacy")
    spares = (MlflowServer(root / "spare-1"), MlflowServer(root / "spare-2"))
    archive = MlflowServer(root / "archive")
    later = MlflowServer(root / "later")
    cut = MlflowServer(root / "cut")
    early = MlflowServer(root / "early")
    bare = MlflowServer(root / "bare", serve_artifacts=False)
    _start_all([primary, central, legacy, *spares, archive, later, cut, early, bare])
    config = root / "fedgate.toml"
    config.write_text(
        f"""
[account]
id = "7002"
[server]
outbox_max_refusals = 2
[database]
url = "{database}"
[stores.primary]
url = "{primary.url}"
[stores.central]
url = "{central.url}"
workspaces = true
[stores.legacy]
url = "{legacy.url}"
[stores.spare-1]
url = "{spares[0].url}"
[stores.spare-2]
url = "{spares[1].url}"
[stores.archive]
url = "{archive.url}"
[stores.later]
url = "{later.url}"
[stores.cut]
url = "{cut.url}"
[stores.early]
url = "{early.url}"
[stores.bare]
url = "{bare.url}"
[central]
store = "central"
[[workspaces]]
name = "{WORKSPACE}"
id = "2001"
store = "primary"
mode = "dual"
"""
    )
    gateway = GatewayProcess(config, GATEWAY_ENV).start()
    try:
        yield DualStack(primary, central, legacy, spares, archive, later, cut, early, bare, gateway, config, database)
    finally:
        gateway.stop()
        _stop_all([primary, central, legacy, *spares, archive, later, cut, early, bare])
        embedded.stop()


def client_for(url: str, workspace: str | None, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_workspace(workspace)
    return MlflowClient(tracking_uri=url)


def central_copy(dual: DualStack, run_id: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    central = client_for(dual.central.url, WORKSPACE, monkeypatch)
    experiments = [e.experiment_id for e in central.search_experiments(view_type=3)]
    found = central.search_runs(experiments, f"tags.`fedgate.source_run_id` = '{run_id}'", run_view_type=3)
    assert len(found) == 1, f"expected exactly one central copy of {run_id}, found {len(found)}"
    return central, found[0]


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[float, int, int]]:
    return sorted((m.value, m.step, m.timestamp) for m in client.get_metric_history(run_id, key))


def test_a_central_outage_loses_nothing_and_the_backlog_drains_in_order(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    experiment_id = gateway.create_experiment(f"outage-{uuid.uuid4().hex[:6]}")
    run = gateway.create_run(experiment_id, run_name="through-an-outage")
    run_id = run.info.run_id
    dual.central.stop()
    try:
        now = int(time.time() * 1000)
        for start in (0, 1000):  # 2,000 points in two log-batch calls of 1,000
            metrics = [Metric("loss", 1.0 / (i + 1), now + i, i) for i in range(start, start + 1000)]
            gateway.log_batch(run_id, metrics=metrics)
        for i in range(50):  # and single points, which the relay coalesces
            gateway.log_metric(run_id, "accuracy", 0.5 + i / 100, timestamp=now + i, step=i)
        gateway.log_batch(run_id, params=[Param(f"p{i}", str(i)) for i in range(20)])
        for i in range(10):
            gateway.set_tag(run_id, f"t{i}", f"value-{i}")
        for version in range(5):  # the same tag rewritten: order decides the final value
            gateway.set_tag(run_id, "phase", f"v{version}")
        for i in range(3):
            artifact = tmp_path / f"artifact-{i}.txt"
            artifact.write_text(f"artifact {i} " * 1000)
            gateway.log_artifact(run_id, str(artifact), artifact_path="outputs")
        gateway.set_terminated(run_id, "FINISHED")
        status = dual.status()
        assert status["pending"] > 0 and status["oldest_pending_seconds"] >= 0
    finally:
        dual.central.start()
    dual.drained()

    primary_client = client_for(dual.primary.url, None, monkeypatch)  # the workspace setting is global
    primary = primary_client.get_run(run_id)
    expected = {key: history(primary_client, run_id, key) for key in ("loss", "accuracy")}
    central, copy = central_copy(dual, run_id, monkeypatch)
    assert copy.data.params == primary.data.params and len(copy.data.params) == 20
    own_tags = {k: v for k, v in copy.data.tags.items() if not k.startswith("fedgate.")}
    assert own_tags == primary.data.tags
    assert copy.data.tags["phase"] == "v4" and copy.data.tags["fedgate.source_workspace"] == WORKSPACE
    assert (copy.info.status, copy.info.start_time, copy.info.end_time) == (
        primary.info.status,
        primary.info.start_time,
        primary.info.end_time,
    )
    for key, points in expected.items():  # point by point: value, step and timestamp
        assert history(central, copy.info.run_id, key) == points
    assert len(expected["loss"]) == 2000 and len(expected["accuracy"]) == 50
    central_files = sorted(f.path for f in central.list_artifacts(copy.info.run_id, "outputs"))
    assert central_files == [f"outputs/artifact-{i}.txt" for i in range(3)]
    downloaded = Path(central.download_artifacts(copy.info.run_id, "outputs/artifact-2.txt", str(tmp_path / "c")))
    assert downloaded.read_text() == "artifact 2 " * 1000


def ui_upload(dual: DualStack, run_id: str, path: str, data: bytes) -> requests.Response:
    """The MLflow UI's upload button: the file's bytes, its run and path in the query."""
    return requests.post(
        f"{dual.gateway.url}/ajax-api/2.0/mlflow/upload-artifact",
        params={"run_uuid": run_id, "path": path},
        data=data,
        headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "X-MLFLOW-WORKSPACE": WORKSPACE,
            "Content-Type": "application/octet-stream",
        },
        timeout=60,
    )


def sha256_of(client: MlflowClient, run_id: str, path: str, into: Path) -> str:
    return hashlib.sha256(Path(client.download_artifacts(run_id, path, str(into))).read_bytes()).hexdigest()


def test_a_file_uploaded_with_the_uis_button_reaches_the_central_copy_also_through_an_outage(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    experiment_id = gateway.create_experiment(f"ui-upload-{uuid.uuid4().hex[:6]}")
    before = gateway.create_run(experiment_id).info.run_id
    dual.drained()
    earlier = dual.dead_letters()  # the module's dead-letter test leaves its own poison entry behind
    first = os.urandom(3 * 1024 * 1024)
    uploaded = ui_upload(dual, before, "notes/first file.bin", first)
    assert uploaded.status_code == 200, uploaded.text
    # Over MLflow's limit for the UI's uploads: refused in MLflow's words, nothing stored or queued.
    too_large = ui_upload(dual, before, "notes/too-large.bin", b"x" * (10 * 1024 * 1024 + 1))
    assert too_large.status_code == 413 and too_large.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # The central store down: a run created and a file uploaded into it meanwhile wait in the outbox, in order.
    dual.central.stop()
    try:
        during = gateway.create_run(experiment_id).info.run_id
        second = os.urandom(1024 * 1024 + 17)
        uploaded = ui_upload(dual, during, "plots/second.bin", second)
        assert uploaded.status_code == 200, uploaded.text
        assert dual.status()["pending"] > 0
    finally:
        dual.central.start()
    dual.drained()
    assert dual.dead_letters() == earlier

    primary = client_for(dual.primary.url, None, monkeypatch)  # the workspace setting is global
    for run_id, path, data in ((before, "notes/first file.bin", first), (during, "plots/second.bin", second)):
        expected = hashlib.sha256(data).hexdigest()
        assert sha256_of(primary, run_id, path, tmp_path / "primary" / run_id) == expected
        central, copy = central_copy(dual, run_id, monkeypatch)
        assert sha256_of(central, copy.info.run_id, path, tmp_path / "central" / run_id) == expected
        assert [f.path for f in central.list_artifacts(copy.info.run_id, path.split("/")[0])] == [path]
        primary = client_for(dual.primary.url, None, monkeypatch)


def test_two_gateways_relay_one_backlog_exactly_once(dual: DualStack, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    experiment_id = gateway.create_experiment(f"two-relays-{uuid.uuid4().hex[:6]}")
    dual.drained()
    earlier = dual.dead_letters()  # the module's dead-letter test leaves its own poison entry behind
    dual.central.stop()
    second = GatewayProcess(dual.config, GATEWAY_ENV)
    try:
        runs = [gateway.create_run(experiment_id).info.run_id for _ in range(6)]
        for step in range(15):
            for run_id in runs:
                gateway.log_batch(run_id, metrics=[Metric("m", float(step), 1000 + step, step)],
                                  tags=[RunTag("last", str(step))])  # fmt: skip
        second.start()
    finally:
        dual.central.start()
    try:
        dual.drained()
    finally:
        second.stop()
    central = client_for(dual.central.url, WORKSPACE, monkeypatch)
    for run_id in runs:
        _, copy = central_copy(dual, run_id, monkeypatch)  # exactly one copy per run
        assert copy.data.tags["last"] == "14"  # applied in order
        assert [m.value for m in sorted(central.get_metric_history(copy.info.run_id, "m"), key=lambda m: m.step)] == [
            float(step) for step in range(15)
        ]
    assert dual.dead_letters() == earlier


def wait_reconciled(dual: DualStack, timeout: float = 180.0, workspace: str = WORKSPACE) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = dual.status(workspace)
        state = (status.get("reconcile") or {}).get("state")
        if state and state != "running" and status["pending"] == 0:
            return status
        time.sleep(0.5)
    raise AssertionError(f"reconcile did not finish: {dual.status(workspace)}")


def test_a_killed_gateway_and_writes_around_it_are_repaired_by_reconcile(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    experiment_id = gateway.create_experiment(f"killed-{uuid.uuid4().hex[:6]}")
    burst_run = gateway.create_run(experiment_id).info.run_id
    sent: list[int] = []

    def burst() -> None:
        for step in range(400):
            try:
                gateway.log_batch(burst_run, metrics=[Metric("burst", float(step), 5000 + step, step)])
                sent.append(step)
            except Exception:
                return  # the gateway is gone

    thread = threading.Thread(target=burst)
    thread.start()
    time.sleep(1.5)
    dual.gateway.kill()  # SIGKILL, mid-burst
    thread.join(60)
    # Meanwhile someone writes to the workspace store directly, around the gateway.
    direct = client_for(dual.primary.url, None, monkeypatch)
    around = direct.create_run(experiment_id, run_name="around-the-gateway").info.run_id
    direct.log_batch(around, metrics=[Metric("m", float(i), 9000 + i, i) for i in range(30)],
                     params=[Param("lr", "0.01")], tags=[RunTag("origin", "direct")])  # fmt: skip
    direct.set_terminated(around)
    primary_runs = {run_id: direct.get_run(run_id) for run_id in (burst_run, around)}
    expected = {run_id: history(direct, run_id, key) for run_id, key in ((burst_run, "burst"), (around, "m"))}

    dual.gateway.start()
    started = requests.post(
        f"{dual.gateway.url}/api/2.0/fedgate/links/{WORKSPACE}/reconcile",
        json={"all": True},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    assert started.status_code == 202, started.text
    status = wait_reconciled(dual)
    assert status["reconcile"]["state"] == "finished", status
    assert status["reconcile"]["runs_repaired"] >= 1

    for run_id, primary in primary_runs.items():
        central, copy = central_copy(dual, run_id, monkeypatch)  # exactly one copy, none duplicated
        key = "burst" if run_id == burst_run else "m"
        assert history(central, copy.info.run_id, key) == expected[run_id]
        assert copy.data.params == primary.data.params
        assert {k: v for k, v in copy.data.tags.items() if not k.startswith("fedgate.")} == primary.data.tags
        assert copy.info.status == primary.info.status
    assert len(expected[burst_run]) == len(sent) or len(expected[burst_run]) == len(sent) + 1
    # A second pass finds nothing left to repair.
    again = requests.post(
        f"{dual.gateway.url}/api/2.0/fedgate/links/{WORKSPACE}/reconcile",
        json={"all": True},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    assert again.status_code == 202
    assert wait_reconciled(dual)["reconcile"]["runs_repaired"] == 0


def test_reads_fail_over_to_the_central_copy_while_the_workspace_store_is_down(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    name = f"failover-{uuid.uuid4().hex[:6]}"
    experiment_id = gateway.create_experiment(name)
    run_id = gateway.create_run(experiment_id, run_name="resilient").info.run_id
    gateway.log_batch(run_id, metrics=[Metric("acc", i / 10, 100 + i, i) for i in range(10)],
                      params=[Param("optimizer", "adam")], tags=[RunTag("team", "lab")])  # fmt: skip
    (tmp_path / "model.txt").write_text("weights")
    gateway.log_artifact(run_id, str(tmp_path / "model.txt"))
    gateway.set_terminated(run_id)
    dual.drained()
    before = gateway.get_run(run_id)
    points = history(gateway, run_id, "acc")

    dual.primary.stop()
    try:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": WORKSPACE}
        raw = requests.get(f"{dual.gateway.url}/api/2.0/mlflow/runs/get", params={"run_id": run_id},
                           headers=headers, timeout=30)  # fmt: skip
        assert raw.status_code == 200 and raw.headers["X-Fedgate-Served-By"] == "central"
        after = gateway.get_run(run_id)  # ids translated back: the client's own ids
        assert (after.info.run_id, after.info.experiment_id) == (run_id, experiment_id)
        assert after.data.params == before.data.params and after.data.tags == before.data.tags
        assert after.data.metrics == before.data.metrics and after.info.end_time == before.info.end_time
        assert history(gateway, run_id, "acc") == points
        assert [r.info.run_id for r in gateway.search_runs([experiment_id])] == [run_id]
        assert gateway.get_experiment_by_name(name).experiment_id == experiment_id
        downloaded = gateway.download_artifacts(run_id, "model.txt", str(tmp_path / "down"))
        assert Path(downloaded).read_text() == "weights"
        # Writes are not failed over: a clear 503 with Retry-After, nothing written anywhere.
        late = {"run_id": run_id, "key": "late", "value": 1.0, "timestamp": 1, "step": 0}
        write = requests.post(f"{dual.gateway.url}/api/2.0/mlflow/runs/log-metric", headers=headers, json=late)
        assert write.status_code == 503 and write.headers["Retry-After"]
        assert write.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    finally:
        dual.primary.start()
    assert "late" not in gateway.get_run(run_id).data.metrics


def test_a_run_search_on_artifact_uris_waits_for_the_workspace_store_during_failover(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The central copies' artifact URIs are the central store's: a filter on the URI the workspace shows cannot be
    answered from them (it matched nothing, an empty page as if no run had that URI). It answers 503 with
    Retry-After, as a write does, and is answered again once the store is back; other filters are read as before."""
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    experiment_id = gateway.create_experiment(f"failover-uri-{uuid.uuid4().hex[:6]}")
    run = gateway.create_run(experiment_id, tags={"kind": "uri"})
    uri = run.info.artifact_uri
    dual.drained()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": WORKSPACE}

    def search(filter_string: str) -> requests.Response:
        return requests.post(
            f"{dual.gateway.url}/api/2.0/mlflow/runs/search",
            headers=headers,
            json={"experiment_ids": [experiment_id], "filter": filter_string},
            timeout=30,
        )

    def found(answer: requests.Response) -> list[str]:
        assert answer.status_code == 200, answer.text
        return [r["info"]["run_id"] for r in answer.json().get("runs", [])]

    assert found(search(f"attributes.artifact_uri = '{uri}'")) == [run.info.run_id]
    dual.primary.stop()
    try:
        refused = (f"attributes.artifact_uri = '{uri}'", "tags.kind = 'uri' AND artifact_uri LIKE '%/artifacts'")
        for filter_string in refused:
            waited = search(filter_string)
            assert waited.status_code == 503, waited.text
            assert waited.headers["Retry-After"]
            assert waited.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
            assert "attributes.artifact_uri" in waited.json()["message"]
        served = search("tags.kind = 'uri'")
        assert found(served) == [run.info.run_id] and served.headers["X-Fedgate-Served-By"] == "central"
    finally:
        dual.primary.start()
    assert found(search(f"attributes.artifact_uri = '{uri}'")) == [run.info.run_id]


def test_relinking_a_workspace_as_dual_backfills_its_history(dual: DualStack, monkeypatch: pytest.MonkeyPatch) -> None:
    direct = client_for(dual.legacy.url, None, monkeypatch)
    experiment_id = direct.create_experiment("history")
    old_run = direct.create_run(experiment_id, run_name="from-last-year").info.run_id
    direct.log_batch(old_run, metrics=[Metric("auc", 0.7 + i / 100, 50 + i, i) for i in range(20)],
                     params=[Param("depth", "6")])  # fmt: skip
    direct.set_terminated(old_run)
    expected = history(direct, old_run, "auc")
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    base = f"{dual.gateway.url}/api/3.0/mlflow/workspaces"
    linked = requests.post(base, json={"name": "legacy", "store": "legacy", "mode": "workspace"}, headers=admin)
    assert linked.status_code == 201, linked.text
    relinked = requests.patch(f"{base}/legacy", json={"mode": "dual"}, headers=admin)
    assert relinked.status_code == 200, relinked.text
    status = wait_reconciled(dual, workspace="legacy")
    assert status["mode"] == "dual" and status["reconcile"]["scope"] == "all"
    assert status["reconcile"]["state"] == "finished" and status["reconcile"]["runs_repaired"] == 1
    central = client_for(dual.central.url, "legacy", monkeypatch)
    [copy] = central.search_runs(
        [e.experiment_id for e in central.search_experiments()], f"tags.`fedgate.source_run_id` = '{old_run}'"
    )
    assert history(central, copy.info.run_id, "auc") == expected
    assert copy.data.params == {"depth": "6"} and copy.info.run_name == "from-last-year"


def test_a_backfill_cut_short_by_a_killed_gateway_is_resumed_where_it_stopped(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct = client_for(dual.archive.url, None, monkeypatch)
    runs = []
    for e in range(24):
        experiment_id = direct.create_experiment(f"season-{e}")
        run_id = direct.create_run(experiment_id, run_name=f"run-{e}").info.run_id
        direct.log_batch(run_id, metrics=[Metric("loss", 1.0 / (i + 1), 100 + i, i) for i in range(300)],
                         params=[Param("season", str(e))])  # fmt: skip
        runs.append(run_id)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    base = f"{dual.gateway.url}/api/3.0/mlflow/workspaces"
    linked = requests.post(base, json={"name": "archive", "store": "archive"}, headers=admin, timeout=30)
    assert linked.status_code == 201, linked.text
    assert requests.patch(f"{base}/archive", json={"mode": "dual"}, headers=admin, timeout=30).status_code == 200
    deadline = time.monotonic() + 120
    while True:  # killed once a few experiments are done and the rest are not
        reconcile = dual.status("archive").get("reconcile") or {}
        assert reconcile.get("state") != "finished", "the backfill ended before the gateway could be killed"
        if reconcile.get("state") == "running" and reconcile["experiments"] >= 3:
            break
        assert time.monotonic() < deadline, reconcile
        time.sleep(0.05)
    dual.gateway.kill()
    dual.gateway.start()  # nobody asks again: the restarted gateway takes the backfill up by itself

    status = wait_reconciled(dual, workspace="archive")
    assert status["reconcile"]["state"] == "finished" and status["reconcile"]["scope"] == "all", status
    assert status["reconcile"]["resumed"] == 1, status
    central = client_for(dual.central.url, "archive", monkeypatch)
    experiments = [e.experiment_id for e in central.search_experiments()]
    expected = [(1.0 / (i + 1), i, 100 + i) for i in range(300)]
    for run_id in runs:  # every run copied exactly once, with its whole history
        [copy] = central.search_runs(experiments, f"tags.`fedgate.source_run_id` = '{run_id}'")
        assert history(central, copy.info.run_id, "loss") == sorted(expected)


def test_logged_and_registered_models_reach_the_central_registry_and_load_from_either_store(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    features = rng.random((40, 3))
    model = LogisticRegression().fit(features, (features[:, 0] > 0.5).astype(int))
    name = f"dual-clf-{uuid.uuid4().hex[:6]}"
    client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    dual.drained()
    earlier = dual.dead_letters()  # the module's dead-letter test leaves its own poison entry behind
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dual.gateway.url)
    mlflow.set_tracking_uri(dual.gateway.url)
    mlflow.set_experiment(f"dual-models-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
    assert str(info.registered_model_version) == "1"
    expected = list(model.predict(features[:5]))
    assert list(mlflow.pyfunc.load_model(f"models:/{name}/1").predict(features[:5])) == expected
    dual.drained()
    assert dual.dead_letters() == earlier

    # The central store, read directly in the workspace's namespace there.
    central = client_for(dual.central.url, WORKSPACE, monkeypatch)
    version = central.get_model_version(name, "1")
    assert version.source.startswith("models:/m-") and version.tags["fedgate.source_version"] == "1"
    mlflow.set_tracking_uri(dual.central.url)
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{name}/1")
        assert list(loaded.predict(features[:5])) == expected
    finally:
        mlflow.set_tracking_uri(dual.gateway.url)


def test_an_entry_the_central_store_refuses_becomes_a_visible_retryable_dead_letter(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    experiment_id = gateway.create_experiment(f"poison-{uuid.uuid4().hex[:6]}")
    run_id = gateway.create_run(experiment_id).info.run_id
    dual.drained()
    earlier = dual.dead_letters()  # none, unless this test ran before in the module
    # Someone gives the central copy a param the workspace store will then get a different value for.
    central, copy = central_copy(dual, run_id, monkeypatch)
    central.log_param(copy.info.run_id, "seed", "7")
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    gateway.log_param(run_id, "seed", "42")
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    letters_url = f"{dual.gateway.url}/api/2.0/fedgate/links/{WORKSPACE}/dead-letters"

    def new_letters() -> list[dict[str, Any]]:
        letters = requests.get(letters_url, headers=admin, timeout=30).json()["dead_letters"]
        return [letter for letter in letters if letter["id"] not in earlier]

    letters = until(new_letters, bool, "the refused entry's dead letter")
    assert [letter["route"] for letter in letters] == ["POST /mlflow/runs/log-parameter"]
    assert "seed" in letters[0]["last_error"] and letters[0]["payload"]["request"]["value"] == "42"
    assert dual.status()["pending"] == 0  # a dead letter blocks nothing behind it
    retried = requests.post(f"{letters_url}/retry", json={"id": letters[0]["id"]}, headers=admin, timeout=30)
    assert retried.status_code == 200 and retried.json() == {"requeued": 1}


def test_an_experiment_restored_around_the_gateway_is_tagged_and_renamed_in_the_central_store_too(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow tags and renames active experiments only. An experiment deleted through the gateway (its central copy
    with it) and restored on the workspace store directly, around the gateway, was then tagged and renamed there;
    the central store refused the tag on the deleted copy (400, a dead letter) and answered the rename with its 500
    INVALID_STATE, taken for an outage and retried for ever, so the workspace's backlog never drained. The copy is
    made level with the workspace store's experiment: restored, tagged, renamed, and nothing is a dead letter."""
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    name = f"around-{uuid.uuid4().hex[:6]}"
    experiment_id = gateway.create_experiment(name)
    gateway.delete_experiment(experiment_id)
    dual.drained()
    earlier = dual.dead_letters()
    client_for(dual.primary.url, None, monkeypatch).restore_experiment(experiment_id)
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    gateway.set_experiment_tag(experiment_id, "stage", "back")
    gateway.rename_experiment(experiment_id, f"{name}-renamed")
    assert dual.drained(timeout=90)["pending"] == 0
    assert dual.dead_letters() == earlier
    central = client_for(dual.central.url, WORKSPACE, monkeypatch)
    copy = central.get_experiment_by_name(f"{name}-renamed")
    assert copy is not None and copy.lifecycle_stage == "active"
    assert copy.tags["stage"] == "back" and copy.tags["fedgate.source_experiment_id"] == experiment_id
    assert central.get_experiment_by_name(name) is None


def test_a_run_restored_around_the_gateway_gets_its_later_writes_in_the_central_store_too(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow writes to active runs only. A run deleted through the gateway (its central copy with it) and restored
    on the workspace store directly, around the gateway, was then logged to, tagged and renamed there; the central
    store refused each write on the deleted copy (400), so they became dead letters and the copy never had them.
    The copy is restored for them, and deleted again when the workspace store's run is deleted again."""
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    experiment_id = gateway.create_experiment(f"run-around-{uuid.uuid4().hex[:6]}")
    run_id = gateway.create_run(experiment_id, run_name="before").info.run_id
    gateway.delete_run(run_id)
    dual.drained()
    earlier = dual.dead_letters()
    client_for(dual.primary.url, None, monkeypatch).restore_run(run_id)
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    gateway.log_metric(run_id, "loss", 0.25, timestamp=1000, step=3)
    gateway.log_param(run_id, "seed", "42")
    gateway.set_tag(run_id, "stage", "back")
    gateway.update_run(run_id, name="after")
    assert dual.drained(timeout=90)["pending"] == 0
    assert dual.dead_letters() == earlier
    central, copy = central_copy(dual, run_id, monkeypatch)
    assert copy.info.lifecycle_stage == "active" and copy.info.run_name == "after"
    assert copy.data.params == {"seed": "42"} and copy.data.tags["stage"] == "back"
    assert history(central, copy.info.run_id, "loss") == [(0.25, 3, 1000)]
    # Deleted through the gateway, restored around it, tagged through it and deleted around it before the tag is
    # relayed: the copy takes the tag and ends deleted, as the workspace store's run.
    gateway.delete_run(run_id)
    dual.drained()
    client_for(dual.primary.url, None, monkeypatch).restore_run(run_id)
    dual.central.stop()
    try:
        client_for(dual.gateway.url, WORKSPACE, monkeypatch).set_tag(run_id, "stage", "gone")
        client_for(dual.primary.url, None, monkeypatch).delete_run(run_id)
    finally:
        dual.central.start()
    assert dual.drained(timeout=90)["pending"] == 0 and dual.dead_letters() == earlier
    central, copy = central_copy(dual, run_id, monkeypatch)
    assert copy.info.lifecycle_stage == "deleted" and copy.data.tags["stage"] == "gone"


def test_an_admin_discards_dead_letters_for_good_and_the_audit_log_says_which(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    experiment_id = gateway.create_experiment(f"discarded-{uuid.uuid4().hex[:6]}")
    run_ids = [gateway.create_run(experiment_id).info.run_id for _ in range(2)]
    dual.drained()
    for run_id in run_ids:  # the central copies get a param the workspace store then gets another value for
        central, copy = central_copy(dual, run_id, monkeypatch)
        central.log_param(copy.info.run_id, "seed", "7")
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    for run_id in run_ids:
        gateway.log_param(run_id, "seed", "42")
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    letters_url = f"{dual.gateway.url}/api/2.0/fedgate/links/{WORKSPACE}/dead-letters"

    def mine() -> dict[str, int]:
        letters = requests.get(letters_url, headers=admin, timeout=30).json()["dead_letters"]
        return {letter["payload"]["request"]["run_id"]: letter["id"] for letter in letters
                if letter["payload"]["request"].get("run_id") in run_ids}  # fmt: skip

    letters = until(mine, lambda found: len(found) == 2, "both refused entries' dead letters")
    first, second = (letters[run_id] for run_id in run_ids)

    for body in ({}, {"id": "seven"}, {"id": -1}, {"id": 2**64}, {"id": True}, {"id": first, "all": True}):
        refused = requests.post(f"{letters_url}/discard", json=body, headers=admin, timeout=30)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE", refused.text
    assert mine() == {run_ids[0]: first, run_ids[1]: second}

    # One by its id, from the command line; then every dead letter left.
    monkeypatch.setenv("FEDGATE_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.delenv("FEDGATE_TOKEN", raising=False)
    assert main(["links", "discard", WORKSPACE, "--id", str(first), "--url", dual.gateway.url]) == 0
    assert capsys.readouterr().out.strip() == "discarded 1"
    assert mine() == {run_ids[1]: second}
    again = requests.post(f"{letters_url}/discard", json={"id": first}, headers=admin, timeout=30)
    assert again.status_code == 200 and again.json() == {"discarded": 0, "ids": []}, again.text
    everything = requests.post(f"{letters_url}/discard", json={"all": True}, headers=admin, timeout=30)
    assert everything.status_code == 200, everything.text
    assert second in everything.json()["ids"] and everything.json()["discarded"] == len(everything.json()["ids"])
    assert mine() == {}

    audit = requests.get(
        f"{dual.gateway.url}/api/2.0/fedgate/audit-log", params={"action": "links.dead_letters.discard"},
        headers=admin, timeout=30,
    ).json()["entries"]  # fmt: skip
    rows = [(row["target"], row["details"]["ids"]) for row in audit if {first, second} & set(row["details"]["ids"])]
    assert sorted(rows) == sorted([(WORKSPACE, [first]), (WORKSPACE, everything.json()["ids"])])
    # The discarded writes never reached the central copies, and nothing waits for them.
    assert dual.status()["pending"] == 0
    for run_id in run_ids:
        central, copy = central_copy(dual, run_id, monkeypatch)
        assert copy.data.params["seed"] == "7"


def test_a_workspace_moved_to_another_store_maps_nothing_of_the_old_one(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stores number experiments independently: after a move, id 1 is another experiment."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    base = f"{dual.gateway.url}/api/3.0/mlflow/workspaces"
    linked = requests.post(base, json={"name": "mover", "store": "spare-1", "mode": "dual"}, headers=admin)
    assert linked.status_code == 201, linked.text
    gateway = client_for(dual.gateway.url, "mover", monkeypatch)
    alpha = gateway.create_experiment("alpha")
    first = gateway.create_run(alpha).info.run_id
    gateway.log_metric(first, "loss", 0.5)
    dual.drained(workspace="mover")
    beta = client_for(dual.spares[1].url, None, monkeypatch).create_experiment("beta")
    assert beta == alpha  # the same id, another experiment

    dual.central.stop()
    try:
        gateway = client_for(dual.gateway.url, "mover", monkeypatch)
        gateway.log_metric(first, "loss", 0.4, step=1)  # pending: read from spare-1 when it is relayed
        refused = requests.patch(f"{base}/mover", json={"store": "spare-2"}, headers=admin, timeout=30)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error_code"] == "INVALID_STATE" and "pending" in refused.json()["message"]
    finally:
        dual.central.start()
    dual.drained(workspace="mover")
    moved = requests.patch(f"{base}/mover", json={"store": "spare-2"}, headers=admin, timeout=30)
    assert moved.status_code == 200, moved.text

    gateway = client_for(dual.gateway.url, "mover", monkeypatch)
    second = gateway.create_run(beta, run_name="after-the-move").info.run_id
    gateway.log_metric(second, "loss", 0.3)
    dual.drained(workspace="mover")
    central = client_for(dual.central.url, "mover", monkeypatch)
    names = {e.experiment_id: e.name for e in central.search_experiments()}
    [copy] = central.search_runs(list(names), f"tags.`fedgate.source_run_id` = '{second}'")
    assert names[copy.info.experiment_id] == "beta"
    [old] = central.search_runs(list(names), f"tags.`fedgate.source_run_id` = '{first}'")
    assert names[old.info.experiment_id] == "alpha" and len(central.get_metric_history(old.info.run_id, "loss")) == 2

    # The account-wide index forgot spare-1's experiments; its sync rebuilt the workspace from spare-2.
    sync = requests.post(
        f"{dual.gateway.url}/api/2.0/fedgate/index/sync", json={"workspace": "mover", "wait": True},
        headers=admin, timeout=180,
    )  # fmt: skip
    assert sync.status_code == 200 and sync.json()["sync"]["state"] == "finished", sync.text
    workspace_id = requests.get(f"{base}/mover", headers=admin, timeout=30).json()["workspace"]["workspace_id"]
    account = client_for(dual.gateway.url, "account", monkeypatch)
    found = {e.experiment_id: e.name for e in account.search_experiments() if e.name in ("alpha", "beta")}
    assert found == {f"{workspace_id}-{beta}": "beta"}


def test_a_model_name_longer_than_any_key_column_is_mirrored(dual: DualStack, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "forecast-" + "x" * 140 + uuid.uuid4().hex[:8]  # the outbox orders entries by the model's name
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    gateway.create_registered_model(name, description="long")
    dual.drained()
    central = client_for(dual.central.url, WORKSPACE, monkeypatch)
    assert central.get_registered_model(name).description == "long"


def test_versions_of_models_named_with_quotes_are_mirrored_into_their_own_central_copy(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model's name is its user's text. Written into the central store's search for an earlier copy of a version,
    a quote in it made the search fail, and a crafted name could end the string and have another model's version
    taken for the copy (its own central copy then had no version)."""
    tag = uuid.uuid4().hex[:6]
    # The last name, written into the filter, ended the string and found the first model's copies instead.
    names = [f"it's-{tag}", f"""both-'"-{tag}""", f"victim-{tag}", f"victim-{tag}' and name != '"]
    gateway = client_for(dual.gateway.url, WORKSPACE, monkeypatch)
    dual.drained()
    earlier = dual.dead_letters()
    run_id = gateway.create_run(gateway.create_experiment(f"quoted-{tag}")).info.run_id
    for name in names:
        gateway.create_registered_model(name)
        for _ in range(2):
            gateway.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    dual.drained()
    assert dual.dead_letters() == earlier

    central = client_for(dual.central.url, WORKSPACE, monkeypatch)
    copies = central.search_model_versions(max_results=1000)  # matched on the name here, as the relay does
    for name in names:
        mine = sorted((v.version, v.tags["fedgate.source_version"]) for v in copies if v.name == name)
        assert mine == [("1", "1"), ("2", "2")], (name, mine)
        assert all(v.run_id != run_id for v in copies if v.name == name)  # the central copy of the run


@dataclass
class Promotable:
    """A version logged through the gateway in a workspace of its own on the central store."""

    source: str  # the workspace
    name: str  # the model, at version 1
    features: Any
    expected: list[Any]  # what the model predicts for features[:5]


def promotable(dual: DualStack, monkeypatch: pytest.MonkeyPatch) -> Promotable:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    base = f"{dual.gateway.url}/api/3.0/mlflow/workspaces"
    source = f"promo-src-{uuid.uuid4().hex[:6]}"
    linked = requests.post(base, json={"name": source, "store": "central"}, headers=admin, timeout=30)
    assert linked.status_code == 201, linked.text
    features = np.random.default_rng(5).random((30, 3))
    model = LogisticRegression().fit(features, (features[:, 1] > 0.5).astype(int))
    name = f"promoted-{uuid.uuid4().hex[:6]}"
    client_for(dual.gateway.url, source, monkeypatch)
    mlflow.set_tracking_uri(dual.gateway.url)
    mlflow.set_experiment(f"promo-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run():
        mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
    return Promotable(source, name, features, list(model.predict(features[:5])))


def central_predictions(dual: DualStack, promoted: Promotable) -> list[Any]:
    """What version 1 of the promoted model predicts, loaded from the central store directly."""
    mlflow.set_tracking_uri(dual.central.url)
    try:
        return list(mlflow.pyfunc.load_model(f"models:/{promoted.name}/1").predict(promoted.features[:5]))
    finally:
        mlflow.set_tracking_uri(dual.gateway.url)


def test_a_version_promoted_into_a_dual_workspace_reaches_the_central_registry_with_its_files(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    promoted = promotable(dual, monkeypatch)
    source, name = promoted.source, promoted.name
    promote = f"{dual.gateway.url}/api/2.0/fedgate/registry/promote"
    body = {"name": f"{source}.{name}", "version": "1"}
    headers = {**admin, "X-MLFLOW-WORKSPACE": WORKSPACE}
    dual.drained()
    earlier = dual.dead_letters()  # the module's dead-letter test leaves its own poison entry behind
    done = requests.post(promote, json=body, headers=headers, timeout=300)
    assert done.status_code == 200 and done.json()["copied"] is True, done.text
    dual.drained()
    assert dual.dead_letters() == earlier

    # The central store, read directly in the dual workspace's namespace: the version, its lineage, its files.
    central = client_for(dual.central.url, WORKSPACE, monkeypatch)
    version = central.get_model_version(name, "1")
    assert version.tags["fedgate.source_version"] == "1"
    assert version.tags["fedgate.promoted_from.workspace"] == source
    assert central_predictions(dual, promoted) == promoted.expected

    # A retry finds the copy, hands it to the outbox again, and the central registry still has one version.
    again = requests.post(promote, json=body, headers=headers, timeout=300)
    assert again.status_code == 200 and again.json()["copied"] is False, again.text
    dual.drained()
    assert dual.dead_letters() == earlier
    central = client_for(dual.central.url, WORKSPACE, monkeypatch)
    assert [v.version for v in central.search_model_versions(f"name = '{name}'")] == ["1"]


def test_promoting_a_copy_again_after_its_workspace_became_dual_brings_its_files_to_the_central_store(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry that finds the copy queues its registered model, files, status and version again. It read the copy's
    logged model from the version's `model_id`, which MLflow 3.17.2's SQL store never answers: the files were not
    queued, and the version was queued without `model_id`, which the central store refuses for a `models:/m-...`
    source (so the version became a dead letter; the registered model was not queued either). The copy here is made
    before the workspace is dual, so none of it is in the outbox: every part must come from the retry."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    base = f"{dual.gateway.url}/api/3.0/mlflow/workspaces"
    target = f"late-{uuid.uuid4().hex[:6]}"
    linked = requests.post(base, json={"name": target, "store": "later", "mode": "workspace"}, headers=admin)
    assert linked.status_code == 201, linked.text
    promoted = promotable(dual, monkeypatch)
    promote = f"{dual.gateway.url}/api/2.0/fedgate/registry/promote"
    body = {"name": f"{promoted.source}.{promoted.name}", "version": "1"}
    headers = {**admin, "X-MLFLOW-WORKSPACE": target}
    done = requests.post(promote, json=body, headers=headers, timeout=300)
    assert done.status_code == 200 and done.json()["copied"] is True, done.text
    copy_source = done.json()["model_version"]["source"]

    relinked = requests.patch(f"{base}/{target}", json={"mode": "dual"}, headers=admin, timeout=30)
    assert relinked.status_code == 200, relinked.text
    wait_reconciled(dual, workspace=target)
    earlier = dual.dead_letters(target)
    again = requests.post(promote, json=body, headers=headers, timeout=300)
    assert again.status_code == 200 and again.json()["copied"] is False, again.text
    assert again.json()["model_version"]["source"] == copy_source
    dual.drained(workspace=target)
    assert dual.dead_letters(target) == earlier

    central = client_for(dual.central.url, target, monkeypatch)
    [version] = central.search_model_versions(f"name = '{promoted.name}'")
    assert version.version == "1" and version.tags["fedgate.promoted_from.workspace"] == promoted.source
    assert version.tags["fedgate.source_version"] == "1"
    logged = central.get_logged_model(version.source[len("models:/") :])
    assert logged.status == LoggedModelStatus.READY
    assert central_predictions(dual, promoted) == promoted.expected

    # Once more: the central registry still holds the one version.
    third = requests.post(promote, json=body, headers=headers, timeout=300)
    assert third.status_code == 200 and third.json()["copied"] is False, third.text
    dual.drained(workspace=target)
    assert dual.dead_letters(target) == earlier
    central = client_for(dual.central.url, target, monkeypatch)
    assert [v.version for v in central.search_model_versions(f"name = '{promoted.name}'")] == ["1"]


FAIL_VERSION_ENTRIES = """
CREATE FUNCTION fail_version_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.route = 'POST /mlflow/model-versions/create' AND NEW.payload->'request'->>'name' = '{name}' THEN
        RAISE EXCEPTION 'the outbox is failing';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fail_version_entry BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION fail_version_entry();
"""


def test_a_promotion_cut_off_before_its_version_was_queued_is_completed_in_the_central_store_by_its_retry(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt makes the copy in the dual workspace's store (files queued), then cannot queue the version
    (the gateway's database refuses that outbox entry, as when it fails at that moment): 503. The retry finds the
    copy and queues it again. It queued the version without the `model_id` it read from the store, which MLflow
    3.17.2's SQL store never answers, and the central store refuses a `models:/m-...` source without one: the
    version became a dead letter and never reached the central registry."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    promoted = promotable(dual, monkeypatch)
    promote = f"{dual.gateway.url}/api/2.0/fedgate/registry/promote"
    body = {"name": f"{promoted.source}.{promoted.name}", "version": "1"}
    headers = {**admin, "X-MLFLOW-WORKSPACE": WORKSPACE}
    dual.drained()
    earlier = dual.dead_letters()
    asyncio.run(execute(dual.database, FAIL_VERSION_ENTRIES.format(name=promoted.name)))
    try:
        failed = requests.post(promote, json=body, headers=headers, timeout=300)
    finally:
        asyncio.run(
            execute(dual.database, "DROP TRIGGER fail_version_entry ON outbox; DROP FUNCTION fail_version_entry();")
        )
    assert failed.status_code == 503 and failed.json()["error_code"] == "TEMPORARILY_UNAVAILABLE", failed.text
    made = client_for(dual.primary.url, None, monkeypatch).get_model_version(promoted.name, "1")
    assert made.tags["fedgate.promoted_from.workspace"] == promoted.source  # the copy was made

    again = requests.post(promote, json=body, headers=headers, timeout=300)
    assert again.status_code == 200 and again.json()["copied"] is False, again.text
    assert again.json()["model_version"]["source"] == made.source
    dual.drained()
    assert dual.dead_letters() == earlier
    central = client_for(dual.central.url, WORKSPACE, monkeypatch)
    [version] = central.search_model_versions(f"name = '{promoted.name}'")
    assert version.version == "1" and version.tags["fedgate.source_version"] == "1"
    assert version.tags["fedgate.promoted_from.workspace"] == promoted.source
    assert central_predictions(dual, promoted) == promoted.expected


def store_database(store: MlflowServer, statements: str) -> None:
    """Statements run on a store's own sqlite database (as a fault of the store's)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(store.root / "mlflow.db")) as connection:
        connection.executescript(statements)


def test_a_promotion_that_failed_before_its_workspace_became_dual_is_completed_with_its_files_by_a_retry(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt, in a workspace not yet dual, copies every file into its logged model, which becomes READY,
    and then fails (its store refuses the registered model). The workspace becomes dual and the promotion is retried:
    it takes up that READY logged model as it is. It queued none of its files nor its status (the attempt that
    copied them had queued nothing), so the central copy of the version held a logged model with no files, still
    pending, and did not load."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    base = f"{dual.gateway.url}/api/3.0/mlflow/workspaces"
    target = f"cut-{uuid.uuid4().hex[:6]}"
    linked = requests.post(base, json={"name": target, "store": "cut", "mode": "workspace"}, headers=admin)
    assert linked.status_code == 201, linked.text
    promoted = promotable(dual, monkeypatch)
    promote = f"{dual.gateway.url}/api/2.0/fedgate/registry/promote"
    body = {"name": f"{promoted.source}.{promoted.name}", "version": "1"}
    headers = {**admin, "X-MLFLOW-WORKSPACE": target}
    store_database(
        dual.cut,
        "CREATE TRIGGER refuse_models BEFORE INSERT ON registered_models BEGIN SELECT RAISE(ABORT, 'refused'); END;",
    )
    try:
        failed = requests.post(promote, json=body, headers=headers, timeout=300)
    finally:
        store_database(dual.cut, "DROP TRIGGER refuse_models;")
    assert failed.status_code != 200, failed.text
    store = client_for(dual.cut.url, None, monkeypatch)
    promotions = store.get_experiment_by_name("fedgate-promotions")
    assert promotions is not None
    [attempt] = store.search_logged_models([promotions.experiment_id])
    assert attempt.status == LoggedModelStatus.READY and attempt.name == promoted.name

    relinked = requests.patch(f"{base}/{target}", json={"mode": "dual"}, headers=admin, timeout=30)
    assert relinked.status_code == 200, relinked.text
    wait_reconciled(dual, workspace=target)
    earlier = dual.dead_letters(target)
    again = requests.post(promote, json=body, headers=headers, timeout=300)
    assert again.status_code == 200 and again.json()["copied"] is True, again.text
    assert again.json()["model_version"]["source"] == f"models:/{attempt.model_id}"
    dual.drained(workspace=target)
    assert dual.dead_letters(target) == earlier

    central = client_for(dual.central.url, target, monkeypatch)
    [version] = central.search_model_versions(f"name = '{promoted.name}'")
    assert version.version == "1" and version.tags["fedgate.promoted_from.workspace"] == promoted.source
    logged = central.get_logged_model(version.source[len("models:/") :])
    assert logged.status == LoggedModelStatus.READY
    assert logged.tags["fedgate.source_model_id"] == attempt.model_id
    assert central_predictions(dual, promoted) == promoted.expected


FAIL_MODEL_ENTRIES = """
CREATE FUNCTION fail_model_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.route = 'POST /mlflow/registered-models/create' AND NEW.payload->'request'->>'name' = '{name}' THEN
        RAISE EXCEPTION 'the outbox is failing';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fail_model_entry BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION fail_model_entry();
"""


def test_a_registered_model_whose_entry_was_lost_is_created_in_the_central_store_before_its_version(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt makes the registered model in the dual workspace's store and cannot queue it (the gateway's
    database refuses that outbox entry, as when it fails at that moment): 503. The retry finds the model there (the
    store answers that it exists) and queues only the version. The central store refused the version for want of
    its registered model, and it became a dead letter."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    promoted = promotable(dual, monkeypatch)
    promote = f"{dual.gateway.url}/api/2.0/fedgate/registry/promote"
    body = {"name": f"{promoted.source}.{promoted.name}", "version": "1"}
    headers = {**admin, "X-MLFLOW-WORKSPACE": WORKSPACE}
    dual.drained()
    earlier = dual.dead_letters()
    asyncio.run(execute(dual.database, FAIL_MODEL_ENTRIES.format(name=promoted.name)))
    try:
        failed = requests.post(promote, json=body, headers=headers, timeout=300)
    finally:
        asyncio.run(
            execute(dual.database, "DROP TRIGGER fail_model_entry ON outbox; DROP FUNCTION fail_model_entry();")
        )
    assert failed.status_code == 503 and failed.json()["error_code"] == "TEMPORARILY_UNAVAILABLE", failed.text
    store = client_for(dual.primary.url, None, monkeypatch)
    assert store.get_registered_model(promoted.name).name == promoted.name  # the store made it
    store.set_registered_model_tag(promoted.name, "team", "fraud")  # around the gateway: carried by the copy

    again = requests.post(promote, json=body, headers=headers, timeout=300)
    assert again.status_code == 200 and again.json()["copied"] is True, again.text
    dual.drained()
    assert dual.dead_letters() == earlier
    central = client_for(dual.central.url, WORKSPACE, monkeypatch)
    assert central.get_registered_model(promoted.name).tags == {"team": "fraud"}
    [version] = central.search_model_versions(f"name = '{promoted.name}'")
    assert version.version == "1" and version.tags["fedgate.source_version"] == "1"
    assert central_predictions(dual, promoted) == promoted.expected


def test_a_logged_model_made_before_its_workspace_became_dual_is_copied_with_its_tags_params_and_status(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A logged model made while its workspace was not dual has no creation entry: the relay copies it from the
    workspace store on first use (here: a tag set once the workspace is dual). The copy was made from its
    experiment, name, type and run alone, without the tags and params it had, which nothing copied later. And it
    stayed PENDING (the store creates every logged model so) though the model was READY or FAILED: finalized before
    the copy, by a call whose entry was never queued. Its finalization is queued with the copy now; a model still
    pending when copied is finalized by its own finalization's entry, as ever."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    base = f"{dual.gateway.url}/api/3.0/mlflow/workspaces"
    target = f"early-{uuid.uuid4().hex[:6]}"
    linked = requests.post(base, json={"name": target, "store": "early", "mode": "workspace"}, headers=admin)
    assert linked.status_code == 201, linked.text
    gateway = client_for(dual.gateway.url, target, monkeypatch)
    experiment_id = gateway.create_experiment(f"early-{uuid.uuid4().hex[:6]}")
    made = gateway.create_logged_model(
        experiment_id, name="scorer", model_type="classifier",
        params={"alpha": "0.5", "depth": "7"}, tags={"team": "fraud", "mlflow.note.content": "kept"},
    )  # fmt: skip
    gateway.finalize_logged_model(made.model_id, LoggedModelStatus.READY)
    broken = gateway.create_logged_model(experiment_id, name="broken")
    gateway.finalize_logged_model(broken.model_id, LoggedModelStatus.FAILED)
    later = gateway.create_logged_model(experiment_id, name="later")

    relinked = requests.patch(f"{base}/{target}", json={"mode": "dual"}, headers=admin, timeout=30)
    assert relinked.status_code == 200, relinked.text
    wait_reconciled(dual, workspace=target)
    earlier = dual.dead_letters(target)
    gateway = client_for(dual.gateway.url, target, monkeypatch)
    for model in (made, broken, later):
        gateway.set_logged_model_tags(model.model_id, {"stage": "late"})
    dual.drained(workspace=target)
    central = client_for(dual.central.url, target, monkeypatch)
    experiments = [e.experiment_id for e in central.search_experiments()]

    def copy_of(model_id: str) -> Any:
        [copy] = central.search_logged_models(
            experiments, filter_string=f"tags.`fedgate.source_model_id` = '{model_id}'"
        )
        return copy

    assert copy_of(later.model_id).status == LoggedModelStatus.PENDING  # as the workspace store has it
    gateway = client_for(dual.gateway.url, target, monkeypatch)
    gateway.finalize_logged_model(later.model_id, LoggedModelStatus.READY)
    dual.drained(workspace=target)
    assert dual.dead_letters(target) == earlier

    central = client_for(dual.central.url, target, monkeypatch)
    copy = copy_of(made.model_id)
    assert copy.name == "scorer" and copy.model_type == "classifier"
    assert copy.params == {"alpha": "0.5", "depth": "7"}
    assert {k: v for k, v in copy.tags.items() if not k.startswith("fedgate.")} == {
        "team": "fraud", "mlflow.note.content": "kept", "stage": "late"
    }  # fmt: skip
    statuses = {model.name: copy_of(model.model_id).status for model in (made, broken, later)}
    assert statuses == {
        "scorer": LoggedModelStatus.READY, "broken": LoggedModelStatus.FAILED, "later": LoggedModelStatus.READY
    }  # fmt: skip


def rows(dual: DualStack, query: str, *args: Any) -> list[Any]:
    import asyncpg

    async def run() -> list[Any]:
        connection = await asyncpg.connect(dual.database)
        try:
            return list(await connection.fetch(query, *args))
        finally:
            await connection.close()

    return asyncio.run(run())


def test_a_dual_workspace_whose_store_does_not_serve_artifacts_settles_its_refused_uploads_and_is_reconciled(
    dual: DualStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dual workspace whose store runs with --no-serve-artifacts: an upload answers 501 NOT_IMPLEMENTED, which the
    store answers every time and which applied nothing, so it is settled (nothing queued, nothing left for crash
    recovery), and every other write is mirrored. A reconcile pass brings a write made around the gateway to the
    central copy. It failed at the workspace's first run: the store answers 500 when asked for the files of a run it
    does not serve, and the pass stopped there, so nothing written around the gateway reached the central store."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    base = f"{dual.gateway.url}/api/3.0/mlflow/workspaces"
    target = f"bare-{uuid.uuid4().hex[:6]}"
    linked = requests.post(base, json={"name": target, "store": "bare", "mode": "dual"}, headers=admin, timeout=30)
    assert linked.status_code == 201, linked.text
    workspace_id = int(dual.status(target)["workspace_id"])
    gateway = client_for(dual.gateway.url, target, monkeypatch)
    experiment_id = gateway.create_experiment(f"bare-{uuid.uuid4().hex[:6]}")
    run_id = gateway.create_run(experiment_id).info.run_id
    gateway.log_param(run_id, "lr", "0.1")
    path = f"{experiment_id}/{run_id}/artifacts/weights.bin"
    upload = requests.put(
        f"{dual.gateway.url}/api/2.0/mlflow-artifacts/artifacts/{path}",
        data=b"weights",
        headers={**admin, "X-MLFLOW-WORKSPACE": target},
        timeout=60,
    )
    assert upload.status_code == 501 and upload.json()["error_code"] == "NOT_IMPLEMENTED", upload.text
    dual.drained(workspace=target)
    until(
        lambda: rows(dual, "SELECT route FROM write_intents WHERE workspace_id = $1", workspace_id),
        lambda left: left == [],
        "the workspace's write notes settled",
    )
    queued = [row["route"] for row in rows(dual, "SELECT route FROM outbox WHERE workspace_id = $1", workspace_id)]
    assert not any("mlflow-artifacts" in route for route in queued), queued

    direct = client_for(dual.bare.url, None, monkeypatch)
    direct.set_tag(run_id, "origin", "around-the-gateway")
    asked = time.time()
    started = requests.post(f"{dual.gateway.url}/api/2.0/fedgate/links/{target}/reconcile", json={}, headers=admin)
    assert started.status_code == 202, started.text
    status = until(
        lambda: dual.status(target),
        lambda s: (
            s["pending"] == 0
            and (s.get("reconcile") or {}).get("state") not in (None, "running")
            and float(s["reconcile"].get("finished_at") or 0) >= asked
        ),
        "a reconcile pass of the workspace finished",
    )
    assert status["reconcile"]["state"] == "finished" and status["reconcile"]["runs_repaired"] == 1, status
    assert dual.dead_letters(target) == []

    central = client_for(dual.central.url, target, monkeypatch)
    [copy] = central.search_runs(
        [e.experiment_id for e in central.search_experiments()], f"tags.`fedgate.source_run_id` = '{run_id}'"
    )
    assert copy.data.params == {"lr": "0.1"} and copy.data.tags["origin"] == "around-the-gateway"
    assert central.list_artifacts(copy.info.run_id) == []
