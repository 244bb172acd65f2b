"""The gateway's own contract: workspaces API, authentication, routing, bad input, failures, operations."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mlflow
import psutil
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from gateway.devstack import GatewayProcess
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, GUARDED_ADMIN, MAX_JSON_BODY, Stack
from tests.support.held_inserts import executed, held_inserts, holding
from tests.support.identity import Admin
from tests.support.waiting import logged_so_far, until

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_mlflow_error(response: requests.Response, status: int, error_code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == error_code
    assert body["message"]
    assert "Traceback" not in body["message"]
    return body


# -- authentication ----------------------------------------------------------------------------------


def test_requests_without_valid_credentials_are_refused(stack: Stack) -> None:
    url = f"{stack.url}/api/2.0/mlflow/experiments/search"
    for session in (stack.http("team-a", token=None), stack.http("team-a", token="wrong-token-0123456789")):
        response = session.post(url, json={"max_results": 10})
        assert_mlflow_error(response, 401, "UNAUTHENTICATED")
        assert "Basic" in response.headers["WWW-Authenticate"]
    assert_mlflow_error(stack.http(token=None).get(f"{stack.url}/api/3.0/mlflow/workspaces"), 401, "UNAUTHENTICATED")
    upload = stack.http("team-a", token=None).put(
        f"{stack.url}/api/2.0/mlflow-artifacts/artifacts/0/x/artifacts/f.txt", data=b"x"
    )
    assert_mlflow_error(upload, 401, "UNAUTHENTICATED")


def test_basic_auth_with_the_token_as_password(mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_TOKEN)
    mlflow.set_workspace("team-a")
    assert MlflowClient().create_experiment(unique("basic-auth"))
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-token-0000")
    with pytest.raises(MlflowException) as excinfo:
        MlflowClient().search_experiments()
    assert excinfo.value.error_code == "UNAUTHENTICATED"


def test_server_info_advertises_workspaces(stack: Stack) -> None:
    anonymous = stack.http("team-a", token=None).get(f"{stack.url}/api/3.0/mlflow/server-info")
    assert anonymous.status_code == 200
    assert anonymous.json()["workspaces_enabled"] is True
    info = stack.http("team-a").get(f"{stack.url}/api/3.0/mlflow/server-info").json()
    assert info["workspaces_enabled"] is True
    assert info["store_type"] == "SqlStore"  # the linked store's, not a guess
    assert info["multipart_uploads_enabled"] is False


# -- workspaces API ----------------------------------------------------------------------------------


def test_workspaces_api_with_the_stock_client(mlflow_env: Stack) -> None:
    names = {w.name for w in mlflow.list_workspaces()}
    assert {"team-a", "team-b", "team-c", "research", "offline"} <= names
    assert mlflow.get_workspace("team-a").name == "team-a"
    with pytest.raises(MlflowException) as excinfo:
        mlflow.get_workspace("no-such-ws")
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    name = unique("ws")
    created = mlflow.create_workspace(name, description="made by a test")
    assert created.name == name and created.description == "made by a test"
    mlflow.update_workspace(name, description="changed")
    assert mlflow.get_workspace(name).description == "changed"
    mlflow.set_workspace(name)  # linked to the central store by default (no store given)
    experiment_id = MlflowClient().create_experiment(unique("in-new-ws"))
    assert MlflowClient().get_experiment(experiment_id).experiment_id == experiment_id
    mlflow.set_workspace(None)
    mlflow.delete_workspace(name)
    assert name not in {w.name for w in mlflow.list_workspaces()}


def central_namespace(stack: Stack, prefix: str) -> str:
    """A workspace of its own on the central store (a store with workspaces), for a link over the API."""
    upstream = unique(prefix)
    response = requests.post(
        f"{stack.stores['central'].url}/api/3.0/mlflow/workspaces", json={"name": upstream}, timeout=30
    )
    assert response.status_code == 201, response.text
    return upstream


def test_link_relink_and_unlink_over_rest(stack: Stack) -> None:
    admin = stack.http()
    base = f"{stack.url}/api/3.0/mlflow/workspaces"
    name = unique("link")
    first, second = central_namespace(stack, "first"), central_namespace(stack, "second")
    created = admin.post(
        base, json={"name": name, "store": "central", "upstream_workspace": first, "workspace_id": "4242"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["workspace"] == {
        "name": name, "workspace_id": "4242", "mode": "workspace", "store": "central", "upstream_workspace": first
    }  # fmt: skip
    assert_mlflow_error(admin.post(base, json={"name": name, "store": "a"}), 400, "RESOURCE_ALREADY_EXISTS")
    # Store a is team-a's namespace: a second link into it is refused, naming the occupant.
    occupied = admin.post(base, json={"name": unique("squatter"), "store": "a"})
    assert "team-a" in assert_mlflow_error(occupied, 409, "RESOURCE_ALREADY_EXISTS")["message"]

    marker = unique("only-in-first")
    in_first = stack.http(name).post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": marker})
    assert in_first.status_code == 200, in_first.text
    relinked = admin.patch(f"{base}/{name}", json={"upstream_workspace": second})
    assert relinked.status_code == 200 and relinked.json()["workspace"]["upstream_workspace"] == second
    lookup = stack.http(name).get(
        f"{stack.url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": marker}
    )
    assert_mlflow_error(lookup, 404, "RESOURCE_DOES_NOT_EXIST")  # now served by the second namespace

    deleted = admin.delete(f"{base}/{name}")
    assert deleted.status_code == 204 and deleted.content == b""
    gone = stack.http(name).post(f"{stack.url}/api/2.0/mlflow/experiments/search", json={"max_results": 1})
    body = assert_mlflow_error(gone, 404, "RESOURCE_DOES_NOT_EXIST")
    assert body["message"] == f"Workspace '{name}' not found"


def test_a_workspace_linked_under_a_freed_id_inherits_nothing_of_the_unlinked_one(stack: Stack) -> None:
    """Grants are keyed by the workspace's id: unlinking takes them along, so a reused id starts empty."""
    admin, base = stack.http(), f"{stack.url}/api/3.0/mlflow/workspaces"
    workspace_id = str(50_000 + uuid.uuid4().int % 10_000)
    old, new = unique("freed"), unique("heir")
    linked = admin.post(
        base, json={"name": old, "store": "central", "upstream_workspace": central_namespace(stack, "old"),
                    "workspace_id": workspace_id}
    )  # fmt: skip
    assert linked.status_code == 201, linked.text
    manager = Admin.of(stack).person(f"{unique('manager')}@example.com")
    Admin.of(stack).grant(f"workspaces/{old}", "CAN_MANAGE", user=manager.name)
    created = manager.http(stack, old).post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": "mine"})
    assert created.status_code == 200, created.text

    assert admin.delete(f"{base}/{old}").status_code == 204
    relinked = admin.post(
        base, json={"name": new, "store": "central", "upstream_workspace": central_namespace(stack, "new"),
                    "workspace_id": workspace_id}
    )  # fmt: skip
    assert relinked.status_code == 201, relinked.text

    refused = manager.http(stack, new).post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": "theirs"})
    # A workspace the caller holds nothing in is hidden, exactly as a missing one.
    assert assert_mlflow_error(refused, 404, "RESOURCE_DOES_NOT_EXIST")["message"] == f"Workspace '{new}' not found"
    permissions = admin.get(f"{stack.url}/api/2.0/permissions/workspaces/{new}")
    assert permissions.status_code == 200, permissions.text
    assert manager.name not in permissions.text


