"""A gateway trusts its recent check that a run is RUNNING only while no call through any gateway changed the run.

The session's gateway reads a run's secret twice (the second read rests on its own check of the run), then a
second gateway on the same database ends, kills or deletes the run, or deletes its experiment: the next read
through the first gateway is refused exactly as for a run it never checked. A run restored through the other
gateway reads again. And with `[secrets] run_check_seconds = 0`, a run ended in its store without the gateway
is refused at the next read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from gateway.core.errors import mlflow_error
from gateway.devstack import GatewayProcess
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, Stack

WORKSPACE = "team-a"


def session(base: str) -> tuple[str, requests.Session]:
    http = requests.Session()
    http.headers.update({"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": WORKSPACE})
    return base, http


def post(gateway: tuple[str, requests.Session], path: str, body: dict[str, Any]) -> requests.Response:
    base, http = gateway
    return http.post(f"{base}{path}", json=body, timeout=60)


def ok(answer: requests.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.fixture(scope="module")
def scope(stack: Stack) -> Iterator[str]:
    name = f"checks-{uuid.uuid4().hex[:8]}"
    gateway = session(stack.url)
    ok(post(gateway, "/api/2.0/secrets/scopes/create", {"scope": name}))
    ok(post(gateway, "/api/2.0/secrets/put", {"scope": name, "key": "token", "string_value": "t-" + uuid.uuid4().hex}))
    yield name
    post(gateway, "/api/2.0/secrets/scopes/delete", {"scope": name})


@pytest.fixture(scope="module")
def other(stack: Stack) -> Iterator[tuple[str, requests.Session]]:
    """A second gateway (another replica) on the same database and stores."""
    process = GatewayProcess(stack.gateway.config_path, GATEWAY_ENV).start(timeout=120)
    yield session(process.url)
    process.stop()


def new_run(gateway: tuple[str, requests.Session]) -> tuple[str, str]:
    experiment = ok(post(gateway, "/api/2.0/mlflow/experiments/create", {"name": f"checks-{uuid.uuid4().hex}"}))
    run = ok(post(gateway, "/api/2.0/mlflow/runs/create", {"experiment_id": experiment["experiment_id"]}))
    return experiment["experiment_id"], run["run"]["info"]["run_id"]


def read(gateway: tuple[str, requests.Session], scope: str, run_id: str) -> requests.Response:
    return post(gateway, "/api/2.0/secrets/get", {"scope": scope, "key": "token", "run_id": run_id})


@pytest.mark.parametrize(
    "change",
    [
        ("/api/2.0/mlflow/runs/update", {"status": "FINISHED", "end_time": 1_700_000_000_000}),
        ("/api/2.0/mlflow/runs/update", {"status": "KILLED"}),
        ("/api/2.0/mlflow/runs/delete", {}),
        ("/api/2.0/mlflow/experiments/delete", None),
    ],
    ids=["ended", "killed", "deleted", "experiment deleted"],
)
def test_a_run_changed_through_another_gateway_is_refused_at_the_next_read(
    stack: Stack, other: tuple[str, requests.Session], scope: str, change: tuple[str, dict[str, Any] | None]
) -> None:
    here = session(stack.url)
    experiment_id, run_id = new_run(here)
    for _ in range(3):  # the first read asks the run's store; the others rest on that check
        assert ok(read(here, scope, run_id))["key"] == "token"

    path, fields = change
    body = {"experiment_id": experiment_id} if fields is None else {"run_id": run_id, **fields}
    ok(post(other, path, body))

    refused = read(here, scope, run_id)
    assert refused.status_code == 404, refused.text
    assert refused.json() == mlflow_error("RESOURCE_DOES_NOT_EXIST", f"Secret token does not exist in scope {scope}!")
    assert read(other, scope, run_id).status_code == 404


def test_a_run_restored_through_another_gateway_reads_again(
    stack: Stack, other: tuple[str, requests.Session], scope: str
) -> None:
    here = session(stack.url)
    _, run_id = new_run(here)
    ok(read(here, scope, run_id))
    ok(post(other, "/api/2.0/mlflow/runs/delete", {"run_id": run_id}))
    assert read(here, scope, run_id).status_code == 404
    ok(post(other, "/api/2.0/mlflow/runs/restore", {"run_id": run_id}))
    assert ok(read(here, scope, run_id))["key"] == "token"


def test_without_run_checks_a_run_ended_in_its_store_is_refused_at_the_next_read(stack: Stack, scope: str) -> None:
    strict = GatewayProcess(stack.gateway.config_path, {**GATEWAY_ENV, "FEDGATE_SECRETS_RUN_CHECK_SECONDS": "0"}).start(
        timeout=120
    )
    try:
        gateway = session(strict.url)
        _, run_id = new_run(gateway)
        ok(read(gateway, scope, run_id))
        ok(read(gateway, scope, run_id))
        # Straight to the store, as a client that bypasses the gateway would.
        ended = requests.post(
            f"{stack.stores['a'].url}/api/2.0/mlflow/runs/update",
            json={"run_id": run_id, "status": "FINISHED"},
            timeout=60,
        )
        assert ended.status_code == 200, ended.text
        assert read(gateway, scope, run_id).status_code == 404
    finally:
        strict.stop()
