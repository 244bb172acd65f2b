"""Two users in two groups, through every API family, with the stock client; grants change under them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.conftest import Stack
from tests.support.held_inserts import executed, held_inserts, holding
from tests.support.identity import SCIM, Admin, Person, unique
from tests.support.waiting import until

pytestmark = pytest.mark.integration


@dataclass
class Org:
    alice: Person  # in group alpha
    bob: Person  # in group beta, which sits inside group everyone
    alpha: int
    beta: int
    everyone: int


@pytest.fixture(scope="module")
def org(stack: Stack) -> Org:
    suffix, admin = uuid.uuid4().hex[:6], Admin.of(stack)
    alice = admin.person(f"Alice.{suffix}@Example.com")  # user names are case-folded once
    bob = admin.person(f"bob.{suffix}@example.com")
    alpha = admin.group(f"alpha-{suffix}", [alice.id])
    beta = admin.group(f"beta-{suffix}", [bob.id])
    everyone = admin.group(f"everyone-{suffix}", [beta])  # nested: bob is in it through beta
    admin.grant("workspaces/team-a", "CAN_USE", group=f"alpha-{suffix}")
    admin.grant("workspaces/team-a", "CAN_USE", group=f"everyone-{suffix}")
    return Org(alice, bob, alpha, beta, everyone)


@pytest.fixture
def as_user(mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def switch(person: Person) -> MlflowClient:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", person.token)
        mlflow.set_workspace("team-a")
        return MlflowClient()

    yield switch


def error_code(call: Any) -> str:
    with pytest.raises(MlflowException) as excinfo:
        call()
    return str(excinfo.value.error_code)


@dataclass
class Owned:
    experiment_id: str
    run_id: str
    model_name: str


@pytest.fixture(scope="module")
def alices_work(stack: Stack, org: Org, tmp_path_factory: pytest.TempPathFactory) -> Owned:
    """Alice's experiment, run (params, metrics, an artifact) and registered model version, made with the client."""
    import os

    saved = os.environ.get("MLFLOW_TRACKING_TOKEN")
    os.environ["MLFLOW_TRACKING_TOKEN"] = org.alice.token
    os.environ["MLFLOW_TRACKING_URI"] = stack.url
    try:
        mlflow.set_tracking_uri(stack.url)
        mlflow.set_workspace("team-a")
        experiment_id = mlflow.create_experiment(unique("alice"))
        client = MlflowClient()
        run = client.create_run(experiment_id)
        client.log_param(run.info.run_id, "lr", "0.1")
        client.log_metric(run.info.run_id, "accuracy", 0.93, step=1)
        artifact = tmp_path_factory.mktemp("alice") / "notes.txt"
        artifact.write_text("alice's notes")
        client.log_artifact(run.info.run_id, str(artifact))
        client.set_terminated(run.info.run_id)
        name = unique("alice-model")
        client.create_registered_model(name)
        client.create_model_version(name, f"runs:/{run.info.run_id}/notes.txt", run_id=run.info.run_id)
        return Owned(experiment_id, run.info.run_id, name)
    finally:
        mlflow.set_workspace(None)
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        else:
            os.environ["MLFLOW_TRACKING_TOKEN"] = saved


def set_experiment_acl(stack: Stack, who: Person, experiment_id: str, acl: list[dict[str, str]], *, put: bool) -> None:
    method = "put" if put else "patch"
    response = getattr(who.http(stack), method)(
        f"{stack.url}/api/2.0/permissions/experiments/{experiment_id}", json={"access_control_list": acl}
    )
    assert response.status_code == 200, response.text


def test_creators_own_what_they_create(stack: Stack, org: Org, alices_work: Owned) -> None:
    acl = org.alice.http(stack).get(f"{stack.url}/api/2.0/permissions/experiments/{alices_work.experiment_id}").json()
    assert acl["object_id"] == f"/experiments/{alices_work.experiment_id}"
    direct = [e for e in acl["access_control_list"] if e.get("user_name") == org.alice.name]
    assert direct and direct[0]["all_permissions"][0] == {"permission_level": "CAN_MANAGE", "inherited": False}


def test_a_stranger_sees_nothing_of_alices_work(as_user: Any, org: Org, alices_work: Owned) -> None:
    client = as_user(org.bob)
    assert alices_work.experiment_id not in {e.experiment_id for e in client.search_experiments()}
    assert error_code(lambda: client.get_experiment(alices_work.experiment_id)) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.get_run(alices_work.run_id)) == "RESOURCE_DOES_NOT_EXIST"
    assert client.search_runs([alices_work.experiment_id]) == []
    assert error_code(lambda: client.get_metric_history(alices_work.run_id, "accuracy")) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.log_metric(alices_work.run_id, "x", 1.0)) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.get_registered_model(alices_work.model_name)) == "RESOURCE_DOES_NOT_EXIST"
    assert alices_work.model_name not in {m.name for m in client.search_registered_models()}
    assert client.search_model_versions(f"name = '{alices_work.model_name}'") == []