def test_a_grant_made_while_its_workspace_is_unlinked_is_not_inherited_under_the_freed_id(stack: Stack) -> None:
    """A workspace admin's grant and the workspace's unlink at once: the grant goes with the workspace.

    A trigger holds the grant's INSERT while the account admin unlinks the workspace. Before, the unlink deleted the
    grants it could see without waiting for the grant being added, which committed after it: the workspace linked
    next under the id made whom the old one's admin had named its admin too.
    """
    admin, base = stack.http(), f"{stack.url}/api/3.0/mlflow/workspaces"
    workspace_id = str(60_000 + uuid.uuid4().int % 10_000)
    old, new = unique("racing"), unique("heir")
    linked = admin.post(
        base, json={"name": old, "store": "central", "upstream_workspace": central_namespace(stack, "racing"),
                    "workspace_id": workspace_id}
    )  # fmt: skip
    assert linked.status_code == 201, linked.text
    people = Admin.of(stack)
    manager = people.person(f"{unique('manager')}@example.com")
    named = people.person(f"{unique('named')}@example.com")
    people.grant(f"workspaces/{old}", "CAN_MANAGE", user=manager.name)

    acl = {"access_control_list": [{"user_name": named.name, "permission_level": "CAN_MANAGE"}]}
    held = f"NEW.domain = 'w{workspace_id}' AND NEW.principal_id = {named.id}"
    with held_inserts(stack.database_url, "grants", held), ThreadPoolExecutor(2) as pool:
        granted = pool.submit(
            manager.http(stack, old).patch, f"{stack.url}/api/2.0/permissions/workspaces/{old}", json=acl, timeout=60
        )
        holding(stack.database_url, "the grant holding its insert")
        unlinked = pool.submit(admin.delete, f"{base}/{old}", timeout=60)
        grant_answer, unlink_answer = granted.result(), unlinked.result()
    assert unlink_answer.status_code == 204, unlink_answer.text
    assert grant_answer.status_code in (200, 404), grant_answer.text
    left = executed(stack.database_url, f"SELECT principal_id, object FROM grants WHERE domain = 'w{workspace_id}'")
    assert left == [], [dict(row) for row in left]

    relinked = admin.post(
        base, json={"name": new, "store": "central", "upstream_workspace": central_namespace(stack, "heir"),
                    "workspace_id": workspace_id}
    )  # fmt: skip
    assert relinked.status_code == 201, relinked.text
    refused = named.http(stack, new).get(f"{stack.url}/api/2.0/permissions/workspaces/{new}")
    assert assert_mlflow_error(refused, 404, "RESOURCE_DOES_NOT_EXIST")["message"] == f"Workspace '{new}' not found"
    permissions = admin.get(f"{stack.url}/api/2.0/permissions/workspaces/{new}")
    assert permissions.status_code == 200 and named.name not in permissions.text, permissions.text


