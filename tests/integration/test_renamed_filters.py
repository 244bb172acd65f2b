"""Search filters of a workspace its store knows under another name compare artifact URIs as the caller sees them.

team-c is `upstream-c` on the central store: every answer names `mlflow-artifacts:/workspaces/team-c/...`, so a
filter naming such a URI (a run's artifact_uri, a model version's source, a trace's mlflow.artifactLocation tag)
finds what it names, and one naming the store's own name finds nothing, as nothing the caller sees carries it."""

from __future__ import annotations

import uuid

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from tests.conftest import Stack

pytestmark = pytest.mark.integration

SHOWN = "mlflow-artifacts:/workspaces/team-c/"
STORED = "mlflow-artifacts:/workspaces/upstream-c/"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _runs(client: MlflowClient, experiment_id: str, filter_string: str) -> list[str]:
    return [run.info.run_id for run in client.search_runs([experiment_id], filter_string=filter_string)]


def test_a_runs_artifact_uri_filter_names_the_uri_the_caller_sees(mlflow_env: Stack) -> None:
    mlflow.set_workspace("team-c")
    client = MlflowClient()
    experiment_id = client.create_experiment(unique("uri-filter"))
    run = client.create_run(experiment_id)
    uri = run.info.artifact_uri
    assert uri.startswith(f"{SHOWN}{experiment_id}/")
    found = [run.info.run_id]
    assert _runs(client, experiment_id, f"attributes.artifact_uri = '{uri}'") == found
    assert _runs(client, experiment_id, f"artifact_uri LIKE '{SHOWN}{experiment_id}/%'") == found
    assert _runs(client, experiment_id, f'attr.`artifact_uri` ILIKE "{SHOWN.upper()}%"') == found
    assert _runs(client, experiment_id, f"run.artifact_uri != '{uri}'") == []
    # A pattern that reads no part of the workspace's name is sent as it came.
    assert _runs(client, experiment_id, "attributes.artifact_uri LIKE '%/artifacts'") == found
    # The store's own name is never shown: a filter naming it matches nothing (the store would match the run).
    stored = uri.replace(SHOWN, STORED)
    assert _runs(client, experiment_id, f"attributes.artifact_uri = '{stored}'") == []
    assert _runs(client, experiment_id, f"attributes.artifact_uri LIKE '{STORED}%'") == []
    assert _runs(client, experiment_id, f"attributes.artifact_uri != '{stored}'") == found
    # Params are user data: a param holding a URI is compared as it was logged.
    client.log_param(run.info.run_id, "where", uri)
    assert _runs(client, experiment_id, f"params.where = '{uri}'") == found


