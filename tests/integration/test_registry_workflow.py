"""The registry workflow against a real gateway and real mlflow stores, through the stock databricks-sdk and
MLflow client: three principals (a requester with CAN_READ, a staging approver, a production approver), the
model's owner (CAN_MANAGE) and an outsider; a model's whole life None → Staging → Production with
archive_existing_versions, rejections, cancellations, comments, the activity log exactly, `available_actions`
per principal, every forbidden action refused, MLflow's own transition-stage under the same rules, and two
gateway processes approving one request at the same moment.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from gateway.devstack import GatewayProcess, MlflowServer
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, Stack
from tests.support.identity import Admin, Person, unique
from tests.support.own_gateway import own_gateway

pytestmark = pytest.mark.integration

WORKSPACE = "team-a"
WORKSPACE_ID = "1001"
DUAL = "lab-registry"  # a dual workspace of a gateway of its own (dual_gateway)
APPROVE, REJECT, CANCEL = "APPROVE_TRANSITION_REQUEST", "REJECT_TRANSITION_REQUEST", "CANCEL_TRANSITION_REQUEST"
EDIT, DELETE = "EDIT_COMMENT", "DELETE_COMMENT"


@dataclass(frozen=True)
class Org:
    owner: Person  # creates the models: CAN_MANAGE on each
    requester: Person  # CAN_READ
    staging: Person  # CAN_MANAGE_STAGING_VERSIONS
    production: Person  # CAN_MANAGE_PRODUCTION_VERSIONS
    outsider: Person  # CAN_USE on the workspace, nothing on the models
    run_id: str  # the owner's run the versions are made from


def email(prefix: str) -> str:
    return f"{unique(prefix)}@example.com"


def mlflow_api(stack: Stack, who: Person, method: str, path: str, workspace: str = WORKSPACE, **kw: Any) -> Any:
    answer = who.http(stack, workspace).request(method, f"{stack.url}/api/2.0/mlflow/{path}", timeout=60, **kw)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def org(stack: Stack) -> Org:
    admin = Admin.of(stack)
    people = [admin.person(email(p)) for p in ("owner", "requester", "staging", "production", "outsider")]
    for person in people:
        admin.grant(f"workspaces/{WORKSPACE}", "CAN_USE", user=person.name)
    owner = people[0]
    experiment_id = mlflow_api(stack, owner, "POST", "experiments/create", json={"name": unique("registry")})[
        "experiment_id"
    ]
    run_id = mlflow_api(stack, owner, "POST", "runs/create", json={"experiment_id": experiment_id})["run"]["info"][
        "run_id"
    ]
    return Org(*people[:5], run_id=run_id)


def make_model(stack: Stack, org: Org, versions: int = 3, *, prefix: str = "churn") -> str:
    """A model of the owner's with `versions` versions; CAN_READ, STAGING and PRODUCTION granted to the three."""
    name = unique(prefix)
    mlflow_api(stack, org.owner, "POST", "registered-models/create", json={"name": name})
    for _ in range(versions):
        body = {"name": name, "source": f"runs:/{org.run_id}/model", "run_id": org.run_id}
        mlflow_api(stack, org.owner, "POST", "model-versions/create", json=body)
    model_id = model_of(stack, org.owner, name)["id"]
    for person, level in (
        (org.requester, "CAN_READ"),
        (org.staging, "CAN_MANAGE_STAGING_VERSIONS"),
        (org.production, "CAN_MANAGE_PRODUCTION_VERSIONS"),
    ):
        granted = org.owner.http(stack).patch(
            f"{stack.url}/api/2.0/permissions/registered-models/{model_id}",
            json={"access_control_list": [{"user_name": person.name, "permission_level": level}]},
            timeout=60,
        )
        assert granted.status_code == 200, granted.text
    return name


def model_of(stack: Stack, who: Person, name: str) -> dict[str, Any]:
    return dict(
        mlflow_api(stack, who, "GET", "databricks/registered-models/get", params={"name": name})[
            "registered_model_databricks"
        ]
    )


def registry(stack: Stack, who: Person | None, **config: Any) -> Any:
    """The stock databricks-sdk's `w.model_registry`, as `who` (None: the bootstrap admin)."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    if "workspace_id" not in config:
        config["custom_headers"] = {"X-MLFLOW-WORKSPACE": config.pop("workspace", WORKSPACE)}
    token = who.token if who is not None else ADMIN_TOKEN
    return WorkspaceClient(config=Config(host=stack.url, token=token, **config)).model_registry


def code_of(call: Any) -> str:
    """The error code of the SDK's exception for `call`."""
    from databricks.sdk.errors import DatabricksError

    with pytest.raises(DatabricksError) as excinfo:
        call()
    return str(excinfo.value.error_code)


def activities(stack: Stack, who: Person, name: str, version: str | None = None) -> list[dict[str, Any]]:
    params = {"name": name, **({"version": version} if version else {})}
    answer = who.http(stack).get(f"{stack.url}/api/2.0/mlflow/activities/list", params=params, timeout=60)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["activities"])