def test_a_workspace_linked_after_an_unlink_gets_a_new_id_and_nothing_of_the_unlinked_one(stack: Stack) -> None:
    """Ids are never handed out twice: a client or an audit export that still names the unlinked workspace's id
    never reaches the next workspace linked, and none of its grants, experiments or secret scopes shows there."""
    admin, base = stack.http(), f"{stack.url}/api/3.0/mlflow/workspaces"
    old, new = unique("dead"), unique("born")
    linked = admin.post(
        base, json={"name": old, "store": "central", "upstream_workspace": central_namespace(stack, "dead")}
    )
    assert linked.status_code == 201, linked.text
    old_id = linked.json()["workspace"]["workspace_id"]
    manager = Admin.of(stack).person(f"{unique('manager')}@example.com")
    Admin.of(stack).grant(f"workspaces/{old}", "CAN_MANAGE", user=manager.name)
    created = manager.http(stack, old).post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": "mine"})
    assert created.status_code == 200, created.text
    scope = unique("scope")
    made = manager.http(stack, old).post(f"{stack.url}/api/2.0/secrets/scopes/create", json={"scope": scope})
    assert made.status_code == 200, made.text

    assert admin.delete(f"{base}/{old}").status_code == 204
    relinked = admin.post(
        base, json={"name": new, "store": "central", "upstream_workspace": central_namespace(stack, "born")}
    )
    assert relinked.status_code == 201, relinked.text
    new_id = relinked.json()["workspace"]["workspace_id"]
    assert int(new_id) > int(old_id)

    # A client still configured with the old id (databricks-sdk's workspace_id) reaches no workspace.
    by_old_id = requests.post(
        f"{stack.url}/api/2.0/mlflow/experiments/search",
        json={"max_results": 10},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Databricks-Workspace-Id": old_id},
        timeout=60,
    )
    assert_mlflow_error(by_old_id, 404, "RESOURCE_DOES_NOT_EXIST")
    refused = manager.http(stack, new).post(f"{stack.url}/api/2.0/mlflow/experiments/search", json={"max_results": 10})
    assert assert_mlflow_error(refused, 404, "RESOURCE_DOES_NOT_EXIST")["message"] == f"Workspace '{new}' not found"
    permissions = admin.get(f"{stack.url}/api/2.0/permissions/workspaces/{new}")
    assert permissions.status_code == 200 and manager.name not in permissions.text, permissions.text
    searched = stack.http(new).post(f"{stack.url}/api/2.0/mlflow/experiments/search", json={"max_results": 100})
    assert searched.status_code == 200 and "mine" not in {e["name"] for e in searched.json().get("experiments", [])}
    scopes = stack.http(new).get(f"{stack.url}/api/2.0/secrets/scopes/list")
    assert scopes.status_code == 200 and scope not in scopes.text, scopes.text


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "account", "store": "a"}, 400, "INVALID_PARAMETER_VALUE"),
        ({"name": "Bad_Name", "store": "a"}, 400, "INVALID_PARAMETER_VALUE"),
        ({"name": "ws-unknown-store", "store": "nope"}, 400, "INVALID_PARAMETER_VALUE"),
        # A dual workspace mirrors its own store into the central one: it cannot be the central one.
        ({"name": "ws-dual", "store": "central", "mode": "dual"}, 400, "INVALID_PARAMETER_VALUE"),
        ({"name": "ws-bad-mode", "store": "a", "mode": "mirror"}, 400, "INVALID_PARAMETER_VALUE"),
        ({"name": "ws-taken-id", "store": "a", "workspace_id": "1001"}, 400, "RESOURCE_ALREADY_EXISTS"),
        ({"name": "ws-bad-id", "store": "a", "workspace_id": "12x"}, 400, "INVALID_PARAMETER_VALUE"),
        ({"name": "ws-extra", "store": "a", "url": "http://169.254.169.254"}, 400, "INVALID_PARAMETER_VALUE"),
        ({"store": "a"}, 400, "INVALID_PARAMETER_VALUE"),
    ],
)
def test_bad_workspace_links_are_refused(stack: Stack, body: dict[str, str], status: int, code: str) -> None:
    assert_mlflow_error(stack.http().post(f"{stack.url}/api/3.0/mlflow/workspaces", json=body), status, code)