def test_group_grant_lets_bob_read_but_not_write_and_revocation_is_immediate(
    stack: Stack, as_user: Any, org: Org, alices_work: Owned, tmp_path: Path
) -> None:
    everyone = [
        g for g in stack.http().get(f"{stack.url}{SCIM}/Groups").json()["Resources"] if g["id"] == str(org.everyone)
    ]
    group_name = everyone[0]["displayName"]
    set_experiment_acl(
        stack,
        org.alice,
        alices_work.experiment_id,
        [{"group_name": group_name, "permission_level": "CAN_READ"}],
        put=False,
    )
    client = as_user(org.bob)
    assert client.get_experiment(alices_work.experiment_id).experiment_id == alices_work.experiment_id
    assert [r.info.run_id for r in client.search_runs([alices_work.experiment_id])] == [alices_work.run_id]
    assert client.get_run(alices_work.run_id).data.params == {"lr": "0.1"}
    assert [m.value for m in client.get_metric_history(alices_work.run_id, "accuracy")] == [0.93]
    downloaded = client.download_artifacts(alices_work.run_id, "notes.txt", str(tmp_path))
    assert Path(downloaded).read_text() == "alice's notes"
    # Readable but not writable: PERMISSION_DENIED, not "does not exist".
    assert error_code(lambda: client.log_metric(alices_work.run_id, "x", 1.0)) == "PERMISSION_DENIED"
    assert error_code(lambda: client.delete_experiment(alices_work.experiment_id)) == "PERMISSION_DENIED"
    # The experiment grant covers runs, not the registered model.
    assert error_code(lambda: client.get_registered_model(alices_work.model_name)) == "RESOURCE_DOES_NOT_EXIST"

    # PUT replaces the grants: only Alice remains. Bob loses access on his very next call.
    set_experiment_acl(
        stack,
        org.alice,
        alices_work.experiment_id,
        [{"user_name": org.alice.name, "permission_level": "CAN_MANAGE"}],
        put=True,
    )
    assert error_code(lambda: client.get_run(alices_work.run_id)) == "RESOURCE_DOES_NOT_EXIST"
    assert client.search_runs([alices_work.experiment_id]) == []


def test_model_permissions_are_keyed_by_id_and_follow_renames(
    stack: Stack, as_user: Any, org: Org, alices_work: Owned
) -> None:
    alice = org.alice.http(stack)
    found = alice.get(
        f"{stack.url}/api/2.0/mlflow/databricks/registered-models/get", params={"name": alices_work.model_name}
    )
    assert found.status_code == 200, found.text
    model = found.json()["registered_model_databricks"]
    assert model["permission_level"] == "CAN_MANAGE"
    granted = alice.patch(
        f"{stack.url}/api/2.0/permissions/registered-models/{model['id']}",
        json={"access_control_list": [{"user_name": org.bob.name, "permission_level": "CAN_READ"}]},
    )
    assert granted.status_code == 200, granted.text
    renamed = unique("renamed")
    as_user(org.alice).rename_registered_model(alices_work.model_name, renamed)
    client = as_user(org.bob)
    assert client.get_registered_model(renamed).name == renamed
    assert [m.name for m in client.search_registered_models(f"name = '{renamed}'")] == [renamed]
    assert {v.version for v in client.search_model_versions(f"name = '{renamed}'")} == {"1"}
    assert error_code(lambda: client.delete_registered_model(renamed)) == "PERMISSION_DENIED"
    # Deleted and re-created under the same name: a new object, the old grants do not carry over.
    as_user(org.alice).delete_registered_model(renamed)
    as_user(org.alice).create_registered_model(renamed)
    client = as_user(org.bob)
    assert error_code(lambda: client.get_registered_model(renamed)) == "RESOURCE_DOES_NOT_EXIST"
    alices_work.model_name = renamed


