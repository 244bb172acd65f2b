"""`X-Databricks-Workspace-Id` wherever `X-MLFLOW-WORKSPACE` is taken, through a real gateway: the stock
databricks-sdk's `WorkspaceClient(workspace_id=...)` on the MLflow routes, the SQL statement API and the secrets
API, and raw requests whose headers disagree, are malformed or are sent twice.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import Admin, Person, unique

pytestmark = pytest.mark.integration

TEAM_A, TEAM_A_ID = "team-a", "1001"
TEAM_B, TEAM_B_ID = "team-b", "1002"
UNKNOWN_ID = "4242"


@dataclass(frozen=True)
class Org:
    member: Person  # CAN_USE on team-a only: may create experiments there, sees nothing of team-b


@pytest.fixture(scope="module")
def org(stack: Stack) -> Org:
    admin = Admin.of(stack)
    member = admin.person(f"{unique('ws-id')}@example.com")
    admin.grant(f"workspaces/{TEAM_A}", "CAN_USE", user=member.name)
    return Org(member)


def workspace_client(stack: Stack, token: str, workspace_id: str) -> Any:
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=stack.url, token=token, workspace_id=workspace_id)


def send(stack: Stack, method: str, path: str, headers: list[tuple[str, str]], body: Any = None) -> tuple[int, Any]:
    """A request whose headers are sent exactly as listed, repeated ones included (requests would merge them)."""
    parts = urlsplit(stack.url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    try:
        connection.putrequest(method, path)
        payload = json.dumps(body).encode() if body is not None else b""
        for name, value in [("Authorization", f"Bearer {ADMIN_TOKEN}"), ("Content-Type", "application/json")]:
            connection.putheader(name, value)
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(payload)))
        connection.endheaders(payload)
        response = connection.getresponse()
        text = response.read().decode()
        return response.status, json.loads(text) if text else None
    finally:
        connection.close()


def test_the_databricks_sdk_with_a_workspace_id_reaches_that_workspaces_mlflow_store(stack: Stack) -> None:
    from databricks.sdk.errors import NotFound

    admin = Admin.of(stack)
    team_b = workspace_client(stack, ADMIN_TOKEN, TEAM_B_ID)
    name = unique("by-id")
    experiment_id = team_b.experiments.create_experiment(name).experiment_id
    assert team_b.experiments.get_experiment(experiment_id).experiment.name == name
    assert team_b.experiments.get_by_name(name).experiment.experiment_id == experiment_id
    # The experiment is team-b's: found there by name, and not in team-a.
    by_name = admin.http(TEAM_B).get(
        f"{stack.url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name}, timeout=60
    )
    assert by_name.status_code == 200 and by_name.json()["experiment"]["experiment_id"] == experiment_id
    in_a = admin.http(TEAM_A).get(
        f"{stack.url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name}, timeout=60
    )
    assert in_a.status_code == 404
    with pytest.raises(NotFound):
        workspace_client(stack, ADMIN_TOKEN, TEAM_A_ID).experiments.get_by_name(name)
    searched = [e.name for e in team_b.experiments.search_experiments(filter=f"name = '{name}'", max_results=10)]
    assert searched == [name]
    with pytest.raises(NotFound, match=f"Workspace with id {UNKNOWN_ID} not found"):
        workspace_client(stack, ADMIN_TOKEN, UNKNOWN_ID).experiments.get_experiment(experiment_id)


def test_an_id_the_caller_may_not_see_answers_as_an_unknown_one(stack: Stack, org: Org) -> None:
    from databricks.sdk.errors import NotFound

    mine = workspace_client(stack, org.member.token, TEAM_A_ID)
    name = unique("member")
    experiment_id = mine.experiments.create_experiment(name).experiment_id
    assert mine.experiments.get_experiment(experiment_id).experiment.name == name
    messages = []
    for workspace_id in (TEAM_B_ID, UNKNOWN_ID):
        with pytest.raises(NotFound) as refused:
            workspace_client(stack, org.member.token, workspace_id).experiments.get_experiment(experiment_id)
        messages.append(str(refused.value).replace(workspace_id, "N"))
    assert messages[0] == messages[1] == "Workspace with id N not found"


def test_the_sql_statement_api_takes_the_workspace_id(stack: Stack, org: Org) -> None:
    from databricks.sdk.errors import NotFound
    from databricks.sdk.service.sql import StatementState

    admin_sql = workspace_client(stack, ADMIN_TOKEN, TEAM_B_ID).statement_execution
    answered = admin_sql.execute_statement(
        statement="SELECT count(*) AS n FROM system.mlflow.experiments_latest", warehouse_id="any"
    )
    assert answered.status.state == StatementState.SUCCEEDED
    assert int(answered.result.data_array[0][0]) >= 0
    assert admin_sql.get_statement(answered.statement_id).status.state == StatementState.SUCCEEDED
    member_sql = workspace_client(stack, org.member.token, TEAM_A_ID).statement_execution
    one = member_sql.execute_statement(statement="SELECT 1 AS one", warehouse_id="any")
    assert one.result.data_array == [["1"]]
    for workspace_id in (TEAM_B_ID, UNKNOWN_ID):
        hidden = workspace_client(stack, org.member.token, workspace_id).statement_execution
        with pytest.raises(NotFound, match=f"Workspace with id {workspace_id} not found"):
            hidden.execute_statement(statement="SELECT 1 AS one", warehouse_id="any")


def test_the_secrets_api_takes_the_workspace_id(stack: Stack) -> None:
    team_b = workspace_client(stack, ADMIN_TOKEN, TEAM_B_ID).secrets
    scope = unique("by-id")
    team_b.create_scope(scope)
    assert scope in {s.name for s in team_b.list_scopes()}
    assert scope not in {s.name for s in workspace_client(stack, ADMIN_TOKEN, TEAM_A_ID).secrets.list_scopes()}
    team_b.delete_scope(scope)


ROUTES = [
    ("GET", "/api/2.0/mlflow/experiments/search?max_results=1", None),
    ("POST", "/api/2.0/sql/statements", {"statement": "SELECT 1", "warehouse_id": "any"}),
    ("GET", "/api/2.0/secrets/scopes/list", None),
    ("GET", "/api/2.0/permissions/experiments/0", None),
    ("GET", "/api/3.0/mlflow/server-info", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[r[1].split("?")[0] for r in ROUTES])
def test_disagreeing_malformed_and_repeated_headers_are_refused_everywhere(
    stack: Stack, method: str, path: str, body: Any
) -> None:
    refusals = {
        "disagree": [("X-MLFLOW-WORKSPACE", TEAM_A), ("X-Databricks-Workspace-Id", TEAM_B_ID)],
        "not a number": [("X-Databricks-Workspace-Id", "team-b")],
        "negative": [("X-Databricks-Workspace-Id", "-1002")],
        "two ids in one": [("X-Databricks-Workspace-Id", "1001, 1002")],
        "id twice": [("X-Databricks-Workspace-Id", TEAM_B_ID), ("X-Databricks-Workspace-Id", TEAM_B_ID)],
        "name twice": [("X-MLFLOW-WORKSPACE", TEAM_B), ("X-MLFLOW-WORKSPACE", TEAM_B)],
        "account scope and id": [("X-MLFLOW-WORKSPACE", "account"), ("X-Databricks-Workspace-Id", TEAM_B_ID)],
    }
    for what, headers in refusals.items():
        status, answer = send(stack, method, path, headers, body)
        assert status == 400, (what, status, answer)
        assert answer["error_code"] == "INVALID_PARAMETER_VALUE", (what, answer)
    status, answer = send(stack, method, path, [("X-Databricks-Workspace-Id", UNKNOWN_ID)], body)
    assert (status, answer["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST"), answer
    assert answer["message"] == f"Workspace with id {UNKNOWN_ID} not found"
    agreeing = [("X-MLFLOW-WORKSPACE", TEAM_B), ("X-Databricks-Workspace-Id", f" {TEAM_B_ID} ")]
    status, answer = send(stack, method, path, agreeing, body)
    assert status in (200, 404), answer  # permissions of experiment 0: a 404 of the experiment, not of the headers
    if status == 404:
        assert "Workspace" not in answer["message"], answer