def test_a_pattern_that_reads_the_workspaces_name_elsewhere_is_refused(mlflow_env: Stack) -> None:
    """`%team-c%` matches every URI the caller sees; no pattern over the store's URIs matches exactly those."""
    mlflow.set_workspace("team-c")
    experiment_id = MlflowClient().create_experiment(unique("uri-pattern"))
    http = mlflow_env.http("team-c")
    answer = http.post(
        f"{mlflow_env.url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment_id], "filter": "attributes.artifact_uri LIKE '%team-c%'"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "upstream-c" not in answer.text
    traces = http.post(
        f"{mlflow_env.url}/api/3.0/mlflow/traces/search",
        json={
            "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}],
            "filter": "tags.`mlflow.artifactLocation` RLIKE 'team-c'",
        },
    )
    assert traces.status_code == 400, traces.text
    assert traces.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_a_model_versions_source_filter_names_the_uri_the_caller_sees(mlflow_env: Stack) -> None:
    mlflow.set_workspace("team-c")
    client = MlflowClient()
    experiment_id = client.create_experiment(unique("source-filter"))
    run = client.create_run(experiment_id)
    model = unique("source-model")
    client.create_registered_model(model)
    source = f"{run.info.artifact_uri}/model"
    client.create_model_version(model, source, run_id=run.info.run_id)
    assert client.get_model_version(model, "1").source == source

    def versions(filter_string: str) -> list[str]:
        return [v.version for v in client.search_model_versions(filter_string)]

    assert versions(f"source_path = '{source}'") == ["1"]
    assert versions(f"name = '{model}' AND source_path LIKE '{SHOWN}{experiment_id}/%'") == ["1"]
    assert versions(f"name = '{model}' AND source_path = '{source.replace(SHOWN, STORED)}'") == []
    # The account scope asks each workspace with the filter as the workspace shows its versions.
    mlflow.set_workspace("account")
    found = MlflowClient().search_model_versions(f"name = 'team-c.{model}' AND source_path = '{source}'")
    assert [(v.name, v.version, v.source) for v in found] == [(f"team-c.{model}", "1", source)]


def test_a_trace_search_by_its_artifact_location_names_the_uri_the_caller_sees(mlflow_env: Stack) -> None:
    mlflow.set_workspace("team-c")
    client = MlflowClient()
    experiment_id = client.create_experiment(unique("trace-filter"))
    store = client._tracking_client.store
    started = store.deprecated_start_trace_v2(experiment_id, 1_730_000_000_000, {}, {})
    location = started.tags["mlflow.artifactLocation"]
    assert location.startswith(f"{SHOWN}{experiment_id}/")
    http = mlflow_env.http("team-c")
    trace_id = started.request_id

    def v3(filter_string: str) -> list[str]:
        answer = http.post(
            f"{mlflow_env.url}/api/3.0/mlflow/traces/search",
            json={
                "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}],
                "filter": filter_string,
            },
        )
        assert answer.status_code == 200, answer.text
        return [trace["trace_id"] for trace in answer.json().get("traces", [])]

    def v2(filter_string: str) -> list[str]:
        answer = http.get(
            f"{mlflow_env.url}/api/2.0/mlflow/traces",
            params={"experiment_ids": experiment_id, "filter": filter_string},
        )
        assert answer.status_code == 200, answer.text
        return [trace["request_id"] for trace in answer.json().get("traces", [])]

    for search in (v3, v2):
        assert search(f"tags.`mlflow.artifactLocation` = '{location}'") == [trace_id]
        assert search(f"tag.`mlflow.artifactLocation` LIKE '{SHOWN}{experiment_id}/traces/%'") == [trace_id]
        assert search(f"tags.`mlflow.artifactLocation` RLIKE '^{SHOWN}{experiment_id}/'") == [trace_id]
        assert search(f"tags.`mlflow.artifactLocation` = '{location.replace(SHOWN, STORED)}'") == []


def test_a_trace_metrics_query_by_its_artifact_location_names_the_uri_the_caller_sees(mlflow_env: Stack) -> None:
    """MLflow 3's trace metrics (the experiment page's charts) take a list of filters, `trace.tag.<key> = '...'`."""
    from mlflow.entities.trace_metrics import AggregationType, MetricAggregation, MetricViewType

    mlflow.set_workspace("team-c")
    client = MlflowClient()
    experiment_id = client.create_experiment(unique("trace-metrics"))
    store = client._tracking_client.store
    for timestamp in (1_730_000_000_000, 1_730_000_001_000):
        started = store.deprecated_start_trace_v2(experiment_id, timestamp, {}, {})
    location = started.tags["mlflow.artifactLocation"]
    assert location.startswith(f"{SHOWN}{experiment_id}/")

    def count(*filters: str) -> int:
        points = store.query_trace_metrics(
            experiment_ids=[experiment_id],
            view_type=MetricViewType.TRACES,
            metric_name="trace_count",
            aggregations=[MetricAggregation(AggregationType.COUNT)],
            filters=list(filters),
        )
        return int(sum(point.values.get("COUNT", 0) for point in points))

    assert count() == 2
    assert count(f"trace.tag.`mlflow.artifactLocation` = '{location}'") == 1
    assert count("trace.status = 'IN_PROGRESS'", f"trace.tag.mlflow.artifactLocation = '{location}'") == 1
    assert count(f"trace.tag.`mlflow.artifactLocation` = '{location.replace(SHOWN, STORED)}'") == 0


def test_the_web_uis_graphql_run_search_filters_on_the_uri_the_caller_sees(mlflow_env: Stack) -> None:
    mlflow.set_workspace("team-c")
    client = MlflowClient()
    experiment_id = client.create_experiment(unique("graphql-filter"))
    run = client.create_run(experiment_id)
    query = "query Q($data: MlflowSearchRunsInput!) { mlflowSearchRuns(input: $data) { runs { info { runUuid } } } }"

    def search(filter_string: str) -> list[str]:
        data = {"experimentIds": [experiment_id], "filter": filter_string}
        answer = mlflow_env.http("team-c").post(
            f"{mlflow_env.url}/graphql", json={"query": query, "variables": {"data": data}}
        )
        assert answer.status_code == 200, answer.text
        return [r["info"]["runUuid"] for r in answer.json()["data"]["mlflowSearchRuns"]["runs"] or []]

    assert search(f"attributes.artifact_uri = '{run.info.artifact_uri}'") == [run.info.run_id]
    assert search(f"attributes.artifact_uri LIKE '{STORED}%'") == []


def test_a_filter_naming_another_workspace_never_matches_through_the_store_name_it_shares(mlflow_env: Stack) -> None:
    """Workspace `x` is kept on the store under the name workspace `y` has in the gateway (y is kept under a third
    name). A filter in x naming y's URIs names x's store name: it must match none of x's runs, which x shows under
    its own name; one naming x's URIs finds them; and in y the same filter finds y's."""
    central = mlflow_env.stores["central"].url
    x, y, z = unique("fx"), unique("fy"), unique("fz")
    for upstream in (y, z):
        made = requests.post(f"{central}/api/3.0/mlflow/workspaces", json={"name": upstream}, timeout=30)
        assert made.status_code == 201, made.text
    admin, base = mlflow_env.http(), f"{mlflow_env.url}/api/3.0/mlflow/workspaces"
    for name, upstream in ((x, y), (y, z)):
        linked = admin.post(base, json={"name": name, "store": "central", "upstream_workspace": upstream})
        assert linked.status_code == 201, linked.text
    try:
        runs = {}
        for name in (x, y):
            mlflow.set_workspace(name)
            client = MlflowClient()
            experiment_id = client.create_experiment(unique("shared-name"))
            runs[name] = (client, experiment_id, client.create_run(experiment_id).info)
        for name in (x, y):
            client, experiment_id, info = runs[name]
            mlflow.set_workspace(name)
            assert info.artifact_uri.startswith(f"mlflow-artifacts:/workspaces/{name}/{experiment_id}/")
            other = y if name == x else x
            assert _runs(client, experiment_id, f"artifact_uri LIKE 'mlflow-artifacts:/workspaces/{name}/%'") == [
                info.run_id
            ]
            assert _runs(client, experiment_id, f"artifact_uri LIKE 'mlflow-artifacts:/workspaces/{other}/%'") == []
    finally:
        for name in (x, y):
            assert admin.delete(f"{base}/{name}").status_code == 204
