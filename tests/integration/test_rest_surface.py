"""MLflow's REST surface through the gateway, compared with the store answering the same call directly.

The UI's datasets summary exists only under /ajax-api in MLflow 3.17.2, and is forwarded there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import mlflow
import pytest
import requests

from tests.conftest import Stack
from tests.support.identity import Admin, Person, unique

pytestmark = pytest.mark.integration

SEARCH_DATASETS = "/ajax-api/2.0/mlflow/experiments/search-datasets"


@dataclass(frozen=True)
class Cast:
    owner: Person  # may use team-a, owns the experiment below
    stranger: Person  # may use team-a, holds nothing on that experiment
    experiment_id: str


@pytest.fixture(scope="module")
def cast(stack: Stack) -> Iterator[Cast]:
    """The owner logs a dataset input into a run with the stock client, through the gateway."""
    import pandas as pd

    admin = Admin.of(stack)
    suffix = uuid.uuid4().hex[:6]
    owner = admin.person(f"owner.{suffix}@example.com")
    stranger = admin.person(f"stranger.{suffix}@example.com")
    for person in (owner, stranger):
        admin.grant("workspaces/team-a", "CAN_USE", user=person.name)
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN")}
    os.environ.update(MLFLOW_TRACKING_URI=stack.url, MLFLOW_TRACKING_TOKEN=owner.token)
    try:
        mlflow.set_tracking_uri(stack.url)
        mlflow.set_workspace("team-a")
        experiment_id = mlflow.create_experiment(unique("surface"))
        frame = pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
        with mlflow.start_run(experiment_id=experiment_id):
            mlflow.log_input(mlflow.data.from_pandas(frame, name="train-set"), context="training")
        yield Cast(owner, stranger, experiment_id)
    finally:
        mlflow.set_workspace(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_the_ui_datasets_summary_is_forwarded_under_ajax_api(stack: Stack, cast: Cast) -> None:
    body = {"experiment_ids": [cast.experiment_id]}
    through = cast.owner.http(stack).post(f"{stack.url}{SEARCH_DATASETS}", json=body)
    assert through.status_code == 200, through.text
    direct = requests.post(f"{stack.stores['a'].url}{SEARCH_DATASETS}", json=body, timeout=30)
    assert direct.status_code == 200, direct.text
    assert through.json() == direct.json()
    summaries = through.json()["dataset_summaries"]
    assert [(s["experiment_id"], s["name"], s.get("context")) for s in summaries] == [
        (cast.experiment_id, "train-set", "training")
    ]
    # MLflow has no /api twin of this route, so neither has the gateway.
    api_twin = "/api/2.0/mlflow/experiments/search-datasets"
    assert requests.post(f"{stack.stores['a'].url}{api_twin}", json=body, timeout=30).status_code == 404
    missing = cast.owner.http(stack).post(f"{stack.url}{api_twin}", json=body)
    assert missing.status_code == 404 and missing.json()["error_code"] == "ENDPOINT_NOT_FOUND", missing.text


def test_the_datasets_summary_shows_only_readable_experiments(stack: Stack, cast: Cast) -> None:
    answer = cast.stranger.http(stack).post(
        f"{stack.url}{SEARCH_DATASETS}", json={"experiment_ids": [cast.experiment_id]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json().get("dataset_summaries", []) == []
