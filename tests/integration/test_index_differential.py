"""The account-wide index against the stores, differentially: seeded random sequences of tracking writes made with
the stock client through the gateway, then every answer the index gives compared with what the workspace's own
`mlflow server` says of the same objects (its answers forwarded by the gateway in the workspace's scope).

Compared: `system_mlflow.experiments_latest` against `get_experiment`, `runs_latest` against `get_run` (attributes,
params, tags, lifecycle, every metric's latest value, minimum and maximum), `run_metrics_history` against
`get_metric_history` (every point, as a multiset), and the `account` scope's experiment and run search (filters,
`order_by`, view types, pages) against each workspace's own search, merged and ordered as MLflow orders.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.utils.search_utils import SearchUtils

from gateway.client import run as run_api
from tests.conftest import ADMIN_TOKEN, Stack
from tests.databases import rows
from tests.support.identity import unique
from tests.support.stock_client import stock_client_env

pytestmark = pytest.mark.integration

WORKSPACE_IDS = {"team-a": 1001, "team-b": 1002, "team-c": 1003}
MAX_DOUBLE = 1.7976931348623157e308
BASE_MS = 1_730_000_000_000
VALUES = (0.0, 0.5, 1.0, -1.0, 2.5, 0.25, math.nan, math.inf, -math.inf)
METRICS = ("m1", "m2", "m3")
PARAMS = ("p1", "p2")
PARAM_VALUES = ("a", "b", "ab", "A")
TAG_KEYS = ("t1", "t2")
TAG_VALUES = ("x", "y", "xy", "X")
STATUSES = ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED")
FILTERS = (
    "",
    "metrics.m1 > 0.4",
    "metrics.m1 <= 1",
    "metrics.m2 != 0.5",
    "metrics.m3 = 0",
    "metrics.m2 < 0",
    "params.p1 = 'a'",
    "params.p2 LIKE 'a%'",
    "params.p1 ILIKE 'a'",
    "params.p1 IS NULL",
    "tags.t1 = 'x'",
    "tags.t2 != 'y'",
    "tags.t1 IS NOT NULL",
    "attributes.status = 'FINISHED'",
    "attributes.status != 'RUNNING'",
    "run_name LIKE '%1%'",
    "attributes.end_time > 0",
    f"attributes.start_time >= {BASE_MS + 3000}",
    "metrics.m1 >= 0 and params.p1 != 'b'",
)
ORDERS = (
    [],
    ["metrics.m1 DESC"],
    ["metrics.m2"],
    ["params.p1", "metrics.m1 DESC"],
    ["tags.t1 DESC"],
    ["attributes.run_name"],
    ["attributes.start_time"],
    ["attributes.end_time DESC"],
    ["attributes.status", "metrics.m3 DESC"],
)


@dataclass
class World:
    """What one sequence made: experiments by (workspace, id), runs by id with their workspace."""

    experiments: dict[tuple[str, str], str] = field(default_factory=dict)  # → name
    runs: dict[str, tuple[str, str]] = field(default_factory=dict)  # run id → (workspace, experiment id)
    steps: int = 0
    refused: int = 0
    failures: list[str] = field(default_factory=list)


def _client(workspace: str) -> MlflowClient:
    mlflow.set_workspace(workspace)
    return MlflowClient()


def _value(rng: random.Random) -> float:
    return rng.choice(VALUES)


def _metric(rng: random.Random, steps: list[int]) -> Metric:
    step = rng.choice(steps) if steps and rng.random() < 0.4 else rng.randrange(6)
    timestamp = BASE_MS + rng.randrange(5) * 1000  # out of order, and often the same time
    return Metric(rng.choice(METRICS), _value(rng), timestamp, step)


def _step(rng: random.Random, world: World, suite: str) -> None:
    """One random write; a write the store refuses (a deleted run's metric, a changed param) is part of it."""
    runs = list(world.runs)
    experiments = list(world.experiments)
    choice = rng.random()
    if not experiments or choice < 0.06:
        workspace = rng.choice(list(WORKSPACE_IDS))
        name = f"{suite}-{len(world.experiments)}"
        tags = {"e": rng.choice(TAG_VALUES)} if rng.random() < 0.5 else None
        experiment_id = _client(workspace).create_experiment(name, tags=tags)
        world.experiments[(workspace, experiment_id)] = name
        return
    if not runs or choice < 0.18:
        workspace, experiment_id = rng.choice(experiments)
        client = _client(workspace)
        tags: dict[str, str] = {}
        same = [r for r, (w, e) in world.runs.items() if (w, e) == (workspace, experiment_id)]
        if same and rng.random() < 0.4:
            tags["mlflow.parentRunId"] = rng.choice(same)
        if rng.random() < 0.5:
            tags[rng.choice(TAG_KEYS)] = rng.choice(TAG_VALUES)
        run = client.create_run(
            experiment_id,
            start_time=BASE_MS + rng.randrange(6) * 1000,
            tags=tags,
            run_name=f"r{len(world.runs)}" if rng.random() < 0.8 else None,
        )
        world.runs[run.info.run_id] = (workspace, experiment_id)
        return
    run_id = rng.choice(runs)
    workspace, experiment_id = world.runs[run_id]
    client = _client(workspace)
    if choice < 0.22:
        key = (workspace, experiment_id)
        action = rng.choice(("rename", "delete", "restore", "tag", "untag"))
        if action == "rename":
            # (The central store answers some renames in team-c with a 500 of its own, left to the stock-client sweep.)
            if workspace != "team-c":
                name = f"{suite}-renamed-{world.steps}"
                client.rename_experiment(experiment_id, name)
                world.experiments[key] = name
        elif action == "delete":
            client.delete_experiment(experiment_id)
        elif action == "restore":
            client.restore_experiment(experiment_id)
        elif action == "tag":
            client.set_experiment_tag(experiment_id, "e", rng.choice(TAG_VALUES))
        else:
            client.delete_experiment_tag(experiment_id, "e")
    elif choice < 0.45:
        history = [
            m.step for m in client.get_metric_history(run_id, rng.choice(METRICS))
        ]  # the same step again, at times
        metric = _metric(rng, history)
        client.log_metric(run_id, metric.key, metric.value, metric.timestamp, metric.step)
        if rng.random() < 0.15:  # the very same point twice
            client.log_metric(run_id, metric.key, metric.value, metric.timestamp, metric.step)
    elif choice < 0.55:
        metrics = [_metric(rng, []) for _ in range(rng.randrange(6))]
        if metrics and rng.random() < 0.3:
            metrics.append(metrics[0])
        params = [Param(k, rng.choice(PARAM_VALUES)) for k in rng.sample(PARAMS, rng.randrange(3))]
        tags = [RunTag(k, rng.choice(TAG_VALUES)) for k in rng.sample(TAG_KEYS, rng.randrange(3))]
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    elif choice < 0.63:
        client.log_param(run_id, rng.choice(PARAMS), rng.choice(PARAM_VALUES))
    elif choice < 0.71:
        client.set_tag(run_id, rng.choice(TAG_KEYS), rng.choice(TAG_VALUES))
    elif choice < 0.76:
        client.delete_tag(run_id, rng.choice(TAG_KEYS))
    elif choice < 0.80:
        client.update_run(run_id, name=f"renamed-{world.steps}")
    elif choice < 0.88:
        client.set_terminated(run_id, rng.choice(STATUSES), end_time=BASE_MS + rng.randrange(10, 20) * 1000)
    elif choice < 0.94:
        client.delete_run(run_id)
    else:
        client.restore_run(run_id)


def run_sequence(seed: int, steps: int) -> World:
    rng = random.Random(seed)
    world = World()
    suite = unique(f"diff{seed}")
    for _ in range(steps):
        world.steps += 1
        try:
            _step(rng, world, suite)
        except MlflowException as refused:
            if refused.error_code not in ("INVALID_PARAMETER_VALUE", "INVALID_STATE", "RESOURCE_DOES_NOT_EXIST"):
                world.failures.append(f"step {world.steps}: {refused.error_code} {refused.message[:300]}")
            world.refused += 1
    return world


def _same_float(indexed: float, stored: float) -> bool:
    """The system tables keep ±Infinity; MLflow's SQL stores keep (and answer) ±max double instead."""
    if math.isnan(stored):
        return math.isnan(indexed)
    if math.isinf(indexed):
        indexed = math.copysign(MAX_DOUBLE, indexed)
    return indexed == stored


def _float_key(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return math.copysign(MAX_DOUBLE, value)
    return value


def compare_system_tables(stack: Stack, world: World) -> list[str]:
    """Every disagreement of the system tables with the stores, as text."""
    found: list[str] = []
    for (workspace, experiment_id), _name in world.experiments.items():
        stored = _client(workspace).get_experiment(experiment_id)
        account_id = f"{WORKSPACE_IDS[workspace]}-{experiment_id}"
        indexed = rows(
            stack.database_url, "SELECT * FROM system_mlflow.experiments_latest WHERE experiment_id = $1", account_id
        )
        if len(indexed) != 1:
            found.append(f"experiment {account_id}: {len(indexed)} rows")
            continue
        row = indexed[0]
        if row["name"] != stored.name:
            found.append(f"experiment {account_id}: name {row['name']!r}, store {stored.name!r}")
        if (row["delete_time"] is not None) != (stored.lifecycle_stage == "deleted"):
            found.append(f"experiment {account_id}: delete_time {row['delete_time']}, store {stored.lifecycle_stage}")
    for run_id, (workspace, _experiment_id) in world.runs.items():
        client = _client(workspace)
        stored_run = client.get_run(run_id)
        indexed = rows(stack.database_url, "SELECT * FROM system_mlflow.runs_latest WHERE run_id = $1", run_id)
        if len(indexed) != 1:
            found.append(f"run {run_id}: {len(indexed)} rows")
            continue
        row = indexed[0]
        info = stored_run.info

        def ms(moment: Any) -> int | None:
            return None if moment is None else round(moment.timestamp() * 1000)

        for what, mine, theirs in (
            ("status", row["status"], info.status),
            ("run_name", row["run_name"], info.run_name),
            ("start_time", ms(row["start_time"]), info.start_time),
            ("end_time", ms(row["end_time"]), info.end_time),
            ("deleted", row["delete_time"] is not None, info.lifecycle_stage == "deleted"),
            ("params", _json(row["params"]), stored_run.data.params),
            ("tags", _json(row["tags"]), stored_run.data.tags),
        ):
            if mine != theirs:
                found.append(f"run {run_id}: {what} {mine!r}, store {theirs!r}")
        aggregates = {a["metric_name"]: a for a in row["aggregated_metrics"]}
        if set(aggregates) != set(stored_run.data.metrics):
            found.append(f"run {run_id}: metrics {sorted(aggregates)}, store {sorted(stored_run.data.metrics)}")
        for key in stored_run.data.metrics:
            history = client.get_metric_history(run_id, key)
            mine_points = Counter(_history(stack, run_id, key))
            their_points = Counter((m.step, m.timestamp, _float_key(m.value)) for m in history)
            if mine_points != their_points:
                found.append(
                    f"run {run_id} {key}: history {sorted(mine_points.items(), key=repr)}, "
                    f"store {sorted(their_points.items(), key=repr)}"
                )
            if key not in aggregates:
                continue
            aggregate = aggregates[key]
            latest = stored_run.data.metrics[key]
            if not _same_float(aggregate["latest_value"], latest):
                found.append(
                    f"run {run_id} {key}: latest {aggregate['latest_value']}, store {latest} "
                    f"(history {[(m.step, m.timestamp, m.value) for m in history]})"
                )
            values = [m.value for m in history]
            if any(math.isnan(v) for v in values):
                low = high = math.nan
            else:
                low, high = min(values), max(values)
            if not (_same_float(aggregate["min_value"], low) and _same_float(aggregate["max_value"], high)):
                found.append(
                    f"run {run_id} {key}: min/max {aggregate['min_value']}/{aggregate['max_value']}, store {low}/{high}"
                )
    return found


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _account_id(workspace: str, experiment_id: str) -> str:
    return f"{WORKSPACE_IDS[workspace]}-{experiment_id}"


def _run_facts(run: Run) -> tuple[Any, ...]:
    return (
        run.info.run_id,
        run.info.experiment_id,
        run.info.status,
        run.info.start_time,
        run.info.end_time,
        run.info.run_name,
        run.info.lifecycle_stage,
        run.data.params,
        run.data.tags,
        {k: _float_key(v) for k, v in run.data.metrics.items()},
    )


def compare_account_search(world: World, rng: random.Random, cases: int) -> list[str]:
    found: list[str] = []
    experiment_ids = [_account_id(w, e) for w, e in world.experiments]
    for _ in range(cases):
        filter_string = rng.choice(FILTERS)
        order_by = rng.choice(ORDERS)
        view = rng.choice((ViewType.ACTIVE_ONLY, ViewType.DELETED_ONLY, ViewType.ALL))
        page = rng.randrange(1, 6)
        expected: list[Run] = []
        for workspace, experiment_id in world.experiments:
            for run in _client(workspace).search_runs([experiment_id], filter_string, view, 1000, order_by):
                run.info._experiment_id = _account_id(workspace, experiment_id)
                expected.append(run)
        expected = SearchUtils.sort(expected, order_by)
        account = _client("account")
        answered: list[Run] = []
        token = None
        while True:
            result = account.search_runs(experiment_ids, filter_string, view, page, order_by, token)
            answered.extend(result)
            token = result.token
            if not token:
                break
        case = f"search {filter_string!r} {order_by} view={view} page={page}"
        mine = [_run_facts(r) for r in answered]
        theirs = [_run_facts(r) for r in expected]
        if mine != theirs:
            if [m[0] for m in mine] != [t[0] for t in theirs]:
                found.append(f"{case}: ids {[m[0] for m in mine]}, stores {[t[0] for t in theirs]}")
            else:
                for m, t in zip(mine, theirs, strict=True):
                    if m != t:
                        found.append(f"{case}: {m}, store {t}")
    # The experiments themselves, with their lifecycle and tags.
    for view in (ViewType.ACTIVE_ONLY, ViewType.DELETED_ONLY, ViewType.ALL):
        account_experiments = {
            e.experiment_id: (e.name, e.lifecycle_stage, e.tags)
            for e in _client("account").search_experiments(view_type=view, max_results=1000)
            if e.experiment_id in experiment_ids
        }
        stored = {}
        for workspace, experiment_id in world.experiments:
            experiment = _client(workspace).get_experiment(experiment_id)
            if view == ViewType.ALL or (experiment.lifecycle_stage == "deleted") == (view == ViewType.DELETED_ONLY):
                stored[_account_id(workspace, experiment_id)] = (
                    experiment.name,
                    experiment.lifecycle_stage,
                    experiment.tags,
                )
        if account_experiments != stored:
            found.append(f"search_experiments view={view}: {account_experiments}, stores {stored}")
    return found


@pytest.fixture
def stock(stack: Stack) -> Iterator[None]:
    with stock_client_env(
        MLFLOW_TRACKING_URI=stack.url, MLFLOW_TRACKING_TOKEN=ADMIN_TOKEN, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"
    ):
        mlflow.set_tracking_uri(stack.url)
        yield


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_the_index_answers_what_the_stores_answer_after_random_writes(stack: Stack, stock: None, seed: int) -> None:
    world = run_sequence(seed, steps=90)
    assert world.runs and world.experiments
    disagreements = list(world.failures)
    disagreements += compare_system_tables(stack, world)
    disagreements += compare_account_search(world, random.Random(seed), cases=12)
    assert not disagreements, "\n".join(disagreements)


def _history(stack: Stack, run_id: str, key: str) -> list[tuple[int, int, Any]]:
    points = rows(
        stack.database_url,
        "SELECT metric_step, metric_time, metric_value FROM system_mlflow.run_metrics_history "
        "WHERE run_id = $1 AND metric_name = $2",
        run_id,
        key,
    )
    return sorted(
        ((p["metric_step"], round(p["metric_time"].timestamp() * 1000), _float_key(p["metric_value"])) for p in points),
        key=repr,
    )


def test_a_point_logged_twice_is_one_point_of_the_history_as_in_the_store(stack: Stack, stock: None) -> None:
    """MLflow's SQL stores keep a point once: (key, timestamp, step, value) is the metric table's key, and a point
    sent again (a retried call, a batch naming it twice) is dropped. run_metrics_history listed every copy."""
    client = _client("team-a")
    experiment_id = client.create_experiment(unique("twice"))
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "loss", 0.5, BASE_MS, 1)
    client.log_metric(run_id, "loss", 0.5, BASE_MS, 1)  # again, alone
    client.log_batch(run_id, metrics=[Metric("loss", math.nan, BASE_MS, 2)] * 2 + [Metric("loss", 0.5, BASE_MS, 1)])
    client.log_metric(run_id, "loss", 0.25, BASE_MS, 1)  # the same step and time, another value: a point of its own
    stored = sorted(
        ((m.step, m.timestamp, _float_key(m.value)) for m in client.get_metric_history(run_id, "loss")), key=repr
    )
    assert stored == sorted([(1, BASE_MS, 0.5), (2, BASE_MS, "NaN"), (1, BASE_MS, 0.25)], key=repr)
    assert _history(stack, run_id, "loss") == stored


def test_a_point_logged_twice_is_one_value_of_the_runs_recursive_metrics_as_in_the_store(
    stack: Stack, stock: None
) -> None:
    """The Run API's recursive metrics, read from the index's chunks, list a point sent again once, as the run's own
    metrics (the store's get-history) do; a point of the same step with another time or value stays."""
    client = _client("team-a")
    experiment_id = client.create_experiment(unique("twice-recursive"))
    run_id = client.create_run(experiment_id).info.run_id
    child_id = client.create_run(experiment_id, tags={"mlflow.parentRunId": run_id}).info.run_id
    client.log_metric(run_id, "loss", 0.5, BASE_MS, 1)
    client.log_metric(run_id, "loss", 0.5, BASE_MS, 1)  # again, alone
    client.log_batch(run_id, metrics=[Metric("loss", 0.25, BASE_MS + 2000, 2)] * 2 + [Metric("loss", 0.5, BASE_MS, 1)])
    client.log_metric(run_id, "loss", 0.75, BASE_MS + 1000, 1)  # the same step, another time: a point of its own
    client.log_batch(child_id, metrics=[Metric("nan", math.nan, BASE_MS, 0)] * 2)
    run = run_api.Run(None, run_id)
    assert run.get_metrics() == {"loss": [0.5, 0.75, 0.25]}
    assert math.isnan(run_api.Run(None, child_id).get_metrics()["nan"])  # one value, not a list of two
    recursive = run.get_metrics(recursive=True)
    assert set(recursive) == {run_id, child_id}
    assert recursive[run_id] == run.get_metrics()
    assert list(recursive[child_id]) == ["nan"] and math.isnan(recursive[child_id]["nan"])


def test_infinity_and_max_double_at_one_step_and_time_are_one_point_as_in_the_store(stack: Stack, stock: None) -> None:
    """MLflow's SQL stores keep ±Infinity as ±max double, in the metric table's key too: ±Infinity and ±1.797e308
    logged at the same step and time are one point of the store's history (the first written). The index keeps
    ±Infinity as such, and run_metrics_history and the recursive metrics listed both."""
    client = _client("team-a")
    experiment_id = client.create_experiment(unique("inf-max"))
    run_id = client.create_run(experiment_id).info.run_id
    child_id = client.create_run(experiment_id, tags={"mlflow.parentRunId": run_id}).info.run_id
    client.log_metric(run_id, "edge", math.inf, BASE_MS, 1)
    client.log_metric(run_id, "edge", MAX_DOUBLE, BASE_MS, 1)
    client.log_batch(run_id, metrics=[Metric("edge", -MAX_DOUBLE, BASE_MS, 2), Metric("edge", -math.inf, BASE_MS, 2)])
    client.log_metric(run_id, "edge", MAX_DOUBLE, BASE_MS + 1000, 2)  # another time: a point of its own
    client.log_batch(child_id, metrics=[Metric("top", MAX_DOUBLE, BASE_MS, 0), Metric("top", math.inf, BASE_MS, 0)])
    stored = sorted(
        ((m.step, m.timestamp, _float_key(m.value)) for m in client.get_metric_history(run_id, "edge")), key=repr
    )
    assert stored == sorted(
        [(1, BASE_MS, MAX_DOUBLE), (2, BASE_MS, -MAX_DOUBLE), (2, BASE_MS + 1000, MAX_DOUBLE)], key=repr
    )
    assert _history(stack, run_id, "edge") == stored
    assert len(client.get_metric_history(child_id, "top")) == 1
    assert len(_history(stack, child_id, "top")) == 1
    recursive = run_api.Run(None, run_id).get_metrics(recursive=True)
    assert len(recursive[run_id]["edge"]) == 3
    assert not isinstance(recursive[child_id]["top"], list)  # one value, as the store has one point


def test_restoring_an_experiment_restores_every_run_of_it_as_the_store_does(stack: Stack, stock: None) -> None:
    """MLflow's restore_experiment marks every run of the experiment active, also one deleted before the experiment
    was."""
    client = _client("team-a")
    experiment_id = client.create_experiment(unique("restore"))
    earlier = client.create_run(experiment_id).info.run_id
    later = client.create_run(experiment_id).info.run_id
    client.delete_run(earlier)
    client.delete_experiment(experiment_id)
    client.restore_experiment(experiment_id)
    stages = {r: client.get_run(r).info.lifecycle_stage for r in (earlier, later)}
    indexed = {
        r["run_id"]: "deleted" if r["delete_time"] else "active"
        for r in rows(
            stack.database_url,
            "SELECT run_id, delete_time FROM system_mlflow.runs_latest WHERE run_id = ANY($1::text[])",
            [earlier, later],
        )
    }
    assert indexed == stages


def test_the_latest_of_a_nan_and_a_number_at_one_step_and_time_is_the_stores(stack: Stack, stock: None) -> None:
    """At one step and timestamp MLflow's SQL store ranks values as it keeps them, NaN as 0: 0.5 logged with a NaN
    stays the latest, -1 does not. The index ranked NaN above every number, so its latest was NaN for both."""
    client = _client("team-a")
    experiment_id = client.create_experiment(unique("tie"))
    run_id = client.create_run(experiment_id).info.run_id
    client.log_batch(run_id, metrics=[Metric("up", 0.5, BASE_MS, 3), Metric("up", math.nan, BASE_MS, 3)])
    client.log_metric(run_id, "down", -1.0, BASE_MS, 3)
    client.log_metric(run_id, "down", math.nan, BASE_MS, 3)
    client.log_metric(run_id, "kept", 0.25, BASE_MS, 3)
    client.log_metric(run_id, "kept", math.nan, BASE_MS, 3)  # one call after the other: the merge of aggregates
    stored = client.get_run(run_id).data.metrics
    assert _float_key(stored["up"]) == 0.5 and _float_key(stored["kept"]) == 0.25
    [row] = rows(
        stack.database_url, "SELECT aggregated_metrics FROM system_mlflow.runs_latest WHERE run_id = $1", run_id
    )
    latest = {a["metric_name"]: _float_key(a["latest_value"]) for a in row["aggregated_metrics"]}
    assert latest == {k: _float_key(v) for k, v in stored.items()}
    mlflow.set_workspace("account")
    [found] = MlflowClient().search_runs([_account_id("team-a", experiment_id)])
    assert {k: _float_key(v) for k, v in found.data.metrics.items()} == latest