def test_a_model_deleted_at_its_store_and_created_again_through_the_gateway_is_a_new_object(
    stack: Stack, as_user: Any, org: Org
) -> None:
    """The gateway learns of a model's deletion from the answers it forwards; one deleted at the store itself (another
    client of the store, an operator's clean-up, a deletion whose answer was lost) left the name's id and grants.
    Before, whoever then created a model of the name through the gateway made it under the old id: the old owner
    and everyone the old grants named read and managed the newcomer's model."""
    name = unique("store-deleted")
    as_user(org.alice).create_registered_model(name)
    alice = org.alice.http(stack)
    found = alice.get(f"{stack.url}/api/2.0/mlflow/databricks/registered-models/get", params={"name": name})
    old_id = found.json()["registered_model_databricks"]["id"]
    granted = alice.patch(
        f"{stack.url}/api/2.0/permissions/registered-models/{old_id}",
        json={"access_control_list": [{"user_name": org.bob.name, "permission_level": "CAN_READ"}]},
    )
    assert granted.status_code == 200, granted.text
    deleted = requests.delete(
        f"{stack.stores['a'].url}/api/2.0/mlflow/registered-models/delete", json={"name": name}, timeout=30
    )
    assert deleted.status_code == 200, deleted.text

    carol = Admin.of(stack).person(f"{unique('carol')}@example.com")
    Admin.of(stack).grant("workspaces/team-a", "CAN_USE", user=carol.name)
    as_user(carol).create_registered_model(name, description="carol's")
    mine = carol.http(stack).get(f"{stack.url}/api/2.0/mlflow/databricks/registered-models/get", params={"name": name})
    assert mine.json()["registered_model_databricks"]["permission_level"] == "CAN_MANAGE", mine.text
    assert mine.json()["registered_model_databricks"]["id"] != old_id
    for person in (org.alice, org.bob):
        client = as_user(person)
        assert error_code(lambda: client.get_registered_model(name)) == "RESOURCE_DOES_NOT_EXIST"  # noqa: B023
    acl = carol.http(stack).get(
        f"{stack.url}/api/2.0/permissions/registered-models/{mine.json()['registered_model_databricks']['id']}"
    )
    # Carol holds the new model and none of the old model's grantees do (principals that earlier tests granted the
    # whole workspace to are listed too, as inherited).
    holders = {entry.get("user_name") for entry in acl.json()["access_control_list"]}
    assert carol.name in holders and not holders & {org.alice.name, org.bob.name}, acl.text


def test_a_version_cannot_be_registered_from_a_run_one_cannot_read(
    stack: Stack, as_user: Any, org: Org, alices_work: Owned
) -> None:
    client = as_user(org.bob)
    mine = unique("bobs-model")
    client.create_registered_model(mine)
    for source, run_id in (
        (f"runs:/{alices_work.run_id}/notes.txt", None),
        ("file:///etc/passwd", None),
        (f"mlflow-artifacts:/{alices_work.experiment_id}/{alices_work.run_id}/artifacts", None),
        ("s3://bucket/anything", alices_work.run_id),
    ):
        code = error_code(lambda s=source, r=run_id: client.create_model_version(mine, s, run_id=r))
        assert code in ("RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED"), source
    assert client.search_model_versions(f"name = '{mine}'") == []


def test_search_pages_are_full_and_hide_the_rest(stack: Stack, as_user: Any, org: Org) -> None:
    bob = as_user(org.bob)
    own = [bob.create_experiment(unique("bob-page")) for _ in range(5)]
    alice = as_user(org.alice)
    for _ in range(5):
        alice.create_experiment(unique("alice-page"))
    bob = as_user(org.bob)
    seen: list[str] = []
    token = None
    while True:
        page = bob.search_experiments(max_results=2, page_token=token)
        assert len(page) == 2 or page.token is None  # only the last page may be short
        seen.extend(e.experiment_id for e in page)
        token = page.token
        if not token:
            break
    assert set(own) <= set(seen)
    readable = {e.experiment_id for e in bob.search_experiments()}
    assert set(seen) == readable


