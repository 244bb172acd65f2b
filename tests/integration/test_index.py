"""The account-wide index: written through on every forwarded write, completed by the sync job."""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

import asyncpg
import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.integration


def rows(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(database_url)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


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
    experiment = rows(ws, "SELECT * FROM system_mlflow.experiments_latest WHERE experiment_id = $1", experiment_id)
    assert [(e["name"], e["workspace_id"], e["delete_time"]) for e in experiment] == [(name, "1001", None)]

    runs = {
        r["run_name"]: r
        for r in rows(
            ws,
            "SELECT * FROM system_mlflow.runs_latest WHERE experiment_id = $1 AND workspace_id = '1001'",
            experiment_id,
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
        "WHERE run_id = $1 AND metric_name = 'loss' ORDER BY record_id",
        parent.info.run_id,
    )
    assert [(h["metric_step"], h["metric_value"]) for h in history] == [(0, 3.0), (2, 1.0), (1, 2.0)]
    assert len({h["record_id"] for h in history}) == 3
