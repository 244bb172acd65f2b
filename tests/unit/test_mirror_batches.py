"""How dual-mode writes are ordered and coalesced before they reach the central store."""

from __future__ import annotations

from gateway.dual.mirror import MAX_ITEMS, MAX_METRICS, MAX_PARAMS, _Batch, order_key


def test_order_keys_follow_the_object_a_write_changes() -> None:
    run = {"run": {"info": {"run_id": "r1", "experiment_id": "5"}}}
    assert order_key(7, "POST /mlflow/runs/create", {"experiment_id": "5"}, run, None) == "7/run:r1"
    created = {"experiment_id": "3"}
    assert order_key(7, "POST /mlflow/experiments/create", {"name": "e"}, created, None) == "7/experiment:3"
    assert order_key(7, "POST /mlflow/runs/log-batch", {"run_id": "r1"}, {}, None) == "7/run:r1"
    assert order_key(7, "PUT /mlflow-artifacts/artifacts/{artifact_path:path}", {}, {}, "r2") == "7/run:r2"
    assert order_key(7, "PATCH /mlflow/logged-models/{model_id:str}", {}, {}, None, "m-1") == "7/logged_model:m-1"
    # The registry's writes in one order: a rename, and a model created under the old name after it, stay in order.
    rename = {"name": "old", "new_name": "new"}
    assert order_key(7, "POST /mlflow/registered-models/rename", rename, {}, None) == "7/registry"
    assert order_key(7, "POST /mlflow/registered-models/create", {"name": "old"}, {}, None) == "7/registry"
    assert order_key(7, "POST /mlflow/model-versions/create", {"name": "m"}, {}, None) == "7/registry"
    assert order_key(7, "POST /mlflow/runs/log-batch", {}, {}, None) is None
    # Two workspaces' experiment 1 (each store numbers its own) never queue behind each other.
    keys = {order_key(ws, "POST /mlflow/experiments/update", {"experiment_id": "1"}, {}, None) for ws in (7, 8)}
    assert keys == {"7/experiment:1", "8/experiment:1"}


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
