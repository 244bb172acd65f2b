"""The account-wide index: written through on every forwarded write, completed by the sync job."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest

from tests.conftest import Stack
from tests.databases import rows

pytestmark = pytest.mark.integration


def test_writes_through_the_gateway_fill_the_index(mlflow_env: Stack) -> None:
    import mlflow

    mlflow.set_workspace("team-a")
    name = f"index-{uuid.uuid4().hex[:8]}"
    experiment_id = mlflow.create_experiment(name, tags={"team": "a"})
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_params({"lr": "0.01", "optimizer": "adam"})
        mlflow.set_tag("stage", "dev")
        mlflow.log_metric("loss", 3.0, step=0)
        mlflow.log_metric("loss", 1.0, step=2)
        mlflow.log_metric("loss", 2.0, step=1)  # not the latest: an older step logged last
        mlflow.log_metric("acc", float("nan"), step=0)
        mlflow.log_metric("acc", 0.5, step=1)
        mlflow.log_metrics({"edge": float("inf")}, step=0)
        mlflow.log_metrics({"edge": float("-inf")}, step=1)
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("loss", 0.5)
    client = mlflow.MlflowClient()
    client.delete_run(child.info.run_id)

    ws = mlflow_env.database_url
    # Experiment ids in the system tables are account-wide: <workspace_id>-<experiment_id>.
    experiment = rows(
        ws, "SELECT * FROM system_mlflow.experiments_latest WHERE experiment_id = $1", f"1001-{experiment_id}"
    )
    assert [(e["name"], e["workspace_id"], e["delete_time"]) for e in experiment] == [(name, "1001", None)]

    runs = {
        r["run_name"]: r
        for r in rows(
            ws,
            "SELECT * FROM system_mlflow.runs_latest WHERE experiment_id = $1 AND workspace_id = '1001'",
            f"1001-{experiment_id}",
        )
    }
    assert set(runs) == {"parent", "child"}
    top = runs["parent"]
    assert top["run_id"] == parent.info.run_id
    assert top["status"] == "FINISHED" and top["end_time"] is not None and top["start_time"] is not None
    assert top["created_by"] == "admin"
    assert rows(
        ws, "SELECT params->>'lr' AS lr, tags->>'stage' AS stage FROM ix_runs WHERE run_id = $1", parent.info.run_id
    ) == [{"lr": "0.01", "stage": "dev"}]
    aggregates = {m["metric_name"]: m for m in top["aggregated_metrics"]}
    assert (aggregates["loss"]["latest_value"], aggregates["loss"]["min_value"], aggregates["loss"]["max_value"]) == (
        1.0,
        1.0,
        3.0,
    )
    # Once a NaN was logged, min and max are NaN; the latest is the greatest step.
    assert aggregates["acc"]["latest_value"] == 0.5
    assert math.isnan(aggregates["acc"]["min_value"]) and math.isnan(aggregates["acc"]["max_value"])
    assert (aggregates["edge"]["min_value"], aggregates["edge"]["max_value"]) == (-math.inf, math.inf)
    assert aggregates["edge"]["latest_value"] == -math.inf
    assert runs["child"]["delete_time"] is not None and runs["parent"]["delete_time"] is None

    history = rows(
        ws,
        "SELECT metric_step, metric_value, record_id FROM system_mlflow.run_metrics_history "
        "WHERE run_id = $1 AND metric_name = 'loss' ORDER BY record_id::bigint",
        parent.info.run_id,
    )
    assert [(h["metric_step"], h["metric_value"]) for h in history] == [(0, 3.0), (2, 1.0), (1, 2.0)]
    assert len({h["record_id"] for h in history}) == 3


def test_sync_brings_in_runs_written_around_the_gateway_and_counts_nothing_twice(mlflow_env: Stack) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    direct = MlflowClient(tracking_uri=mlflow_env.stores["a"].url)  # team-a's store, bypassing the gateway
    experiment_id = direct.create_experiment(f"direct-{uuid.uuid4().hex[:8]}")
    run = direct.create_run(experiment_id, run_name="around-the-gateway", tags={"origin": "direct"})
    run_id = run.info.run_id
    base = 1_700_000_000_000
    loss = [Metric("loss", 1.0 / (i + 1), base + i, i) for i in range(250)]
    loss.append(Metric("loss", 0.5, base + 3, 3))  # a second value at the same step and time
    acc = [Metric("acc", float(i) / 50, base + i, i) for i in range(50)] + [Metric("acc", float("nan"), base, 99)]
    direct.log_batch(run_id, metrics=loss[:200], params=[])
    direct.log_batch(run_id, metrics=loss[200:] + acc)
    direct.log_param(run_id, "lr", "0.1")
    direct.set_terminated(run_id, "FAILED")

    admin = mlflow_env.http()
    sync = admin.post(
        f"{mlflow_env.url}/api/2.0/fedgate/index/sync", json={"workspace": "team-a", "full": True, "wait": True}
    )
    assert sync.status_code == 200, sync.text
    assert sync.json()["sync"]["state"] == "finished"

    db = mlflow_env.database_url
    counts = "SELECT metric_name, count(*) AS n FROM system_mlflow.run_metrics_history WHERE run_id = $1 GROUP BY 1"
    assert {r["metric_name"]: r["n"] for r in rows(db, counts, run_id)} == {"loss": 251, "acc": 51}
    indexed = rows(db, "SELECT * FROM system_mlflow.runs_latest WHERE run_id = $1", run_id)[0]
    assert (indexed["status"], indexed["run_name"], indexed["workspace_id"]) == ("FAILED", "around-the-gateway", "1001")
    assert indexed["params"] == '{"lr": "0.1"}' and '"origin": "direct"' in indexed["tags"]
    aggregates = {m["metric_name"]: m for m in indexed["aggregated_metrics"]}
    assert aggregates["acc"]["latest_value"] != aggregates["acc"]["latest_value"]  # NaN at step 99 is the latest
    assert (aggregates["loss"]["min_value"], aggregates["loss"]["max_value"]) == (1.0 / 250, 1.0)

    # A pass interrupted after `loss` and before `acc` was indexed: the next pass adds exactly what is missing.
    run_key = rows(db, "SELECT run_key FROM ix_runs WHERE run_id = $1", run_id)[0]["run_key"]
    rows(db, "DELETE FROM ix_metrics WHERE run_key = $1 AND metric_name = 'acc' RETURNING 1", run_key)
    rows(db, "DELETE FROM ix_metric_latest WHERE run_key = $1 AND metric_name = 'acc' RETURNING 1", run_key)
    rows(
        db,
        "UPDATE ix_sync_state SET state = 'running', cursor = $1, points_added = 0 "
        "WHERE workspace_id = 1001 RETURNING 1",
        f'{{"everything": true, "since": 0, "experiment": "{experiment_id}", "page_token": ""}}',
    )
    again = admin.post(f"{mlflow_env.url}/api/2.0/fedgate/index/sync", json={"workspace": "team-a", "wait": True})
    assert again.json()["sync"]["points_added"] == 51
    assert {r["metric_name"]: r["n"] for r in rows(db, counts, run_id)} == {"loss": 251, "acc": 51}
    third = admin.post(f"{mlflow_env.url}/api/2.0/fedgate/index/sync", json={"workspace": "team-a", "wait": True})
    assert third.json()["sync"]["points_added"] == 0

    status = admin.get(f"{mlflow_env.url}/api/2.0/fedgate/index/status").json()["workspaces"]
    team_a = next(w for w in status if w["workspace"] == "team-a")
    assert team_a["state"] == "idle" and team_a["runs_indexed"] >= 1 and team_a["lag_seconds"] is not None


def test_documented_queries_answer_runs_logged_with_the_stock_client_in_three_workspaces(mlflow_env: Stack) -> None:
    """The golden path: stock client writes in team-a, team-b and team-c (a renamed upstream workspace on the
    central store), then the documented queries, verbatim, through the SQL API."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    from gateway.sql.documented import METRIC_SUMMARY, RUN_DETAILS, RUN_DETAILS_WITH_EXPERIMENT, RUN_ROW, RUN_TAGS
    from tests.conftest import ADMIN_TOKEN

    start = 1_719_449_937_000  # 2024-06-27T00:58:57Z
    logged: dict[str, tuple[str, str, str]] = {}
    for workspace in ("team-a", "team-b", "team-c"):
        mlflow.set_workspace(workspace)
        client = MlflowClient()
        name = f"golden-{workspace}-{uuid.uuid4().hex[:6]}"
        experiment_id = client.create_experiment(name)
        run = client.create_run(experiment_id, start_time=start, run_name=f"golden {workspace}")
        run_id = run.info.run_id
        base = start + 60_000
        metrics = [Metric("loss", v, base + i, i) for i, v in enumerate((0.9, 0.5, 0.3, 0.2))]
        metrics += [Metric("acc", v, base + i, i) for i, v in enumerate((0.1, float("nan"), 0.7))]
        client.log_batch(run_id, metrics=metrics, params=[Param("lr", "0.01")], tags=[RunTag("golden", workspace)])
        client.set_terminated(run_id, "FINISHED", end_time=start + 31 * 60_000 + 12_000)
        # A nested, deleted run beside it: present in runs_latest with its delete_time.
        child = client.create_run(experiment_id, tags={"mlflow.parentRunId": run_id}, run_name="child")
        client.delete_run(child.info.run_id)
        logged[workspace] = (experiment_id, run_id, name)

    def statement(text: str, **parameters: str) -> list[list[Any]]:
        body = {
            "statement": text,
            "parameters": [{"name": k, "value": v, "type": "STRING"} for k, v in parameters.items()],
            "wait_timeout": "30s",
        }
        answer = mlflow_env.http(token=ADMIN_TOKEN).post(f"{mlflow_env.url}/api/2.0/sql/statements", json=body).json()
        assert answer["status"]["state"] == "SUCCEEDED", answer
        return list(answer["result"].get("data_array") or [])

    workspace_ids = {"team-a": "1001", "team-b": "1002", "team-c": "1003"}
    for workspace, (experiment_id, run_id, name) in logged.items():
        # Stores number experiments on their own: the system tables use the account-wide form.
        ids = {"experiment_id": f"{workspace_ids[workspace]}-{experiment_id}", "run_id": run_id}
        assert statement(RUN_DETAILS, **ids) == [[f"golden {workspace}", "2024-06-27", "FINISHED", "31"]]
        assert statement(RUN_DETAILS_WITH_EXPERIMENT, **ids) == [
            [f"golden {workspace}", name, "2024-06-27", "FINISHED", "31"]
        ]
        assert sorted(statement(METRIC_SUMMARY, run_id=run_id)) == [
            ["acc", "3", "NaN", "NaN", "0.1", "0.4", "0.7", "NaN"],
            ["loss", "4", "0.5", "0.9", "0.2", "0.3", "0.4", "0.6"],
        ]
        tags = dict((key, value) for key, value in statement(RUN_TAGS, **ids))
        assert tags["golden"] == workspace and tags["mlflow.runName"] == f"golden {workspace}"
        [row] = statement(RUN_ROW, **ids)
        assert (row[3], row[4], row[5]) == (workspace_ids[workspace], run_id, ids["experiment_id"])
        assert '"lr": "0.01"' in row[11] or '"lr":"0.01"' in row[11]


