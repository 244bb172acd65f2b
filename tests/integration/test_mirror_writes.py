"""Writes a user makes with the stock MLflow client in a dual workspace, each found in the central store afterwards.

Each was accepted by the workspace store and never reached the central copy: a logged model's tag deleted, a logged
model deleted, and the model a run records (the run's `mlflow.log-model.history` tag: the Spark flavor's `log_model`).
gateway/dual/coverage.py lists every write route and what dual mode does with it (tests/unit/test_mirror_coverage.py).
The reconciler is off (`reconcile_interval_seconds = 0`): what the central store shows came through the outbox.
"""

from __future__ import annotations

import asyncio
import json
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
from mlflow.exceptions import MlflowException

from gateway.devstack import GatewayProcess, MlflowServer
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, _start_all, _stop_all
from tests.databases import execute
from tests.support.waiting import until

pytestmark = pytest.mark.integration
WORKSPACE = "mirrored"


@dataclass
class Stack:
    primary: MlflowServer
    central: MlflowServer
    gateway: GatewayProcess
    database: str  # the gateway's PostgreSQL

    def status(self) -> dict[str, Any]:
        url = f"{self.gateway.url}/api/2.0/fedgate/links"
        links = requests.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30).json()["links"]
        return next(link for link in links if link["workspace"] == WORKSPACE)

    def drained(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status["pending"] == 0:
                assert status["dead_letters"] == 0, status
                return
            time.sleep(0.3)
        raise AssertionError(f"outbox not drained: {self.status()}")


@pytest.fixture(scope="module")
def stack(workdir: Path) -> Iterator[Stack]:
    from gateway.db.engine import start_embedded

    root = workdir / "mirror-writes"
    embedded = start_embedded(root / "postgres")
    primary = MlflowServer(root / "primary")
    central = MlflowServer(root / "central", workspaces=True)
    _start_all([primary, central])
    config = root / "fedgate.toml"
    config.write_text(
        f"""
[account]
id = "7003"
[server]
reconcile_interval_seconds = 0
[database]
url = "{embedded.url}"
[stores.primary]
url = "{primary.url}"
[stores.central]
url = "{central.url}"
workspaces = true
[central]
store = "central"
[[workspaces]]
name = "{WORKSPACE}"
id = "2101"
store = "primary"
mode = "dual"
"""
    )
    gateway = GatewayProcess(config, GATEWAY_ENV).start()
    try:
        yield Stack(primary, central, gateway, embedded.url)
    finally:
        gateway.stop()
        _stop_all([primary, central])
        embedded.stop()


def client_for(url: str, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_workspace(WORKSPACE)
    return MlflowClient(tracking_uri=url)


def central_model(stack: Stack, model_id: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    central = client_for(stack.central.url, monkeypatch)
    experiments = [e.experiment_id for e in central.search_experiments()]
    found = central.search_logged_models(experiments, filter_string=f"tags.`fedgate.source_model_id` = '{model_id}'")
    return found[0] if found else None


def test_a_logged_models_deleted_tag_is_deleted_in_the_central_copy(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = client_for(stack.gateway.url, monkeypatch)
    experiment_id = gateway.create_experiment(f"tags-{uuid.uuid4().hex[:6]}")
    model = gateway.create_logged_model(experiment_id, name="scorer", tags={"stage": "candidate", "team": "fraud"})
    stack.drained()
    copy = central_model(stack, model.model_id, monkeypatch)
    assert copy is not None and copy.tags["stage"] == "candidate"

    gateway = client_for(stack.gateway.url, monkeypatch)
    gateway.delete_logged_model_tag(model.model_id, "stage")
    gateway.set_logged_model_tags(model.model_id, {"reviewed": "yes"})  # a later write of the model's, applied after
    assert "stage" not in gateway.get_logged_model(model.model_id).tags
    stack.drained()

    copy = central_model(stack, model.model_id, monkeypatch)
    assert copy.tags.get("reviewed") == "yes"
    assert {k: v for k, v in copy.tags.items() if not k.startswith("fedgate.")} == {"team": "fraud", "reviewed": "yes"}


def test_a_deleted_logged_model_is_deleted_in_the_central_store(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = client_for(stack.gateway.url, monkeypatch)
    experiment_id = gateway.create_experiment(f"deleted-{uuid.uuid4().hex[:6]}")
    model = gateway.create_logged_model(experiment_id, name="retired")
    kept = gateway.create_logged_model(experiment_id, name="kept")
    stack.drained()
    copy = central_model(stack, model.model_id, monkeypatch)
    assert copy is not None

    gateway = client_for(stack.gateway.url, monkeypatch)
    gateway.delete_logged_model(model.model_id)
    stack.drained()

    central = client_for(stack.central.url, monkeypatch)
    with pytest.raises(MlflowException) as refused:
        central.get_logged_model(copy.model_id)
    assert refused.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert central_model(stack, model.model_id, monkeypatch) is None
    assert central_model(stack, kept.model_id, monkeypatch) is not None  # the other model of the experiment stays


def test_a_model_recorded_in_a_run_is_recorded_in_the_central_copy_of_the_run(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`runs/log-model` adds the model to the run's `mlflow.log-model.history` tag: the Spark and John Snow Labs
    flavors' `log_model` call it (`MlflowClient._record_logged_model`, which is what is called here)."""
    from mlflow.models import Model

    gateway = client_for(stack.gateway.url, monkeypatch)
    experiment_id = gateway.create_experiment(f"logged-{uuid.uuid4().hex[:6]}")
    run = gateway.create_run(experiment_id)
    model = Model(artifact_path="model", run_id=run.info.run_id)
    model.add_flavor("python_function", loader_module="mlflow.pyfunc.model")
    gateway._record_logged_model(run.info.run_id, model)
    recorded = json.loads(gateway.get_run(run.info.run_id).data.tags["mlflow.log-model.history"])
    assert [entry["run_id"] for entry in recorded] == [run.info.run_id]
    stack.drained()

    central = client_for(stack.central.url, monkeypatch)
    experiments = [e.experiment_id for e in central.search_experiments()]
    [copy] = central.search_runs(experiments, f"tags.`fedgate.source_run_id` = '{run.info.run_id}'")
    history = json.loads(copy.data.tags["mlflow.log-model.history"])
    assert [entry["run_id"] for entry in history] == [copy.info.run_id]  # the central copy of the run, not the run
    assert history[0]["artifact_path"] == "model" and "python_function" in history[0]["flavors"]


# The gateway's database refuses the outbox entries of a logged model's deletions (as when it fails at that moment):
# the store has made the write, the client is answered 503, and the write's note goes to crash recovery.
FAIL_DELETION_ENTRIES = """
CREATE FUNCTION fail_deletion_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.route LIKE 'DELETE /mlflow/logged-models/%' THEN
        RAISE EXCEPTION 'the outbox is failing';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fail_deletion_entry BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION fail_deletion_entry();
"""


def test_a_logged_models_deletions_whose_entries_failed_are_made_in_the_central_copy_by_recovery(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recovery made a logged model's copy level by adding what it lacked: a tag deleted in the workspace store, or
    the model itself deleted there, stayed in the central copy."""
    gateway = client_for(stack.gateway.url, monkeypatch)
    experiment_id = gateway.create_experiment(f"recovered-{uuid.uuid4().hex[:6]}")
    tagged = gateway.create_logged_model(experiment_id, name="tagged", tags={"stage": "candidate", "team": "fraud"})
    retired = gateway.create_logged_model(experiment_id, name="retired")
    stack.drained()
    retired_copy = central_model(stack, retired.model_id, monkeypatch)
    assert retired_copy is not None and central_model(stack, tagged.model_id, monkeypatch) is not None

    asyncio.run(execute(stack.database, FAIL_DELETION_ENTRIES))
    try:
        gateway = client_for(stack.gateway.url, monkeypatch)
        for delete in (
            lambda: gateway.delete_logged_model_tag(tagged.model_id, "stage"),
            lambda: gateway.delete_logged_model(retired.model_id),
        ):
            with pytest.raises(MlflowException) as failed:
                delete()
            assert "503" in str(failed.value) or "TEMPORARILY_UNAVAILABLE" in str(failed.value), failed.value
    finally:
        asyncio.run(
            execute(stack.database, "DROP TRIGGER fail_deletion_entry ON outbox; DROP FUNCTION fail_deletion_entry();")
        )
    assert "stage" not in gateway.get_logged_model(tagged.model_id).tags  # the store made both

    def central_tags() -> dict[str, str]:
        copy = central_model(stack, tagged.model_id, monkeypatch)
        return {k: v for k, v in copy.tags.items() if not k.startswith("fedgate.")}

    until(central_tags, lambda tags: tags == {"team": "fraud"}, "the deleted tag gone from the central copy")
    until(
        lambda: central_model(stack, retired.model_id, monkeypatch),
        lambda found: found is None,
        "the deleted logged model gone from the central store",
    )


def test_a_file_deleted_through_the_artifact_proxy_is_deleted_in_the_central_copy(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    gateway = client_for(stack.gateway.url, monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.gateway.url)
    mlflow.set_tracking_uri(stack.gateway.url)
    experiment_id = gateway.create_experiment(f"files-{uuid.uuid4().hex[:6]}")
    run = gateway.create_run(experiment_id)
    for name in ("kept.txt", "dropped.txt", "old/a.txt", "old/b.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    gateway.log_artifact(run.info.run_id, str(tmp_path / "kept.txt"))
    gateway.log_artifact(run.info.run_id, str(tmp_path / "dropped.txt"))
    gateway.log_artifacts(run.info.run_id, str(tmp_path / "old"), "old")
    stack.drained()
    central = client_for(stack.central.url, monkeypatch)
    experiments = [e.experiment_id for e in central.search_experiments()]
    [copy] = central.search_runs(experiments, f"tags.`fedgate.source_run_id` = '{run.info.run_id}'")
    assert {f.path for f in central.list_artifacts(copy.info.run_id)} == {"kept.txt", "dropped.txt", "old"}

    repository = get_artifact_repository(gateway.get_run(run.info.run_id).info.artifact_uri)
    repository.delete_artifacts("dropped.txt")  # a file
    repository.delete_artifacts("old")  # a folder
    assert {f.path for f in gateway.list_artifacts(run.info.run_id)} == {"kept.txt"}
    stack.drained()

    central = client_for(stack.central.url, monkeypatch)
    assert {f.path for f in central.list_artifacts(copy.info.run_id)} == {"kept.txt"}
