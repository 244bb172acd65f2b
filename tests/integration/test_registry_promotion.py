"""Promotion of a model version from team-a (store a) into team-b's registry (store b) against a real gateway:
the files copied byte for byte store to store, lineage on the copy, a retry that copies nothing, the activity
log on both sides, the copy loadable with the stock client, and promotions refused without the rights.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import requests
from mlflow.entities import LoggedModelStatus
from sklearn.linear_model import LogisticRegression

from gateway.devstack import GatewayProcess
from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import Admin, Person, unique
from tests.support.oidc import OIDC_AUDIENCE as AUDIENCE
from tests.support.oidc import OidcIssuer
from tests.support.waiting import until

pytestmark = pytest.mark.integration


def need_approval(stack: Stack, need: bool) -> None:
    """team-b's promotion setting (a module's tests share the workspace)."""
    setting = {"promotions_need_approval": need}
    answer = (
        Admin.of(stack)
        .http("team-b")
        .patch(f"{stack.url}/api/2.0/fedgate/registry/promotion-settings", json=setting, timeout=60)
    )
    assert answer.status_code == 200, answer.text


def tree(root: Path) -> dict[str, str]:
    """relative path → sha256 of every file under `root` (the client's own registered_model_meta aside)."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "registered_model_meta"
    }


def promote(stack: Stack, who: Person, body: dict[str, Any], workspace: str = "team-b") -> Any:
    return who.http(stack, workspace).post(f"{stack.url}/api/2.0/fedgate/registry/promote", json=body, timeout=300)


def activity_types(stack: Stack, workspace: str, name: str) -> list[tuple[str, str, str]]:
    answer = stack.http(workspace).get(f"{stack.url}/api/2.0/mlflow/activities/list", params={"name": name}, timeout=60)
    assert answer.status_code == 200, answer.text
    return [(a["activity_type"], a["version"], a.get("system_comment") or "") for a in answer.json()["activities"]]


def test_a_version_is_promoted_from_team_a_to_team_b_byte_for_byte_with_lineage(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = mlflow_env
    need_approval(stack, False)
    admin = Admin.of(stack)
    owner = admin.person(f"{unique('owner')}@example.com")
    promoter = admin.person(f"{unique('promoter')}@example.com")
    outsider = admin.person(f"{unique('outsider')}@example.com")
    admin.grant("workspaces/team-a", "CAN_USE", user=owner.name)
    for person in (promoter, outsider):
        admin.grant("workspaces/team-b", "CAN_USE", user=person.name)

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", owner.token)
    mlflow.set_workspace("team-a")
    mlflow.set_experiment(unique("promote-src"))
    rng = np.random.default_rng(11)
    features = rng.random((25, 4))
    model = LogisticRegression().fit(features, (features[:, 2] > 0.5).astype(int))
    name = unique("churn")
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
        mlflow.log_text("not part of the model", "notes.txt")
    model_id = owner.http(stack, "team-a").get(
        f"{stack.url}/api/2.0/mlflow/databricks/registered-models/get", params={"name": name}, timeout=60
    )
    assert model_id.status_code == 200, model_id.text
    source_id = model_id.json()["registered_model_databricks"]["id"]
    body = {"name": f"team-a.{name}", "version": "1"}

    # Without CAN_READ on the source model it does not exist; nor does a version it lacks.
    refused = promote(stack, outsider, body)
    assert refused.status_code == 404 and refused.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", refused.text
    admin.grant(f"registered-models/{source_id}", "CAN_READ", user=promoter.name, workspace="team-a")
    missing = promote(stack, promoter, {**body, "version": "7"})
    assert missing.status_code == 404, missing.text
    assert promote(stack, promoter, {"name": name, "version": "1"}).status_code == 400  # not qualified
    assert promote(stack, promoter, body, workspace="team-a").status_code == 400  # into its own workspace

    done = promote(stack, promoter, body)
    assert done.status_code == 200, done.text
    answer = done.json()
    assert answer["copied"] is True and answer["files"] >= 3
    copy = answer["model_version"]
    assert (copy["name"], copy["version"], copy["current_stage"]) == (name, "1", "None")
    tags = {t["key"]: t["value"] for t in copy["tags"]}
    assert tags["fedgate.promoted_from.workspace"] == "team-a"
    assert tags["fedgate.promoted_from.model"] == name
    assert tags["fedgate.promoted_from.version"] == "1"
    assert tags["fedgate.promoted_from.run_id"] == run.info.run_id

    # A retry finds the copy and makes nothing.
    again = promote(stack, promoter, body)
    assert again.status_code == 200, again.text
    assert (again.json()["copied"], again.json()["model_version"]["version"]) == (False, "1")

    # Byte for byte: the source version's files and the copy's, each read through its own workspace.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ADMIN_TOKEN)
    mlflow.set_workspace("team-a")
    source_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "a")))
    mlflow.set_workspace("team-b")
    copy_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "b")))
    assert tree(source_dir) == tree(copy_dir) and "MLmodel" in tree(copy_dir)
    assert "notes.txt" not in tree(copy_dir)

    # The promoter owns the new model of team-b and loads the copy by its model grant (account scope).
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", promoter.token)
    mlflow.set_workspace("account")
    loaded = mlflow.pyfunc.load_model(f"models:/team-b.{name}/1")
    assert list(loaded.predict(features)) == list(model.predict(features))

    # One activity on each side, whatever the retries.
    assert activity_types(stack, "team-a", name) == [
        ("PROMOTED_TO_WORKSPACE", "1", f"Copied to team-b.{name} version 1.")
    ]
    assert activity_types(stack, "team-b", name) == [
        ("PROMOTED_FROM_WORKSPACE", "1", f"Copied from team-a.{name} version 1 (run {run.info.run_id}).")
    ]

    # Someone who may use team-b but not edit the promoter's model there may not add a version to it.
    admin.grant(f"registered-models/{source_id}", "CAN_READ", user=outsider.name, workspace="team-a")
    into_theirs = promote(stack, outsider, body)
    assert into_theirs.status_code == 404, into_theirs.text  # the target model is not theirs to see
    renamed = promote(stack, outsider, {**body, "target_name": f"{name}-mine"})
    assert renamed.status_code == 200 and renamed.json()["copied"] is True, renamed.text