def test_dual_spellings_are_refused_and_of_repeated_fields_the_checked_one_is_sent(
    stack: Stack, org: Org, alices_work: Owned
) -> None:
    bob = org.bob.http(stack)
    url = f"{stack.url}/api/2.0/mlflow/runs/create"
    mine = bob.post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("bob")}).json()[
        "experiment_id"
    ]
    for body in (
        f'{{"experiment_id": "{mine}", "experimentId": "{alices_work.experiment_id}"}}',
        f'{{"experimentId": "{alices_work.experiment_id}"}}',
    ):
        response = bob.post(url, data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, body
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # A repeated key is read as the store reads it (the last one), and only that one is forwarded.
    for body, status in (
        (f'{{"experiment_id": "{mine}", "experiment_id": "{alices_work.experiment_id}"}}', 404),
        (f'{{"experiment_id": "{alices_work.experiment_id}", "experiment_id": "{mine}"}}', 200),
    ):
        response = bob.post(url, data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == status, (body, response.text)
        if status == 200:
            assert response.json()["run"]["info"]["experiment_id"] == mine


@pytest.mark.parametrize(
    "path",
    [
        "{exp}/{run}/artifacts/../../../",
        "{exp}/%2e%2e/",
        "{exp}/%252e%252e/x",
        "{exp}\\..\\x",
        "{exp}/{run};/../x",
        ".",
        "",
        "./.",
    ],
)
@pytest.mark.parametrize("prefix", ["/api/2.0", "/ajax-api/2.0"])
def test_artifact_paths_never_reach_what_the_caller_cannot_read(
    stack: Stack, org: Org, alices_work: Owned, path: str, prefix: str
) -> None:
    bob = org.bob.http(stack)
    target = path.format(exp=alices_work.experiment_id, run=alices_work.run_id)
    for method in ("GET", "DELETE"):
        response = bob.request(method, f"{stack.url}{prefix}/mlflow-artifacts/artifacts/{target}")
        assert response.status_code in (400, 403, 404), (method, target, response.status_code)
        assert "error_code" in response.json()
    listing = bob.get(f"{stack.url}{prefix}/mlflow-artifacts/artifacts", params={"path": target})
    assert listing.status_code in (400, 403, 404), (target, listing.status_code)


def test_unity_catalog_grants_need_all_three_privileges(stack: Stack, org: Org) -> None:
    groups = stack.http().get(f"{stack.url}{SCIM}/Groups", params={"filter": 'displayName sw "everyone-"'}).json()
    everyone = next(g["displayName"] for g in groups["Resources"] if g["id"] == str(org.everyone))
    uc = f"{stack.url}/api/2.1/unity-catalog"
    changed = stack.http().patch(
        f"{uc}/permissions/schema/system.mlflow",
        json={"changes": [{"principal": everyone, "add": ["USE_SCHEMA", "SELECT"]}]},
    )
    assert changed.status_code == 200, changed.text
    assignments = changed.json()["privilege_assignments"]
    assert {"principal": everyone, "privileges": ["SELECT", "USE_SCHEMA"]} in assignments
    effective = (
        stack.http()
        .get(f"{uc}/effective-permissions/table/system.mlflow.runs_latest", params={"principal": org.bob.name})
        .json()["privilege_assignments"][0]["privileges"]
    )
    assert {
        "privilege": "SELECT",
        "inherited_from_type": "SCHEMA",
        "inherited_from_name": "system.mlflow",
        "inherited_from_principal": everyone,
    } in effective
    # Bob may look at his own effective permissions, not change grants.
    assert (
        org.bob.http(stack)
        .get(f"{uc}/effective-permissions/table/system.mlflow.runs_latest", params={"principal": org.bob.name})
        .status_code
        == 200
    )
    refused = org.bob.http(stack).patch(
        f"{uc}/permissions/catalog/system", json={"changes": [{"principal": org.bob.name, "add": ["USE_CATALOG"]}]}
    )
    assert refused.status_code == 403
    bad = stack.http().patch(
        f"{uc}/permissions/catalog/system", json={"changes": [{"principal": everyone, "add": ["DROP"]}]}
    )
    assert bad.status_code == 400
    unknown = stack.http().get(f"{uc}/permissions/table/system.mlflow.nothing")
    assert unknown.status_code == 404


def test_tokens_are_shown_once_listed_without_secret_and_revoked_everywhere(
    stack: Stack, org: Org, workdir: Path
) -> None:
    from gateway.devstack import GatewayProcess
    from tests.conftest import GATEWAY_ENV

    bob = org.bob.http(stack)
    created = bob.post(f"{stack.url}/api/2.0/token/create", json={"comment": "laptop", "lifetime_seconds": 3600})
    assert created.status_code == 200, created.text
    token, token_id = created.json()["token_value"], created.json()["token_info"]["token_id"]
    listed = bob.get(f"{stack.url}/api/2.0/token/list").json()["token_infos"]
    assert any(t["token_id"] == token_id and t["comment"] == "laptop" for t in listed)
    assert token not in str(listed)

    second = GatewayProcess(workdir / "fedgate.toml", GATEWAY_ENV).start()
    try:
        with_token = requests.Session()
        with_token.headers.update({"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": "team-a"})
        search = f"{second.url}/api/2.0/mlflow/experiments/search"
        assert with_token.post(search, json={"max_results": 1}).status_code == 200
        # MLFLOW_TRACKING_USERNAME/PASSWORD with the token as the password work too.
        assert (
            requests.post(
                search, json={"max_results": 1}, auth=(org.bob.name, token), headers={"X-MLFLOW-WORKSPACE": "team-a"}
            ).status_code
            == 200
        )
        assert (
            requests.post(
                search, json={"max_results": 1}, auth=("someone-else", token), headers={"X-MLFLOW-WORKSPACE": "team-a"}
            ).status_code
            == 401
        )
        assert bob.post(f"{stack.url}/api/2.0/token/delete", json={"token_id": token_id}).status_code == 200
        assert wait_for(lambda: with_token.post(search, json={"max_results": 1}).status_code == 401)

        # A membership removed on one replica stops working on the other.
        experiment = (
            org.alice.http(stack)
            .post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("alpha-shared")})
            .json()["experiment_id"]
        )
        alpha_name = stack.http().get(f"{stack.url}{SCIM}/Groups/{org.alpha}").json()["displayName"]
        set_experiment_acl(
            stack, org.alice, experiment, [{"group_name": alpha_name, "permission_level": "CAN_READ"}], put=False
        )
        carol = Admin.of(stack).person(unique("carol") + "@example.com")
        patched = stack.http().patch(
            f"{stack.url}{SCIM}/Groups/{org.alpha}",
            json={"Operations": [{"op": "add", "path": "members", "value": [{"value": str(carol.id)}]}]},
        )
        assert patched.status_code == 200, patched.text
        as_carol = carol.http(stack)
        get = f"{second.url}/api/2.0/mlflow/experiments/get"
        assert wait_for(lambda: as_carol.get(get, params={"experiment_id": experiment}).status_code == 200)
        stack.http().patch(
            f"{stack.url}{SCIM}/Groups/{org.alpha}",
            json={"Operations": [{"op": "remove", "path": f'members[value eq "{carol.id}"]'}]},
        )
        assert wait_for(lambda: as_carol.get(get, params={"experiment_id": experiment}).status_code == 404)
    finally:
        second.stop()


