"""A replica answers right after a change made through another replica, before that change's NOTIFY reaches
it: what a caller names or was just granted is refused, or "not found", only by the stored policy (one query
when the replica is not behind). The changes are written as another replica writes them, less the NOTIFY
(tests/support/elsewhere.py)."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import pytest
import requests

from gateway.authz.levels import experiment_object, workspace_domain, workspace_object
from gateway.principals.tokens import TOKEN_PREFIX
from tests.conftest import Stack
from tests.support.elsewhere import changed_elsewhere, granted_elsewhere, made_elsewhere
from tests.support.identity import Admin

pytestmark = pytest.mark.integration

SECRETS = "{}/api/2.0/secrets"


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


def _workspace_id(stack: Stack, name: str) -> int:
    answer = Admin.of(stack).http().get(f"{stack.url}/api/3.0/mlflow/workspaces/{name}", timeout=60)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["workspace"]["workspace_id"])


def _scope(stack: Stack) -> tuple[str, str, str]:
    """A new secret scope of team-a, made by the admin: its name, its workspace's domain and its policy object."""
    scope = f"lag-{uuid.uuid4().hex[:8]}"
    made = (
        Admin.of(stack)
        .http("team-a")
        .post(f"{SECRETS.format(stack.url)}/scopes/create", json={"scope": scope}, timeout=60)
    )
    assert made.status_code == 200, made.text
    where = workspace_domain(_workspace_id(stack, "team-a"))
    return scope, where, f"secret_scope:{where}/{scope}"


def _gone(stack: Stack, *paths: str) -> None:
    for path in paths:
        deleted = Admin.of(stack).http().delete(f"{stack.url}/api/2.0/preview/scim/v2/{path}", timeout=60)
        assert deleted.status_code == 204, deleted.text


def test_a_secret_scope_permission_given_on_another_replica_counts_here_at_once(stack: Stack) -> None:
    """Through another replica a person is given WRITE on a secret scope, then joins the group that manages it; the
    replica that has not heard of it decides by the stored policy (before: put answered 404 as for a missing
    workspace, the ACL list 403 "lacks MANAGE"). A membership ended in the same change as its group's new grant
    stays ended: the caller's groups come from the policy the grants come from."""
    admin = Admin.of(stack)
    secrets = SECRETS.format(stack.url)
    scope, where, what = _scope(stack)
    person = admin.person(f"{uuid.uuid4().hex[:8]}-scoped@example.com")
    leavers_id = admin.group(f"scope-leavers-{uuid.uuid4().hex[:8]}", members=[person.id])
    as_person = person.http(stack)
    put = {"scope": scope, "key": "token", "string_value": "s3cret"}

    granted_elsewhere(stack.database_url, leavers_id, where, what, "WRITE", leaves=(person.id, leavers_id))
    refused = as_person.post(f"{secrets}/put", json=put, timeout=60)
    assert refused.status_code == 404, refused.text  # a member no more: the group's WRITE is not theirs

    granted_elsewhere(stack.database_url, person.id, where, what, "WRITE")
    written = as_person.post(f"{secrets}/put", json=put, timeout=60)
    assert written.status_code == 200, written.text
    listed = as_person.get(f"{secrets}/list", params={"scope": scope}, timeout=60)
    assert [item["key"] for item in listed.json()["secrets"]] == ["token"], listed.text

    managers = f"scope-managers-{uuid.uuid4().hex[:8]}"
    managers_id = admin.group(managers)
    acl = {"scope": scope, "principal": managers, "permission": "MANAGE"}
    assert admin.http("team-a").post(f"{secrets}/acls/put", json=acl, timeout=60).status_code == 200
    refused = as_person.get(f"{secrets}/acls/list", params={"scope": scope}, timeout=60)
    assert refused.status_code == 403, refused.text  # WRITE only
    changed_elsewhere(
        stack.database_url, "INSERT INTO group_members (group_id, member_id) VALUES ($1, $2)", managers_id, person.id
    )
    acls = as_person.get(f"{secrets}/acls/list", params={"scope": scope}, timeout=60)
    assert acls.status_code == 200, acls.text
    assert {"principal": managers, "permission": "MANAGE"} in acls.json()["items"], acls.text
    _gone(stack, f"Groups/{leavers_id}", f"Groups/{managers_id}", f"Users/{person.id}")


