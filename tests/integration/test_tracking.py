"""The stock mlflow client drives tracking through the gateway exactly as it would a single server."""

from __future__ import annotations

import time
import uuid

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Feedback, Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

from tests.conftest import Stack
from tests.support.identity import Admin

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_experiment_lifecycle_through_gateway(mlflow_env: Stack) -> None:
    mlflow.set_workspace("team-a")
    client = MlflowClient()
    name = unique("exp")
    experiment_id = client.create_experiment(name, tags={"team": "a"})

    fetched = client.get_experiment(experiment_id)
    assert fetched.name == name
    assert fetched.tags["team"] == "a"
    assert client.get_experiment_by_name(name).experiment_id == experiment_id
    assert client.get_experiment_by_name(unique("missing")) is None

    client.set_experiment_tag(experiment_id, "stage", "dev")
    client.delete_experiment_tag(experiment_id, "team")
    tags = client.get_experiment(experiment_id).tags
    assert tags.get("stage") == "dev" and "team" not in tags

    renamed = unique("renamed")
    client.rename_experiment(experiment_id, renamed)
    assert client.get_experiment(experiment_id).name == renamed

    found = client.search_experiments(filter_string=f"name = '{renamed}'")
    assert [e.experiment_id for e in found] == [experiment_id]

    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    deleted = client.search_experiments(view_type=ViewType.DELETED_ONLY, filter_string=f"name = '{renamed}'")
    assert [e.experiment_id for e in deleted] == [experiment_id]
    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"


@pytest.mark.parametrize("workspace", ["team-a", "team-c"])
def test_renaming_a_deleted_experiment_is_refused_as_the_state_it_is_not_a_500(
    mlflow_env: Stack, workspace: str
) -> None:
    """MLflow's store renames active experiments only and answers a deleted one's rename with 500 INVALID_STATE,
    which the stock client retries for minutes (team-c's store is the central one, team-a's one of its own): 409
    INVALID_STATE, and the experiment keeps its name."""
    mlflow.set_workspace(workspace)
    client = MlflowClient()
    name = unique("gone")
    experiment_id = client.create_experiment(name)
    client.delete_experiment(experiment_id)
    with pytest.raises(MlflowException, match="Restore it") as refused:
        client.rename_experiment(experiment_id, unique("renamed"))
    assert refused.value.error_code == "INVALID_STATE"
    answer = mlflow_env.http(workspace).post(
        f"{mlflow_env.url}/api/2.0/mlflow/experiments/update",
        json={"experiment_id": experiment_id, "new_name": unique("renamed")},
    )
    assert answer.status_code == 409, answer.text
    assert answer.json()["error_code"] == "INVALID_STATE"
    assert "Cannot rename a non-active experiment" in answer.json()["message"]
    kept = client.get_experiment(experiment_id)
    assert (kept.name, kept.lifecycle_stage) == (name, "deleted")
    client.restore_experiment(experiment_id)
    client.rename_experiment(experiment_id, f"{name}-back")
    assert client.get_experiment(experiment_id).name == f"{name}-back"


