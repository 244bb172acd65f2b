"""A protected model version's files, against a real gateway and a real mlflow store, with the stock MLflow client.

A version's files stay in its source run's or logged model's artifact folder. Once the version is in Staging or
Production, or holds an alias, an artifact write there (upload, deletion, multipart upload, the UI's upload, under any
spelling of the path) needs on the registered model what changing the version needs: an editor of the experiment
(CAN_EDIT) no longer replaces what Production serves, but still writes everywhere else; the model's owner and its
production managers do; when the version leaves its stage or loses its alias, the editor writes again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from requests import HTTPError
from sklearn.linear_model import LogisticRegression

from gateway.devstack import GatewayProcess
from tests.conftest import GATEWAY_ENV, Stack
from tests.support.identity import Admin, Person, unique
from tests.support.waiting import until

pytestmark = pytest.mark.integration

WORKSPACE = "team-a"
WORKSPACE_ID = 1001
TIMEOUT = 60
PREFIXES = ("/api/2.0", "/ajax-api/2.0")
# What the stock client raises for a refused artifact upload (its HTTP artifact repository: requests' HTTPError).
REFUSED = (MlflowException, HTTPError)
# The gateway's mark of a version whose registrant could not write its files (it protects none of them).
SOURCE_READ_ONLY_TAG = "fedgate.source_read_only"


@dataclass(frozen=True)
class Team:
    owner: Person  # creates the experiment and the models: CAN_MANAGE on both
    editor: Person  # CAN_EDIT on the experiment, CAN_READ on the models
    manager: Person  # CAN_MANAGE on the experiment, CAN_READ on the models
    releaser: Person  # CAN_EDIT on the experiment, CAN_MANAGE_PRODUCTION_VERSIONS on the models
    experiment_id: str


@contextlib.contextmanager
def as_user(stack: Stack, who: Person) -> Iterator[MlflowClient]:
    """The stock client, configured as `who` would configure it."""
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_WORKSPACE")}
    os.environ.update(MLFLOW_TRACKING_URI=stack.url, MLFLOW_TRACKING_TOKEN=who.token, MLFLOW_WORKSPACE=WORKSPACE)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    mlflow.set_tracking_uri(stack.url)
    mlflow.set_workspace(WORKSPACE)
    try:
        yield MlflowClient()
    finally:
        if mlflow.active_run():
            mlflow.end_run()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        mlflow.set_workspace(None)


def api(stack: Stack, who: Person, method: str, path: str, **kw: Any) -> Any:
    answer = who.http(stack, WORKSPACE).request(method, f"{stack.url}/api/2.0/mlflow/{path}", timeout=TIMEOUT, **kw)
    assert answer.status_code == 200, answer.text
    return answer.json()


def grant_model(stack: Stack, team: Team, name: str) -> None:
    model_id = api(stack, team.owner, "GET", "databricks/registered-models/get", params={"name": name})[
        "registered_model_databricks"
    ]["id"]
    for person, level in (
        (team.editor, "CAN_READ"),
        (team.manager, "CAN_READ"),
        (team.releaser, "CAN_MANAGE_PRODUCTION_VERSIONS"),
    ):
        Admin.of(stack).grant(f"registered-models/{model_id}", level, user=person.name, workspace=WORKSPACE)


def registered_run(stack: Stack, team: Team, name: str) -> str:
    """The proxy path of a new run of the owner's whose `model/weights.txt` ("v1") is version 1 of the new registered
    model `name`, granted as `grant_model` does."""
    with as_user(stack, team.owner) as client:
        run_id = client.create_run(team.experiment_id).info.run_id
        client.log_text(run_id, "v1", "model/weights.txt")
        client.create_registered_model(name)
        client.create_model_version(name, f"runs:/{run_id}/model", run_id)
        run_root = artifact_root(client.get_run(run_id).info.artifact_uri)
    grant_model(stack, team, name)
    return run_root


def transition(stack: Stack, who: Person, name: str, version: str, stage: str) -> None:
    body = {"name": name, "version": version, "stage": stage, "archive_existing_versions": False}
    api(stack, who, "POST", "model-versions/transition-stage", json=body)


def artifact_root(uri: str) -> str:
    """The proxy path of an `mlflow-artifacts:` location."""
    assert uri.startswith("mlflow-artifacts:"), uri
    return uri.removeprefix("mlflow-artifacts:").lstrip("/")


def put(stack: Stack, who: Person, path: str, prefix: str = "/api/2.0", data: bytes = b"changed") -> Any:
    url = f"{stack.url}{prefix}/mlflow-artifacts/artifacts/{path}"
    return who.http(stack, WORKSPACE).put(url, data=data, timeout=TIMEOUT)


def refused(answer: Any, name: str, version: str) -> None:
    assert answer.status_code == 403, answer.text
    error = answer.json()
    assert error["error_code"] == "PERMISSION_DENIED", error
    assert f"Version {version} of registered model '{name}'" in error["message"], error


def file_of(stack: Stack, path: str) -> bytes:
    answer = stack.http(WORKSPACE).get(f"{stack.url}/api/2.0/mlflow-artifacts/artifacts/{path}", timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    return bytes(answer.content)


@pytest.fixture(scope="module")
def team(stack: Stack) -> Team:
    admin = Admin.of(stack)
    people = [admin.person(f"{unique(role)}@example.com") for role in ("owner", "editor", "manager", "releaser")]
    for person in people:
        admin.grant(f"workspaces/{WORKSPACE}", "CAN_USE", user=person.name)
    owner, editor, manager, releaser = people
    experiment_id = api(stack, owner, "POST", "experiments/create", json={"name": unique("registry-files")})[
        "experiment_id"
    ]
    for person, level in ((editor, "CAN_EDIT"), (manager, "CAN_MANAGE"), (releaser, "CAN_EDIT")):
        admin.grant(f"experiments/{experiment_id}", level, user=person.name, workspace=WORKSPACE)
    return Team(owner, editor, manager, releaser, experiment_id)


def _train() -> LogisticRegression:
    features = np.array([[0.0], [1.0], [2.0], [3.0]])
    return LogisticRegression().fit(features, np.array([0, 0, 1, 1]))


def test_production_model_files_are_the_registry_s(stack: Stack, team: Team, tmp_path: Path) -> None:
    name = unique("files-prod")
    with as_user(stack, team.owner) as client:
        mlflow.set_experiment(experiment_id=team.experiment_id)
        with mlflow.start_run() as run:
            info = mlflow.sklearn.log_model(_train(), name="model", registered_model_name=name)
        other_run = client.create_run(team.experiment_id).info.run_id
        logged = client.get_logged_model(info.model_id)
    grant_model(stack, team, name)
    root = artifact_root(logged.artifact_location)
    original = file_of(stack, f"{root}/MLmodel")
    transition(stack, team.owner, name, "1", "Production")

    local = tmp_path / "MLmodel"
    local.write_text("flavors: {}\n")
    # The stock client's upload into the logged model, as the experiment's editor: refused, the files unchanged.
    with as_user(stack, team.editor) as client, pytest.raises(REFUSED) as caught:
        client.log_model_artifact(info.model_id, str(local))
    assert "PERMISSION_DENIED" in str(caught.value), caught.value
    assert f"Version 1 of registered model '{name}' is in Production" in str(caught.value)
    assert file_of(stack, f"{root}/MLmodel") == original

    # Every spelling of the same bytes, every write route.
    workspace_root = root if root.startswith("workspaces/") else f"workspaces/{WORKSPACE}/{root}"
    for prefix in PREFIXES:
        refused(put(stack, team.editor, f"{root}/MLmodel", prefix), name, "1")
        refused(put(stack, team.editor, f"{workspace_root}/model.pkl", prefix), name, "1")
        refused(put(stack, team.editor, f"{root}/new-file.txt", prefix), name, "1")
    upper = root.replace("/models/", "/MODELS/")
    assert put(stack, team.editor, f"{upper}/MLmodel").status_code == 403
    assert put(stack, team.editor, f"{root.replace('/', '//', 1)}/MLmodel").status_code == 400
    http = team.editor.http(stack, WORKSPACE)
    for route in ("mpu/create", "mpu/complete", "mpu/abort"):
        answer = http.post(f"{stack.url}/api/2.0/mlflow-artifacts/{route}/{root}/model.pkl", json={}, timeout=TIMEOUT)
        refused(answer, name, "1")
    # Deleting them, or a folder above them, asks the same of whoever manages the experiment.
    managing = team.manager.http(stack, WORKSPACE)
    experiment_folder = root.split("/models/")[0]
    for path in (f"{root}/MLmodel", root, experiment_folder, f"{experiment_folder}/models"):
        refused(managing.delete(f"{stack.url}/api/2.0/mlflow-artifacts/artifacts/{path}", timeout=TIMEOUT), name, "1")
    presigned = http.post(
        f"{stack.url}/api/2.0/mlflow/artifacts/presigned-upload-url",
        json={"model_id": info.model_id, "path": "MLmodel"},
        timeout=TIMEOUT,
    )
    refused(presigned, name, "1")
    assert file_of(stack, f"{root}/MLmodel") == original

    # The editor still writes everywhere else: the source run's own files, another run.
    with as_user(stack, team.editor) as client:
        client.log_text(run.info.run_id, "evaluation", "eval/notes.txt")
        client.log_text(other_run, "scratch", "notes.txt")

    # Whoever may change the version may change its files: its production manager, its owner.
    assert put(stack, team.releaser, f"{root}/release-notes.txt").status_code == 200
    with as_user(stack, team.owner) as client:
        client.log_model_artifact(info.model_id, str(local))
    assert file_of(stack, f"{root}/MLmodel") == b"flavors: {}\n"

    # Out of Production, the version's files are the experiment's again.
    transition(stack, team.owner, name, "1", "Archived")
    assert put(stack, team.editor, f"{root}/MLmodel", data=original).status_code == 200


def test_staging_and_aliases_protect_a_run_s_files(stack: Stack, team: Team, tmp_path: Path) -> None:
    name = unique("files-run")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(b"v1")
    with as_user(stack, team.owner) as client:
        run_id = client.create_run(team.experiment_id).info.run_id
        client.log_artifacts(run_id, str(model_dir), "model")
        client.create_registered_model(name)
        client.create_model_version(name, f"runs:/{run_id}/model", run_id)
        run_root = artifact_root(client.get_run(run_id).info.artifact_uri)
    grant_model(stack, team, name)
    (tmp_path / "weights.bin").write_bytes(b"tampered")

    # An alias: moving it asks CAN_EDIT on the model, which the experiment's editor does not hold.
    with as_user(stack, team.owner) as client:
        client.set_registered_model_alias(name, "candidate", "1")
    with as_user(stack, team.editor) as client:
        with pytest.raises(REFUSED) as caught:
            client.log_artifact(run_id, str(tmp_path / "weights.bin"), "model")
        assert f"Version 1 of registered model '{name}' holds the alias 'candidate'" in str(caught.value)
        client.log_artifact(run_id, str(tmp_path / "weights.bin"), "evaluation")  # beside the model: allowed
    ui_upload = team.editor.http(stack, WORKSPACE).post(
        f"{stack.url}/ajax-api/2.0/mlflow/upload-artifact",
        params={"run_uuid": run_id, "path": "model/weights.bin"},
        data=b"tampered",
        timeout=TIMEOUT,
    )
    refused(ui_upload, name, "1")
    assert file_of(stack, f"{run_root}/model/weights.bin") == b"v1"
    with as_user(stack, team.owner) as client:
        client.delete_registered_model_alias(name, "candidate")

    # Staging: CAN_MANAGE_STAGING_VERSIONS, which the production manager holds and the editor does not.
    transition(stack, team.owner, name, "1", "Staging")
    refused(put(stack, team.editor, f"{run_root}/model/weights.bin"), name, "1")
    assert put(stack, team.releaser, f"{run_root}/model/extra.txt").status_code == 200
    transition(stack, team.owner, name, "1", "None")
    with as_user(stack, team.editor) as client:
        client.log_artifact(run_id, str(tmp_path / "weights.bin"), "model")
    assert file_of(stack, f"{run_root}/model/weights.bin") == b"tampered"


async def test_versions_protected_before_the_gateway_kept_them(stack: Stack, team: Team) -> None:
    """A version moved into Production before the gateway kept where protected files lie (or on the store directly)
    is found when the workspace is read whole: as after an upgrade, with no record of a scan."""
    name = unique("files-before")
    run_root = registered_run(stack, team, name)
    store = stack.stores["a"]
    moved = (
        Admin.of(stack)
        .http()
        .post(
            f"{store.url}/api/2.0/mlflow/model-versions/transition-stage",
            json={"name": name, "version": "1", "stage": "Production", "archive_existing_versions": False},
            timeout=TIMEOUT,
        )
    )
    assert moved.status_code == 200, moved.text
    connection = await asyncpg.connect(stack.database_url)
    try:
        # As a database before the migration that keeps them: no record that the workspace's store was read (and
        # the workers told so, as docs/registry.md tells an operator to).
        await connection.execute(
            "DO $$ BEGIN IF to_regclass('registry_protection_scans') IS NOT NULL THEN "
            f"DELETE FROM registry_protection_scans WHERE workspace_id = {WORKSPACE_ID}; "
            f"PERFORM pg_notify('fedgate_registry_sources', '{WORKSPACE_ID}'); END IF; END $$"
        )
    finally:
        await connection.close()
    refused(put(stack, team.editor, f"{run_root}/model/weights.txt"), name, "1")


def test_another_replica_follows_a_promotion(stack: Stack, team: Team, tmp_path: Path) -> None:
    """A second gateway process on the same database: it kept the workspace's protected files while the version
    was in None, and learns of its move into Production (through the first process) by NOTIFY."""
    name = unique("files-replica")
    run_root = registered_run(stack, team, name)
    replica = GatewayProcess(stack.workdir / "fedgate.toml", GATEWAY_ENV, log_path=tmp_path / "replica.log").start()
    try:
        url = f"{replica.url}/api/2.0/mlflow-artifacts/artifacts/{run_root}/model/weights.txt"
        editor = team.editor.http(stack, WORKSPACE)
        assert editor.put(url, data=b"v2", timeout=TIMEOUT).status_code == 200  # kept by the replica from here
        transition(stack, team.owner, name, "1", "Production")  # through the first process
        status = until(
            lambda: editor.put(url, data=b"v3", timeout=TIMEOUT).status_code,
            lambda code: code != 200,
            "the replica refusing the editor's write",
        )
        assert status == 403
    finally:
        replica.stop()


def test_a_reader_s_version_does_not_freeze_the_files_it_was_made_from(stack: Stack, team: Team) -> None:
    """Registering a version asks CAN_READ on what it is made from (as MLflow and Databricks ask), but only someone
    who may write those files (CAN_EDIT on their experiment) makes them a protected version's. Before, a reader of
    the owner's run registered it in a model of their own, moved it into Production and gave it a protected alias:
    the run's owner and its editors then needed CAN_MANAGE_PRODUCTION_VERSIONS on a model they could not even see to
    write or delete the run's files."""
    admin = Admin.of(stack)
    reader = admin.person(f"{unique('reader')}@example.com")
    admin.grant(f"workspaces/{WORKSPACE}", "CAN_USE", user=reader.name)
    admin.grant(f"experiments/{team.experiment_id}", "CAN_READ", user=reader.name, workspace=WORKSPACE)
    owned = unique("files-owned")
    with as_user(stack, team.owner) as client:
        run_id = client.create_run(team.experiment_id).info.run_id
        client.log_text(run_id, "v1", "model/weights.txt")
        client.create_registered_model(owned)
        client.create_model_version(owned, f"runs:/{run_id}/model", run_id)
        run_root = artifact_root(client.get_run(run_id).info.artifact_uri)
    grant_model(stack, team, owned)
    owned_id = api(stack, team.owner, "GET", "databricks/registered-models/get", params={"name": owned})[
        "registered_model_databricks"
    ]["id"]
    admin.grant(f"registered-models/{owned_id}", "CAN_READ", user=reader.name, workspace=WORKSPACE)

    theirs = unique("files-theirs")
    with as_user(stack, reader) as client:
        client.create_registered_model(theirs)
        made = client.create_model_version(theirs, f"runs:/{run_id}/model", run_id)
        client.transition_model_version_stage(theirs, made.version, "Production")
        copied = client.copy_model_version(f"models:/{owned}/1", theirs)  # the owner's version, copied
        client.transition_model_version_stage(theirs, copied.version, "Staging")
        client.set_registered_model_alias(theirs, "champion", copied.version)
    api(stack, reader, "PATCH", "registry-settings/update", json={"name": theirs, "protected_aliases": ["champion"]})

    # The run's files are still its experiment's: its editor and its owner write them.
    assert put(stack, team.editor, f"{run_root}/model/weights.txt", data=b"v2").status_code == 200
    with as_user(stack, team.owner) as client:
        client.log_text(run_id, "v3", "model/weights.txt")
    assert file_of(stack, f"{run_root}/model/weights.txt") == b"v3"

    # Both versions carry the gateway's mark of it, which no one else writes or removes.
    with as_user(stack, reader) as client:
        for version in (made.version, copied.version):
            assert client.get_model_version(theirs, version).tags == {SOURCE_READ_ONLY_TAG: "true"}
        assert SOURCE_READ_ONLY_TAG not in client.get_model_version(owned, "1").tags
    http = reader.http(stack, WORKSPACE)
    for key in (SOURCE_READ_ONLY_TAG, SOURCE_READ_ONLY_TAG.upper()):
        body = {"name": theirs, "version": made.version, "key": key}
        answer = http.delete(f"{stack.url}/api/2.0/mlflow/model-versions/delete-tag", json=body, timeout=TIMEOUT)
        assert answer.status_code == 403, answer.text
    answer = team.owner.http(stack, WORKSPACE).post(
        f"{stack.url}/api/2.0/mlflow/model-versions/set-tag",
        json={"name": owned, "version": "1", "key": SOURCE_READ_ONLY_TAG, "value": "true"},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 403, answer.text

    # The owner's own version of the same files, once in Production, protects them as before.
    transition(stack, team.owner, owned, "1", "Production")
    refused(put(stack, team.editor, f"{run_root}/model/weights.txt"), owned, "1")
    transition(stack, team.owner, owned, "1", "Archived")
    assert put(stack, team.editor, f"{run_root}/model/weights.txt", data=b"v4").status_code == 200