def summary(log: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (a["version"], a["activity_type"], a["user_id"], a.get("from_stage"), a.get("to_stage"), a.get("comment"))
        for a in log
    ]


def stage_of(stack: Stack, name: str, version: str, workspace: str = WORKSPACE) -> str:
    answer = stack.http(workspace).get(
        f"{stack.url}/api/2.0/mlflow/model-versions/get", params={"name": name, "version": version}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["model_version"]["current_stage"])


def listed_actions(stack: Stack, who: Person, name: str, version: str) -> list[list[str]]:
    answer = who.http(stack).get(
        f"{stack.url}/api/2.0/mlflow/transition-requests/list", params={"name": name, "version": version}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    return [r.get("available_actions", []) for r in answer.json()["requests"]]


def test_a_models_life_through_requests_approvals_rejections_cancellations_and_comments(stack: Stack, org: Org) -> None:
    from databricks.sdk.service.ml import ActivityType

    name = make_model(stack, org)
    requester, staging, production = (
        registry(stack, org.requester),
        registry(stack, org.staging),
        registry(stack, org.production),
    )
    owner, outsider = registry(stack, org.owner), registry(stack, org.outsider)
    r, s, p, o = org.requester.name, org.staging.name, org.production.name, org.owner.name

    # Requested to Staging: each principal is offered what it may do with the request.
    created = requester.create_transition_request(name, "1", "Staging", comment="ready for QA").request
    assert (created.to_stage, created.user_id, created.comment) == ("Staging", r, "ready for QA")
    assert [a.value for a in created.available_actions] == [CANCEL]
    assert listed_actions(stack, org.requester, name, "1") == [[CANCEL]]
    assert listed_actions(stack, org.staging, name, "1") == [[APPROVE, REJECT]]
    assert listed_actions(stack, org.production, name, "1") == [[APPROVE, REJECT]]
    assert listed_actions(stack, org.owner, name, "1") == [[APPROVE, REJECT, CANCEL]]
    [listed] = staging.list_transition_requests(name, "1")
    assert (listed.activity_type, listed.user_id, listed.from_stage, listed.to_stage) == (
        ActivityType.REQUESTED_TRANSITION,
        r,
        "None",
        "Staging",
    )
    # One open request per user and stage; none for a version that does not exist.
    assert code_of(lambda: requester.create_transition_request(name, "1", "Staging")) == "RESOURCE_ALREADY_EXISTS"
    assert code_of(lambda: requester.create_transition_request(name, "99", "Staging")) == "RESOURCE_DOES_NOT_EXIST"
    assert code_of(lambda: requester.create_transition_request(name, "1", "Prod")) == "INVALID_PARAMETER_VALUE"
    # CAN_READ may request, not decide; the staging approver approves.
    assert code_of(lambda: requester.approve_transition_request(name, "1", "Staging", False)) == "PERMISSION_DENIED"
    approved = staging.approve_transition_request(name, "1", "Staging", False, comment="QA passed").activity
    assert (approved.activity_type, approved.user_id, approved.from_stage, approved.to_stage) == (
        ActivityType.APPROVED_REQUEST,
        s,
        "None",
        "Staging",
    )
    assert stage_of(stack, name, "1") == "Staging"
    assert requester.list_transition_requests(name, "1") == []
    # Deciding a decided request is a clear 4xx, not a second transition.
    again = org.staging.http(stack).post(
        f"{stack.url}/api/2.0/mlflow/transition-requests/approve",
        json={"name": name, "version": "1", "stage": "Staging", "archive_existing_versions": False},
        timeout=60,
    )
    assert again.status_code == 409 and again.json()["error_code"] == "INVALID_STATE", again.text
    assert f"already approved by {s}" in again.json()["message"]

    # To Production: the staging approver may neither approve nor reject; the production approver rejects.
    requester.create_transition_request(name, "1", "Production", comment="ship it")
    assert listed_actions(stack, org.staging, name, "1") == [[]]
    assert code_of(lambda: staging.approve_transition_request(name, "1", "Production", False)) == "PERMISSION_DENIED"
    assert code_of(lambda: staging.reject_transition_request(name, "1", "Production")) == "PERMISSION_DENIED"
    rejected = production.reject_transition_request(name, "1", "Production", comment="needs a fairness review")
    assert (rejected.activity.activity_type, rejected.activity.user_id) == (ActivityType.REJECTED_REQUEST, p)
    assert stage_of(stack, name, "1") == "Staging"

    # Requested again and approved; then version 2 to Production, archiving version 1.
    requester.create_transition_request(name, "1", "Production", comment="fairness reviewed")
    production.approve_transition_request(name, "1", "Production", False)
    assert stage_of(stack, name, "1") == "Production"
    requester.create_transition_request(name, "2", "Production")
    production.approve_transition_request(name, "2", "Production", True, comment="v2 is better")
    assert (stage_of(stack, name, "1"), stage_of(stack, name, "2")) == ("Archived", "Production")

    # Cancelling: the requester's own, or a manager's; nobody else's.
    requester.create_transition_request(name, "3", "Staging")
    assert code_of(lambda: staging.delete_transition_request(name, "3", "Staging", r)) == "PERMISSION_DENIED"
    cancelled = requester.delete_transition_request(name, "3", "Staging", r, comment="not yet").activity
    assert (cancelled.activity_type, cancelled.user_id, cancelled.comment) == (
        ActivityType.CANCELLED_REQUEST,
        r,
        "not yet",
    )
    assert code_of(lambda: requester.delete_transition_request(name, "3", "Staging", r)) == "INVALID_STATE"
    requester.create_transition_request(name, "3", "Staging")
    owner.delete_transition_request(name, "3", "Staging", r)
    assert stage_of(stack, name, "3") == "None"

    # Comments: anyone who reads comments; the author or a manager edits and deletes.
    mine = requester.create_comment(name, "1", "first look").comment
    assert (mine.user_id, mine.comment) == (r, "first look")
    assert sorted(a.value for a in mine.available_actions) == [DELETE, EDIT]
    theirs = staging.create_comment(name, "1", "lgtm").comment
    assert code_of(lambda: staging.update_comment(mine.id, "hijacked")) == "PERMISSION_DENIED"
    assert code_of(lambda: production.delete_comment(mine.id)) == "PERMISSION_DENIED"
    edited = requester.update_comment(mine.id, "first look, updated").comment
    assert edited.comment == "first look, updated" and edited.last_updated_timestamp >= edited.creation_timestamp
    owner.delete_comment(theirs.id)
    assert code_of(lambda: staging.update_comment(theirs.id, "back")) == "RESOURCE_DOES_NOT_EXIST"
    assert code_of(lambda: requester.create_comment(name, "1", "")) == "INVALID_PARAMETER_VALUE"

    # Without CAN_READ the model does not exist, whatever is asked.
    for call in (
        lambda: outsider.create_transition_request(name, "1", "Staging"),
        lambda: outsider.list_transition_requests(name, "1"),
        lambda: outsider.approve_transition_request(name, "3", "Staging", False),
        lambda: outsider.reject_transition_request(name, "3", "Staging"),
        lambda: outsider.delete_transition_request(name, "3", "Staging", r),
        lambda: outsider.create_comment(name, "1", "hello"),
        lambda: outsider.update_comment(mine.id, "hello"),
        lambda: outsider.delete_comment(mine.id),
        lambda: outsider.get_model(name),
        lambda: outsider.transition_stage(name, "3", "Staging", False),
    ):
        assert code_of(call) == "RESOURCE_DOES_NOT_EXIST"
    hidden = org.outsider.http(stack).get(f"{stack.url}/api/2.0/mlflow/activities/list", params={"name": name})
    assert hidden.status_code == 404 and hidden.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert code_of(lambda: requester.transition_stage(name, "3", "Staging", False)) == "PERMISSION_DENIED"

    # The activity log, newest first: who did what, when, from where to where.
    assert summary(activities(stack, org.requester, name, "1")) == [
        ("1", "NEW_COMMENT", s, None, None, None),  # deleted since: no text
        ("1", "NEW_COMMENT", r, None, None, "first look, updated"),
        ("1", "SYSTEM_TRANSITION", p, "Production", "Archived", None),
        ("1", "APPROVED_REQUEST", p, "Staging", "Production", None),
        ("1", "REQUESTED_TRANSITION", r, "Staging", "Production", "fairness reviewed"),
        ("1", "REJECTED_REQUEST", p, "Staging", "Production", "needs a fairness review"),
        ("1", "REQUESTED_TRANSITION", r, "Staging", "Production", "ship it"),
        ("1", "APPROVED_REQUEST", s, "None", "Staging", "QA passed"),
        ("1", "REQUESTED_TRANSITION", r, "None", "Staging", "ready for QA"),
    ]
    log = activities(stack, org.staging, name)
    assert summary(log)[2:8] == [
        ("3", "CANCELLED_REQUEST", o, None, "Staging", None),
        ("3", "REQUESTED_TRANSITION", r, "None", "Staging", None),
        ("3", "CANCELLED_REQUEST", r, None, "Staging", "not yet"),
        ("3", "REQUESTED_TRANSITION", r, "None", "Staging", None),
        ("1", "SYSTEM_TRANSITION", p, "Production", "Archived", None),
        ("2", "APPROVED_REQUEST", p, "None", "Production", "v2 is better"),
    ]
    assert len(log) == 15
    assert log[0]["system_comment"] == "This comment was deleted."
    assert log[6]["system_comment"] == "Archived because version 2 moved to Production with archive_existing_versions."
    times = [a["creation_timestamp"] for a in log]
    assert times == sorted(times, reverse=True)
    # Pages of the log follow each other without gaps.
    first = (
        org.requester.http(stack)
        .get(f"{stack.url}/api/2.0/mlflow/activities/list", params={"name": name, "max_results": 10})
        .json()
    )
    second = (
        org.requester.http(stack)
        .get(
            f"{stack.url}/api/2.0/mlflow/activities/list",
            params={"name": name, "max_results": 10, "page_token": first["next_page_token"]},
        )
        .json()
    )
    assert [a["id"] for a in first["activities"] + second["activities"]] == [a["id"] for a in log]
    assert "next_page_token" not in second


def test_mlflows_own_transition_stage_follows_the_same_rules_and_lands_in_the_log(
    stack: Stack, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = make_model(stack, org, versions=2)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_WORKSPACE", WORKSPACE)

    def client(person: Person) -> MlflowClient:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", person.token)
        mlflow.set_workspace(WORKSPACE)
        return MlflowClient(tracking_uri=stack.url)

    def refused(person: Person, version: str, stage: str, archive: bool = False) -> str:
        with pytest.raises(MlflowException) as excinfo:
            client(person).transition_model_version_stage(name, version, stage, archive_existing_versions=archive)
        return str(excinfo.value.error_code)

    try:
        assert refused(org.requester, "1", "Staging") == "PERMISSION_DENIED"
        assert refused(org.outsider, "1", "Staging") == "RESOURCE_DOES_NOT_EXIST"
        assert client(org.staging).transition_model_version_stage(name, "1", "Staging").current_stage == "Staging"
        assert refused(org.staging, "1", "Production") == "PERMISSION_DENIED"
        # Databricks' direct transition, for the production approver.
        direct = registry(stack, org.production).transition_stage(name, "1", "Production", False, comment="hotfix")
        version = direct.model_version_databricks
        assert (version.current_stage, version.permission_level.value) == (
            "Production",
            "CAN_MANAGE_PRODUCTION_VERSIONS",
        )
        assert refused(org.staging, "1", "Archived") == "PERMISSION_DENIED"  # out of Production
        assert refused(org.staging, "2", "Prod") == "INVALID_PARAMETER_VALUE"  # the store's own answer
        client(org.staging).transition_model_version_stage(name, "2", "Staging", archive_existing_versions=True)
        moved = client(org.production).transition_model_version_stage(
            name, "2", "Production", archive_existing_versions=True
        )
        assert moved.current_stage == "Production"
        assert stage_of(stack, name, "1") == "Archived"
    finally:
        mlflow.set_workspace(None)

    s, p = org.staging.name, org.production.name
    assert summary(activities(stack, org.requester, name)) == [
        ("1", "SYSTEM_TRANSITION", p, "Production", "Archived", None),
        ("2", "APPLIED_TRANSITION", p, "Staging", "Production", None),
        ("2", "APPLIED_TRANSITION", s, "None", "Staging", None),
        ("1", "APPLIED_TRANSITION", p, "Staging", "Production", "hotfix"),
        ("1", "APPLIED_TRANSITION", s, "None", "Staging", None),
    ]
    model = registry(stack, org.production).get_model(name).registered_model_databricks
    assert model.id == model_of(stack, org.owner, name)["id"] and model.name == name
    assert model.permission_level.value == "CAN_MANAGE_PRODUCTION_VERSIONS"
    assert {(v.version, v.current_stage) for v in model.latest_versions} == {("1", "Archived"), ("2", "Production")}


def test_a_version_mlflow_reads_in_another_spelling_lands_in_the_log_as_that_version(stack: Stack, org: Org) -> None:
    """MLflow's store reads a version with Python's `int`: `+1`, `0_1` and a fullwidth one (U+FF11) are version 1. Its
    transition-stage and set-alias in such a spelling moved version 1 and reached no activity log, no webhook."""
    name = make_model(stack, org, versions=1)
    http = org.production.http(stack)
    api = f"{stack.url}/api/2.0/mlflow"
    for spelt, stage in (("+1", "Staging"), ("0_1", "Production"), ("\uff11", "Archived")):
        body = {"name": name, "version": spelt, "stage": stage, "archive_existing_versions": False}
        moved = http.post(f"{api}/model-versions/transition-stage", json=body, timeout=60)
        assert moved.status_code == 200, moved.text
        assert moved.json()["model_version"]["version"] == "1"
    aliased = org.owner.http(stack).post(
        f"{api}/registered-models/alias", json={"name": name, "alias": "champion", "version": "+1"}, timeout=60
    )
    assert aliased.status_code == 200, aliased.text
    p = org.production.name
    assert summary(activities(stack, org.requester, name))[1:] == [
        ("1", "APPLIED_TRANSITION", p, "Production", "Archived", None),
        ("1", "APPLIED_TRANSITION", p, "Staging", "Production", None),
        ("1", "APPLIED_TRANSITION", p, "None", "Staging", None),
    ]
    assert [(a["version"], a["activity_type"], a.get("alias")) for a in activities(stack, org.requester, name)[:1]] == [
        ("1", "SET_ALIAS", "champion")
    ]


def test_the_workspace_may_be_named_by_its_id_as_databricks_sdk_sends_it(stack: Stack, org: Org) -> None:
    name = make_model(stack, org, versions=1)
    by_id = registry(stack, org.requester, workspace_id=WORKSPACE_ID)
    by_id.create_transition_request(name, "1", "Staging")
    assert [r.to_stage for r in by_id.list_transition_requests(name, "1")] == ["Staging"]
    disagreeing = org.requester.http(stack, "team-b").get(
        f"{stack.url}/api/2.0/mlflow/transition-requests/list",
        params={"name": name, "version": "1"},
        headers={"X-Databricks-Workspace-Id": WORKSPACE_ID},
    )
    assert disagreeing.status_code in (400, 404), disagreeing.text


def test_the_activity_log_and_open_requests_from_the_command_line(
    stack: Stack, org: Org, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    name = make_model(stack, org, versions=2)
    registry(stack, org.requester).create_transition_request(name, "1", "Staging", comment="ready")
    registry(stack, org.staging).approve_transition_request(name, "1", "Staging", False)
    registry(stack, org.requester).create_transition_request(name, "2", "Staging", comment="next")
    monkeypatch.setenv("FEDGATE_TOKEN", org.staging.token)

    def fedgate(*argv: str) -> list[str]:
        assert main([*argv, "--workspace", WORKSPACE, "--url", stack.url]) == 0, capsys.readouterr().err
        return capsys.readouterr().out.splitlines()

    log = fedgate("registry", "activities", name)
    assert [line.split()[3:6] for line in log[1:]] == [
        ["2", "REQUESTED_TRANSITION", org.requester.name],
        ["1", "APPROVED_REQUEST", org.staging.name],
        ["1", "REQUESTED_TRANSITION", org.requester.name],
    ]
    assert len(fedgate("registry", "activities", name, "1")) == 3
    [_, request] = fedgate("registry", "requests", name, "2")
    assert request.split()[3:] == [org.requester.name, "None", "Staging", "next", "approve,", "reject"]
    monkeypatch.setenv("FEDGATE_TOKEN", org.outsider.token)
    assert main(["registry", "activities", name, "--workspace", WORKSPACE, "--url", stack.url]) == 1
    assert "RESOURCE_DOES_NOT_EXIST" in capsys.readouterr().err


def test_a_rename_keeps_the_log_and_a_model_made_again_under_the_name_starts_a_new_one(stack: Stack, org: Org) -> None:
    name = make_model(stack, org, versions=1)
    registry(stack, org.requester).create_transition_request(name, "1", "Staging", comment="before the rename")
    renamed = f"{name}-renamed"
    mlflow_api(stack, org.owner, "POST", "registered-models/rename", json={"name": name, "new_name": renamed})
    assert summary(activities(stack, org.requester, renamed)) == [
        ("1", "REQUESTED_TRANSITION", org.requester.name, "None", "Staging", "before the rename")
    ]
    registry(stack, org.staging).approve_transition_request(renamed, "1", "Staging", False)
    assert stage_of(stack, renamed, "1") == "Staging"
    gone = org.requester.http(stack).get(f"{stack.url}/api/2.0/mlflow/activities/list", params={"name": name})
    assert gone.status_code == 404

    old_id = model_of(stack, org.owner, renamed)["id"]
    mlflow_api(stack, org.owner, "DELETE", "registered-models/delete", json={"name": renamed})
    mlflow_api(stack, org.owner, "POST", "registered-models/create", json={"name": renamed})
    assert model_of(stack, org.owner, renamed)["id"] != old_id
    assert activities(stack, org.owner, renamed) == []
    # The deleted model's log stays attached to its id, in the log and in the audit log.
    rows = audit(stack, f"registered_model:w{WORKSPACE_ID}/{old_id}")
    kept = [row["action"] for row in rows if row["action"].startswith("registry.")]
    assert kept == ["registry.requested_transition", "registry.approved_request"]


def audit(stack: Stack, target: str) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(stack.database_url)
        try:
            return list(
                await connection.fetch(
                    "SELECT actor, action, target, details FROM audit_log WHERE target LIKE $1 ORDER BY id", target
                )
            )
        finally:
            await connection.close()

    return asyncio.run(fetch())


def test_every_activity_is_in_the_audit_log_and_the_log_is_append_only(stack: Stack, org: Org) -> None:
    name = make_model(stack, org, versions=1)
    model_id = model_of(stack, org.owner, name)["id"]
    registry(stack, org.requester).create_transition_request(name, "1", "Staging")
    registry(stack, org.staging).approve_transition_request(name, "1", "Staging", False)
    rows = [(row["actor"], row["action"]) for row in audit(stack, f"registered_model:w{WORKSPACE_ID}/{model_id}")]
    assert (org.requester.name, "registry.requested_transition") in rows
    assert (org.staging.name, "registry.approved_request") in rows

    async def tamper() -> list[str]:
        connection = await asyncpg.connect(stack.database_url)
        refused = []
        try:
            for statement in (
                "UPDATE registry_activities SET user_id = 'someone-else' WHERE model_id = $1",
                "DELETE FROM registry_activities WHERE model_id = $1",
            ):
                try:
                    await connection.execute(statement, model_id)
                except asyncpg.PostgresError as exc:
                    refused.append(str(exc))
            try:
                await connection.execute("TRUNCATE registry_activities")
            except asyncpg.PostgresError as exc:
                refused.append(str(exc))
        finally:
            await connection.close()
        return refused

    assert asyncio.run(tamper()) == ["registry_activities is append-only"] * 3
    assert len(activities(stack, org.owner, name)) == 2


def race(stack: Stack, who: Person, urls: list[str], path: str, body: dict[str, Any]) -> list[requests.Response]:
    """POST `body` to `path` of every gateway in `urls` at the same moment; the answers."""
    barrier = threading.Barrier(len(urls))
    answers: list[requests.Response] = []

    def post(url: str) -> None:
        session = who.http(stack)
        barrier.wait()
        answers.append(session.post(f"{url}{path}", json=body, timeout=120))

    threads = [threading.Thread(target=post, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@dataclass(frozen=True)
class Leaver:
    """A reader of a new model of one version, to be deleted and made again under the same name (as SCIM
    provisioning the address again does); each of the two may use the workspace and read the model."""

    stack: Stack
    model: str
    model_id: str
    left: Person

    @classmethod
    def of_a_new_model(cls, stack: Stack, org: Org) -> Leaver:
        name = make_model(stack, org, versions=1)
        leaver = cls(stack, name, model_of(stack, org.owner, name)["id"], Admin.of(stack).person(email("leaver")))
        leaver.may_read(leaver.left)
        return leaver

    def may_read(self, person: Person) -> None:
        admin = Admin.of(self.stack)
        admin.grant(f"workspaces/{WORKSPACE}", "CAN_USE", user=person.name)
        admin.grant(f"registered-models/{self.model_id}", "CAN_READ", user=person.name, workspace=WORKSPACE)

    def made_again(self) -> Person:
        """Deletes the user who left and makes another under their name, who may read the model; the newcomer."""
        admin = Admin.of(self.stack)
        gone = admin.http().delete(f"{self.stack.url}/api/2.0/preview/scim/v2/Users/{self.left.id}", timeout=60)
        assert gone.status_code == 204, gone.text
        again = admin.person(self.left.name)
        assert again.name == self.left.name and again.id != self.left.id
        self.may_read(again)
        return again


def test_a_user_made_again_under_a_deleted_users_name_may_not_cancel_or_edit_what_that_user_left(
    stack: Stack, org: Org
) -> None:
    """Requests and comments record their author by principal id: a user deleted with a request, an alias request and
    a comment open, and another user later made under the same name (SCIM provisioning the address again), is refused
    as any other reader of the model is, and what the first one left stays open."""
    leaver = Leaver.of_a_new_model(stack, org)
    name, left = leaver.model, leaver.left
    registry(stack, left).create_transition_request(name, "1", "Staging", comment="please")
    mlflow_api(stack, left, "POST", "alias-requests/create", json={"name": name, "alias": "champion", "version": "1"})
    comment = registry(stack, left).create_comment(name, "1", "mine").comment
    assert comment is not None and comment.id is not None
    again = leaver.made_again()

    newcomer = registry(stack, again)
    assert code_of(lambda: newcomer.delete_transition_request(name, "1", "Staging", left.name)) == "PERMISSION_DENIED"
    alias_cancel = again.http(stack).delete(
        f"{stack.url}/api/2.0/mlflow/alias-requests/delete",
        params={"name": name, "alias": "champion", "version": "1", "creator": left.name},
        timeout=60,
    )
    assert alias_cancel.status_code == 403 and alias_cancel.json()["error_code"] == "PERMISSION_DENIED", (
        alias_cancel.text
    )
    assert code_of(lambda: newcomer.update_comment(comment.id, "taken over")) == "PERMISSION_DENIED"
    assert code_of(lambda: newcomer.delete_comment(comment.id)) == "PERMISSION_DENIED"
    # Nothing offers the newcomer what belonged to the one who left.
    assert listed_actions(stack, again, name, "1") == [[]]
    aliases = mlflow_api(stack, again, "GET", "alias-requests/list", params={"name": name})["requests"]
    assert [(r["user_id"], r.get("available_actions", [])) for r in aliases] == [(left.name, [])]
    # What was left stays open, unchanged, and the model's manager still decides it.
    assert [
        (r["user_id"], r["to_stage"])
        for r in mlflow_api(stack, org.owner, "GET", "transition-requests/list", params={"name": name, "version": "1"})[
            "requests"
        ]
    ] == [(left.name, "Staging")]
    log = activities(stack, org.owner, name)
    assert [a["activity_type"] for a in log] == ["NEW_COMMENT", "REQUESTED_ALIAS", "REQUESTED_TRANSITION"]
    assert log[0]["comment"] == "mine"
    registry(stack, org.owner).delete_transition_request(name, "1", "Staging", left.name)


def test_a_user_made_again_under_a_deleted_users_name_opens_requests_of_their_own(stack: Stack, org: Org) -> None:
    """One open request per requester is counted by principal id: the newcomer under a deleted requester's name opens
    the same transition and alias requests the one who left had open (refused RESOURCE_ALREADY_EXISTS while they
    were keyed by name), once each, and cancelling as their own creator cancels theirs, not what was left."""
    leaver = Leaver.of_a_new_model(stack, org)
    name, left = leaver.model, leaver.left
    alias_request = {"name": name, "alias": "champion", "version": "1"}
    registry(stack, left).create_transition_request(name, "1", "Staging")
    mlflow_api(stack, left, "POST", "alias-requests/create", json=alias_request)
    again = leaver.made_again()

    newcomer = registry(stack, again)
    newcomer.create_transition_request(name, "1", "Staging", comment="mine")
    mlflow_api(stack, again, "POST", "alias-requests/create", json=alias_request)
    assert code_of(lambda: newcomer.create_transition_request(name, "1", "Staging")) == "RESOURCE_ALREADY_EXISTS"
    twice = again.http(stack).post(f"{stack.url}/api/2.0/mlflow/alias-requests/create", json=alias_request, timeout=60)
    assert twice.status_code == 400 and twice.json()["error_code"] == "RESOURCE_ALREADY_EXISTS", twice.text

    def open_stage_requests() -> list[tuple[str, str]]:
        listed = mlflow_api(stack, org.owner, "GET", "transition-requests/list", params={"name": name, "version": "1"})[
            "requests"
        ]
        return sorted((r["user_id"], r.get("comment") or "") for r in listed)

    assert open_stage_requests() == [(left.name, ""), (left.name, "mine")]
    newcomer.delete_transition_request(name, "1", "Staging", again.name)
    assert open_stage_requests() == [(left.name, "")]  # what the one who left asked for stays open
    cancelled = again.http(stack).delete(
        f"{stack.url}/api/2.0/mlflow/alias-requests/delete",
        params={**alias_request, "creator": again.name},
        timeout=60,
    )
    assert cancelled.status_code == 200, cancelled.text
    aliases = mlflow_api(stack, org.owner, "GET", "alias-requests/list", params={"name": name})["requests"]
    assert [r["user_id"] for r in aliases] == [left.name]
    registry(stack, org.owner).delete_transition_request(name, "1", "Staging", left.name)


def test_two_gateway_processes_approving_one_request_at_once_apply_it_once(stack: Stack, org: Org) -> None:
    replica = GatewayProcess(stack.gateway.config_path, GATEWAY_ENV).start()
    store_log = stack.stores["a"].root / "server.log"
    try:
        for _ in range(3):
            name = make_model(stack, org, versions=2)
            registry(stack, org.requester).create_transition_request(name, "1", "Production")
            registry(stack, org.production).approve_transition_request(name, "1", "Production", False)
            registry(stack, org.requester).create_transition_request(name, "2", "Production")
            applied_before = store_log.read_text(errors="replace").count("/model-versions/transition-stage")

            body = {"name": name, "version": "2", "stage": "Production", "archive_existing_versions": True}
            urls = [stack.url, replica.url]
            answers = race(stack, org.production, urls, "/api/2.0/mlflow/transition-requests/approve", body)

            assert sorted(answer.status_code for answer in answers) == [200, 409], [a.text for a in answers]
            loser = next(answer for answer in answers if answer.status_code == 409).json()
            assert loser["error_code"] == "INVALID_STATE" and "already approved" in loser["message"]
            log = summary(activities(stack, org.requester, name))
            assert log[:3] == [
                ("1", "SYSTEM_TRANSITION", org.production.name, "Production", "Archived", None),
                ("2", "APPROVED_REQUEST", org.production.name, "None", "Production", None),
                ("2", "REQUESTED_TRANSITION", org.requester.name, "None", "Production", None),
            ]
            assert [entry[1] for entry in log].count("APPROVED_REQUEST") == 2  # version 1's, and one of version 2
            assert (stage_of(stack, name, "1"), stage_of(stack, name, "2")) == ("Archived", "Production")
            # The store itself was asked to move version 2 exactly once.
            applied = store_log.read_text(errors="replace").count("/model-versions/transition-stage") - applied_before
            assert applied == 1
    finally:
        replica.stop()


def test_a_central_workspace_records_once_and_applies_on_the_central_store(stack: Stack) -> None:
    name = unique("central-model")
    api = stack.http("research")
    experiment_id = api.post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("central")}).json()[
        "experiment_id"
    ]
    run_id = api.post(f"{stack.url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id}).json()["run"][
        "info"
    ]["run_id"]
    assert api.post(f"{stack.url}/api/2.0/mlflow/registered-models/create", json={"name": name}).status_code == 200
    created = api.post(
        f"{stack.url}/api/2.0/mlflow/model-versions/create",
        json={"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id},
    )
    assert created.status_code == 200, created.text
    client = registry(stack, None, workspace="research")
    client.create_transition_request(name, "1", "Production")
    client.approve_transition_request(name, "1", "Production", False)
    central = requests.get(
        f"{stack.stores['central'].url}/api/2.0/mlflow/model-versions/get",
        params={"name": name, "version": "1"},
        headers={"X-MLFLOW-WORKSPACE": "research"},
        timeout=60,
    )
    assert central.json()["model_version"]["current_stage"] == "Production"
    answer = stack.http("research").get(f"{stack.url}/api/2.0/mlflow/activities/list", params={"name": name})
    assert [a["activity_type"] for a in answer.json()["activities"]] == ["APPROVED_REQUEST", "REQUESTED_TRANSITION"]


@pytest.fixture(scope="module")
def dual_gateway(stack: Stack) -> Iterator[tuple[GatewayProcess, MlflowServer]]:
    """A gateway of its own (its own database) with a dual workspace whose copies go to the stack's central store."""
    primary = MlflowServer(stack.workdir / "registry-dual-primary").start(timeout=180)
    try:
        with own_gateway(
            stack.database_url,
            stack.workdir / "registry-dual.toml",
            f"""
[account]
id = "7001"
[stores.primary]
url = "{primary.url}"
[stores.central]
url = "{stack.stores["central"].url}"
workspaces = true
[central]
store = "central"
[[workspaces]]
name = "{DUAL}"
id = "3001"
store = "primary"
mode = "dual"
""",
            prefix="registry_dual",
        ) as own:
            yield own.process, primary
    finally:
        primary.stop()


def test_a_dual_workspace_records_once_applies_on_its_store_and_mirrors_the_transition(
    stack: Stack, dual_gateway: tuple[GatewayProcess, MlflowServer]
) -> None:
    gateway, primary = dual_gateway
    api = requests.Session()
    api.headers.update({"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": DUAL})
    name = unique("dual-model")
    experiment_id = api.post(f"{gateway.url}/api/2.0/mlflow/experiments/create", json={"name": unique("dual")}).json()[
        "experiment_id"
    ]
    run_id = api.post(f"{gateway.url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id}).json()["run"][
        "info"
    ]["run_id"]
    assert api.post(f"{gateway.url}/api/2.0/mlflow/registered-models/create", json={"name": name}).status_code == 200
    created = api.post(
        f"{gateway.url}/api/2.0/mlflow/model-versions/create",
        json={"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id},
    )
    assert created.status_code == 200, created.text
    for call, body in (
        ("create", {"name": name, "version": "1", "stage": "Production"}),
        ("approve", {"name": name, "version": "1", "stage": "Production", "archive_existing_versions": False}),
    ):
        answer = api.post(f"{gateway.url}/api/2.0/mlflow/transition-requests/{call}", json=body)
        assert answer.status_code == 200, answer.text

    own = requests.get(
        f"{primary.url}/api/2.0/mlflow/model-versions/get", params={"name": name, "version": "1"}, timeout=60
    )
    assert own.json()["model_version"]["current_stage"] == "Production"
    deadline = time.monotonic() + 120
    while True:  # the relay applies the outbox to the central store
        central = requests.post(
            f"{stack.stores['central'].url}/api/2.0/mlflow/registered-models/get-latest-versions",
            json={"name": name},
            headers={"X-MLFLOW-WORKSPACE": DUAL},
            timeout=60,
        )
        stages = [v["current_stage"] for v in central.json().get("model_versions", [])]
        if stages == ["Production"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert stages == ["Production"]
    logged = api.get(f"{gateway.url}/api/2.0/mlflow/activities/list", params={"name": name}).json()["activities"]
    assert [a["activity_type"] for a in logged] == ["APPROVED_REQUEST", "REQUESTED_TRANSITION"]


def test_numbers_that_are_not_plain_digits_are_refused_as_bad_input_never_a_500(stack: Stack, org: Org) -> None:
    """Versions, request ids and page tokens are ASCII digits of a bounded length: `str.isdigit` also takes
    superscripts (`²`), which `int` refuses, and any number of digits, which PostgreSQL's bigint does not hold."""
    name = make_model(stack, org, versions=1)
    http = org.owner.http(stack)
    api = f"{stack.url}/api/2.0/mlflow"
    for version in ("²", "1²", "9" * 5000):
        body = {"name": name, "version": version, "stage": "Staging"}
        made = http.post(f"{api}/transition-requests/create", json=body, timeout=60)
        assert made.status_code == 400 and made.json()["error_code"] == "INVALID_PARAMETER_VALUE", made.text
        alias = http.post(
            f"{api}/alias-requests/create", json={"name": name, "alias": "champion", "version": version}, timeout=60
        )
        assert alias.status_code == 400 and alias.json()["error_code"] == "INVALID_PARAMETER_VALUE", alias.text
        promoted = (
            Admin.of(stack)
            .http("team-b")
            .post(
                f"{stack.url}/api/2.0/fedgate/registry/promote",
                json={"name": f"{WORKSPACE}.{name}", "version": version},
                timeout=60,
            )
        )
        assert promoted.status_code == 400 and promoted.json()["error_code"] == "INVALID_PARAMETER_VALUE", promoted.text
    for token in ("²", "99999999999999999999", "9" * 5000):
        listed = http.get(f"{api}/activities/list", params={"name": name, "page_token": token}, timeout=60)
        assert listed.status_code == 400 and listed.json()["error_code"] == "INVALID_PARAMETER_VALUE", listed.text
        hooks = http.get(f"{api}/registry-webhooks/list", params={"model_name": name, "page_token": token}, timeout=60)
        assert hooks.status_code == 400 and hooks.json()["error_code"] == "INVALID_PARAMETER_VALUE", hooks.text
    for request_id in ("²", "1²"):
        decided = (
            Admin.of(stack)
            .http("team-b")
            .post(
                f"{stack.url}/api/2.0/fedgate/registry/promotion-requests/approve", json={"id": request_id}, timeout=60
            )
        )
        assert decided.status_code == 404 and decided.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", decided.text
