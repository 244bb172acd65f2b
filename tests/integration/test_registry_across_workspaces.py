"""Registered models across workspaces, with the stock MLflow client against a real gateway and real stores:
a group of team-b finds a team-a model in the account scope and loads it by `models:/team-a.<name>/<version>`
once it holds CAN_READ on that model (and on nothing else of team-a), and loses it at once when the grant goes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression

from gateway.core.downloads import DOWNLOAD_POLICY
from tests.conftest import Stack
from tests.support.identity import Admin, Person, unique

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Shared:
    owner: Person  # team-a: made the model, CAN_MANAGE on it
    reader: Person  # team-b: a member of `group`
    group: str  # a team-b group
    name: str  # the model's name in team-a
    model_id: str  # the gateway's id of it
    run_id: str  # the team-a run the version was logged in
    features: np.ndarray
    expected: list[int]


def use_as(monkeypatch: pytest.MonkeyPatch, who: Person, workspace: str) -> MlflowClient:
    """The stock client as `who`, in `workspace`."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", who.token)
    mlflow.set_workspace(workspace)
    return MlflowClient()


@pytest.fixture
def shared(mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Shared]:
    stack = mlflow_env
    admin = Admin.of(stack)
    owner = admin.person(f"{unique('owner')}@example.com")
    reader = admin.person(f"{unique('reader')}@example.com")
    group = unique("team-b-readers")
    admin.group(group, [reader.id])
    admin.grant("workspaces/team-a", "CAN_USE", user=owner.name)
    admin.grant("workspaces/team-b", "CAN_USE", group=group)

    use_as(monkeypatch, owner, "team-a")
    mlflow.set_experiment(unique("shared-models"))
    rng = np.random.default_rng(7)
    features = rng.random((30, 3))
    model = LogisticRegression().fit(features, (features[:, 1] > 0.4).astype(int))
    name = unique("churn")
    script = tmp_path / "widget.mjs"  # a file of a type a page would run (text/javascript)
    script.write_text("globalThis.ran = true;\n")
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(model, name="model", registered_model_name=name, code_paths=[str(script)])
    answer = owner.http(stack, "team-a").get(
        f"{stack.url}/api/2.0/mlflow/databricks/registered-models/get", params={"name": name}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    yield Shared(
        owner,
        reader,
        group,
        name,
        answer.json()["registered_model_databricks"]["id"],
        run.info.run_id,
        features,
        [int(x) for x in model.predict(features)],
    )


def set_readers(stack: Stack, shared: Shared, groups: list[str]) -> None:
    """The model's ACL (PUT replaces it): the owner's CAN_MANAGE and CAN_READ for `groups`, set by an admin of
    team-a: a model's manager who is no admin of its workspace names only the workspace's principals
    (gateway/authz/reach.py), which a group of team-b is not until it holds something in team-a."""
    acl = [{"user_name": shared.owner.name, "permission_level": "CAN_MANAGE"}]
    acl += [{"group_name": group, "permission_level": "CAN_READ"} for group in groups]
    answer = (
        Admin.of(stack)
        .http("team-a")
        .put(
            f"{stack.url}/api/2.0/permissions/registered-models/{shared.model_id}",
            json={"access_control_list": acl},
            timeout=60,
        )
    )
    assert answer.status_code == 200, answer.text


def account_names(client: MlflowClient) -> set[str]:
    return {m.name for m in client.search_registered_models(max_results=1000)}


def error_code(call: object) -> str:
    with pytest.raises(MlflowException) as excinfo:
        call()  # type: ignore[operator]
    return str(excinfo.value.error_code)


def file_status(stack: Stack, who: Person, shared: Shared, file: str = "MLmodel") -> int:
    """A direct download of one file of version 1 under the account scope's download URI."""
    path = f"registered-models/team-a/{shared.model_id}/1/{file}"
    answer = who.http(stack, "account").get(f"{stack.url}/api/2.0/mlflow-artifacts/artifacts/{path}", timeout=60)
    return answer.status_code


def test_a_team_b_group_loads_a_team_a_model_only_while_granted(
    mlflow_env: Stack, shared: Shared, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    stack = mlflow_env
    qualified = f"team-a.{shared.name}"
    uri = f"models:/{qualified}/1"

    # Without a grant the model does not exist for the group, however it is asked for.
    client = use_as(monkeypatch, shared.reader, "account")
    assert qualified not in account_names(client)
    assert error_code(lambda: client.get_registered_model(qualified)) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.get_model_version_download_uri(qualified, "1")) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: mlflow.pyfunc.load_model(uri)) == "RESOURCE_DOES_NOT_EXIST"
    assert file_status(stack, shared.reader, shared) == 404

    # The owner sees it in the account scope under its qualified name too.
    owner_client = use_as(monkeypatch, shared.owner, "account")
    assert qualified in account_names(owner_client)

    set_readers(stack, shared, [shared.group])
    client = use_as(monkeypatch, shared.reader, "account")
    assert qualified in account_names(client)
    found = client.search_registered_models(filter_string=f"name = '{shared.name}'")
    assert [m.name for m in found] == [qualified]
    assert client.get_registered_model(qualified).name == qualified
    version = client.get_model_version(qualified, "1")
    assert (version.name, version.version) == (qualified, "1")
    assert [v.version for v in client.get_latest_versions(qualified)] == ["1"]
    download = client.get_model_version_download_uri(qualified, "1")
    assert download == f"mlflow-artifacts:/registered-models/team-a/{shared.model_id}/1"
    for odd in ("\uff11", " 1", "1_0"):  # `int` takes each; a version is ASCII digits
        assert (
            error_code(lambda odd=odd: client.get_model_version_download_uri(qualified, odd))
            == "INVALID_PARAMETER_VALUE"
        )

    loaded = mlflow.pyfunc.load_model(uri)
    assert [int(x) for x in loaded.predict(shared.features)] == shared.expected
    use_as(monkeypatch, shared.owner, "team-a").set_registered_model_alias(shared.name, "champion", "1")
    client = use_as(monkeypatch, shared.reader, "account")
    assert client.get_model_version_by_alias(qualified, "champion").name == qualified
    by_alias = mlflow.pyfunc.load_model(f"models:/{qualified}@champion")
    assert [int(x) for x in by_alias.predict(shared.features)] == shared.expected
    assert file_status(stack, shared.reader, shared) == 200

    # The grant is on the model and nothing else: the run it was logged in stays hidden, so do its files,
    # and the model's files are read-only.
    assert error_code(lambda: client.get_run(shared.run_id)) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.set_registered_model_tag(qualified, "k", "v")) == "INVALID_PARAMETER_VALUE"
    assert file_status(stack, shared.reader, shared, "../MLmodel") in (400, 404)

    # Revoked: gone at once, the files too.
    set_readers(stack, shared, [])
    assert qualified not in account_names(client)
    assert error_code(lambda: mlflow.pyfunc.load_model(uri)) == "RESOURCE_DOES_NOT_EXIST"
    assert file_status(stack, shared.reader, shared) == 404