def wait_for(condition: Any, timeout: float = 60.0) -> bool:
    """NOTIFY reaches the other process within milliseconds and the policy poll (2 s) is the backstop; a loaded
    machine may take longer to apply the change, so the bound is generous (a passing test never waits it out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_denials_and_changes_are_in_the_audit_log(stack: Stack, org: Org, alices_work: Owned) -> None:
    org.bob.http(stack).get(f"{stack.url}/api/2.0/mlflow/runs/get", params={"run_id": alices_work.run_id})

    def bobs_entries() -> list[dict[str, Any]]:
        log = stack.http().get(
            f"{stack.url}/api/2.0/fedgate/audit-log", params={"max_results": 1000, "actor": org.bob.name}
        )
        assert log.status_code == 200, log.text
        return list(log.json()["entries"])

    # Denials are queued and written in the background, after the answer.
    until(
        bobs_entries,
        lambda entries: any(e["action"] == "request.denied" and "/runs/get" in e["target"] for e in entries),
        "Bob's denied runs/get in the audit log",
    )
    changes = (
        stack.http()
        .get(f"{stack.url}/api/2.0/fedgate/audit-log", params={"max_results": 1000, "actor": org.alice.name})
        .json()["entries"]
    )
    assert {"grant.owner", "permissions.update"} <= {e["action"] for e in changes}
    assert org.bob.http(stack).get(f"{stack.url}/api/2.0/fedgate/audit-log").status_code == 403


def test_scim_users_groups_and_filters(stack: Stack, org: Org) -> None:
    found = stack.http().get(f"{stack.url}{SCIM}/Users", params={"filter": f'userName eq "{org.bob.name.upper()}"'})
    assert [u["id"] for u in found.json()["Resources"]] == [str(org.bob.id)]
    me = org.bob.http(stack).get(f"{stack.url}{SCIM}/Me").json()
    assert me["userName"] == org.bob.name and {g["value"] for g in me["groups"]} == {str(org.beta)}
    assert org.bob.http(stack).get(f"{stack.url}{SCIM}/Users").status_code == 403
    cycle = stack.http().patch(
        f"{stack.url}{SCIM}/Groups/{org.beta}",
        json={"Operations": [{"op": "add", "path": "members", "value": [{"value": str(org.everyone)}]}]},
    )
    assert cycle.status_code == 400 and "contain itself" in cycle.json()["message"]
    sp = stack.http().post(f"{stack.url}{SCIM}/ServicePrincipals", json={"displayName": "ci-bot"}).json()
    assert sp["applicationId"] and sp["active"] is True
    assert stack.http().delete(f"{stack.url}{SCIM}/ServicePrincipals/{sp['id']}").status_code == 204
    assert stack.http().get(f"{stack.url}{SCIM}/ServicePrincipals/{sp['id']}").status_code == 404


def test_workspaces_list_only_shows_workspaces_with_grants(stack: Stack, org: Org) -> None:
    names = {
        w["name"] for w in org.bob.http(stack, None).get(f"{stack.url}/api/3.0/mlflow/workspaces").json()["workspaces"]
    }
    assert names == {"team-a"}
    hidden = org.bob.http(stack, "team-b").post(
        f"{stack.url}/api/2.0/mlflow/experiments/search", json={"max_results": 5}
    )
    assert hidden.status_code == 404 and hidden.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_every_prefix_and_lookup_hides_the_same_objects(stack: Stack, org: Org, alices_work: Owned) -> None:
    bob = org.bob.http(stack)
    for prefix in ("/api/2.0", "/ajax-api/2.0"):
        response = bob.get(f"{stack.url}{prefix}/mlflow/runs/get", params={"run_id": alices_work.run_id})
        assert response.status_code == 404 and response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    name = (
        org.alice.http(stack)
        .get(f"{stack.url}/api/2.0/mlflow/experiments/get", params={"experiment_id": alices_work.experiment_id})
        .json()["experiment"]["name"]
    )
    by_name = bob.get(f"{stack.url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name})
    assert by_name.status_code == 404 and by_name.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # To the byte: the gateway's refusal of a hidden name and the store's answer for a missing one (before, the
    # gateway's body was compact JSON without MLflow's sqlstate and error_class).
    absent_name = f"absent-{name}"
    absent = bob.get(f"{stack.url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": absent_name})
    assert absent.status_code == 404
    assert by_name.content.replace(name.encode(), b"<name>") == absent.content.replace(absent_name.encode(), b"<name>")
    malformed = bob.get(f"{stack.url}/api/2.0mlflow/runs/get", params={"run_id": alices_work.run_id})
    assert malformed.status_code == 404 and malformed.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    bulk = bob.get(
        f"{stack.url}/api/2.0/mlflow/metrics/get-history-bulk-interval",
        params={"run_ids": [alices_work.run_id], "metric_key": "accuracy", "max_results": 10},
    )
    assert bulk.status_code == 404


def test_stage_transitions_need_the_level_of_the_stages_involved(
    stack: Stack, as_user: Any, org: Org, alices_work: Owned
) -> None:
    alice = as_user(org.alice)
    name = unique("staged")
    alice.create_registered_model(name)
    alice.create_model_version(name, f"runs:/{alices_work.run_id}/notes.txt", run_id=alices_work.run_id)
    model_id = (
        org.alice.http(stack)
        .get(f"{stack.url}/api/2.0/mlflow/databricks/registered-models/get", params={"name": name})
        .json()["registered_model_databricks"]["id"]
    )
    granted = org.alice.http(stack).patch(
        f"{stack.url}/api/2.0/permissions/registered-models/{model_id}",
        json={"access_control_list": [{"user_name": org.bob.name, "permission_level": "CAN_MANAGE_STAGING_VERSIONS"}]},
    )
    assert granted.status_code == 200, granted.text
    bob = as_user(org.bob)
    assert bob.transition_model_version_stage(name, "1", "Staging").current_stage == "Staging"
    assert error_code(lambda: bob.transition_model_version_stage(name, "1", "Production")) == "PERMISSION_DENIED"
    as_user(org.alice).transition_model_version_stage(name, "1", "Production")
    # Moving a version out of Production touches Production too.
    assert error_code(lambda: as_user(org.bob).transition_model_version_stage(name, "1", "Archived")) == (
        "PERMISSION_DENIED"
    )


def test_workspace_admins_manage_everything_in_their_workspace(stack: Stack, as_user: Any, org: Org) -> None:
    experiment_id = as_user(org.alice).create_experiment(unique("alice-admin-test"))
    beta_name = stack.http().get(f"{stack.url}{SCIM}/Groups/{org.beta}").json()["displayName"]
    Admin.of(stack).grant("workspaces/team-a", "CAN_MANAGE", group=beta_name)
    try:
        bob = as_user(org.bob)
        bob.set_experiment_tag(experiment_id, "reviewed", "yes")
        bob.delete_experiment(experiment_id)
        assert bob.get_experiment(experiment_id).lifecycle_stage == "deleted"
    finally:
        Admin.of(stack).grant("workspaces/team-a", "CAN_USE", group=beta_name)
    assert error_code(lambda: as_user(org.bob).restore_experiment(experiment_id)) == "RESOURCE_DOES_NOT_EXIST"


def test_traces_follow_their_experiment(stack: Stack, as_user: Any, org: Org) -> None:
    client = as_user(org.alice)
    experiment_id = client.create_experiment(unique("alice-traces"))
    mlflow.set_experiment(experiment_id=experiment_id)

    @mlflow.trace
    def add(a: int, b: int) -> int:
        return a + b

    assert add(2, 3) == 5
    mlflow.flush_trace_async_logging()
    traces = mlflow.search_traces(locations=[experiment_id], return_type="list")
    assert len(traces) == 1
    trace_id = traces[0].info.trace_id
    assert client.get_trace(trace_id).info.trace_id == trace_id
    bob = as_user(org.bob)
    assert mlflow.search_traces(locations=[experiment_id], return_type="list") == []
    assert error_code(lambda: bob.get_trace(trace_id)) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: bob.set_trace_tag(trace_id, "k", "v")) == "RESOURCE_DOES_NOT_EXIST"


def test_a_grant_to_a_principal_deleted_meanwhile_is_a_missing_principal(stack: Stack, org: Org) -> None:
    """A grant and the deletion of the principal it names at once. A trigger holds the grant's INSERT while an admin
    deletes the principal; the row's foreign key then finds no principal. Before, that answered 500 INTERNAL_ERROR;
    it is the principal's name nobody holds any more: 404, and nothing granted."""
    admin = Admin.of(stack)
    leaving = admin.person(f"{unique('leaving')}@example.com")
    held = f"NEW.principal_id = {leaving.id}"
    with held_inserts(stack.database_url, "grants", held), ThreadPoolExecutor(2) as pool:
        granted = pool.submit(
            admin.http().patch,
            f"{stack.url}/api/2.0/permissions/workspaces/team-a",
            json={"access_control_list": [{"user_name": leaving.name, "permission_level": "CAN_USE"}]},
            timeout=60,
        )
        holding(stack.database_url, "the grant holding its insert")
        deleted = pool.submit(admin.http().delete, f"{stack.url}{SCIM}/Users/{leaving.id}", timeout=60)
        grant_answer, delete_answer = granted.result(), deleted.result()
    assert delete_answer.status_code == 204, delete_answer.text
    assert grant_answer.status_code == 404, grant_answer.text
    assert grant_answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", grant_answer.text
    assert executed(stack.database_url, f"SELECT id FROM grants WHERE principal_id = {leaving.id}") == []