def test_config_declared_workspaces_are_changed_in_the_file(stack: Stack) -> None:
    response = stack.http().patch(f"{stack.url}/api/3.0/mlflow/workspaces/team-a", json={"store": "b"})
    assert_mlflow_error(response, 400, "INVALID_PARAMETER_VALUE")


def test_store_with_direct_artifact_access_is_refused_at_link_time(stack: Stack) -> None:
    # An experiment whose artifacts live in a bucket clients write to directly, around the gateway.
    # (On the `guarded` store, which no other test links over the API: the experiment stays. The store is
    # checked before its namespace, which `guarded` occupies, so the refusal names the bucket.)
    direct = requests.post(
        f"{stack.stores['guarded'].url}/api/2.0/mlflow/experiments/create",
        json={"name": unique("bucket"), "artifact_location": "s3://bucket/experiments"},
        auth=GUARDED_ADMIN,
        timeout=30,
    )
    assert direct.status_code == 200, direct.text
    refused = stack.http().post(
        f"{stack.url}/api/3.0/mlflow/workspaces", json={"name": unique("ws"), "store": "guarded"}
    )
    body = assert_mlflow_error(refused, 400, "INVALID_PARAMETER_VALUE")
    assert "s3://bucket/experiments" in body["message"]


# -- routing -----------------------------------------------------------------------------------------