def test_account_model_names_and_tokens_are_checked(mlflow_env: Stack, shared: Shared) -> None:
    stack = mlflow_env
    http = shared.owner.http(stack, "account")
    base = f"{stack.url}/api/2.0/mlflow"
    cases = [
        ("registered-models/get", {"name": shared.name}, 400),  # not qualified
        ("registered-models/get", {"name": f"nowhere.{shared.name}"}, 404),
        ("registered-models/get", {"name": f"team-a.{shared.name}-missing"}, 404),
        ("registered-models/search", {"page_token": "not-a-token"}, 400),
        ("registered-models/search", {"max_results": "0"}, 400),
        ("model-versions/get", {"name": f"team-a.{shared.name}", "version": "9"}, 404),
    ]
    for path, params, status in cases:
        answer = http.get(f"{base}/{path}", params=params, timeout=60)
        assert answer.status_code == status, (path, params, answer.text)
        assert answer.json()["error_code"], answer.text
    bad_path = f"{stack.url}/api/2.0/mlflow-artifacts/artifacts/registered-models/team-a/{shared.model_id}/x/MLmodel"
    answer = http.get(bad_path, timeout=60)
    assert answer.status_code == 400, answer.text

    # A page token is good for its own search only, and pages add up to the whole answer.
    first = http.get(f"{base}/registered-models/search", params={"max_results": "1"}, timeout=60).json()
    assert len(first["registered_models"]) == 1
    other = http.get(
        f"{base}/registered-models/search",
        params={"max_results": "1", "filter": "name LIKE '%'", "page_token": first.get("next_page_token", "")},
        timeout=60,
    )
    if first.get("next_page_token"):
        assert other.status_code == 400, other.text
    seen = [m["name"] for m in first["registered_models"]]
    token = first.get("next_page_token")
    while token:
        page = http.get(
            f"{base}/registered-models/search", params={"max_results": "1", "page_token": token}, timeout=60
        ).json()
        seen += [m["name"] for m in page["registered_models"]]
        token = page.get("next_page_token")
    whole = http.get(f"{base}/registered-models/search", params={"max_results": "1000"}, timeout=60).json()
    assert seen == [m["name"] for m in whole["registered_models"]]
    assert f"team-a.{shared.name}" in seen


def version_names(client: MlflowClient, filter_string: str | None = None) -> list[tuple[str, str]]:
    found = client.search_model_versions(filter_string=filter_string, order_by=["version_number ASC"])
    return sorted((v.name, v.version) for v in found)