def test_a_workspace_that_wants_promotions_approved_gets_requests_decided_once(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    stack = mlflow_env
    admin = Admin.of(stack)
    owner = admin.person(f"{unique('owner')}@example.com")
    requester = admin.person(f"{unique('requester')}@example.com")
    approver = admin.person(f"{unique('approver')}@example.com")
    admin.grant("workspaces/team-a", "CAN_USE", user=owner.name)
    admin.grant("workspaces/team-b", "CAN_USE", user=requester.name)
    admin.grant("workspaces/team-b", "CAN_MANAGE", user=approver.name)

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", owner.token)
    mlflow.set_workspace("team-a")
    mlflow.set_experiment(unique("approved-src"))
    features = np.random.default_rng(12).random((20, 3))
    model = LogisticRegression().fit(features, (features[:, 0] > 0.5).astype(int))
    name = unique("fraud")
    with mlflow.start_run():
        mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
    source_id = (
        owner.http(stack, "team-a")
        .get(f"{stack.url}/api/2.0/mlflow/databricks/registered-models/get", params={"name": name}, timeout=60)
        .json()["registered_model_databricks"]["id"]
    )
    admin.grant(f"registered-models/{source_id}", "CAN_READ", user=requester.name, workspace="team-a")
    base = f"{stack.url}/api/2.0/fedgate/registry"

    # Only a manager of team-b turns the setting on; then a direct promotion is for those who could approve.
    setting = {"promotions_need_approval": True}
    refused = requester.http(stack, "team-b").patch(f"{base}/promotion-settings", json=setting, timeout=60)
    assert refused.status_code == 403, refused.text
    turned = approver.http(stack, "team-b").patch(f"{base}/promotion-settings", json=setting, timeout=60)
    assert turned.status_code == 200 and turned.json()["promotions_need_approval"] is True, turned.text
    body = {"name": f"team-a.{name}", "version": "1"}
    direct = promote(stack, requester, body)
    assert direct.status_code == 403 and "promotion-requests/create" in direct.json()["message"], direct.text

    # A request: open, once per requester; its requester cannot approve it.
    requests_of = requester.http(stack, "team-b")
    made = requests_of.post(f"{base}/promotion-requests/create", json={**body, "comment": "ready"}, timeout=60)
    assert made.status_code == 200, made.text
    request = made.json()["promotion_request"]
    assert (request["state"], request["user_id"], request["available_actions"]) == (
        "OPEN",
        requester.name,
        ["CANCEL_PROMOTION_REQUEST"],
    )
    twice = requests_of.post(f"{base}/promotion-requests/create", json=body, timeout=60)
    assert twice.status_code == 400 and twice.json()["error_code"] == "RESOURCE_ALREADY_EXISTS", twice.text
    own = requests_of.post(f"{base}/promotion-requests/approve", json={"id": request["id"]}, timeout=60)
    assert own.status_code == 403, own.text
    listed = approver.http(stack, "team-b").get(f"{base}/promotion-requests/list", timeout=60).json()["requests"]
    [seen] = [r for r in listed if r["id"] == request["id"]]
    assert set(seen["available_actions"]) == {
        "APPROVE_PROMOTION_REQUEST",
        "REJECT_PROMOTION_REQUEST",
        "CANCEL_PROMOTION_REQUEST",
    }

    # Two approvals at the same moment: one copy, one decision; the other is told it was decided.
    def approve() -> Any:
        return approver.http(stack, "team-b").post(
            f"{base}/promotion-requests/approve", json={"id": request["id"], "comment": "go"}, timeout=300
        )

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: approve(), range(2)))
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    [approved] = [a.json() for a in answers if a.status_code == 200]
    assert approved["promotion_request"]["state"] == "APPROVED"
    assert approved["promotion_request"]["decided_by"] == approver.name
    assert approved["model_version"]["version"] == "1" == approved["promotion_request"]["target_version"]

    # The requester owns the new model of team-b and loads the copy there.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", requester.token)
    mlflow.set_workspace("account")
    loaded = mlflow.pyfunc.load_model(f"models:/team-b.{name}/1")
    assert list(loaded.predict(features)) == list(model.predict(features))

    # Rejected and cancelled requests; and a requester who lost the source since asking is not copied for.
    second = requests_of.post(
        f"{base}/promotion-requests/create", json={**body, "target_name": f"{name}-2"}, timeout=60
    )
    rejected = approver.http(stack, "team-b").post(
        f"{base}/promotion-requests/reject", json={"id": second.json()["promotion_request"]["id"]}, timeout=60
    )
    assert rejected.status_code == 200 and rejected.json()["promotion_request"]["state"] == "REJECTED", rejected.text
    third = requests_of.post(f"{base}/promotion-requests/create", json={**body, "target_name": f"{name}-3"}, timeout=60)
    third_id = third.json()["promotion_request"]["id"]
    cancelled = requests_of.delete(f"{base}/promotion-requests/delete", params={"id": third_id}, timeout=60)
    assert cancelled.status_code == 200 and cancelled.json()["promotion_request"]["state"] == "CANCELLED"
    fourth = requests_of.post(
        f"{base}/promotion-requests/create", json={**body, "target_name": f"{name}-4"}, timeout=60
    )
    fourth_id = fourth.json()["promotion_request"]["id"]
    kept = [{"user_name": owner.name, "permission_level": "CAN_MANAGE"}]
    revoked = admin.http("team-a").put(
        f"{stack.url}/api/2.0/permissions/registered-models/{source_id}", json={"access_control_list": kept}, timeout=60
    )
    assert revoked.status_code == 200, revoked.text
    late = approver.http(stack, "team-b").post(f"{base}/promotion-requests/approve", json={"id": fourth_id}, timeout=60)
    assert late.status_code == 404, late.text
    still = approver.http(stack, "team-b").get(f"{base}/promotion-requests/list", timeout=60).json()["requests"]
    assert [r["state"] for r in still if r["id"] == fourth_id] == ["OPEN"]

    # The source version's log: every request and decision, and the one copy; no request's number in it (those
    # count the target workspace's requests, which the source model's readers may not see).
    assert [(t, c) for t, _, c in activity_types(stack, "team-a", name)] == [
        ("REQUESTED_PROMOTION", f"Promotion into team-b.{name}-4."),
        ("CANCELLED_PROMOTION", f"Promotion into team-b.{name}-3."),
        ("REQUESTED_PROMOTION", f"Promotion into team-b.{name}-3."),
        ("REJECTED_PROMOTION", f"Promotion into team-b.{name}-2."),
        ("REQUESTED_PROMOTION", f"Promotion into team-b.{name}-2."),
        ("PROMOTED_TO_WORKSPACE", f"Copied to team-b.{name} version 1."),
        ("APPROVED_PROMOTION", f"Promotion into team-b.{name}."),
        ("REQUESTED_PROMOTION", f"Promotion into team-b.{name}."),
    ]