def test_a_member_deleted_while_it_is_added_to_a_group_is_a_member_that_does_not_exist(stack: Stack, org: Org) -> None:
    """A SCIM PATCH adding a member and the member's deletion at once. A trigger holds the membership's INSERT while
    an admin deletes the user. Before, the row's foreign key then failed: 500 INTERNAL_ERROR. Now the member is
    held (FOR KEY SHARE) from the check to the commit, so the deletion waits and takes the membership along."""
    admin = Admin.of(stack)
    leaving = admin.person(f"{unique('leaving')}@example.com")
    group = admin.group(unique("club"))
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": str(leaving.id)}]}],
    }
    with (
        held_inserts(stack.database_url, "group_members", f"NEW.member_id = {leaving.id}"),
        ThreadPoolExecutor(2) as pool,
    ):
        added = pool.submit(admin.http().patch, f"{stack.url}{SCIM}/Groups/{group}", json=body, timeout=60)
        holding(stack.database_url, "the membership holding its insert")
        deleted = pool.submit(admin.http().delete, f"{stack.url}{SCIM}/Users/{leaving.id}", timeout=60)
        add_answer, delete_answer = added.result(), deleted.result()
    assert delete_answer.status_code == 204, delete_answer.text
    assert add_answer.status_code in (200, 400), add_answer.text
    assert executed(stack.database_url, f"SELECT group_id FROM group_members WHERE member_id = {leaving.id}") == []