def test_a_secret_read_allowed_on_another_replica_is_served_here_at_once(stack: Stack) -> None:
    """A run's read of a secret: READ on the scope given through another replica counts on the one that has not heard
    of it (before: 404 as for a missing secret)."""
    admin = Admin.of(stack)
    secrets = SECRETS.format(stack.url)
    scope, where, what = _scope(stack)
    put = {"scope": scope, "key": "token", "string_value": "s3cret"}
    assert admin.http("team-a").post(f"{secrets}/put", json=put, timeout=60).status_code == 200
    person = admin.person(f"{uuid.uuid4().hex[:8]}-runner@example.com")
    as_person = person.http(stack)
    made = admin.http("team-a").post(
        f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": f"runner-{uuid.uuid4().hex}"}, timeout=60
    )
    assert made.status_code == 200, made.text
    experiment_id = made.json()["experiment_id"]
    admin.grant(f"experiments/{experiment_id}", "CAN_EDIT", user=person.name, workspace="team-a")
    run = as_person.post(f"{stack.url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id}, timeout=60)
    assert run.status_code == 200, run.text
    read = {"scope": scope, "key": "token", "run_id": run.json()["run"]["info"]["run_id"]}
    refused = as_person.post(f"{secrets}/get", json=read, timeout=60)
    assert refused.status_code == 404, refused.text  # no READ yet

    granted_elsewhere(stack.database_url, person.id, where, what, "READ")
    value = as_person.post(f"{secrets}/get", json=read, timeout=60)
    assert value.status_code == 200 and value.json()["value"] == "czNjcmV0", value.text
    _gone(stack, f"Users/{person.id}")


def test_a_secret_acl_entry_deleted_here_is_the_stored_policys(stack: Stack) -> None:
    """Deleting a secret scope's ACL entry: one put through another replica moments ago is deleted (before: 404 "No
    ACL"), one deleted there is not found (before: 200 for an entry that was not there)."""
    admin = Admin.of(stack).http("team-a")
    secrets = SECRETS.format(stack.url)
    scope, where, what = _scope(stack)
    robot = f"lag-{uuid.uuid4().hex[:8]}@example.com"
    robot_id = Admin.of(stack).user(robot)  # known to this replica: only the grant is news to it
    entry = {"scope": scope, "principal": robot}
    granted_elsewhere(stack.database_url, robot_id, where, what, "READ")
    deleted = admin.post(f"{secrets}/acls/delete", json=entry, timeout=60)
    assert deleted.status_code == 200, deleted.text
    listed = admin.get(f"{secrets}/acls/list", params={"scope": scope}, timeout=60)
    assert robot not in listed.text, listed.text

    assert admin.post(f"{secrets}/acls/put", json={**entry, "permission": "READ"}, timeout=60).status_code == 200
    changed_elsewhere(
        stack.database_url,
        "DELETE FROM grants WHERE principal_id = $1 AND domain = $2 AND object = $3",
        robot_id,
        where,
        what,
    )
    gone = admin.post(f"{secrets}/acls/delete", json=entry, timeout=60)
    assert gone.status_code == 404 and "No ACL" in gone.text, gone.text
    _gone(stack, f"Users/{robot_id}")


def test_a_grant_given_on_another_replica_counts_in_sql_statements_here_at_once(stack: Stack) -> None:
    """Through another replica a person is granted SELECT on a system table (with USE CATALOG and USE SCHEMA); the
    replica that has not heard of it runs their statement (before: 403 "lacks USE CATALOG")."""
    admin = Admin.of(stack)
    person = admin.person(f"{uuid.uuid4().hex[:8]}-reader@example.com")
    as_person = person.http(stack, workspace=None)
    statements = f"{stack.url}/api/2.0/sql/statements"
    select = {"statement": "SELECT count(*) AS n FROM system.mlflow.experiments_latest", "wait_timeout": "30s"}
    refused = as_person.post(statements, json=select, timeout=60)
    assert refused.status_code == 403, refused.text
    changed_elsewhere(
        stack.database_url,
        "INSERT INTO grants (principal_id, domain, object, privilege, created_by) VALUES "
        "($1, 'account', 'catalog:system', 'USE_CATALOG', 'elsewhere'), "
        "($1, 'account', 'schema:system.mlflow', 'USE_SCHEMA', 'elsewhere'), "
        "($1, 'account', 'table:system.mlflow.experiments_latest', 'SELECT', 'elsewhere')",
        person.id,
    )
    counted = as_person.post(statements, json=select, timeout=60)
    assert counted.status_code == 200 and counted.json()["status"]["state"] == "SUCCEEDED", counted.text
    _gone(stack, f"Users/{person.id}")


def test_a_workspace_named_by_header_and_entered_on_another_replica_counts_here_at_once(stack: Stack) -> None:
    """SQL statements, saved queries and alerts take the workspace the X-MLFLOW-WORKSPACE header names, which the
    caller must see; through another replica a person is granted the workspace, and the replica that has not heard
    of it decides by the stored policy (before: 404 "Workspace 'team-b' not found" until the news arrived)."""
    admin = Admin.of(stack)
    person = admin.person(f"{uuid.uuid4().hex[:8]}-entering@example.com")
    as_person = person.http(stack, workspace="team-b")
    statements = f"{stack.url}/api/2.0/sql/statements"
    me = {"statement": "SELECT current_user() AS me", "wait_timeout": "30s"}
    hidden = as_person.post(statements, json=me, timeout=60)
    assert hidden.status_code == 404 and "team-b" in hidden.json()["message"], hidden.text
    team_b = admin.http().get(f"{stack.url}/api/3.0/mlflow/workspaces/team-b", timeout=60)
    workspace_id = int(team_b.json()["workspace"]["workspace_id"])
    granted_elsewhere(
        stack.database_url, person.id, workspace_domain(workspace_id), workspace_object(workspace_id), "CAN_USE"
    )
    answered = as_person.post(statements, json=me, timeout=60)
    assert answered.status_code == 200 and answered.json()["status"]["state"] == "SUCCEEDED", answered.text
    assert answered.json()["result"]["data_array"] == [[person.name]]
    for path in ("/api/2.0/sql/queries", "/api/2.0/sql/alerts"):
        listed = as_person.get(f"{stack.url}{path}", timeout=60)
        assert listed.status_code == 200, (path, listed.text)
    # A workspace that does not exist is not found, whatever the policy.
    missing = person.http(stack, workspace=f"nowhere-{uuid.uuid4().hex[:6]}").post(statements, json=me, timeout=60)
    assert missing.status_code == 404, missing.text
    _gone(stack, f"Users/{person.id}")


def test_a_level_given_on_another_replica_counts_on_a_saved_query_here_at_once(stack: Stack) -> None:
    """Through another replica a person is given CAN_RUN on a saved query; the replica that has not heard of it shows
    and runs it for them (before: 404 as for a missing query)."""
    admin = Admin.of(stack)
    person = admin.person(f"{uuid.uuid4().hex[:8]}-runner@example.com")
    as_person = person.http(stack, workspace=None)
    queries = f"{stack.url}/api/2.0/sql/queries"
    created = admin.http().post(queries, json={"query": {"display_name": "lag", "query_text": "SELECT 1"}}, timeout=60)
    assert created.status_code == 200, created.text
    query_id = created.json()["id"]
    hidden = as_person.get(f"{queries}/{query_id}", timeout=60)
    assert hidden.status_code == 404, hidden.text
    granted_elsewhere(stack.database_url, person.id, "account", f"query:{query_id}", "CAN_RUN")
    ran = as_person.post(f"{queries}/{query_id}/run", json={"wait_timeout": "30s"}, timeout=60)
    assert ran.status_code == 200 and ran.json()["status"]["state"] == "SUCCEEDED", ran.text
    _gone(stack, f"Users/{person.id}")


def test_grants_narrowed_to_a_principal_made_on_another_replica_name_it_here_at_once(stack: Stack) -> None:
    """SHOW GRANTS and the Unity Catalog grants lists narrowed to a principal made through another replica moments
    ago find it on the replica that has not heard of it (before: 404 "No principal named")."""
    admin = Admin.of(stack).http()
    robots = [f"lag-robot-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    ids = [made_elsewhere(stack.database_url, "service_principal", robot, admin=False) for robot in robots]
    show = {"statement": f"SHOW GRANTS `{robots[0]}` ON CATALOG system", "wait_timeout": "30s"}
    shown = admin.post(f"{stack.url}/api/2.0/sql/statements", json=show, timeout=60)
    assert shown.status_code == 200 and shown.json()["status"]["state"] == "SUCCEEDED", shown.text
    uc = f"{stack.url}/api/2.1/unity-catalog"
    granted = admin.get(f"{uc}/permissions/catalog/system", params={"principal": robots[1]}, timeout=60)
    assert granted.status_code == 200, granted.text
    effective = admin.get(f"{uc}/effective-permissions/catalog/system", params={"principal": robots[2]}, timeout=60)
    assert effective.status_code == 200, effective.text
    _gone(stack, *(f"ServicePrincipals/{robot_id}" for robot_id in ids))


def test_an_account_admin_role_given_on_another_replica_opens_the_admin_routes_here_at_once(stack: Stack) -> None:
    """Through another replica a person is made an account admin; the replica that has not heard of it lets them
    use the account-admin routes at once (before: 403 "Only account admins")."""
    admin = Admin.of(stack)
    person = admin.person(f"{uuid.uuid4().hex[:8]}-promoted@example.com")
    as_person = person.http(stack, workspace=None)
    audit = f"{stack.url}/api/2.0/fedgate/audit-log"
    assert as_person.get(audit, timeout=60).status_code == 403
    changed_elsewhere(stack.database_url, "UPDATE principals SET account_admin = true WHERE id = $1", person.id)
    read = as_person.get(audit, timeout=60)
    assert read.status_code == 200, read.text
    _gone(stack, f"Users/{person.id}")


def test_the_account_console_opens_to_a_role_given_on_another_replica_here_at_once(stack: Stack) -> None:
    """Through another replica a person is given CAN_MANAGE on a workspace, another is made an account admin; the
    replica that has not heard of it opens the access console's API to them at once, as the policy that holds the
    change has them (before: 403 "Only account admins and workspace admins")."""
    admin = Admin.of(stack)
    console = f"{stack.url}/api/2.0/fedgate/console/access/viewer"
    workspace_id = _workspace_id(stack, "team-a")
    manager = admin.person(f"{uuid.uuid4().hex[:8]}-manager@example.com")
    as_manager = manager.http(stack, workspace=None)
    assert as_manager.get(console, timeout=60).status_code == 403
    where = workspace_domain(workspace_id)
    granted_elsewhere(stack.database_url, manager.id, where, workspace_object(workspace_id), "CAN_MANAGE")
    opened = as_manager.get(console, timeout=60)
    assert opened.status_code == 200, opened.text
    assert opened.json() == {"account_admin": False, "workspaces": ["team-a"]}, opened.text

    promoted = admin.person(f"{uuid.uuid4().hex[:8]}-promoted@example.com")
    as_promoted = promoted.http(stack, workspace=None)
    assert as_promoted.get(console, timeout=60).status_code == 403
    changed_elsewhere(stack.database_url, "UPDATE principals SET account_admin = true WHERE id = $1", promoted.id)
    opened = as_promoted.get(console, timeout=60)
    assert opened.status_code == 200 and opened.json()["account_admin"] is True, opened.text
    _gone(stack, f"Users/{manager.id}", f"Users/{promoted.id}")


def test_another_users_sessions_open_to_an_admin_role_given_on_another_replica_here_at_once(stack: Stack) -> None:
    """Through another replica a person is made an account admin; the replica that has not heard of it lists and
    ends another user's browser sessions for them at once (before: 403 "Only account admins may list or end another
    user's sessions")."""
    admin = Admin.of(stack)
    person = admin.person(f"{uuid.uuid4().hex[:8]}-promoted@example.com")
    other = admin.person(f"{uuid.uuid4().hex[:8]}-other@example.com")
    as_person = person.http(stack, workspace=None)
    sessions = f"{stack.url}/api/2.0/fedgate/sessions"
    refused = as_person.get(sessions, params={"user_name": other.name}, timeout=60)
    assert refused.status_code == 403 and refused.json()["error_code"] == "PERMISSION_DENIED", refused.text
    changed_elsewhere(stack.database_url, "UPDATE principals SET account_admin = true WHERE id = $1", person.id)
    listed = as_person.get(sessions, params={"user_name": other.name}, timeout=60)
    assert listed.status_code == 200 and listed.json() == {"sessions": []}, listed.text
    ended = as_person.post(f"{sessions}/end-all", json={"user_name": other.name}, timeout=60)
    assert ended.status_code == 200 and ended.json() == {"ended": 0}, ended.text
    _gone(stack, f"Users/{person.id}", f"Users/{other.id}")


def test_two_groups_put_into_each_other_at_once_make_no_cycle(stack: Stack) -> None:
    """Two SCIM PATCHes at once (as through two replicas), one putting group A into group B, the other B into A: each
    checks that its membership makes no cycle, then inserts it. A trigger holds each insert a moment, so both
    checks run before either insert is committed. One is refused (400 "contain itself") and no cycle is stored
    (before: both checks passed on what was committed, both answered 200 and A and B contained each other)."""
    admin = Admin.of(stack)
    first = admin.group(f"nest-a-{uuid.uuid4().hex[:8]}")
    second = admin.group(f"nest-b-{uuid.uuid4().hex[:8]}")
    scim = f"{stack.url}/api/2.0/preview/scim/v2"

    def put(group_id: int, member_id: int) -> requests.Response:
        body = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": str(member_id)}]}],
        }
        return admin.http().patch(f"{scim}/Groups/{group_id}", json=body, timeout=60)

    _executed(
        stack.database_url,
        "CREATE OR REPLACE FUNCTION test_slow_nesting() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(2); RETURN NEW; END $$",
        f"CREATE TRIGGER test_slow_nesting BEFORE INSERT ON group_members FOR EACH ROW "
        f"WHEN (NEW.group_id IN ({first}, {second}) AND NEW.member_id IN ({first}, {second})) "
        f"EXECUTE FUNCTION test_slow_nesting()",
    )
    try:
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda pair: put(*pair), [(first, second), (second, first)]))
    finally:
        _executed(
            stack.database_url, "DROP TRIGGER test_slow_nesting ON group_members", "DROP FUNCTION test_slow_nesting()"
        )
    assert sorted(answer.status_code for answer in answers) == [200, 400], [answer.text for answer in answers]
    refused = next(answer for answer in answers if answer.status_code == 400)
    assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE" and "contain itself" in refused.text, refused.text
    stored = asyncio.run(_memberships(stack.database_url, first, second))
    assert len(stored) == 1, stored
    _gone(stack, f"Groups/{first}", f"Groups/{second}")


def _executed(database_url: str, *statements: str) -> None:
    async def execute() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(execute())


async def _memberships(database_url: str, *groups: int) -> list[tuple[int, int]]:
    """The stored (group, member) pairs among `groups`."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT group_id, member_id FROM group_members WHERE group_id = ANY($1) AND member_id = ANY($1)",
            list(groups),
        )
        return [(row["group_id"], row["member_id"]) for row in rows]
    finally:
        await connection.close()