def promotable(stack: Stack, monkeypatch: pytest.MonkeyPatch, owner: Person, prefix: str) -> tuple[str, str]:
    """A fresh team-a model with one version logged by `owner`: (its name, the gateway's id of it)."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", owner.token)
    mlflow.set_workspace("team-a")
    mlflow.set_experiment(unique(f"{prefix}-src"))
    features = np.random.default_rng(13).random((20, 3))
    name = unique(prefix)
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            LogisticRegression().fit(features, (features[:, 1] > 0.5).astype(int)),
            name="model",
            registered_model_name=name,
        )
    answer = owner.http(stack, "team-a").get(
        f"{stack.url}/api/2.0/mlflow/databricks/registered-models/get", params={"name": name}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    return name, answer.json()["registered_model_databricks"]["id"]


def promotable_to_a_reader(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, prefix: str, reader: str
) -> tuple[str, str, Person, Person]:
    """`promotable`, logged by a new owner (CAN_USE on team-a), and a new person (named after `reader`) who may use
    team-b and read the model: (its name, the gateway's id of it, the owner, that person)."""
    admin = Admin.of(stack)
    owner = admin.person(f"{unique('owner')}@example.com")
    person = admin.person(f"{unique(reader)}@example.com")
    admin.grant("workspaces/team-a", "CAN_USE", user=owner.name)
    admin.grant("workspaces/team-b", "CAN_USE", user=person.name)
    name, source_id = promotable(stack, monkeypatch, owner, prefix)
    admin.grant(f"registered-models/{source_id}", "CAN_READ", user=person.name, workspace="team-a")
    return name, source_id, owner, person


def promotion_attempts(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    """The logged models of team-b's promotions experiment named `name` (each attempt to copy a version)."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ADMIN_TOKEN)
    mlflow.set_workspace("team-b")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("fedgate-promotions")
    assert experiment is not None
    return list(client.search_logged_models([experiment.experiment_id], filter_string=f"name = '{name}'"))


def test_a_copy_that_fails_midway_is_taken_up_again_by_its_retry(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = mlflow_env
    need_approval(stack, False)
    name, _, _, promoter = promotable_to_a_reader(stack, monkeypatch, "midway", "promoter")

    # One file of the version vanishes from store a's disk, in a folder the copy reaches after the others:
    # the store lists it, then cannot read it.
    uri = mlflow.MlflowClient().get_model_version_download_uri(name, "1")
    assert uri.startswith("mlflow-artifacts:/"), uri
    on_disk = stack.stores["a"].root / "artifacts" / uri[len("mlflow-artifacts:/") :]
    assert (on_disk / "MLmodel").is_file()
    (on_disk / "zz-extra").mkdir()
    (on_disk / "zz-extra" / "weights.bin").symlink_to(tmp_path / "vanished.bin")

    body = {"name": f"team-a.{name}", "version": "1"}
    failed = promote(stack, promoter, body)
    assert failed.status_code == 503 and failed.json()["error_code"] == "TEMPORARILY_UNAVAILABLE", failed.text
    # Midway: the attempt's logged model holds the files copied before the failure, is marked failed, and
    # no version was made.
    [attempt] = promotion_attempts(monkeypatch, name)
    assert attempt.status == LoggedModelStatus.FAILED
    copied = {
        a.path.rsplit("/", 1)[-1] for a in mlflow.artifacts.list_artifacts(artifact_uri=attempt.artifact_location)
    }
    assert "MLmodel" in copied and "zz-extra" not in copied
    with pytest.raises(mlflow.exceptions.MlflowException) as missing:
        mlflow.MlflowClient().get_registered_model(name)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    # The file is gone for good; the retry copies the version into the same logged model, and leaves no other.
    (on_disk / "zz-extra" / "weights.bin").unlink()
    (on_disk / "zz-extra").rmdir()
    done = promote(stack, promoter, body)
    assert done.status_code == 200, done.text
    assert done.json()["copied"] is True
    assert done.json()["model_version"]["source"] == f"models:/{attempt.model_id}"
    [again] = promotion_attempts(monkeypatch, name)
    assert (again.model_id, again.status) == (attempt.model_id, LoggedModelStatus.READY)
    mlflow.set_workspace("team-a")
    source_dir = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "a")))
    mlflow.set_workspace("team-b")
    copy_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "b")))
    assert tree(source_dir) == tree(copy_dir) and "MLmodel" in tree(copy_dir)


def test_two_promotions_of_the_same_version_at_once_make_one_copy(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    stack = mlflow_env
    need_approval(stack, False)
    name, _, _, promoter = promotable_to_a_reader(stack, monkeypatch, "twice", "promoter")

    # The same promotion twice at the same moment (a client's retry racing its first call, say).
    body = {"name": f"team-a.{name}", "version": "1"}
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: promote(stack, promoter, body), range(2)))
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert sorted(a.json()["copied"] for a in answers) == [False, True]
    assert {a.json()["model_version"]["version"] for a in answers} == {"1"}
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ADMIN_TOKEN)
    mlflow.set_workspace("team-b")
    assert [v.version for v in mlflow.MlflowClient().search_model_versions(f"name = '{name}'")] == ["1"]
    [attempt] = promotion_attempts(monkeypatch, name)
    assert attempt.status == LoggedModelStatus.READY
    assert [t for t, _, _ in activity_types(stack, "team-a", name)] == ["PROMOTED_TO_WORKSPACE"]


def test_a_requesters_identity_provider_groups_count_when_the_request_is_approved(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch, issuer: OidcIssuer, oidc_gateway: GatewayProcess
) -> None:
    stack = mlflow_env
    admin = Admin.of(stack)
    owner = admin.person(f"{unique('owner')}@example.com")
    approver = admin.person(f"{unique('approver')}@example.com")
    admin.grant("workspaces/team-a", "CAN_USE", user=owner.name)
    admin.grant("workspaces/team-b", "CAN_MANAGE", user=approver.name)
    name, source_id = promotable(stack, monkeypatch, owner, "idp")
    # The requester's rights come only through a group their identity provider names in their token: the
    # gateway's group of that name reads the source model and uses team-b; the requester is not a member.
    group = unique("idp-promoters")
    admin.group(group)
    admin.grant(f"registered-models/{source_id}", "CAN_READ", group=group, workspace="team-a")
    admin.grant("workspaces/team-b", "CAN_USE", group=group)
    email = f"{unique('requester')}@example.com"
    verified = {"email_verified": True}
    token = issuer.token("requester-sub", audience=AUDIENCE, email=email, groups=[group], extra_claims=verified)
    plain = issuer.token("requester-sub", audience=AUDIENCE, email=email, extra_claims=verified)
    base = f"{oidc_gateway.url}/api/2.0/fedgate/registry"

    def as_requester(bearer: str) -> requests.Session:
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {bearer}", "X-MLFLOW-WORKSPACE": "team-b"})
        return session

    need_approval(stack, True)
    try:
        body = {"name": f"team-a.{name}", "version": "1"}
        without = as_requester(plain).post(f"{base}/promotion-requests/create", json=body, timeout=60)
        assert without.status_code == 404, without.text  # without the group the source does not exist
        made = as_requester(token).post(f"{base}/promotion-requests/create", json=body, timeout=60)
        assert made.status_code == 200, made.text
        request = made.json()["promotion_request"]
        second = as_requester(token).post(
            f"{base}/promotion-requests/create", json={**body, "target_name": f"{name}-2"}, timeout=60
        )
        assert second.status_code == 200, second.text

        # Approved on the other gateway process, by a token of the approver's: the requester's group counts.
        approvals = approver.http(stack, "team-b")
        approved = approvals.post(
            f"{stack.url}/api/2.0/fedgate/registry/promotion-requests/approve", json={"id": request["id"]}, timeout=300
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["promotion_request"]["state"] == "APPROVED"
        assert approved.json()["model_version"]["version"] == "1"
        # The requester owns the new model of team-b, and reads it with the token that names the group.
        owned = as_requester(token).get(
            f"{oidc_gateway.url}/api/2.0/mlflow/databricks/registered-models/get", params={"name": name}, timeout=60
        )
        assert owned.status_code == 200 and owned.json()["registered_model_databricks"]["permission_level"] == (
            "CAN_MANAGE"
        ), owned.text

        # The group's grant on the source taken away: the re-check refuses, and the request stays open.
        acl = {"access_control_list": [{"user_name": owner.name, "permission_level": "CAN_MANAGE"}]}
        revoked = admin.http("team-a").put(
            f"{stack.url}/api/2.0/permissions/registered-models/{source_id}", json=acl, timeout=60
        )
        assert revoked.status_code == 200, revoked.text
        second_id = second.json()["promotion_request"]["id"]
        late = approvals.post(
            f"{stack.url}/api/2.0/fedgate/registry/promotion-requests/approve", json={"id": second_id}, timeout=60
        )
        assert late.status_code == 404, late.text
        listed = approvals.get(f"{stack.url}/api/2.0/fedgate/registry/promotion-requests/list", timeout=60)
        assert [r["state"] for r in listed.json()["requests"] if r["id"] == second_id] == ["OPEN"]
    finally:
        need_approval(stack, False)


def test_an_approval_copies_the_model_asked_for_or_nothing_when_its_name_now_means_another(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request names its source by `<workspace>.<model>`; an approval must not copy another model that took the
    name since (the requester renaming the reviewed model away and an unreviewed one to its name)."""
    stack = mlflow_env
    admin = Admin.of(stack)
    owner = admin.person(f"{unique('owner')}@example.com")
    approver = admin.person(f"{unique('approver')}@example.com")
    admin.grant("workspaces/team-a", "CAN_USE", user=owner.name)
    admin.grant("workspaces/team-b", "CAN_USE", user=owner.name)
    admin.grant("workspaces/team-b", "CAN_MANAGE", user=approver.name)
    reviewed, _ = promotable(stack, monkeypatch, owner, "reviewed")
    unreviewed, _ = promotable(stack, monkeypatch, owner, "unreviewed")
    base = f"{stack.url}/api/2.0/fedgate/registry"
    target = unique("prod-model")
    need_approval(stack, True)
    try:
        made = owner.http(stack, "team-b").post(
            f"{base}/promotion-requests/create",
            json={"name": f"team-a.{reviewed}", "version": "1", "target_name": target},
            timeout=60,
        )
        assert made.status_code == 200, made.text
        request_id = made.json()["promotion_request"]["id"]

        # Once asked, the requester moves the name to the unreviewed model.
        in_team_a = owner.http(stack, "team-a")
        for old, new in ((reviewed, f"{reviewed}-old"), (unreviewed, reviewed)):
            renamed = in_team_a.post(
                f"{stack.url}/api/2.0/mlflow/registered-models/rename", json={"name": old, "new_name": new}, timeout=60
            )
            assert renamed.status_code == 200, renamed.text

        approvals = approver.http(stack, "team-b")
        approved = approvals.post(f"{base}/promotion-requests/approve", json={"id": request_id}, timeout=300)
        assert approved.status_code == 409 and approved.json()["error_code"] == "INVALID_STATE", approved.text
        assert "another model" in approved.json()["message"]
        # Nothing was copied into team-b, and the request is still there to be rejected.
        copied = (
            Admin.of(stack)
            .http("team-b")
            .get(f"{stack.url}/api/2.0/mlflow/registered-models/get", params={"name": target}, timeout=60)
        )
        assert copied.status_code == 404, copied.text
        listed = approvals.get(f"{base}/promotion-requests/list", timeout=60).json()["requests"]
        assert [r["state"] for r in listed if r["id"] == request_id] == ["OPEN"]
        rejected = approvals.post(f"{base}/promotion-requests/reject", json={"id": request_id}, timeout=60)
        assert rejected.status_code == 200, rejected.text
    finally:
        need_approval(stack, False)


def test_a_target_name_cannot_widen_the_search_for_an_earlier_copy_into_a_hidden_model(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry finds its copy by the source version's lineage key and the target model's name. A target name is the
    caller's text, checked by the store only when the model is made: written into the store's filter, a name such as
    `x" and name != "'` would close the string and make the search find the copy in a model of the target workspace
    the caller cannot read, and answer it (before the store refuses the name when the copy is made)."""
    stack = mlflow_env
    need_approval(stack, False)
    name, _, _, outsider = promotable_to_a_reader(stack, monkeypatch, "shared", "outsider")
    admin = Admin.of(stack)
    hidden = unique("hidden")
    # The account admin copies the version into a model of team-b that the outsider holds nothing on.
    body = {"name": f"team-a.{name}", "version": "1"}
    made = admin.http("team-b").post(
        f"{stack.url}/api/2.0/fedgate/registry/promote", json={**body, "target_name": hidden}, timeout=300
    )
    assert made.status_code == 200 and made.json()["copied"] is True, made.text
    hidden_version = made.json()["model_version"]

    for target_name in (f'{hidden}" and name != "\'', f"{hidden}' and name != '\""):
        answer = promote(stack, outsider, {**body, "target_name": target_name})
        # Never the hidden model's copy (the store then refuses the name itself: MLflow's server takes no quotes).
        assert (answer.json().get("model_version") or {}).get("name") != hidden, answer.text
        if answer.status_code == 200:  # a model of that very name, made by the outsider
            assert answer.json()["model_version"]["name"] == target_name
            assert answer.json()["copied"] is True
    found = admin.http("team-b").get(
        f"{stack.url}/api/2.0/mlflow/registered-models/get", params={"name": hidden}, timeout=60
    )
    assert found.status_code == 200 and [v["version"] for v in found.json()["registered_model"]["latest_versions"]] == [
        hidden_version["version"]
    ]


def test_approvals_racing_cancellations_make_a_copy_only_with_its_record(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An approval and a cancellation of the same request at the same moment: either the approval wins (the copy,
    its activities, the request APPROVED) or the cancellation does (no copy at all, the request CANCELLED), never a
    copy made for a request that ends cancelled, nor a copy without its activity."""
    from concurrent.futures import ThreadPoolExecutor

    stack = mlflow_env
    name, _, _, requester = promotable_to_a_reader(stack, monkeypatch, "raced", "requester")
    admin = Admin.of(stack)
    approver = admin.person(f"{unique('approver')}@example.com")
    admin.grant("workspaces/team-b", "CAN_MANAGE", user=approver.name)
    base = f"{stack.url}/api/2.0/fedgate/registry"
    rounds = 6  # pairs at once: each holds a database connection while it waits for the lock
    need_approval(stack, True)
    try:
        targets = {}
        for n in range(rounds):
            body = {"name": f"team-a.{name}", "version": "1", "target_name": f"{name}-{n}"}
            made = requester.http(stack, "team-b").post(f"{base}/promotion-requests/create", json=body, timeout=60)
            assert made.status_code == 200, made.text
            targets[made.json()["promotion_request"]["id"]] = body["target_name"]

        def decide(call: tuple[str, str]) -> tuple[str, str, int]:
            what, request_id = call
            if what == "approve":
                answer = approver.http(stack, "team-b").post(
                    f"{base}/promotion-requests/approve", json={"id": request_id}, timeout=300
                )
            else:
                answer = requester.http(stack, "team-b").delete(
                    f"{base}/promotion-requests/delete", params={"id": request_id}, timeout=300
                )
            assert answer.status_code in (200, 409), answer.text
            return what, request_id, answer.status_code

        calls = [(what, request_id) for request_id in targets for what in ("approve", "cancel")]
        with ThreadPoolExecutor(len(calls)) as pool:
            answers = list(pool.map(decide, calls))

        listed = approver.http(stack, "team-b").get(
            f"{base}/promotion-requests/list", params={"state": "all"}, timeout=60
        )
        states = {r["id"]: r["state"] for r in listed.json()["requests"] if r["id"] in targets}
        source_log = activity_types(stack, "team-a", name)
        for request_id, target in targets.items():
            won = {what for what, rid, status in answers if rid == request_id and status == 200}
            assert len(won) == 1, answers  # exactly one of the two succeeded, the other was told 409
            state = states[request_id]
            assert state == ("APPROVED" if won == {"approve"} else "CANCELLED")
            copy = admin.http("team-b").get(
                f"{stack.url}/api/2.0/mlflow/registered-models/get", params={"name": target}, timeout=60
            )
            copied_to = [c for t, _, c in source_log if t == "PROMOTED_TO_WORKSPACE" and f"team-b.{target} " in c]
            if state == "CANCELLED":
                assert copy.status_code == 404, copy.text  # nothing made for a cancelled request
                assert copied_to == []
            else:
                assert copy.status_code == 200, copy.text
                assert [v["version"] for v in copy.json()["registered_model"]["latest_versions"]] == ["1"]
                assert copied_to == [f"Copied to team-b.{target} version 1."]
                assert [(t, v) for t, v, _ in activity_types(stack, "team-b", target)] == [
                    ("PROMOTED_FROM_WORKSPACE", "1")
                ]
    finally:
        need_approval(stack, False)


def test_a_user_made_again_under_a_deleted_requesters_name_may_not_cancel_the_request(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = mlflow_env
    name, source_id, _, requester = promotable_to_a_reader(stack, monkeypatch, "left", "requester")
    admin = Admin.of(stack)
    approver = admin.person(f"{unique('approver')}@example.com")
    admin.grant("workspaces/team-b", "CAN_MANAGE", user=approver.name)
    base = f"{stack.url}/api/2.0/fedgate/registry"
    need_approval(stack, True)
    try:
        body = {"name": f"team-a.{name}", "version": "1"}
        made = requester.http(stack, "team-b").post(f"{base}/promotion-requests/create", json=body, timeout=60)
        assert made.status_code == 200, made.text
        request_id = made.json()["promotion_request"]["id"]
        gone = admin.http().delete(f"{stack.url}/api/2.0/preview/scim/v2/Users/{requester.id}", timeout=60)
        assert gone.status_code == 204, gone.text
        again = admin.person(requester.name)
        assert again.name == requester.name and again.id != requester.id
        admin.grant("workspaces/team-b", "CAN_USE", user=again.name)

        cancel = again.http(stack, "team-b").delete(
            f"{base}/promotion-requests/delete", params={"id": request_id}, timeout=60
        )
        # Not the newcomer's: as for anyone it does not concern, no such request; not listed for them, and still
        # open for the workspace's managers.
        assert cancel.status_code == 404 and cancel.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", cancel.text
        mine = again.http(stack, "team-b").get(f"{base}/promotion-requests/list", params={"state": "all"}, timeout=60)
        assert mine.status_code == 200 and [r for r in mine.json()["requests"] if r["id"] == request_id] == [], (
            mine.text
        )
        listed = approver.http(stack, "team-b").get(f"{base}/promotion-requests/list", timeout=60).json()["requests"]
        [still] = [r for r in listed if r["id"] == request_id]
        assert (still["state"], still["user_id"]) == ("OPEN", requester.name)
        # One open request per requester is counted by principal id: the newcomer opens the same request of their
        # own (refused RESOURCE_ALREADY_EXISTS while it was counted by name), once.
        admin.grant(f"registered-models/{source_id}", "CAN_READ", user=again.name, workspace="team-a")
        own = again.http(stack, "team-b").post(f"{base}/promotion-requests/create", json=body, timeout=60)
        assert own.status_code == 200, own.text
        assert own.json()["promotion_request"]["available_actions"] == ["CANCEL_PROMOTION_REQUEST"]
        twice = again.http(stack, "team-b").post(f"{base}/promotion-requests/create", json=body, timeout=60)
        assert twice.status_code == 400 and twice.json()["error_code"] == "RESOURCE_ALREADY_EXISTS", twice.text
        for made_id in (request_id, own.json()["promotion_request"]["id"]):
            rejected = approver.http(stack, "team-b").post(
                f"{base}/promotion-requests/reject", json={"id": made_id}, timeout=60
            )
            assert rejected.status_code == 200, rejected.text
    finally:
        need_approval(stack, False)


def test_listing_promotion_requests_looks_each_target_model_up_once(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each open request's actions depend on its target model, which the target store is asked about while the
    gateway has no id for it (a new model, say): once per target name in one answer, not once per request."""
    stack = mlflow_env
    name, _, owner, requester = promotable_to_a_reader(stack, monkeypatch, "listed", "requester")
    admin = Admin.of(stack)
    source = owner.http(stack, "team-a")
    first = source.get(
        f"{stack.url}/api/2.0/mlflow/model-versions/get", params={"name": name, "version": "1"}, timeout=60
    ).json()["model_version"]
    for _ in range(4):  # versions 2 to 5, of the same files
        model_id = first.get("model_id") or first["source"].removeprefix("models:/")
        body = {"name": name, "source": first["source"], "model_id": model_id, "run_id": first.get("run_id", "")}
        made = source.post(f"{stack.url}/api/2.0/mlflow/model-versions/create", json=body, timeout=60)
        assert made.status_code == 200, made.text
    base = f"{stack.url}/api/2.0/fedgate/registry"
    target = unique("listed-target")  # a new model of team-b: the store is asked whether it exists
    need_approval(stack, True)
    try:
        for version in ("1", "2", "3", "4", "5"):
            body = {"name": f"team-a.{name}", "version": version, "target_name": target}
            made = requester.http(stack, "team-b").post(f"{base}/promotion-requests/create", json=body, timeout=60)
            assert made.status_code == 200, made.text
        store_log = stack.stores["b"].root / "server.log"

        def lookups() -> int:
            text = store_log.read_text(errors="replace")
            return sum(1 for line in text.splitlines() if "/registered-models/get?" in line and target in line)

        before = until(lookups, lambda count: count >= 5, "the creations' lookups of the target model")
        listed = admin.http("team-b").get(f"{base}/promotion-requests/list", timeout=60)
        assert listed.status_code == 200, listed.text
        mine = [r for r in listed.json()["requests"] if r["target_name"] == target]
        assert sorted(r["version"] for r in mine) == ["1", "2", "3", "4", "5"]
        assert all(r["available_actions"] for r in mine)
        # The store logs each call once it has answered it, before the list was answered.
        assert until(lookups, lambda count: count > before, "the list's lookup of the target model") == before + 1
        for request in mine:
            rejected = admin.http("team-b").post(
                f"{base}/promotion-requests/reject", json={"id": request["id"]}, timeout=60
            )
            assert rejected.status_code == 200, rejected.text
    finally:
        need_approval(stack, False)


def test_an_editor_of_the_target_model_cannot_plant_the_copy_a_promotion_finds(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A promotion finds an earlier copy by the lineage key `fedgate.promoted_from` on the target model's versions and
    answers it without copying. A holder of CAN_EDIT on the target model made a version of files of their own under
    the source version's key (the source model's id is what `databricks/registered-models/get` answers a reader):
    every promotion of that version, an approved request too, then answered the planted version as the copy. The
    workflow's own version tags (`fedgate.stage`, `fedgate.promoted_from` and its lineage) are written by the
    workflow alone: set-tag and delete-tag of them answer 403, and a version made with them (the stock client's
    copy_model_version copies the source's tags) is made without them."""
    stack = mlflow_env
    need_approval(stack, False)
    admin = Admin.of(stack)
    owner = admin.person(f"{unique('owner')}@example.com")
    editor = admin.person(f"{unique('editor')}@example.com")
    admin.grant("workspaces/team-a", "CAN_USE", user=owner.name)
    admin.grant("workspaces/team-b", "CAN_USE", user=editor.name)
    name, source_id = promotable(stack, monkeypatch, owner, "planted")
    admin.grant(f"registered-models/{source_id}", "CAN_READ", user=editor.name, workspace="team-a")
    key = f"w1001/{source_id}/1"  # team-a is workspace 1001 (tests/conftest.py)

    # The editor's own model in team-b, under the name the promotion will use, with a run of their own to copy from.
    http = editor.http(stack, "team-b")
    api = f"{stack.url}/api/2.0/mlflow"
    experiment_id = http.post(f"{api}/experiments/create", json={"name": unique("planted")}, timeout=60).json()[
        "experiment_id"
    ]
    run_id = http.post(f"{api}/runs/create", json={"experiment_id": experiment_id}, timeout=60).json()["run"]["info"][
        "run_id"
    ]
    assert http.post(f"{api}/registered-models/create", json={"name": name}, timeout=60).status_code == 200
    lineage = [
        {"key": "fedgate.promoted_from", "value": key},
        {"key": "fedgate.promoted_from.workspace", "value": "team-a"},
        {"key": "fedgate.promoted_from.model", "value": name},
        {"key": "fedgate.promoted_from.version", "value": "1"},
        {"key": "fedgate.stage", "value": "Production"},
        {"key": "owner", "value": "editor"},
    ]
    body = {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id, "tags": lineage}
    planted = http.post(f"{api}/model-versions/create", json=body, timeout=60)
    assert planted.status_code == 200, planted.text

    # The promotion copies the version asked for: a new version, not the editor's.
    done = promote(stack, admin_person(stack), {"name": f"team-a.{name}", "version": "1"})
    assert done.status_code == 200, done.text
    assert (done.json()["copied"], done.json()["model_version"]["version"]) == (True, "2")
    copy = {t["key"]: t["value"] for t in done.json()["model_version"]["tags"]}
    assert copy["fedgate.promoted_from"] == key

    assert {t["key"]: t["value"] for t in planted.json()["model_version"].get("tags", [])} == {"owner": "editor"}
    for key_name in ("fedgate.promoted_from", "fedgate.promoted_from.version", "fedgate.stage"):
        tagged = http.post(
            f"{api}/model-versions/set-tag",
            json={"name": name, "version": "1", "key": key_name, "value": key},
            timeout=60,
        )
        assert tagged.status_code == 403 and tagged.json()["error_code"] == "PERMISSION_DENIED", tagged.text
    removed = http.delete(
        f"{api}/model-versions/delete-tag",
        json={"name": name, "version": "2", "key": "fedgate.promoted_from"},
        timeout=60,
    )
    assert removed.status_code == 403 and removed.json()["error_code"] == "PERMISSION_DENIED", removed.text
    stock = admin.http("team-b").get(f"{api}/model-versions/get", params={"name": name, "version": "1"}, timeout=60)
    assert {t["key"] for t in stock.json()["model_version"].get("tags", [])} == {"owner"}

    # A copy of the copy made with the stock client is not the promotion's copy.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", editor.token)
    mlflow.set_workspace("team-b")
    copied = mlflow.MlflowClient().copy_model_version(f"models:/{name}/2", name)
    assert copied.version == "3"
    assert not {k for k in copied.tags if k.startswith(("fedgate.promoted_from", "fedgate.stage"))}
    again = promote(stack, admin_person(stack), {"name": f"team-a.{name}", "version": "1"})
    assert (again.json()["copied"], again.json()["model_version"]["version"]) == (False, "2"), again.text


def admin_person(stack: Stack) -> Person:
    """The bootstrap admin, as a `Person` (its token)."""
    return Person("admin", 0, ADMIN_TOKEN)


def test_a_promotion_request_is_nobodys_business_but_its_requesters_deciders_and_managers(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`promotion-requests/list` shows a user the requests they made or may decide; approve, reject and cancel by id
    answered anyone who enters the workspace what the list hides: whether request N exists, its state ('already
    REJECTED'), and in the refusal the names of its source and target models. Now such a caller gets exactly the
    answer a request that does not exist gets."""
    stack = mlflow_env
    admin = Admin.of(stack)
    owner = admin.person(f"{unique('owner')}@example.com")
    requester = admin.person(f"{unique('requester')}@example.com")
    approver = admin.person(f"{unique('approver')}@example.com")
    outsider = admin.person(f"{unique('outsider')}@example.com")
    admin.grant("workspaces/team-a", "CAN_USE", user=owner.name)
    for person in (requester, outsider):
        admin.grant("workspaces/team-b", "CAN_USE", user=person.name)
    admin.grant("workspaces/team-b", "CAN_MANAGE", user=approver.name)
    name, source_id = promotable(stack, monkeypatch, owner, "private")
    admin.grant(f"registered-models/{source_id}", "CAN_READ", user=requester.name, workspace="team-a")
    need_approval(stack, True)
    base = f"{stack.url}/api/2.0/fedgate/registry"
    try:
        made = requester.http(stack, "team-b").post(
            f"{base}/promotion-requests/create", json={"name": f"team-a.{name}", "version": "1"}, timeout=60
        )
        assert made.status_code == 200, made.text
        request_id = made.json()["promotion_request"]["id"]
        missing = outsider.http(stack, "team-b").post(
            f"{base}/promotion-requests/approve", json={"id": str(10**12)}, timeout=60
        )
        assert missing.status_code == 404, missing.text

        def as_outsider() -> list[requests.Response]:
            http = outsider.http(stack, "team-b")
            return [
                http.post(f"{base}/promotion-requests/approve", json={"id": request_id}, timeout=60),
                http.post(f"{base}/promotion-requests/reject", json={"id": request_id}, timeout=60),
                http.delete(f"{base}/promotion-requests/delete", params={"id": request_id}, timeout=60),
            ]

        for answer in as_outsider():
            assert (answer.status_code, answer.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST"), answer.text
            assert name not in answer.text and answer.json()["message"] == missing.json()["message"].replace(
                str(10**12), request_id
            )
        rejected = approver.http(stack, "team-b").post(
            f"{base}/promotion-requests/reject", json={"id": request_id}, timeout=60
        )
        assert rejected.status_code == 200, rejected.text
        for answer in as_outsider():
            assert (answer.status_code, answer.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST"), answer.text
        # Its requester and the workspace's managers still hear that it was decided.
        for who in (requester, approver):
            again = who.http(stack, "team-b").delete(
                f"{base}/promotion-requests/delete", params={"id": request_id}, timeout=60
            )
            assert (again.status_code, again.json()["error_code"]) == (409, "INVALID_STATE"), again.text
    finally:
        need_approval(stack, False)


def test_a_promotion_takes_up_only_what_it_made_not_a_copy_planted_on_the_store(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A promotion took up a READY logged model of the promotions experiment tagged with the lineage key as its
    earlier attempt (the version then pointed at its files), and answered a version tagged with the key as its copy,
    whoever had made them: the gateway now records the logged models it makes, and takes up, or takes a version for
    its copy, only when it holds one of them. Planted here with the stock client on the store itself, around the
    gateway (where the reserved tags and the promotions experiment are not guarded)."""
    stack = mlflow_env
    need_approval(stack, False)
    name, source_id, _, _ = promotable_to_a_reader(stack, monkeypatch, "foreign", "reader")
    key = f"w1001/{source_id}/1"  # team-a is workspace 1001 (tests/conftest.py)
    mlflow.set_workspace(None)
    store = mlflow.MlflowClient(tracking_uri=stack.stores["b"].url)  # team-b's store, directly
    experiment = store.get_experiment_by_name("fedgate-promotions")
    experiment_id = experiment.experiment_id if experiment else store.create_experiment("fedgate-promotions")
    files = tmp_path / "planted"
    files.mkdir()
    (files / "MLmodel").write_text("flavors: {}\n")
    (files / "planted.txt").write_text("not the source version's files")

    def plant(logged_name: str) -> str:
        logged = store.create_logged_model(experiment_id, name=logged_name, tags={"fedgate.promoted_from": key})
        store.log_model_artifacts(logged.model_id, str(files))
        store.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        return str(logged.model_id)

    # A planted version of the target model holding a planted logged model, and a planted logged model alone
    # under another target name.
    planted_version_model = plant(name)
    store.create_registered_model(name)
    lineage = {"fedgate.promoted_from": key, "fedgate.promoted_from.workspace": "team-a"}
    store.create_model_version(name, f"models:/{planted_version_model}", tags=lineage, model_id=planted_version_model)
    alone = f"{name}-alone"
    planted_alone = plant(alone)

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ADMIN_TOKEN)
    mlflow.set_workspace("team-a")
    source_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "a")))
    for target, planted in ((name, planted_version_model), (alone, planted_alone)):
        body = {"name": f"team-a.{name}", "version": "1", "target_name": target}
        done = promote(stack, admin_person(stack), body)
        assert done.status_code == 200, done.text
        copy = done.json()["model_version"]
        assert done.json()["copied"] is True, done.text
        assert copy["source"] != f"models:/{planted}" and copy.get("model_id") != planted, done.text
        mlflow.set_workspace("team-b")
        copy_dir = tmp_path / f"copy-{target}"
        got = Path(mlflow.artifacts.download_artifacts(f"models:/{target}/{copy['version']}", dst_path=str(copy_dir)))
        assert tree(got) == tree(source_dir) and "planted.txt" not in tree(got)
        mlflow.set_workspace("team-a")
        # The retry answers the copy it made, not the planted one.
        again = promote(stack, admin_person(stack), body)
        assert again.status_code == 200, again.text
        assert (again.json()["copied"], again.json()["model_version"]["version"]) == (False, copy["version"])


def test_a_workspace_editor_cannot_write_into_the_promotions_experiment(
    mlflow_env: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Promotions copy a version's files into a logged model of the target's `fedgate-promotions` experiment. Anyone
    with CAN_EDIT on the workspace (which reaches every experiment in it) wrote there with the stock client: a READY
    logged model of their own files, named and tagged for a coming promotion (which then registered it as the copy),
    files over a copy's, tags and status of a copy. Through the gateway the experiment, and everything in it, is
    now changed by promotions and the workspace's managers alone, and nobody else makes or renames an experiment to
    its name."""
    stack = mlflow_env
    need_approval(stack, False)
    name, source_id, _, editor = promotable_to_a_reader(stack, monkeypatch, "planting", "editor")
    Admin.of(stack).grant("workspaces/team-b", "CAN_EDIT", user=editor.name)
    done = promote(stack, admin_person(stack), {"name": f"team-a.{name}", "version": "1"})
    assert done.status_code == 200 and done.json()["copied"] is True, done.text
    [copy] = promotion_attempts(monkeypatch, name)  # the copy's logged model (as the admin)
    copy_dir = tmp_path / "before"
    before = tree(Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(copy_dir))))

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", editor.token)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("fedgate-promotions")  # they may read it
    assert experiment is not None
    planted_dir = tmp_path / "planted"
    planted_dir.mkdir()
    (planted_dir / "MLmodel").write_text("flavors: {}\n")

    def refused(attempt: Any) -> None:
        with pytest.raises(Exception) as caught:  # the stock client's error for a 403 (its artifact client's too)
            attempt()
        assert "PERMISSION_DENIED" in str(caught.value) or "403" in str(caught.value), caught.value

    key = f"w1001/{source_id}/1"
    refused(
        lambda: client.create_logged_model(
            experiment.experiment_id, name=f"{name}-next", tags={"fedgate.promoted_from": key}
        )
    )
    refused(lambda: client.log_model_artifact(copy.model_id, str(planted_dir / "MLmodel")))
    refused(lambda: client.set_logged_model_tags(copy.model_id, {"fedgate.promoted_from": "w1/1/1"}))
    refused(lambda: client.finalize_logged_model(copy.model_id, LoggedModelStatus.FAILED))
    refused(lambda: client.create_run(experiment.experiment_id))
    refused(lambda: client.rename_experiment(experiment.experiment_id, unique("mine")))
    refused(lambda: client.create_experiment("Fedgate-Promotions"))
    own = client.create_experiment(unique("own"))  # their own experiments as before
    refused(lambda: client.rename_experiment(own, "fedgate-promotions"))
    assert client.create_logged_model(own, name="mine").model_id

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ADMIN_TOKEN)
    after = tree(Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "after"))))
    assert after == before
    [still] = promotion_attempts(monkeypatch, name)
    assert (still.model_id, still.status, still.tags.get("fedgate.promoted_from")) == (
        copy.model_id,
        LoggedModelStatus.READY,
        f"w1001/{source_id}/1",
    )

    # Renamed away by an account admin, it is an experiment like any other at once, and the name moved onto another
    # experiment protects that one (the guard asked the store once per experiment and kept its answer until restart:
    # every later write of the editor to the renamed experiment was refused, and their own one stayed writable).
    admin = mlflow.MlflowClient()
    admin.rename_experiment(experiment.experiment_id, unique("old-promotions"))
    admin.rename_experiment(own, "fedgate-promotions")
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", editor.token)
        assert client.create_run(experiment.experiment_id).info.run_id
        refused(lambda: client.create_logged_model(own, name="mine-again"))
    finally:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ADMIN_TOKEN)
        admin.rename_experiment(own, unique("own"))
        admin.rename_experiment(experiment.experiment_id, "fedgate-promotions")