def test_account_scope_searches_model_versions_of_readable_models_only(
    mlflow_env: Stack, shared: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = mlflow_env
    qualified = f"team-a.{shared.name}"
    # A second version of the shared model, and a model of the owner's that is never shared.
    use_as(monkeypatch, shared.owner, "team-a")
    mlflow.register_model(f"runs:/{shared.run_id}/model", shared.name)
    hidden = f"{shared.name}-hidden"
    mlflow.register_model(f"runs:/{shared.run_id}/model", hidden)
    # The reader's own model in team-b (the group may use team-b), named like the shared one.
    use_as(monkeypatch, shared.reader, "team-b")
    mlflow.set_experiment(unique("reader-models"))
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            LogisticRegression().fit(shared.features, shared.expected), name="m", registered_model_name=shared.name
        )

    client = use_as(monkeypatch, shared.reader, "account")
    mine = [(f"team-b.{shared.name}", "1")]
    assert version_names(client, f"name LIKE '%.{shared.name}%'") == mine
    assert version_names(client, f"name = '{qualified}'") == []
    assert version_names(client, f"run_id = '{shared.run_id}'") == []

    set_readers(stack, shared, [shared.group])
    both = [(qualified, "1"), (qualified, "2")]
    assert version_names(client, f"name = '{qualified}'") == both
    assert version_names(client, f"name = 'team-b.{shared.name}'") == mine
    assert version_names(client, f"name = '{shared.name}'") == sorted(both + mine)  # bare: every workspace
    assert version_names(client, f"name IN ('{qualified}', 'team-c.{shared.name}')") == both
    assert version_names(client, f"name LIKE 'team-_.{shared.name}%'") == sorted(both + mine)
    assert version_names(client, f"name LIKE 'team-a.{shared.name}%' AND version_number > 1") == [(qualified, "2")]
    assert version_names(client, f"name != '{qualified}' AND name LIKE '%{shared.name}%'") == mine
    assert version_names(client, f"run_id = '{shared.run_id}'") == both
    # The owner's other model never shows, however the search is made; the owner sees it (so it is there).
    assert f"team-a.{hidden}" not in {name for name, _ in version_names(client)}
    assert version_names(client, f"name = 'team-a.{hidden}'") == []
    owner_client = use_as(monkeypatch, shared.owner, "account")
    assert version_names(owner_client, f"name = 'team-a.{hidden}'") == [(f"team-a.{hidden}", "1")]

    # Pages of one version each, by the client's page token, add up to the whole answer.
    client = use_as(monkeypatch, shared.reader, "account")
    whole = [(v.name, v.version) for v in client.search_model_versions(f"name LIKE '%{shared.name}%'")]
    paged: list[tuple[str, str]] = []
    token = None
    while True:
        page = client.search_model_versions(f"name LIKE '%{shared.name}%'", max_results=1, page_token=token)
        paged += [(v.name, v.version) for v in page]
        token = page.token
        if not token:
            break
    assert paged == whole and sorted(whole) == sorted(both + mine)

    # A store that does not answer is named; the others still answer. A run's versions come from its workspace.
    admin = Admin.of(stack).http("account")
    search = f"{stack.url}/api/2.0/mlflow/model-versions/search"
    answer = admin.get(search, params={"filter": f"name = '{qualified}'"}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert "X-Fedgate-Unreachable-Workspaces" not in answer.headers  # only team-a was asked
    everywhere = admin.get(search, params={"filter": f"name LIKE '{shared.name}%'"}, timeout=60)
    assert everywhere.status_code == 200, everywhere.text
    assert "offline" in everywhere.headers["X-Fedgate-Unreachable-Workspaces"].split(", ")
    by_run = [(qualified, "1"), (qualified, "2"), (f"team-a.{hidden}", "1")]
    assert sorted((v["name"], v["version"]) for v in everywhere.json()["model_versions"]) == sorted(by_run + mine)
    run_only = admin.get(search, params={"filter": f"run_id = '{shared.run_id}'"}, timeout=60)
    assert sorted((v["name"], v["version"]) for v in run_only.json()["model_versions"]) == by_run

    # Revoked: gone at once.
    set_readers(stack, shared, [])
    assert version_names(client, f"name = '{qualified}'") == []
    assert version_names(client, f"run_id = '{shared.run_id}'") == []


def test_a_file_of_an_account_scope_version_is_sent_as_every_download(mlflow_env: Stack, shared: Shared) -> None:
    """The account scope's files of a version are a user's uploads like any other download: an attachment,
    `nosniff`, sandboxed, private to the browser, and never of a type a page of the gateway's origin would run."""
    stack = mlflow_env
    files = f"registered-models/team-a/{shared.model_id}/1"
    http = shared.owner.http(stack, "account")
    for file in ("MLmodel", "code/widget.mjs"):
        answer = http.get(f"{stack.url}/api/2.0/mlflow-artifacts/artifacts/{files}/{file}", timeout=60)
        assert answer.status_code == 200, (file, answer.text)
        assert answer.headers["Content-Disposition"].startswith("attachment"), file
        assert answer.headers["X-Content-Type-Options"] == "nosniff", file
        assert answer.headers["Content-Security-Policy"] == DOWNLOAD_POLICY, file
        assert answer.headers["Cache-Control"] == "private, no-cache", file
    assert answer.content == b"globalThis.ran = true;\n"
    assert answer.headers["Content-Type"].split(";")[0] == "text/plain"
    # The list of the same files stays the store's JSON answer.
    listing = http.get(f"{stack.url}/api/2.0/mlflow-artifacts/artifacts", params={"path": files}, timeout=60)
    assert listing.status_code == 200, listing.text
    assert {f["path"] for f in listing.json()["files"]} >= {"MLmodel", "code"}