@pytest.mark.parametrize(("resource", "name_attribute"), [("Users", "userName"), ("ServicePrincipals", "displayName")])
def test_a_principal_created_into_a_group_deleted_meanwhile_is_a_group_that_does_not_exist(
    stack: Stack, org: Org, resource: str, name_attribute: str
) -> None:
    """A SCIM POST of a user (or service principal) with `groups` and the group's deletion at once. A trigger holds
    the membership's INSERT while an admin deletes the group. Before, the row's foreign key then failed: 500
    INTERNAL_ERROR. Now the group is held (FOR KEY SHARE) from the check to the commit, so the deletion waits and
    takes the membership along."""
    admin = Admin.of(stack)
    group = admin.group(unique("club"))
    name = f"{unique('joining')}@example.com" if resource == "Users" else unique("joining")
    body = {name_attribute: name, "groups": [{"value": str(group)}]}
    with held_inserts(stack.database_url, "group_members", f"NEW.group_id = {group}"), ThreadPoolExecutor(2) as pool:
        created = pool.submit(admin.http().post, f"{stack.url}{SCIM}/{resource}", json=body, timeout=60)
        holding(stack.database_url, "the membership holding its insert")
        deleted = pool.submit(admin.http().delete, f"{stack.url}{SCIM}/Groups/{group}", timeout=60)
        create_answer, delete_answer = created.result(), deleted.result()
    assert delete_answer.status_code == 204, delete_answer.text
    assert create_answer.status_code in (201, 400), create_answer.text
    assert executed(stack.database_url, f"SELECT member_id FROM group_members WHERE group_id = {group}") == []


