"""Model registry, log_model/load_model and artifacts through the gateway with the stock client."""

from __future__ import annotations

import uuid
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities.trace_status import TraceStatus
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression

from tests.conftest import Stack

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _train() -> tuple[LogisticRegression, np.ndarray]:
    rng = np.random.default_rng(0)
    features = rng.random((40, 3))
    labels = (features[:, 0] > 0.5).astype(int)
    return LogisticRegression().fit(features, labels), features


def test_log_model_registers_versions_and_loads_back(mlflow_env: Stack) -> None:
    mlflow.set_workspace("team-a")
    mlflow.set_experiment(unique("models"))
    model, features = _train()
    name = unique("clf")
    versions = []
    for _ in range(2):
        with mlflow.start_run():
            mlflow.log_param("C", 1.0)
            info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
            versions.append(info.registered_model_version)
    assert [str(v) for v in versions] == ["1", "2"]

    loaded = mlflow.pyfunc.load_model(f"models:/{name}/1")
    assert list(loaded.predict(features[:5])) == list(model.predict(features[:5]))
    sk_loaded = mlflow.sklearn.load_model(f"models:/{name}/2")
    assert list(sk_loaded.predict(features[:5])) == list(model.predict(features[:5]))

    # The version is the store's: team-b cannot see the model at all.
    mlflow.set_workspace("team-b")
    with pytest.raises(MlflowException) as excinfo:
        MlflowClient().get_registered_model(name)
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_registry_aliases_tags_search_and_stages(mlflow_env: Stack) -> None:
    mlflow.set_workspace("team-a")
    client = MlflowClient()
    mlflow.set_experiment(unique("registry"))
    name = unique("reg")
    client.create_registered_model(name, tags={"domain": "churn"}, description="first")
    with mlflow.start_run() as run:
        mlflow.log_text("weights", "model/weights.txt")
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    assert version.version == "1"

    client.set_registered_model_alias(name, "champion", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    client.set_model_version_tag(name, "1", "validated", "yes")
    client.set_registered_model_tag(name, "owner", "team-a")
    client.update_registered_model(name, description="second")
    client.update_model_version(name, "1", description="v1")

    model = client.get_registered_model(name)
    assert model.description == "second"
    assert model.tags == {"domain": "churn", "owner": "team-a"}
    assert model.aliases == {"champion": "1"}
    assert client.get_model_version(name, "1").tags == {"validated": "yes"}

    found = client.search_registered_models(filter_string=f"name = '{name}'")
    assert [m.name for m in found] == [name]
    versions = client.search_model_versions(f"name = '{name}'")
    assert [v.version for v in versions] == ["1"]

    staged = client.transition_model_version_stage(name, "1", "Staging")
    assert staged.current_stage == "Staging"
    assert [v.version for v in client.get_latest_versions(name, stages=["Staging"])] == ["1"]
    uri = client.get_model_version_download_uri(name, "1")
    assert uri == f"runs:/{run.info.run_id}/model"

    client.delete_registered_model_alias(name, "champion")
    client.delete_model_version_tag(name, "1", "validated")
    client.delete_registered_model_tag(name, "owner")
    renamed = unique("renamed")
    client.rename_registered_model(name, renamed)
    assert client.get_registered_model(renamed).aliases == {}
    client.delete_model_version(renamed, "1")
    client.delete_registered_model(renamed)
    assert client.search_registered_models(filter_string=f"name = '{renamed}'") == []


def test_artifacts_upload_list_and_download(mlflow_env: Stack, tmp_path: Path) -> None:
    mlflow.set_workspace("team-b")
    mlflow.set_experiment(unique("artifacts"))
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("alpha")
    (source / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    single = tmp_path / "single.json"
    single.write_text('{"k": 1}')
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(single))
        mlflow.log_artifacts(str(source), artifact_path="bundle")
    client = MlflowClient()
    top = sorted(f.path for f in client.list_artifacts(run.info.run_id))
    assert top == ["bundle", "single.json"]
    listed = {f.path: (f.is_dir, f.file_size) for f in client.list_artifacts(run.info.run_id, "bundle")}
    assert listed == {"bundle/a.txt": (False, 5), "bundle/sub": (True, None)}

    out = Path(client.download_artifacts(run.info.run_id, "bundle", str(tmp_path / "out")))
    assert (out / "a.txt").read_text() == "alpha"
    assert (out / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 100
    assert mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/single.json") == {"k": 1}


def test_upstream_workspace_is_renamed_in_artifact_uris(mlflow_env: Stack, tmp_path: Path) -> None:
    """team-c is `upstream-c` on the central store: the client never sees the upstream name."""
    mlflow.set_workspace("team-c")
    experiment = mlflow.set_experiment(unique("renamed-ws"))
    assert experiment.artifact_location.startswith("mlflow-artifacts:/workspaces/team-c/")
    (tmp_path / "f.txt").write_text("through a renamed workspace")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "f.txt"))
    fetched = MlflowClient().get_run(run.info.run_id)
    assert fetched.info.artifact_uri.startswith("mlflow-artifacts:/workspaces/team-c/")
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/f.txt") == "through a renamed workspace"

    # On the store itself, the experiment lives in `upstream-c`.
    direct = mlflow_env.http("upstream-c").get(
        f"{mlflow_env.stores['central'].url}/api/2.0/mlflow/experiments/get",
        params={"experiment_id": experiment.experiment_id},
    )
    assert direct.json()["experiment"]["artifact_location"].startswith("mlflow-artifacts:/workspaces/upstream-c/")
    # An artifact path naming another workspace than the caller's is refused.
    response = mlflow_env.http("team-c").get(
        f"{mlflow_env.url}/api/2.0/mlflow-artifacts/artifacts/workspaces/research/1/x/artifacts/f.txt"
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_a_v2_trace_info_names_the_renamed_workspace_in_its_artifact_location(mlflow_env: Stack) -> None:
    """A v2 trace info holds its tags as a key/value list: the store's `mlflow.artifactLocation` in it names team-c,
    not upstream-c, in every v2 trace answer (the stock client's start and end, get-info and search by REST)."""
    mlflow.set_workspace("team-c")
    client = MlflowClient()
    experiment_id = client.create_experiment(unique("v2-traces"))
    store = client._tracking_client.store
    started = store.deprecated_start_trace_v2(experiment_id, 1_730_000_000_000, {}, {})
    ended = store.deprecated_end_trace_v2(started.request_id, 1_730_000_001_000, TraceStatus.OK, {}, {})
    location = started.tags["mlflow.artifactLocation"]
    assert location == f"mlflow-artifacts:/workspaces/team-c/{experiment_id}/traces/{started.request_id}/artifacts"
    assert ended.tags["mlflow.artifactLocation"] == location
    http = mlflow_env.http("team-c")
    info = http.get(f"{mlflow_env.url}/api/2.0/mlflow/traces/{started.request_id}/info").json()["trace_info"]
    found = http.get(f"{mlflow_env.url}/api/2.0/mlflow/traces", params={"experiment_ids": experiment_id}).json()
    for trace_info in (info, *found["traces"]):
        assert {"key": "mlflow.artifactLocation", "value": location} in trace_info["tags"]
    # The v3 shape of the same trace, as the stock client reads it, agrees; the store itself names upstream-c.
    assert store.get_trace_info(started.request_id).tags["mlflow.artifactLocation"] == location
    direct = mlflow_env.http("upstream-c").get(
        f"{mlflow_env.stores['central'].url}/api/2.0/mlflow/traces/{started.request_id}/info"
    )
    assert {"key": "mlflow.artifactLocation", "value": location.replace("/team-c/", "/upstream-c/")} in direct.json()[
        "trace_info"
    ]["tags"]


def test_the_web_uis_graphql_answers_name_the_renamed_workspace_in_their_artifact_uris(mlflow_env: Stack) -> None:
    """GraphQL answers (the MLflow 3.17 web UI's run, runs and experiment pages) spell fields in camelCase: a run's
    `artifactUri` and an experiment's `artifactLocation` name team-c, as the REST answers do, never upstream-c
    (the UI shows them and lists, downloads and uploads artifacts under them)."""
    mlflow.set_workspace("team-c")
    client = MlflowClient()
    experiment_id = client.create_experiment(unique("graphql-renamed"))
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    model = unique("graphql-model")
    client.create_registered_model(model)
    client.create_model_version(model, f"{run.info.artifact_uri}/model", run_id=run_id)
    prefix = f"mlflow-artifacts:/workspaces/team-c/{experiment_id}"
    assert run.info.artifact_uri.startswith(prefix)
    http = mlflow_env.http("team-c")
    run_selection = (
        "info { runUuid experimentId artifactUri } experiment { experimentId artifactLocation } "
        "modelVersions { name version source }"
    )
    queries = {
        "mlflowGetRun": ("MlflowGetRunInput", {"runId": run_id}, f"run {{ {run_selection} }}"),
        "mlflowSearchRuns": (
            "MlflowSearchRunsInput",
            {"experimentIds": [experiment_id]},
            f"runs {{ {run_selection} }}",
        ),
        "mlflowGetExperiment": (
            "MlflowGetExperimentInput",
            {"experimentId": experiment_id},
            "experiment { experimentId artifactLocation }",
        ),
    }
    answers = {}
    for field, (input_type, given, selection) in queries.items():
        query = f"query Q($data: {input_type}!) {{ {field}(input: $data) {{ {selection} }} }}"
        answer = http.post(f"{mlflow_env.url}/graphql", json={"query": query, "variables": {"data": given}})
        assert answer.status_code == 200, answer.text
        assert "upstream-c" not in answer.text, answer.text
        answers[field] = answer.json()["data"][field]
    got = answers["mlflowGetRun"]["run"]
    assert got["info"]["artifactUri"] == run.info.artifact_uri
    assert got["experiment"]["artifactLocation"] == prefix
    assert got["modelVersions"] == [{"name": model, "version": "1", "source": f"{run.info.artifact_uri}/model"}]
    assert answers["mlflowSearchRuns"]["runs"] == [got]
    assert answers["mlflowGetExperiment"]["experiment"] == {"experimentId": experiment_id, "artifactLocation": prefix}
    # The store itself answers with its own name: the gateway renamed them.
    query = "query Q($data: MlflowGetRunInput!) { mlflowGetRun(input: $data) { run { info { artifactUri } } } }"
    direct = mlflow_env.http("upstream-c").post(
        f"{mlflow_env.stores['central'].url}/graphql", json={"query": query, "variables": {"data": {"runId": run_id}}}
    )
    assert direct.json()["data"]["mlflowGetRun"]["run"]["info"]["artifactUri"].startswith(
        f"mlflow-artifacts:/workspaces/upstream-c/{experiment_id}"
    )


def test_central_mode_workspace_uses_the_central_store(mlflow_env: Stack) -> None:
    mlflow.set_workspace("research")
    name = unique("central-exp")
    experiment_id = MlflowClient().create_experiment(name)
    direct = mlflow_env.http("research").get(
        f"{mlflow_env.stores['central'].url}/api/2.0/mlflow/experiments/get",
        params={"experiment_id": experiment_id},
    )
    assert direct.status_code == 200 and direct.json()["experiment"]["name"] == name
    mlflow.set_workspace("team-c")  # same store, other upstream workspace: invisible
    assert MlflowClient().get_experiment_by_name(name) is None