def test_workspace_selection_rules(stack: Stack) -> None:
    search = f"{stack.url}/api/2.0/mlflow/experiments/search"
    body = assert_mlflow_error(stack.http().post(search, json={"max_results": 5}), 400, "INVALID_PARAMETER_VALUE")
    assert "MLFLOW_WORKSPACE" in body["message"]
    assert_mlflow_error(stack.http("nowhere").post(search, json={"max_results": 5}), 404, "RESOURCE_DOES_NOT_EXIST")
    # `account` is the read-only account scope: searches are served, writes refused.
    assert stack.http("account").post(search, json={"max_results": 5}).status_code == 200
    create = f"{stack.url}/api/2.0/mlflow/experiments/create"
    refused = assert_mlflow_error(
        stack.http("account").post(create, json={"name": "x"}), 400, "INVALID_PARAMETER_VALUE"
    )
    assert "read-only" in refused["message"]
    assert_mlflow_error(stack.http("Bad_Name!").post(search, json={"max_results": 5}), 400, "INVALID_PARAMETER_VALUE")
    twice = http.client.HTTPConnection("127.0.0.1", stack.gateway.port, timeout=10)
    twice.putrequest("POST", "/api/2.0/mlflow/experiments/search")
    for header, value in [
        ("Authorization", f"Bearer {ADMIN_TOKEN}"),
        ("X-MLFLOW-WORKSPACE", "team-a"),
        ("X-MLFLOW-WORKSPACE", "team-b"),
        ("Content-Type", "application/json"),
        ("Content-Length", "2"),
    ]:
        twice.putheader(header, value)
    twice.endheaders(b"{}")
    answer = twice.getresponse()
    assert answer.status == 400 and json.loads(answer.read())["error_code"] == "INVALID_PARAMETER_VALUE"

    # With a workspace named `default`, header-less calls go there.
    admin = stack.http()
    upstream = central_namespace(stack, "default")
    created = admin.post(
        f"{stack.url}/api/3.0/mlflow/workspaces",
        json={"name": "default", "store": "central", "upstream_workspace": upstream},
    )
    assert created.status_code == 201, created.text
    try:
        routed = admin.post(search, json={"max_results": 5})
        assert routed.status_code == 200
    finally:
        assert admin.delete(f"{stack.url}/api/3.0/mlflow/workspaces/default").status_code == 204


def test_a_call_naming_only_a_run_is_routed_by_the_run(mlflow_env: Stack) -> None:
    mlflow.set_workspace("team-b")
    mlflow.set_experiment(unique("headerless"))
    with mlflow.start_run() as run:
        mlflow.log_param("where", "team-b")
    response = mlflow_env.http().get(f"{mlflow_env.url}/api/2.0/mlflow/runs/get", params={"run_id": run.info.run_id})
    assert response.status_code == 200, response.text
    assert response.json()["run"]["data"]["params"] == [{"key": "where", "value": "team-b"}]
    logged = mlflow_env.http().post(
        f"{mlflow_env.url}/api/2.0/mlflow/runs/set-tag", json={"run_id": run.info.run_id, "key": "k", "value": "v"}
    )
    assert logged.status_code == 200
    assert MlflowClient().get_run(run.info.run_id).data.tags["k"] == "v"


def test_gateway_presents_the_stores_own_credentials(mlflow_env: Stack) -> None:
    guarded = mlflow_env.stores["guarded"].url
    assert requests.get(f"{guarded}/api/2.0/mlflow/experiments/search", timeout=10).status_code == 401
    mlflow.set_workspace("guarded")
    name = unique("behind-basic-auth")
    experiment_id = MlflowClient().create_experiment(name)
    direct = requests.get(
        f"{guarded}/api/2.0/mlflow/experiments/get",
        params={"experiment_id": experiment_id},
        auth=GUARDED_ADMIN,
        timeout=10,
    )
    assert direct.json()["experiment"]["name"] == name


