"""A replica answers right after a change made through another replica, before that change's NOTIFY reaches
it: what a caller names or was just granted is refused, or "not found", only by the stored policy (one query
when the replica is not behind). The changes are written as another replica writes them, less the NOTIFY
(tests/support/elsewhere.py)."""

from __future__ import annotations

import uuid

import pytest

from gateway.authz.levels import experiment_object, workspace_domain
from gateway.principals.tokens import TOKEN_PREFIX
from tests.conftest import Stack
from tests.support.elsewhere import changed_elsewhere, granted_elsewhere, made_elsewhere
from tests.support.identity import Admin

pytestmark = pytest.mark.integration


def test_a_principal_made_on_another_replica_can_be_named_here_at_once(stack: Stack) -> None:
    """An admin makes a user, a service principal or a group through one replica and names it through another
    (a balancer sends each call elsewhere) before the news arrives there: a token on the user's behalf, a grant
    to it in the permissions API and in Unity Catalog's. "No such principal" is answered only once the replica's
    policy is the stored one (each call failed before: 400 "Name the owner", 404 "No service principal named"),
    and a token of such a principal is listed with its owner's name."""
    admin = Admin.of(stack).http()
    scim = f"{stack.url}/api/2.0/preview/scim/v2"
    # A token of a principal made there is listed with its owner's name (it was listed with owner_name "").
    holder, token = str(uuid.uuid4()), f"{TOKEN_PREFIX}{uuid.uuid4().hex}"
    holder_id = made_elsewhere(stack.database_url, "service_principal", holder, token, admin=False)
    tokens = f"{stack.url}/api/2.0/token-management/tokens"
    listed = admin.get(tokens, params={"owner_id": holder_id}, timeout=60)
    assert listed.status_code == 200, listed.text
    assert [info["owner_name"] for info in listed.json()["token_infos"]] == [holder], listed.text

    for by in ("user_name", "owner_id"):
        person = f"named-{uuid.uuid4().hex[:8]}@example.com"
        person_id = made_elsewhere(stack.database_url, "user", person, admin=False)
        owner = {"user_name": person} if by == "user_name" else {"owner_id": str(person_id)}
        minted = admin.post(f"{stack.url}/api/2.0/token-management/on-behalf-of/tokens", json=owner, timeout=60)
        assert minted.status_code == 200 and minted.json()["token_info"]["owner_id"] == person_id, (by, minted.text)

    robot = str(uuid.uuid4())
    robot_id = made_elsewhere(stack.database_url, "service_principal", robot, admin=False)
    acl = {"access_control_list": [{"service_principal_name": robot, "permission_level": "CAN_READ"}]}
    granted = admin.patch(f"{stack.url}/api/2.0/permissions/workspaces/team-b", json=acl, timeout=60)
    assert granted.status_code == 200, granted.text
    assert robot in granted.text

    group = f"named-group-{uuid.uuid4().hex[:8]}"
    group_id = made_elsewhere(stack.database_url, "group", group, admin=False)
    change = {"changes": [{"principal": group, "add": ["USE_CATALOG"]}]}
    uc = admin.patch(f"{stack.url}/api/2.1/unity-catalog/permissions/catalog/system", json=change, timeout=60)
    assert uc.status_code == 200, uc.text
    assert group in uc.text

    # Their grants and tokens go with them.
    for path in (f"ServicePrincipals/{holder_id}", f"ServicePrincipals/{robot_id}", f"Groups/{group_id}"):
        assert admin.delete(f"{scim}/{path}", timeout=60).status_code == 204