def test_a_log_batch_mlflow_would_apply_in_part_is_refused_and_nothing_of_it_is_kept(mlflow_env: Stack) -> None:
    """MLflow parses a body key by key and, at a value it cannot parse (a param's value sent as a number), stops and
    logs what it read before: the store logged the first param, dropped the second and the points after them, and
    answered 200, while the index recorded the points the store never kept."""
    from mlflow import MlflowClient

    admin = mlflow_env.http("team-a")
    api = f"{mlflow_env.url}/api/2.0/mlflow"
    experiment_id = admin.post(f"{api}/experiments/create", json={"name": f"partial-{uuid.uuid4().hex[:8]}"}).json()[
        "experiment_id"
    ]
    run_id = admin.post(f"{api}/runs/create", json={"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
    body = {
        "run_id": run_id,
        "params": [{"key": "kept", "value": "v"}, {"key": "dropped", "value": 1}],
        "metrics": [{"key": "ghost", "value": 1.0, "timestamp": 1, "step": 0}],
    }
    refused = admin.post(f"{api}/runs/log-batch", json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "params" in refused.json()["message"]

    stored = MlflowClient(tracking_uri=mlflow_env.stores["a"].url).get_run(run_id).data
    assert (stored.params, stored.metrics) == ({}, {})
    counts = "SELECT count(*) AS n FROM system_mlflow.run_metrics_history WHERE run_id = $1"
    assert rows(mlflow_env.database_url, counts, run_id) == [{"n": 0}]

    # The same batch as MLflow reads it whole is logged, and indexed.
    body["params"] = [{"key": "kept", "value": "v"}, {"key": "dropped", "value": "1"}]
    accepted = admin.post(f"{api}/runs/log-batch", json=body)
    assert accepted.status_code == 200, accepted.text
    stored = MlflowClient(tracking_uri=mlflow_env.stores["a"].url).get_run(run_id).data
    assert (stored.params, stored.metrics) == ({"kept": "v", "dropped": "1"}, {"ghost": 1.0})
    assert rows(mlflow_env.database_url, counts, run_id) == [{"n": 1}]
