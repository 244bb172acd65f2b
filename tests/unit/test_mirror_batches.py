"""How dual-mode writes are ordered and coalesced before they reach the central store."""

from __future__ import annotations

from gateway.federation.mirror import MAX_ITEMS, MAX_METRICS, MAX_PARAMS, _Batch, order_key


def test_order_keys_follow_the_object_a_write_changes() -> None:
    run = {"run": {"info": {"run_id": "r1", "experiment_id": "5"}}}
    assert order_key("POST /mlflow/runs/create", {"experiment_id": "5"}, run, None) == "run:r1"
    assert order_key("POST /mlflow/experiments/create", {"name": "e"}, {"experiment_id": "7"}, None) == "experiment:7"
    assert order_key("POST /mlflow/runs/log-batch", {"run_id": "r1"}, {}, None) == "run:r1"
    assert order_key("PUT /mlflow-artifacts/artifacts/{artifact_path:path}", {}, {}, "r2") == "run:r2"
    assert order_key("PATCH /mlflow/logged-models/{model_id:str}", {}, {}, None, "m-1") == "logged_model:m-1"
    # A rename is ordered with what follows it, under the new name.
    rename = {"name": "old", "new_name": "new"}
    assert order_key("POST /mlflow/registered-models/rename", rename, {}, None) == "model:new"
    assert order_key("POST /mlflow/model-versions/create", {"name": "m"}, {}, None) == "model:m"
    assert order_key("POST /mlflow/runs/log-batch", {}, {}, None) is None


def test_coalesced_batches_respect_mlflows_limits_and_keep_the_latest_tag() -> None:
    batch = _Batch()
    for step in range(3):
        batch.add(
            "POST /mlflow/runs/log-metric", {"run_id": "r", "key": "m", "value": step, "timestamp": step, "step": step}
        )
    batch.add("POST /mlflow/runs/set-tag", {"run_id": "r", "key": "phase", "value": "a"})
    batch.add("POST /mlflow/runs/set-tag", {"run_id": "r", "key": "phase", "value": "b"})
    batch.add("POST /mlflow/runs/log-parameter", {"run_id": "r", "key": "lr", "value": "0.1"})
    body = batch.body("central-run")
    assert [m["step"] for m in body["metrics"]] == [0, 1, 2]
    assert body["tags"] == [{"key": "phase", "value": "b"}] and body["params"] == [{"key": "lr", "value": "0.1"}]
    assert batch.rows == 6
    # 3 metrics, 1 param and 1 tag so far: 995 more items fit in one call (1,000 in all), 996 do not.
    assert not batch.full_for(MAX_ITEMS - 5, 0, 0)
    assert batch.full_for(MAX_ITEMS - 4, 0, 0)
    assert _Batch().full_for(MAX_METRICS + 1, 0, 0)
    assert batch.full_for(0, MAX_PARAMS, 0)
    metrics = [{"key": "m", "value": 1.0, "timestamp": i, "step": i} for i in range(10)]
    assert _Batch.size_of("POST /mlflow/runs/log-batch", {"metrics": metrics, "params": [{}], "tags": []}) == (10, 1, 0)