def test_a_grant_made_on_another_replica_counts_here_at_once(stack: Stack) -> None:
    """Someone creates an experiment through one replica (its owner's grant is made there) and logs to it through
    another, or is granted it there: the call is refused only by the stored policy (before, the replica that had
    not heard of the grant answered 404 as for a missing experiment, and 403 for a level it did not know yet)."""
    admin = Admin.of(stack)
    person = admin.person(f"{uuid.uuid4().hex[:8]}-granted@example.com")
    workspace_id = int(
        admin.http()
        .get(f"{stack.url}/api/3.0/mlflow/workspaces/team-a", timeout=60)
        .json()["workspace"]["workspace_id"]
    )
    made = admin.http("team-a").post(
        f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": f"granted-{uuid.uuid4().hex}"}, timeout=60
    )
    assert made.status_code == 200, made.text
    experiment_id = made.json()["experiment_id"]
    as_person = person.http(stack)
    get = f"{stack.url}/api/2.0/mlflow/experiments/get"
    hidden = as_person.get(get, params={"experiment_id": experiment_id}, timeout=60)
    assert hidden.status_code == 404, hidden.text  # nobody granted it yet

    where, what = workspace_domain(workspace_id), experiment_object(workspace_id, experiment_id)
    granted_elsewhere(stack.database_url, person.id, where, what, "CAN_READ")
    seen = as_person.get(get, params={"experiment_id": experiment_id}, timeout=60)
    assert seen.status_code == 200 and seen.json()["experiment"]["experiment_id"] == experiment_id, seen.text

    run = {"experiment_id": experiment_id}
    refused = as_person.post(f"{stack.url}/api/2.0/mlflow/runs/create", json=run, timeout=60)
    assert refused.status_code == 403, refused.text  # CAN_READ only
    granted_elsewhere(stack.database_url, person.id, where, what, "CAN_EDIT")
    logged = as_person.post(f"{stack.url}/api/2.0/mlflow/runs/create", json=run, timeout=60)
    assert logged.status_code == 200, logged.text


def test_a_refusal_decided_again_takes_the_callers_groups_from_the_same_policy_as_the_grants(stack: Stack) -> None:
    """Through another replica a person leaves a group and the group is granted an experiment, in one change. The
    replica that has not heard of it authenticates the person as a member; deciding the refusal again must read
    the groups from the policy it reads the grants from: a member (as the old policy had it) with the group's
    new grant would read what neither the old policy nor the new one lets them read."""
    admin = Admin.of(stack)
    person = admin.person(f"{uuid.uuid4().hex[:8]}-leaver@example.com")
    group_id = admin.group(f"leavers-{uuid.uuid4().hex[:8]}", members=[person.id])
    team_a = admin.http().get(f"{stack.url}/api/3.0/mlflow/workspaces/team-a", timeout=60)
    workspace_id = int(team_a.json()["workspace"]["workspace_id"])
    made = admin.http("team-a").post(
        f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": f"leavers-{uuid.uuid4().hex}"}, timeout=60
    )
    assert made.status_code == 200, made.text
    experiment_id = made.json()["experiment_id"]
    where, what = workspace_domain(workspace_id), experiment_object(workspace_id, experiment_id)
    granted_elsewhere(stack.database_url, group_id, where, what, "CAN_READ", leaves=(person.id, group_id))
    get = f"{stack.url}/api/2.0/mlflow/experiments/get"
    hidden = person.http(stack).get(get, params={"experiment_id": experiment_id}, timeout=60)
    assert hidden.status_code == 404, hidden.text


def test_a_principal_made_on_another_replica_can_be_named_in_secret_acls_and_as_an_owner_here_at_once(
    stack: Stack,
) -> None:
    """Named through another replica than the one that made it, before the news arrives there: a principal in a
    secret scope's ACL, a saved query's permissions, as a saved query's new owner and as an alert's. Each answered
    "no such principal" before (404 "No principal named", 404 "No service principal named", 404 "No active user or
    service principal", 400 "is not an active user or service principal")."""
    admin = Admin.of(stack).http("team-a")

    def made() -> tuple[str, str]:
        """A user and a service principal, made elsewhere; the replica hears of them by the stored policy only."""
        person, robot = f"lag-{uuid.uuid4().hex[:8]}@example.com", f"lag-robot-{uuid.uuid4().hex[:8]}"
        made_elsewhere(stack.database_url, "user", person, admin=False)
        made_elsewhere(stack.database_url, "service_principal", robot, admin=False)
        return person, robot

    secrets = f"{stack.url}/api/2.0/secrets"
    scope = f"lag-{uuid.uuid4().hex[:8]}"
    assert admin.post(f"{secrets}/scopes/create", json={"scope": scope}, timeout=60).status_code == 200
    _, robot = made()
    put = admin.post(f"{secrets}/acls/put", json={"scope": scope, "principal": robot, "permission": "READ"}, timeout=60)
    assert put.status_code == 200, put.text
    acl = admin.get(f"{secrets}/acls/get", params={"scope": scope, "principal": robot}, timeout=60)
    assert acl.json() == {"principal": robot, "permission": "READ"}, acl.text

    queries = f"{stack.url}/api/2.0/sql/queries"
    created = admin.post(queries, json={"query": {"display_name": "lagging", "query_text": "SELECT 1"}}, timeout=60)
    assert created.status_code == 200, created.text
    query_id = created.json()["id"]
    _, robot = made()
    share = {"access_control_list": [{"service_principal_name": robot, "permission_level": "CAN_RUN"}]}
    shared = admin.patch(f"{stack.url}/api/2.0/permissions/queries/{query_id}", json=share, timeout=60)
    assert shared.status_code == 200 and robot in shared.text, shared.text
    person, _ = made()
    hand = {"update_mask": "owner_user_name", "query": {"owner_user_name": person}}
    handed = admin.patch(f"{queries}/{query_id}", json=hand, timeout=60)
    assert handed.status_code == 200 and handed.json()["owner_user_name"] == person, handed.text

    alerts = f"{stack.url}/api/2.0/sql/alerts"
    alert = {
        "display_name": "lagging",
        "query_text": "SELECT 1 AS n",
        "condition": {
            "op": "GREATER_THAN",
            "operand": {"column": {"name": "n"}},
            "threshold": {"value": {"double_value": 0}},
        },
    }
    made_alert = admin.post(alerts, json={"alert": alert}, timeout=60)
    assert made_alert.status_code == 200, made_alert.text
    person, _ = made()
    hand = {"update_mask": "owner_user_name", "alert": {"owner_user_name": person}}
    handed = admin.patch(f"{alerts}/{made_alert.json()['id']}", json=hand, timeout=60)
    assert handed.status_code == 200 and handed.json()["owner_user_name"] == person, handed.text