def test_runs_params_metrics_tags_and_search(mlflow_env: Stack) -> None:
    mlflow.set_workspace("team-a")
    client = MlflowClient()
    experiment_id = mlflow.set_experiment(unique("runs")).experiment_id

    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_params({"optimizer": "adam", "lr": "0.01"})
        mlflow.set_tags({"owner": "alice"})
        for step in range(10):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("accuracy", 0.91)
    now = int(time.time() * 1000)
    client.log_batch(
        parent.info.run_id,
        metrics=[Metric("batch_metric", float(i), now + i, i) for i in range(100)],
        params=[Param("batch_param", "x")],
        tags=[RunTag("batch_tag", "y")],
    )

    run = client.get_run(parent.info.run_id)
    assert run.data.params == {"optimizer": "adam", "lr": "0.01", "batch_param": "x"}
    assert run.data.tags["owner"] == "alice" and run.data.tags["batch_tag"] == "y"
    assert run.data.metrics["loss"] == pytest.approx(0.1)
    assert run.info.status == "FINISHED"

    history = client.get_metric_history(parent.info.run_id, "loss")
    assert [(m.step, round(m.value, 4)) for m in history] == [(s, round(1.0 / (s + 1), 4)) for s in range(10)]
    assert len(client.get_metric_history(parent.info.run_id, "batch_metric")) == 100

    child_run = client.get_run(child.info.run_id)
    assert child_run.data.tags["mlflow.parentRunId"] == parent.info.run_id

    # Filters, ordering and pagination are the store's, passed through untouched.
    found = client.search_runs([experiment_id], filter_string="params.optimizer = 'adam'")
    assert [r.info.run_id for r in found] == [parent.info.run_id]
    ordered = client.search_runs([experiment_id], order_by=["attributes.run_name ASC"])
    assert [r.info.run_name for r in ordered] == ["child", "parent"]
    page = client.search_runs([experiment_id], max_results=1, order_by=["attributes.run_name ASC"])
    assert len(page) == 1 and page.token
    rest = client.search_runs([experiment_id], max_results=1, page_token=page.token, order_by=["run_name ASC"])
    assert [r.info.run_name for r in rest] == ["parent"]
    frame = mlflow.search_runs(experiment_ids=[experiment_id], filter_string="metrics.accuracy > 0.9")
    assert list(frame["run_id"]) == [child.info.run_id]

    client.delete_run(child.info.run_id)
    assert client.get_run(child.info.run_id).info.lifecycle_stage == "deleted"
    assert len(client.search_runs([experiment_id])) == 1
    client.restore_run(child.info.run_id)
    assert len(client.search_runs([experiment_id])) == 2

    client.delete_tag(parent.info.run_id, "owner")
    assert "owner" not in client.get_run(parent.info.run_id).data.tags
    client.set_terminated(child.info.run_id, status="FAILED")
    assert client.get_run(child.info.run_id).info.status == "FAILED"


def test_bulk_interval_metric_history(mlflow_env: Stack) -> None:
    mlflow.set_workspace("team-a")
    mlflow.set_experiment(unique("bulk"))
    with mlflow.start_run() as run:
        for step in range(20):
            mlflow.log_metric("m", float(step), step=step)
    response = mlflow_env.http("team-a").get(
        f"{mlflow_env.url}/api/2.0/mlflow/metrics/get-history-bulk-interval",
        params={"run_ids": [run.info.run_id], "metric_key": "m", "start_step": 5, "end_step": 9, "max_results": 10},
    )
    assert response.status_code == 200, response.text
    assert [p["step"] for p in response.json()["metrics"]] == [5, 6, 7, 8, 9]


def test_dataset_inputs_are_logged(mlflow_env: Stack) -> None:
    import pandas as pd

    mlflow.set_workspace("team-a")
    mlflow.set_experiment(unique("inputs"))
    frame = pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
    dataset = mlflow.data.from_pandas(frame, name="train-set")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    inputs = MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.tags[0].value) for i in inputs] == [("train-set", "training")]


def test_logged_models(mlflow_env: Stack) -> None:
    mlflow.set_workspace("team-a")
    experiment_id = mlflow.set_experiment(unique("logged-models")).experiment_id
    model = mlflow.initialize_logged_model(name="candidate", tags={"kind": "baseline"})
    mlflow.finalize_logged_model(model.model_id, "READY")
    fetched = mlflow.get_logged_model(model.model_id)
    assert fetched.name == "candidate" and fetched.tags["kind"] == "baseline"
    assert str(fetched.status) == "READY"
    found = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")
    assert [m.model_id for m in found] == [model.model_id]


def test_traces_are_forwarded(mlflow_env: Stack) -> None:
    mlflow.set_workspace("team-a")
    experiment_id = mlflow.set_experiment(unique("traces")).experiment_id

    @mlflow.trace
    def add(a: int, b: int) -> int:
        return a + b

    assert add(2, 3) == 5
    mlflow.flush_trace_async_logging()
    traces = mlflow.search_traces(locations=[experiment_id], return_type="list")
    assert len(traces) == 1
    assert traces[0].data.spans[0].name == "add"