def test_a_group_deleted_while_a_member_is_added_to_it_is_a_group_that_does_not_exist(stack: Stack, org: Org) -> None:
    """A SCIM PATCH adding a member to a group and the group's deletion at once. A trigger holds the membership's
    INSERT while an admin deletes the group. Before, the row's foreign key then failed: 500 INTERNAL_ERROR. Now the
    group is locked from the check to the commit, so the deletion waits and takes the membership along (the PATCH
    then answers the group it changed, or 404 if it is gone by the time it is read back)."""
    admin = Admin.of(stack)
    joining = admin.user(f"{unique('joining')}@example.com")
    group = admin.group(unique("club"))
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": str(joining)}]}],
    }
    with held_inserts(stack.database_url, "group_members", f"NEW.group_id = {group}"), ThreadPoolExecutor(2) as pool:
        added = pool.submit(admin.http().patch, f"{stack.url}{SCIM}/Groups/{group}", json=body, timeout=60)
        holding(stack.database_url, "the membership holding its insert")
        deleted = pool.submit(admin.http().delete, f"{stack.url}{SCIM}/Groups/{group}", timeout=60)
        add_answer, delete_answer = added.result(), deleted.result()
    assert delete_answer.status_code == 204, delete_answer.text
    assert add_answer.status_code in (200, 404), add_answer.text
    if add_answer.status_code == 404:
        assert add_answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", add_answer.text
    assert executed(stack.database_url, f"SELECT member_id FROM group_members WHERE group_id = {group}") == []


def test_the_same_members_added_to_two_groups_in_opposite_orders_wait_on_nothing(stack: Stack, org: Org) -> None:
    """Two SCIM PATCHes, one adding members A then B to a group, the other B then A to another group. Each member is
    held from its check to the commit; triggers hold the first membership of each while the other starts. Before,
    the hold was FOR NO KEY UPDATE, so each call waited for the member the other held: a deadlock, one call 500.
    The hold is FOR KEY SHARE (what the foreign key's check takes), which no other addition waits for."""
    admin = Admin.of(stack)
    first, second = (admin.user(f"{unique('member')}@example.com") for _ in range(2))
    groups = admin.group(unique("club")), admin.group(unique("club"))

    def body(*members: int) -> dict[str, Any]:
        value = [{"value": str(member)} for member in members]
        return {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": value}],
        }

    held = f"(NEW.group_id = {groups[0]} AND NEW.member_id = {first}) OR "
    held += f"(NEW.group_id = {groups[1]} AND NEW.member_id = {second})"
    sleeping = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
    with held_inserts(stack.database_url, "group_members", held, seconds=6), ThreadPoolExecutor(2) as pool:
        one = pool.submit(
            admin.http().patch, f"{stack.url}{SCIM}/Groups/{groups[0]}", json=body(first, second), timeout=60
        )
        holding(stack.database_url, "the first membership holding its insert")
        other = pool.submit(
            admin.http().patch, f"{stack.url}{SCIM}/Groups/{groups[1]}", json=body(second, first), timeout=60
        )
        until(lambda: executed(stack.database_url, sleeping), lambda rows: len(rows) >= 2, "both holding")
        answers = one.result(), other.result()
    assert [answer.status_code for answer in answers] == [200, 200], [answer.text for answer in answers]
    for group in groups:
        members = executed(stack.database_url, f"SELECT member_id FROM group_members WHERE group_id = {group}")
        assert sorted(row["member_id"] for row in members) == sorted([first, second])