def test_unreachable_store_answers_503_with_retry_after_and_leaves_the_replica_ready(stack: Stack) -> None:
    response = stack.http("offline").post(f"{stack.url}/api/2.0/mlflow/experiments/search", json={"max_results": 1})
    assert_mlflow_error(response, 503, "TEMPORARILY_UNAVAILABLE")
    assert int(response.headers["Retry-After"]) > 0
    # One dead store never takes the replica out of the Service: readiness is about the replica.
    ready = requests.get(f"{stack.url}/health/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    report = ready.json()
    assert report["database"] == "ok" and report["policy"] == "loaded" and report["draining"] is False
    assert report["schema"]["state"] == "current" and "stores" not in report

    # ... and the store is reported on its own, per store, and in the metrics.
    def stores() -> dict[str, Any]:
        answer = requests.get(f"{stack.url}/health/stores", timeout=10)
        assert answer.status_code == 200
        return dict(answer.json())

    # Probed in the background: unknown until each store's first probe.
    health = until(
        stores,
        lambda health: all(health["stores"][name]["state"] != "unknown" for name in ("offline", "a", "central")),
        "the stores probed",
    )
    assert health["status"] == "degraded" and "offline" in health["down"]
    assert health["stores"]["offline"]["state"] == "unreachable"
    assert health["stores"]["a"]["state"] == "ok" and health["stores"]["central"]["state"] == "ok"
    metrics = requests.get(f"{stack.url}/metrics", timeout=10).text
    assert 'fedgate_store_up{store="offline"} 0.0' in metrics and 'fedgate_store_up{store="a"} 1.0' in metrics


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b'{"name": ', "Malformed JSON"),
        (b"[1, 2]", "one JSON object"),
        (b'{"experiment_id": 5}', "experiment_id"),
        (b'{"experiment_ids": "1"}', "experiment_ids"),
    ],
)
def test_malformed_bodies_get_mlflow_errors(stack: Stack, data: bytes, fragment: str) -> None:
    response = stack.http("team-a").post(
        f"{stack.url}/api/2.0/mlflow/runs/search", data=data, headers={"Content-Type": "application/json"}
    )
    body = assert_mlflow_error(response, 400, "INVALID_PARAMETER_VALUE")
    assert fragment in body["message"]


def test_oversize_json_body_is_refused(stack: Stack) -> None:
    payload = b'{"experiment_ids": ["0"], "filter": "' + b"x" * (MAX_JSON_BODY + 10) + b'"}'
    response = stack.http("team-a").post(
        f"{stack.url}/api/2.0/mlflow/runs/search", data=payload, headers={"Content-Type": "application/json"}
    )
    assert_mlflow_error(response, 413, "INVALID_PARAMETER_VALUE")


@pytest.mark.parametrize(
    "path",
    [
        "0/r/artifacts/../../../../etc/passwd",
        "0/r/artifacts/%2e%2e/%2e%2e/secret",
        "0/r/artifacts/%252e%252e/secret",
        "0/r/artifacts/..%5c..%5csecret",
        "0/r/artifacts/a;b",
        "0/r/./artifacts/x",
        "/etc/passwd",
        "0/r/artifacts/%2Fetc/passwd",
    ],
)
def test_artifact_traversal_is_refused(stack: Stack, path: str) -> None:
    session = stack.http("team-a")
    for method in ("GET", "PUT", "DELETE"):
        url = f"{stack.url}/api/2.0/mlflow-artifacts/artifacts/{path}"
        prepared = requests.Request(method, url, data=b"x" if method == "PUT" else None).prepare()
        prepared.url = url  # keep the path exactly as written, no client-side normalisation
        prepared.headers.update(session.headers)
        response = session.send(prepared)
        assert_mlflow_error(response, 400, "INVALID_PARAMETER_VALUE")


@pytest.mark.parametrize("value", ["..", ".", "../x", "/etc", "a\\b", "%2e%2e"])
def test_artifact_listing_path_is_canonicalised(stack: Stack, value: str) -> None:
    response = stack.http("team-a").get(f"{stack.url}/api/2.0/mlflow-artifacts/artifacts", params={"path": value})
    assert_mlflow_error(response, 400, "INVALID_PARAMETER_VALUE")


def test_path_parameters_cannot_smuggle_segments(stack: Stack) -> None:
    for raw in ("..%2F..%2Fexperiments", "%2e%2e", "a%2Fb"):
        url = f"{stack.url}/api/2.0/mlflow/logged-models/{raw}"
        prepared = requests.Request("GET", url, headers=dict(stack.http("team-a").headers)).prepare()
        prepared.url = url
        response = requests.Session().send(prepared)
        assert response.status_code in (400, 404), response.text
        assert response.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "ENDPOINT_NOT_FOUND")


def test_unknown_routes_answer_endpoint_not_found(stack: Stack) -> None:
    for method, path in [
        ("GET", "/api/2.0/mlflow/not-a-route"),
        ("POST", "/api/2.0/mlflow/runs/get"),
        ("GET", "/graphql"),
        ("POST", "/ajax-api/3.0/mlflow/demo/generate"),
        ("GET", "/admin/../api/2.0/mlflow/runs/get"),
        ("GET", "/API/2.0/mlflow/runs/get"),
    ]:
        url = f"{stack.url}{path}"
        prepared = requests.Request(method, url, headers=dict(stack.http("team-a").headers)).prepare()
        prepared.url = url  # no client-side normalisation of `..`
        response = requests.Session().send(prepared)
        assert_mlflow_error(response, 404, "ENDPOINT_NOT_FOUND")


