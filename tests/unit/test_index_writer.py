"""What each indexed write changes in the account-wide index: `plan`, the pure half of the index writer.

Bodies are what MLflow clients send and stores answer; the SQL half (`IndexWriter.apply`) is run
against a real database by tests/integration/test_index.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest

from gateway.index.writer import (
    INDEXED_ROUTES,
    ExperimentChange,
    IndexChange,
    NewExperiment,
    NewRun,
    RunChange,
    RunUpdate,
    plan,
)

WS = 1001
RUN = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
T0 = 1_700_000_000_000  # ms
AT_T0 = datetime.fromtimestamp(T0 / 1000, UTC)


def _body(value: object) -> bytes:
    return json.dumps(value).encode()


CREATED_RUN = {
    "run": {
        "info": {
            "run_id": RUN,
            "run_uuid": RUN,
            "experiment_id": "7",
            "run_name": "",
            "user_id": "someone-else",
            "status": "RUNNING",
            "start_time": T0,
            "artifact_uri": f"mlflow-artifacts:/7/{RUN}/artifacts",
            "lifecycle_stage": "active",
        },
        "data": {"tags": [{"key": "mlflow.runName", "value": "gentle-fox"}, {"key": "team", "value": "a"}]},
        "inputs": {},
    }
}

# route -> (request, response, the change it makes)
CASES: dict[str, tuple[object, object, IndexChange]] = {
    "POST /mlflow/runs/create": (
        {"experiment_id": "7", "start_time": T0, "tags": [{"key": "team", "value": "a"}]},
        CREATED_RUN,
        NewRun(
            workspace_id=WS,
            run_id=RUN,
            experiment_id="7",
            created_by="alice@example.com",  # the caller, not the user id the client put in the body
            run_name="gentle-fox",  # from the mlflow.runName tag when the info has none
            status="RUNNING",
            start_time=AT_T0,
            end_time=None,
            tags={"mlflow.runName": "gentle-fox", "team": "a"},
        ),
    ),
    "POST /mlflow/runs/update": (
        {"run_id": RUN, "status": "FINISHED", "end_time": T0 + 5000, "run_name": "renamed"},
        {"run_info": {}},
        RunChange(RUN, update=RunUpdate("FINISHED", datetime.fromtimestamp((T0 + 5000) / 1000, UTC), "renamed")),
    ),
    "POST /mlflow/runs/delete": ({"run_id": RUN}, {}, RunChange(RUN, deleted=True)),
    "POST /mlflow/runs/restore": ({"run_id": RUN}, {}, RunChange(RUN, deleted=False)),
    "POST /mlflow/runs/log-metric": (
        {"run_id": RUN, "key": "loss", "value": 0.5, "timestamp": T0, "step": 3},
        {},
        RunChange(
            RUN, points=b"[" + _body({"run_id": RUN, "key": "loss", "value": 0.5, "timestamp": T0, "step": 3}) + b"]"
        ),
    ),
    "POST /mlflow/runs/log-parameter": (
        {"run_uuid": RUN, "key": "lr", "value": "0.01"},  # the old spelling of the run id
        {},
        RunChange(RUN, params={"lr": "0.01"}),
    ),
    "POST /mlflow/runs/set-tag": (
        {"run_id": RUN, "key": "mlflow.runName", "value": "bold-owl"},
        {},
        RunChange(RUN, tags={"mlflow.runName": "bold-owl"}),
    ),
    "POST /mlflow/runs/delete-tag": ({"run_id": RUN, "key": "team"}, {}, RunChange(RUN, drop_tag="team")),
    "POST /mlflow/runs/log-batch": (
        {
            "run_id": RUN,
            "metrics": [
                {"key": "loss", "value": 0.25, "timestamp": T0, "step": 1},
                {"key": "acc", "value": "NaN", "timestamp": T0, "step": 1},
            ],
            "params": [{"key": "lr", "value": "0.01"}, {"key": "layers", "value": "4"}],
            "tags": [{"key": "team", "value": "b"}],
        },
        {},
        RunChange(
            RUN,
            points=_body(
                [
                    {"key": "loss", "value": 0.25, "timestamp": T0, "step": 1},
                    {"key": "acc", "value": "NaN", "timestamp": T0, "step": 1},
                ]
            ),
            params={"lr": "0.01", "layers": "4"},
            tags={"team": "b"},
        ),
    ),
    "POST /mlflow/runs/log-inputs": (
        {
            "run_id": RUN,
            "datasets": [
                {
                    "tags": [{"key": "mlflow.data.context", "value": "training"}],
                    "dataset": {"name": "iris", "digest": "abc123", "source_type": "local", "source": "{}"},
                },
                {"dataset": {"name": "holdout", "digest": "def456", "source_type": "local", "source": "{}"}},
            ],
        },
        {},
        RunChange(
            RUN,
            datasets=[
                {"name": "iris", "digest": "abc123", "context": "training"},
                {"name": "holdout", "digest": "def456", "context": ""},
            ],
        ),
    ),
    "POST /mlflow/experiments/create": (
        {"name": "churn", "artifact_location": "", "tags": [{"key": "owner", "value": "ml"}]},
        {"experiment_id": "12"},
        NewExperiment(WS, "12", "churn", {"owner": "ml"}),
    ),
    "POST /mlflow/experiments/update": (
        {"experiment_id": "12", "new_name": "churn-v2"},
        {},
        ExperimentChange(WS, "12", new_name="churn-v2"),
    ),
    "POST /mlflow/experiments/delete": ({"experiment_id": "12"}, {}, ExperimentChange(WS, "12", deleted=True)),
    "POST /mlflow/experiments/restore": ({"experiment_id": "12"}, {}, ExperimentChange(WS, "12", deleted=False)),
    "POST /mlflow/experiments/set-experiment-tag": (
        {"experiment_id": "12", "key": "owner", "value": "platform"},
        {},
        ExperimentChange(WS, "12", set_tag=("owner", "platform")),
    ),
    "POST /mlflow/experiments/delete-experiment-tag": (
        {"experiment_id": "12", "key": "owner"},
        {},
        ExperimentChange(WS, "12", drop_tag="owner"),
    ),
}


def test_every_indexed_route_has_a_case() -> None:
    assert set(CASES) == set(INDEXED_ROUTES)


@pytest.mark.parametrize("route", sorted(CASES))
def test_an_accepted_write_changes_these_rows(route: str) -> None:
    request, response, expected = CASES[route]
    assert plan(route, WS, _body(request), _body(response), "alice@example.com") == expected


def test_a_batch_without_metrics_appends_no_points() -> None:
    for metrics in ([], None):
        body = _body({"run_id": RUN, "metrics": metrics, "tags": [{"key": "team", "value": "c"}]})
        assert plan("POST /mlflow/runs/log-batch", WS, body, b"{}", "alice") == RunChange(RUN, tags={"team": "c"})


def test_a_batch_hands_the_points_over_as_sent() -> None:
    """PostgreSQL parses the points (one pass, in C): the bytes given are the client's array, whatever its spacing."""
    body = (
        b'{"run_id": "%s", "metrics": [ {"key": "x", "value": "Infinity", "timestamp": 1, "step": 0} ]}' % RUN.encode()
    )
    change = plan("POST /mlflow/runs/log-batch", WS, body, b"{}", "alice")
    assert isinstance(change, RunChange) and change.points is not None
    assert msgspec.json.decode(change.points) == [{"key": "x", "value": "Infinity", "timestamp": 1, "step": 0}]


def test_an_update_without_name_or_end_time_leaves_them() -> None:
    change = plan("POST /mlflow/runs/update", WS, _body({"run_id": RUN, "status": "KILLED"}), b"{}", "alice")
    assert change == RunChange(RUN, update=RunUpdate("KILLED", None, None))


def test_a_run_created_with_its_name_in_the_info_keeps_it() -> None:
    answer = json.loads(json.dumps(CREATED_RUN))
    answer["run"]["info"]["run_name"] = "from-info"
    change = plan("POST /mlflow/runs/create", WS, b"{}", _body(answer), "alice")
    assert isinstance(change, NewRun) and change.run_name == "from-info"


@pytest.mark.parametrize(
    "route", ["POST /mlflow/runs/search", "POST /mlflow/registered-models/create", "GET /mlflow/runs/get"]
)
def test_a_route_the_index_does_not_follow_changes_nothing(route: str) -> None:
    assert plan(route, WS, _body({"run_id": RUN}), b"{}", "alice") is None