def test_a_group_joined_or_a_role_given_on_another_replica_counts_in_the_gateways_own_apis_here_at_once(
    stack: Stack,
) -> None:
    """Through another replica a person joins the group that manages an experiment, then is made an account admin;
    the replica that has not heard of it authenticates them with their old groups and role. Its own APIs (the
    permissions API, Unity Catalog grants) refuse them only by the stored policy, as forwarded calls do (before, the
    permissions API answered 404 as for a missing experiment and Unity Catalog 403 "needs MANAGE")."""
    admin = Admin.of(stack)
    person = admin.person(f"{uuid.uuid4().hex[:8]}-joiner@example.com")
    group = f"joiners-{uuid.uuid4().hex[:8]}"
    group_id = admin.group(group)
    made = admin.http("team-a").post(
        f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": f"joiners-{uuid.uuid4().hex}"}, timeout=60
    )
    assert made.status_code == 200, made.text
    experiment_id = made.json()["experiment_id"]
    admin.grant(f"experiments/{experiment_id}", "CAN_MANAGE", group=group, workspace="team-a")
    as_person = person.http(stack)
    permissions = f"{stack.url}/api/2.0/permissions/experiments/{experiment_id}"
    hidden = as_person.get(permissions, timeout=60)
    assert hidden.status_code == 404, hidden.text  # not a member yet

    changed_elsewhere(
        stack.database_url, "INSERT INTO group_members (group_id, member_id) VALUES ($1, $2)", group_id, person.id
    )
    acl = {"access_control_list": [{"user_name": person.name, "permission_level": "CAN_READ"}]}
    shared = as_person.patch(permissions, json=acl, timeout=60)
    assert shared.status_code == 200, shared.text
    assert {entry.get("user_name") for entry in shared.json()["access_control_list"]} >= {person.name}, shared.text

    catalog = f"{stack.url}/api/2.1/unity-catalog/permissions/catalog/system"
    refused = as_person.get(catalog, timeout=60)
    assert refused.status_code == 403, refused.text  # no MANAGE, no account admin yet
    changed_elsewhere(stack.database_url, "UPDATE principals SET account_admin = true WHERE id = $1", person.id)
    change = {"changes": [{"principal": group, "add": ["USE_CATALOG"]}]}
    granted = as_person.patch(catalog, json=change, timeout=60)
    assert granted.status_code == 200, granted.text
    assert {"principal": group, "privileges": ["USE_CATALOG"]} in granted.json()["privilege_assignments"], granted.text

    scim = f"{stack.url}/api/2.0/preview/scim/v2"
    for path in (f"Groups/{group_id}", f"Users/{person.id}"):
        assert admin.http().delete(f"{scim}/{path}", timeout=60).status_code == 204