# -- streaming and operations -------------------------------------------------------------------------


def test_large_artifact_streams_with_bounded_gateway_memory(stack: Stack, tmp_path: Path) -> None:
    size = 200 * 1024 * 1024
    source = tmp_path / "big.bin"
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    with source.open("wb") as handle:
        for _ in range(size // len(block)):
            handle.write(block)
            digest.update(block)
    gateway = psutil.Process(stack.gateway.process.pid)  # type: ignore[union-attr]
    before = gateway.memory_info().rss
    path = f"{stack.url}/api/2.0/mlflow-artifacts/artifacts/0/{uuid.uuid4().hex}/artifacts/big.bin"
    session = stack.http("team-a")
    with source.open("rb") as handle:
        uploaded = session.put(path, data=handle, headers={"Content-Type": "application/octet-stream"})
    assert uploaded.status_code == 200, uploaded.text
    peak_upload = gateway.memory_info().rss
    received = hashlib.sha256()
    total = 0
    with session.get(path, stream=True) as download:
        assert download.status_code == 200
        assert int(download.headers["Content-Length"]) == size
        for chunk in download.iter_content(1024 * 1024):
            received.update(chunk)
            total += len(chunk)
    after = gateway.memory_info().rss
    assert total == size and received.hexdigest() == digest.hexdigest()
    growth = max(peak_upload, after) - before
    assert growth < 50 * 1024 * 1024, f"gateway RSS grew by {growth / 2**20:.1f} MiB for a 200 MiB artifact"


def test_health_metrics_and_request_ids(stack: Stack) -> None:
    assert requests.get(f"{stack.url}/health/live", timeout=5).json() == {"status": "ok"}
    response = stack.http("team-a").post(
        f"{stack.url}/api/2.0/mlflow/experiments/search", json={"max_results": 1}, headers={"X-Request-Id": "abc-123"}
    )
    assert response.headers["X-Request-Id"] == "abc-123"
    assert len(stack.http("team-a").get(f"{stack.url}/health/live").headers["X-Request-Id"]) == 32
    counted = 'fedgate_requests_total{method="POST",route="POST /mlflow/experiments/search v2",status="200"}'
    # A call is counted once its answer is sent.
    metrics = until(lambda: requests.get(f"{stack.url}/metrics", timeout=5).text, lambda text: counted in text, counted)
    assert "fedgate_upstream_duration_seconds_bucket" in metrics


def test_metrics_name_no_workspace_to_a_caller_without_credentials(stack: Stack) -> None:
    """`/metrics` answers anyone who reaches it. Its per-workspace gauges were labelled by the workspace's name, so
    a caller without credentials read the name of every workspace of the account there; now by the id."""
    admin = stack.http()
    workspaces = admin.get(f"{stack.url}/api/3.0/mlflow/workspaces", timeout=30).json()["workspaces"]
    ids = {w["name"]: str(w["workspace_id"]) for w in workspaces}
    synced = admin.post(
        f"{stack.url}/api/2.0/fedgate/index/sync", json={"workspace": "team-a", "wait": True}, timeout=300
    )
    assert synced.status_code == 200, synced.text
    metrics = until(
        lambda: requests.get(f"{stack.url}/metrics", timeout=10).text,
        lambda text: "fedgate_index_lag_seconds{" in text,
        "the index lag gauges (set every 15 s)",
    )
    labelled = set(re.findall(r'\{workspace="([^"]*)"\}', metrics))
    assert ids["team-a"] in labelled, labelled
    assert not labelled & set(ids), labelled


def test_logs_carry_request_ids_but_never_the_token(stack: Stack) -> None:
    stack.http("team-a").post(
        f"{stack.url}/api/2.0/mlflow/experiments/search",
        json={"max_results": 1},
        headers={"X-Request-Id": "log-check-1"},
    )
    log = logged_so_far(stack.url, stack.gateway.log_path)  # the access line is written after the answer
    assert '"request_id":"log-check-1"' in log
    assert ADMIN_TOKEN not in log


def test_a_second_replica_sees_link_changes_at_once(stack: Stack) -> None:
    # The replica polls the links once an hour: whatever it sees within the test, only NOTIFY told it.
    replica = GatewayProcess(stack.gateway.config_path, {**GATEWAY_ENV, "FEDGATE_SERVER_LINK_POLL_SECONDS": "3600"})
    replica.start()
    try:
        name = unique("replicated")
        created = stack.http().post(
            f"{stack.url}/api/3.0/mlflow/workspaces",
            json={"name": name, "store": "central", "upstream_workspace": central_namespace(stack, "replicated")},
        )
        assert created.status_code == 201
        url = f"{replica.url}/api/3.0/mlflow/workspaces/{name}"
        until(lambda: stack.http().get(url).status_code, lambda status: status == 200, "the link on the replica")
        assert stack.http().delete(f"{stack.url}/api/3.0/mlflow/workspaces/{name}").status_code == 204
        until(lambda: stack.http().get(url).status_code, lambda status: status == 404, "the unlink on the replica")
    finally:
        replica.stop()


def test_artifact_size_limit_from_the_environment(stack: Stack) -> None:
    """FEDGATE_* overrides reach a real process; an over-limit upload is refused, never half-stored."""
    limit = 1024 * 1024
    env = {**GATEWAY_ENV, "FEDGATE_SERVER_MAX_ARTIFACT_BODY_BYTES": str(limit)}
    limited = GatewayProcess(stack.gateway.config_path, env).start()
    try:
        session = stack.http("team-a")
        run_dir = f"{limited.url}/api/2.0/mlflow-artifacts/artifacts/0/{uuid.uuid4().hex}/artifacts"
        declared = session.put(f"{run_dir}/declared.bin", data=b"x" * (limit + 1))
        assert_mlflow_error(declared, 413, "INVALID_PARAMETER_VALUE")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
            for _ in range(4):
                yield b"y" * (limit // 2)

        streamed = session.put(f"{run_dir}/streamed.bin", data=chunks())
        assert_mlflow_error(streamed, 413, "INVALID_PARAMETER_VALUE")
        small = session.put(f"{run_dir}/small.bin", data=b"z" * 1000)
        assert small.status_code == 200
        listing = session.get(
            f"{limited.url}/api/2.0/mlflow-artifacts/artifacts", params={"path": run_dir.split("artifacts/", 2)[2]}
        )
        assert [f["path"] for f in listing.json()["files"]] == ["small.bin"]
    finally:
        limited.stop()


def test_workspaces_cli(stack: Stack) -> None:
    def fedgate(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FEDGATE_ADMIN_TOKEN": ADMIN_TOKEN}
        command = [sys.executable, "-m", "gateway.cli", "workspaces", "--url", stack.url, *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    name = unique("cli")
    first, second = central_namespace(stack, "cli-first"), central_namespace(stack, "cli-second")
    linked = fedgate(
        "link", name, "--store", "central", "--upstream-workspace", first, "--id", "7777",
        "--description", "from the CLI",
    )  # fmt: skip
    assert linked.returncode == 0, linked.stderr
    assert json.loads(linked.stdout) == {
        "name": name, "description": "from the CLI", "workspace_id": "7777", "mode": "workspace",
        "store": "central", "upstream_workspace": first,
    }  # fmt: skip
    listed = fedgate("list")
    assert any(line.split()[:4] == [name, "7777", "workspace", "central"] for line in listed.stdout.splitlines())
    relinked = fedgate("relink", name, "--upstream-workspace", second)
    assert json.loads(relinked.stdout)["upstream_workspace"] == second, relinked.stderr
    refused = fedgate("link", name, "--store", "a")
    assert refused.returncode == 1
    assert f"RESOURCE_ALREADY_EXISTS: Workspace '{name}' already exists." in refused.stderr
    assert "Traceback" not in refused.stderr
    assert fedgate("unlink", name).returncode == 0
    assert stack.http().get(f"{stack.url}/api/3.0/mlflow/workspaces/{name}").status_code == 404