def test_trace_tags_and_assessment_keys_named_like_proto_fields_are_kept(mlflow_env: Stack) -> None:
    """Keys of a trace's tags and metadata, a feedback's value and an assessment's metadata are the user's: one
    spelled like a proto JSON field name (`artifactLocation`) is data to MLflow, and passes the gateway as such."""
    mlflow.set_workspace("team-a")
    mlflow.set_experiment(unique("caller-keys"))
    with mlflow.start_span("answer") as span:
        mlflow.update_current_trace(tags={"artifactLocation": "s3://mine", "runId": "r-1"})
        trace_id = span.trace_id
    mlflow.flush_trace_async_logging()
    trace = mlflow.get_trace(trace_id)
    assert trace is not None
    assert trace.info.tags["artifactLocation"] == "s3://mine" and trace.info.tags["runId"] == "r-1"

    logged = mlflow.log_feedback(
        trace_id=trace_id, name="judged", value={"experimentId": 1, "traceInfo": "ok"}, metadata={"sourceRunId": "s"}
    )
    assessment = mlflow.get_assessment(trace_id, logged.assessment_id)
    assert assessment.value == {"experimentId": 1, "traceInfo": "ok"}
    assert assessment.metadata["sourceRunId"] == "s"


def test_feedback_and_expectation_values_with_keys_ending_in_id_are_kept(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A feedback's or expectation's value is a google.protobuf.Value: MLflow stores it as its JSON and reads no id
    from it, so keys ending in `_id`, `_ids` or `_uuid` at any depth of it are the caller's data. The gateway refused
    them as ids without a rule ("Field 'assessment.feedback.value.source_id' is not accepted in this call.") and the
    stock client's log_feedback and log_expectation failed for every user (account admins' calls skip the check)."""
    admin = Admin.of(mlflow_env)
    user = admin.person(f"{unique('judge')}@example.com")
    admin.grant("workspaces/team-a", "CAN_USE", user=user.name)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", user.token)
    mlflow.set_workspace("team-a")
    mlflow.set_experiment(unique("value-ids"))
    with mlflow.start_span("answer") as span:
        trace_id = span.trace_id
    mlflow.flush_trace_async_logging()
    feedback = {"source_id": "rater-7", "votes": [{"run_id": "0" * 32, "trace_ids": ["tr-" + "0" * 32]}]}
    logged = mlflow.log_feedback(trace_id=trace_id, name="judged", value=feedback)
    assert mlflow.get_assessment(trace_id, logged.assessment_id).value == feedback
    expected = [{"doc_uuid": "d-1", "experiment_id": "1"}]
    expectation = mlflow.log_expectation(trace_id=trace_id, name="docs", value=expected)
    assert mlflow.get_assessment(trace_id, expectation.assessment_id).value == expected
    updated = mlflow.update_assessment(
        trace_id=trace_id,
        assessment_id=logged.assessment_id,
        assessment=Feedback(name="judged", value={"model_id": "m-1"}),
    )
    assert mlflow.get_assessment(trace_id, updated.assessment_id).value == {"model_id": "m-1"}
    # Nothing of the values reached another trace: the trace holds its own assessments only.
    trace = mlflow.get_trace(trace_id)
    assert trace is not None and {a.name for a in trace.info.assessments} == {"judged", "docs"}


def test_same_experiment_name_in_two_workspaces_is_isolated(mlflow_env: Stack) -> None:
    client = MlflowClient()
    name = unique("shared-name")
    mlflow.set_workspace("team-a")
    a_id = client.create_experiment(name)
    with mlflow.start_run(experiment_id=a_id) as run_a:
        mlflow.log_param("team", "a")
    mlflow.set_workspace("team-b")
    assert client.get_experiment_by_name(name) is None
    b_id = client.create_experiment(name)
    assert [r.info.run_id for r in client.search_runs([b_id])] == []
    assert name in [e.name for e in client.search_experiments()]
    # team-a's run does not exist in team-b's store.
    with pytest.raises(MlflowException) as excinfo:
        client.get_run(run_a.info.run_id)
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    mlflow.set_workspace("team-a")
    assert client.get_run(run_a.info.run_id).data.params == {"team": "a"}


def test_error_bodies_pass_through_unchanged(mlflow_env: Stack) -> None:
    missing = uuid.uuid4().hex
    direct = mlflow_env.http().get(f"{mlflow_env.stores['a'].url}/api/2.0/mlflow/runs/get", params={"run_id": missing})
    through = mlflow_env.http("team-a").get(f"{mlflow_env.url}/api/2.0/mlflow/runs/get", params={"run_id": missing})
    assert through.status_code == direct.status_code == 404
    assert through.json() == direct.json()
    assert through.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    mlflow.set_workspace("team-a")
    with pytest.raises(MlflowException) as excinfo:
        MlflowClient().get_run(missing)
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"
