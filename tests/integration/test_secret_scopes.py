"""Secret scopes through the stock databricks-sdk against a real gateway (built-in vault): the life cycle of a
scope, its secrets and its ACL, who may do what (users, nested groups, outsiders), the workspace headers,
and values that never reach the gateway's log, the audit log or a response.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import requests
from alembic import command

from gateway.core.errors import mlflow_error
from gateway.db.migrate import alembic_config, upgrade
from tests.conftest import Stack
from tests.support.elsewhere import changed_elsewhere
from tests.support.held_inserts import held_inserts, holding
from tests.support.identity import Admin, Person, unique
from tests.support.waiting import logged_so_far

pytestmark = pytest.mark.integration

WORKSPACE = "team-a"
WORKSPACE_ID = "1001"


@dataclass(frozen=True)
class Org:
    owner: Person  # creates the scope (CAN_USE on team-a)
    reader: Person  # READ on the scope, directly
    writer: Person  # WRITE through a group inside a group
    outsider: Person  # CAN_USE on team-a, nothing on the scope
    writers: str  # the outer group holding WRITE


def email(prefix: str) -> str:
    return f"{unique(prefix)}@example.com"


@pytest.fixture(scope="module")
def org(stack: Stack) -> Org:
    admin = Admin.of(stack)
    owner, reader, writer, outsider = (admin.person(email(p)) for p in ("owner", "reader", "writer", "outsider"))
    inner = admin.group(unique("scope-writers-inner"), [writer.id])
    writers = unique("scope-writers")
    admin.group(writers, [inner])
    for person in (owner, reader, writer, outsider):
        admin.grant(f"workspaces/{WORKSPACE}", "CAN_USE", user=person.name)
    return Org(owner, reader, writer, outsider, writers)


def client(stack: Stack, person: Person, **config: Any) -> Any:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    if "workspace_id" not in config:
        config["custom_headers"] = {"X-MLFLOW-WORKSPACE": WORKSPACE}
    return WorkspaceClient(config=Config(host=stack.url, token=person.token, **config)).secrets


def raw(stack: Stack, person: Person, method: str, path: str, **kwargs: Any) -> requests.Response:
    return person.http(stack, WORKSPACE).request(method, f"{stack.url}/api/2.0/secrets/{path}", timeout=60, **kwargs)


def audit_rows(stack: Stack, scope: str) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(stack.database_url)
        try:
            return list(
                await connection.fetch(
                    "SELECT action, target, outcome, details::text AS details FROM audit_log WHERE target LIKE $1",
                    f"%{scope}%",
                )
            )
        finally:
            await connection.close()

    return asyncio.run(fetch())


@pytest.fixture
def values() -> Iterator[dict[str, bytes]]:
    yield {
        "password": f"pw-{uuid.uuid4().hex}".encode(),
        "blob": b"\x00\xffBIN-" + secrets.token_hex(16).encode(),
    }


def test_the_life_cycle_of_a_scope_through_the_databricks_sdk(stack: Stack, org: Org, values: dict[str, bytes]) -> None:
    from databricks.sdk.errors import (
        InvalidParameterValue,
        NotFound,
        PermissionDenied,
        ResourceAlreadyExists,
    )
    from databricks.sdk.service.workspace import AclPermission, ScopeBackendType

    scope = unique("db-creds")
    owner = client(stack, org.owner)
    owner.create_scope(scope)
    with pytest.raises(ResourceAlreadyExists):
        owner.create_scope(scope)
    listed = {s.name: s for s in owner.list_scopes()}
    assert listed[scope].backend_type == ScopeBackendType.DATABRICKS

    owner.put_secret(scope, "db-password", string_value=values["password"].decode())
    owner.put_secret(scope, "blob", bytes_value=base64.b64encode(values["blob"]).decode())
    owner.put_secret(scope, "db-password", string_value=values["password"].decode())  # overwrite is fine
    secrets_listed = {s.key: s for s in owner.list_secrets(scope)}
    assert set(secrets_listed) == {"db-password", "blob"}
    assert all((s.last_updated_timestamp or 0) > 1_700_000_000_000 for s in secrets_listed.values())
    listing = raw(stack, org.owner, "GET", "list", params={"scope": scope})
    assert listing.status_code == 200
    assert values["password"].decode() not in listing.text and "value" not in listing.text

    # The creator manages the scope; READ to a user, WRITE to a group whose member group holds the writer.
    acl = {item.principal: item.permission for item in owner.list_acls(scope)}
    assert acl == {org.owner.name: AclPermission.MANAGE}
    owner.put_acl(scope, org.reader.name, AclPermission.READ)
    owner.put_acl(scope, org.writers, AclPermission.WRITE)
    assert owner.get_acl(scope, org.reader.name).permission == AclPermission.READ
    assert owner.get_acl(scope, org.writers).permission == AclPermission.WRITE
    acl = {item.principal: item.permission for item in owner.list_acls(scope)}
    assert acl == {
        org.owner.name: AclPermission.MANAGE,
        org.reader.name: AclPermission.READ,
        org.writers: AclPermission.WRITE,
    }

    reader = client(stack, org.reader)
    assert {s.key for s in reader.list_secrets(scope)} == {"db-password", "blob"}
    assert scope in {s.name for s in reader.list_scopes()}
    with pytest.raises(PermissionDenied, match="lacks WRITE"):
        reader.put_secret(scope, "db-password", string_value="overwritten")
    with pytest.raises(PermissionDenied, match="lacks MANAGE"):
        reader.list_acls(scope)

    writer = client(stack, org.writer)
    writer.put_secret(scope, "api-key", string_value="written-by-a-nested-group")
    with pytest.raises(PermissionDenied):
        writer.put_acl(scope, org.writer.name, AclPermission.MANAGE)

    # Nothing on the scope: it does not exist, exactly as one that does not.
    outsider = client(stack, org.outsider)
    with pytest.raises(NotFound) as hidden:
        outsider.list_secrets(scope)
    with pytest.raises(NotFound) as missing:
        outsider.list_secrets(unique("no-such-scope"))
    assert str(hidden.value) == f"Scope {scope} does not exist!"
    assert str(missing.value).endswith(" does not exist!")
    with pytest.raises(NotFound):
        outsider.put_secret(scope, "db-password", string_value="x")
    assert scope not in {s.name for s in outsider.list_scopes()}

    # The numeric workspace id (X-Databricks-Workspace-Id) names the same workspace.
    by_id = client(stack, org.owner, workspace_id=WORKSPACE_ID)
    assert {s.key for s in by_id.list_secrets(scope)} == {"db-password", "blob", "api-key"}

    owner.delete_acl(scope, org.reader.name)
    with pytest.raises(NotFound):
        reader.list_secrets(scope)
    with pytest.raises(NotFound):
        owner.get_acl(scope, org.reader.name)

    owner.delete_secret(scope, "api-key")
    with pytest.raises(NotFound):
        owner.delete_secret(scope, "api-key")
    assert {s.key for s in owner.list_secrets(scope)} == {"db-password", "blob"}
    with pytest.raises(InvalidParameterValue):
        owner.put_secret(scope, "bad/key", string_value="x")

    owner.delete_scope(scope)
    assert scope not in {s.name for s in owner.list_scopes()}
    with pytest.raises(NotFound):
        owner.list_secrets(scope)
    with pytest.raises(NotFound):
        writer.put_secret(scope, "db-password", string_value="x")

    # A scope re-created under the name starts empty, its old ACL gone.
    owner.create_scope(scope)
    assert list(owner.list_secrets(scope)) == []
    assert {item.principal for item in owner.list_acls(scope)} == {org.owner.name}
    owner.delete_scope(scope)

    # Values are in no log line and no audit row; every change is audited.
    log = logged_so_far(stack.url, stack.gateway.log_path)
    rows = audit_rows(stack, scope)
    actions = [row["action"] for row in rows]
    for action in ("secrets.scope.create", "secrets.put", "secrets.delete", "secrets.acl.put", "secrets.acl.delete"):
        assert action in actions, actions
    assert "secrets.scope.delete" in actions
    for value in (values["password"].decode(), base64.b64encode(values["blob"]).decode(), "written-by-a-nested-group"):
        assert value not in log
        assert all(value not in row["details"] and value not in row["target"] for row in rows)


def test_workspace_users_create_scopes_and_admins_manage_every_scope(stack: Stack, org: Org) -> None:
    from databricks.sdk.errors import NotFound
    from databricks.sdk.service.workspace import AclPermission

    admin = Admin.of(stack)
    scope = unique("team-scope")
    owner = client(stack, org.owner)
    owner.create_scope(scope, initial_manage_principal=org.writers)
    assert {i.principal: i.permission.value for i in owner.list_acls(scope)} == {
        org.owner.name: "MANAGE",
        org.writers: "MANAGE",
    }
    # The nested group's member manages it now.
    client(stack, org.writer).put_acl(scope, org.reader.name, AclPermission.READ)

    # A workspace admin (CAN_MANAGE on the workspace) manages every scope, without an ACL entry.
    boss = admin.person(email("ws-admin"))
    admin.grant(f"workspaces/{WORKSPACE}", "CAN_MANAGE", user=boss.name)
    client(stack, boss).put_secret(scope, "k", string_value="v")
    assert {s.key for s in client(stack, boss).list_secrets(scope)} == {"k"}

    # Someone who cannot enter the workspace cannot create scopes in it.
    stranger = admin.person(email("stranger"))
    with pytest.raises(NotFound):
        client(stack, stranger).create_scope(unique("nope"))
    client(stack, boss).delete_scope(scope)


def test_users_is_every_user_of_the_workspace_now_and_later(stack: Stack, org: Org) -> None:
    from databricks.sdk.errors import NotFound, PermissionDenied
    from databricks.sdk.service.workspace import AclPermission

    admin = Admin.of(stack)
    scope = unique("everyone")
    owner = client(stack, org.owner)
    owner.create_scope(scope, initial_manage_principal="users")
    acl = {item.principal: item.permission for item in owner.list_acls(scope)}
    assert acl == {org.owner.name: AclPermission.MANAGE, "users": AclPermission.MANAGE}
    assert owner.get_acl(scope, "users").permission == AclPermission.MANAGE

    # The outsider holds CAN_USE on the workspace and nothing of its own on the scope: it manages it.
    outsider = client(stack, org.outsider)
    outsider.put_secret(scope, "shared", string_value="for-every-user")
    assert scope in {s.name for s in outsider.list_scopes()}
    outsider.put_acl(scope, org.reader.name, AclPermission.READ)

    # A principal that joins the workspace later, through a group, is one of its users from then on.
    newcomer = admin.person(email("newcomer"))
    joiners = unique("joiners")
    admin.group(joiners, [newcomer.id])
    with pytest.raises(NotFound):
        client(stack, newcomer).list_secrets(scope)
    admin.grant(f"workspaces/{WORKSPACE}", "CAN_USE", group=joiners)
    assert {s.key for s in client(stack, newcomer).list_secrets(scope)} == {"shared"}

    # Holding something in the workspace is not being a user of it: READ on another scope only.
    other = unique("other")
    owner.create_scope(other)
    partial = admin.person(email("partial"))
    # (named by an admin: to a scope manager, a principal holding nothing in the workspace is a name nobody has)
    granted = admin.http(WORKSPACE).post(
        f"{stack.url}/api/2.0/secrets/acls/put",
        json={"scope": other, "principal": partial.name, "permission": "READ"},
        timeout=60,
    )
    assert granted.status_code == 200, granted.text
    assert list(client(stack, partial).list_secrets(other)) == []
    with pytest.raises(NotFound):
        client(stack, partial).list_secrets(scope)
    # Nor is a user of another workspace.
    elsewhere = admin.person(email("elsewhere"))
    admin.grant("workspaces/team-b", "CAN_USE", user=elsewhere.name)
    with pytest.raises(NotFound):
        client(stack, elsewhere).list_secrets(scope)

    # `users` is an ACL entry like the others: lowered to READ, then removed.
    owner.put_acl(scope, "users", AclPermission.READ)
    assert owner.get_acl(scope, "users").permission == AclPermission.READ
    with pytest.raises(PermissionDenied, match="lacks WRITE"):
        outsider.put_secret(scope, "shared", string_value="overwritten")
    assert {s.key for s in outsider.list_secrets(scope)} == {"shared"}
    owner.delete_acl(scope, "users")
    with pytest.raises(NotFound):
        outsider.list_secrets(scope)
    with pytest.raises(NotFound):
        owner.get_acl(scope, "users")
    with pytest.raises(NotFound):
        owner.delete_acl(scope, "users")
    assert {item.principal for item in owner.list_acls(scope)} == {org.owner.name, org.reader.name}

    rows = [row for row in audit_rows(stack, scope) if row["action"].startswith("secrets.")]
    created = next(row for row in rows if row["action"] == "secrets.scope.create")
    assert '"initial_manage_principal": "users"' in created["details"]
    users_entries = [row for row in rows if '"principal": "users"' in row["details"]]
    assert sorted(row["action"] for row in users_entries) == ["secrets.acl.delete", "secrets.acl.put"]
    owner.delete_scope(scope)
    owner.delete_scope(other)


def test_names_sizes_and_workspace_headers_are_checked(stack: Stack, org: Org) -> None:
    scope = unique("limits")
    assert raw(stack, org.owner, "POST", "scopes/create", json={"scope": scope}).status_code == 200
    for body in (
        {"scope": "bad name"},
        {"scope": "x" * 129},
        {"scope": ""},
        {"scope": ".."},  # the built-in vault kept these; OpenBao resolves them as path segments
        {"scope": "."},
    ):
        refused = raw(stack, org.owner, "POST", "scopes/create", json=body)
        assert refused.status_code == 400 and refused.json()["error_code"] == "INVALID_PARAMETER_VALUE", refused.text
    for key in ("..", "."):
        refused = raw(stack, org.owner, "POST", "put", json={"scope": scope, "key": key, "string_value": "v"})
        assert refused.status_code == 400 and refused.json()["error_code"] == "INVALID_PARAMETER_VALUE", refused.text
    assert raw(stack, org.owner, "POST", "scopes/create", json={"scope": "..."}).status_code == 200
    assert raw(stack, org.owner, "POST", "scopes/delete", json={"scope": "..."}).status_code == 200
    big = raw(stack, org.owner, "POST", "put", json={"scope": scope, "key": "big", "string_value": "x" * 131_073})
    assert big.status_code == 400 and big.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    exact = raw(stack, org.owner, "POST", "put", json={"scope": scope, "key": "max", "string_value": "x" * 131_072})
    assert exact.status_code == 200, exact.text
    two_values = {"scope": scope, "key": "k", "string_value": "a", "bytes_value": "YQ=="}
    both = raw(stack, org.owner, "POST", "put", json=two_values)
    assert both.status_code == 400
    not_b64 = raw(stack, org.owner, "POST", "put", json={"scope": scope, "key": "k", "bytes_value": "%%%"})
    assert not_b64.status_code == 400
    bad_permission = raw(
        stack, org.owner, "POST", "acls/put", json={"scope": scope, "principal": org.reader.name, "permission": "OWN"}
    )
    assert bad_permission.status_code == 400

    headers = {"X-MLFLOW-WORKSPACE": "team-b", "X-Databricks-Workspace-Id": WORKSPACE_ID}
    disagree = requests.get(
        f"{stack.url}/api/2.0/secrets/scopes/list",
        headers={"Authorization": f"Bearer {org.owner.token}", **headers},
        timeout=60,
    )
    assert disagree.status_code == 400 and "X-Databricks-Workspace-Id" in disagree.json()["message"]
    agree = requests.get(
        f"{stack.url}/api/2.0/secrets/scopes/list",
        headers={
            "Authorization": f"Bearer {org.owner.token}",
            "X-MLFLOW-WORKSPACE": WORKSPACE,
            "X-Databricks-Workspace-Id": WORKSPACE_ID,
        },
        timeout=60,
    )
    assert agree.status_code == 200 and scope in {s["name"] for s in agree.json()["scopes"]}
    assert raw(stack, org.owner, "POST", "scopes/delete", json={"scope": scope}).status_code == 200


def test_a_scope_named_dot_dot_before_the_rule_is_refused_but_its_deletion(stack: Stack, org: Org) -> None:
    """The built-in vault took a scope named `..` (or `.`) before one rule for every vault refused them: such a
    scope is refused (400) for all but its deletion, which removes it and its values. The database refuses the
    name too since migration 0055, which keeps the scopes so named when it ran: they are made at the revision
    before it."""

    async def sql(query: str, *args: Any) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(stack.database_url)
        try:
            return list(await connection.fetch(query, *args))
        finally:
            await connection.close()

    command.downgrade(alembic_config(stack.database_url), "0054")
    for name in ("..", "."):
        asyncio.run(
            sql(
                "INSERT INTO secret_scopes (workspace_id, name, vault, location, created_by, users_permission) "
                "VALUES ($1, $2, 'builtin', $3, $4, 'MANAGE')",
                int(WORKSPACE_ID),
                name,
                f"w{WORKSPACE_ID}/{name}",
                org.owner.name,
            )
        )
    upgrade(stack.database_url, "head")
    for name in ("..", "."):
        for call, body in (
            ("put", {"scope": name, "key": "k", "string_value": "v"}),
            ("list", None),
            ("acls/put", {"scope": name, "principal": org.reader.name, "permission": "READ"}),
        ):
            if body is None:
                refused = raw(stack, org.owner, "GET", call, params={"scope": name})
            else:
                refused = raw(stack, org.owner, "POST", call, json=body)
            assert refused.status_code == 400, (call, refused.status_code, refused.text)
            assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        deleted = raw(stack, org.owner, "POST", "scopes/delete", json={"scope": name})
        assert deleted.status_code == 200, deleted.text
        left = asyncio.run(
            sql("SELECT name FROM secret_scopes WHERE workspace_id = $1 AND name = $2", int(WORKSPACE_ID), name)
        )
        assert left == []


def get_secret(stack: Stack, token: str, body: dict[str, Any], call: str = "get") -> requests.Response:
    return requests.post(
        f"{stack.url}/api/2.0/secrets/{call}",
        json=body,
        headers={"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": WORKSPACE},
        timeout=60,
    )


def test_a_running_run_reads_its_secrets_and_nothing_else_does(
    mlflow_env: Stack, org: Org, values: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from databricks.sdk.service.workspace import AclPermission

    stack = mlflow_env
    admin = Admin.of(stack)
    scope = unique("run-creds")
    owner = client(stack, org.owner)
    owner.create_scope(scope)
    owner.put_secret(scope, "db-password", string_value=values["password"].decode())
    owner.put_secret(scope, "blob", bytes_value=base64.b64encode(values["blob"]).decode())
    owner.put_acl(scope, org.reader.name, AclPermission.READ)

    # A run of team-b, made by the account admin (who holds MANAGE on every scope and may edit every run).
    team_b = admin.http("team-b")
    created = team_b.post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("b")}, timeout=60)
    assert created.status_code == 200, created.text
    other = team_b.post(
        f"{stack.url}/api/2.0/mlflow/runs/create", json={"experiment_id": created.json()["experiment_id"]}, timeout=60
    )
    assert other.status_code == 200, other.text
    foreign_run = other.json()["run"]["info"]["run_id"]

    # The reader's training script: the stock client through the gateway, inside a run of its own.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", org.reader.token)
    mlflow.set_workspace(WORKSPACE)
    mlflow.set_experiment(unique("training"))
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        got = get_secret(stack, org.reader.token, {"scope": scope, "key": "db-password", "run_id": run_id})
        assert got.status_code == 200, got.text
        assert got.headers["Cache-Control"] == "no-store"
        assert got.json() == {"key": "db-password", "value": base64.b64encode(values["password"]).decode()}
        many = get_secret(
            stack, org.reader.token, {"scope": scope, "keys": ["blob", "absent"], "run_id": run_id}, "get-many"
        )
        assert many.status_code == 200, many.text
        assert many.headers["Cache-Control"] == "no-store"
        assert many.json() == {"values": {"blob": base64.b64encode(values["blob"]).decode(), "absent": None}}

        # Refused alike: a missing secret, a caller without READ, an unknown run, another workspace's run.
        wanted = {"scope": scope, "key": "db-password", "run_id": run_id}
        refusals = [
            get_secret(stack, org.reader.token, {**wanted, "key": "absent"}),
            get_secret(stack, org.outsider.token, wanted),
            get_secret(stack, org.reader.token, {**wanted, "run_id": uuid.uuid4().hex}),
            get_secret(stack, admin.token, {**wanted, "run_id": foreign_run}),
            get_secret(stack, org.reader.token, {**wanted, "scope": unique("no-such-scope")}),
        ]
    # After the run ended, the same call is refused as well.
    refusals.append(get_secret(stack, org.reader.token, wanted))
    refusals.append(get_secret(stack, org.reader.token, {**wanted, "keys": ["db-password"]}, "get-many"))

    expected = mlflow_error("RESOURCE_DOES_NOT_EXIST", f"Secret db-password does not exist in scope {scope}!")
    assert refusals[0].json() == {**expected, "message": f"Secret absent does not exist in scope {scope}!"}
    for refused in (refusals[1], refusals[2], refusals[3], refusals[5]):
        assert refused.status_code == 404
        assert refused.json() == expected, refused.text
    assert refusals[4].status_code == 404 and refusals[4].json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert refusals[6].status_code == 404
    assert refusals[6].json() == mlflow_error("RESOURCE_DOES_NOT_EXIST", f"Scope {scope} does not exist!")

    # Every read is audited, allowed or denied, with run and keys; no value in the audit log or the gateway's log.
    rows = audit_rows(stack, scope)
    reads = [(row["action"], row["outcome"]) for row in rows if row["action"].startswith("secrets.get")]
    assert ("secrets.get", "ok") in reads and ("secrets.get_many", "ok") in reads
    assert reads.count(("secrets.get", "denied")) == 4 and ("secrets.get_many", "denied") in reads
    assert any(run_id in row["details"] for row in rows if row["action"] == "secrets.get")
    log = logged_so_far(stack.url, stack.gateway.log_path)
    for value in (values["password"], values["blob"]):
        for shown in (value.decode(errors="replace"), base64.b64encode(value).decode()):
            assert shown not in log
            assert all(shown not in row["details"] and shown not in row["target"] for row in rows)
    owner.delete_scope(scope)


def fetch_rows(stack: Stack, query: str, *args: object) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(stack.database_url)
        try:
            return list(await connection.fetch(query, *args))
        finally:
            await connection.close()

    return asyncio.run(fetch())


def test_values_are_read_from_the_vault_on_every_call_by_default(
    mlflow_env: Stack, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No `[secrets] cache_seconds` in the test gateway's config: a value gone from the vault is gone at once."""
    import mlflow

    stack = mlflow_env
    scope = unique("uncached")
    owner = client(stack, org.owner)
    owner.create_scope(scope)
    owner.put_secret(scope, "k", string_value="first-" + uuid.uuid4().hex)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", org.owner.token)
    mlflow.set_workspace(WORKSPACE)
    mlflow.set_experiment(unique("uncached"))
    with mlflow.start_run() as run:
        body = {"scope": scope, "keys": ["k"], "run_id": run.info.run_id}
        first = get_secret(stack, org.owner.token, body, "get-many")
        assert first.status_code == 200 and first.json()["values"]["k"] is not None, first.text
        # Changed behind the gateway's back (another replica, say): the next read sees it.
        fetch_rows(stack, "DELETE FROM vault_values WHERE location = $1 AND key = 'k'", f"w{WORKSPACE_ID}/{scope}")
        second = get_secret(stack, org.owner.token, body, "get-many")
        assert second.status_code == 200 and second.json() == {"values": {"k": None}}, second.text
    owner.delete_scope(scope)


def test_a_value_moved_to_another_secrets_row_does_not_open_and_answers_503(
    mlflow_env: Stack, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The built-in vault binds each ciphertext to its scope and key: one copied over another secret's row (by
    whoever may write the gateway's database) fails authentication instead of opening as that secret. The run's
    read then answers 503 naming no value, and so does each of the run's writes, which the leak guard cannot
    check any more: nothing unchecked reaches the store. (Both answered 500: the SealError went uncaught.)"""
    import mlflow

    stack = mlflow_env
    scope, other = unique("sealed"), unique("sealed-other")
    mine, theirs = f"mine-{uuid.uuid4().hex}", f"theirs-{uuid.uuid4().hex}"
    owner = client(stack, org.owner)
    owner.create_scope(scope)
    owner.create_scope(other)
    owner.put_secret(scope, "k", string_value=mine)
    owner.put_secret(other, "k", string_value=theirs)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", org.owner.token)
    mlflow.set_workspace(WORKSPACE)
    mlflow.set_experiment(unique("sealed"))
    http = {"Authorization": f"Bearer {org.owner.token}", "X-MLFLOW-WORKSPACE": WORKSPACE}
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        body = {"scope": scope, "key": "k", "run_id": run_id}
        first = get_secret(stack, org.owner.token, body)
        assert first.status_code == 200 and base64.b64decode(first.json()["value"]) == mine.encode(), first.text
        fetch_rows(
            stack,
            "UPDATE vault_values AS v SET kid = o.kid, nonce = o.nonce, ciphertext = o.ciphertext "
            "FROM vault_values AS o WHERE v.location = $1 AND v.key = 'k' AND o.location = $2 AND o.key = 'k'",
            f"w{WORKSPACE_ID}/{scope}",
            f"w{WORKSPACE_ID}/{other}",
        )
        answers = [
            get_secret(stack, org.owner.token, body),
            get_secret(stack, org.owner.token, {**body, "keys": ["k"]}, "get-many"),
            requests.post(
                f"{stack.url}/api/2.0/mlflow/runs/log-parameter",
                json={"run_id": run_id, "key": "lr", "value": "0.1"},
                headers=http,
                timeout=60,
            ),
        ]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
            assert "Retry-After" in answer.headers
            assert mine not in answer.text and theirs not in answer.text
        assert "operator" in answers[0].json()["message"]
    log = logged_so_far(stack.url, stack.gateway.log_path)
    assert mine not in log and theirs not in log
    owner.delete_scope(scope)
    owner.delete_scope(other)


def occurrences_in_database(stack: Stack, needles: list[str]) -> dict[str, int]:
    """Rows of every table of the gateway's database (audit log, index, outbox, ...) whose text holds a needle."""

    async def scan() -> dict[str, int]:
        connection = await asyncpg.connect(stack.database_url)
        try:
            tables = await connection.fetch(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
                "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
            found: dict[str, int] = {}
            for table in tables:
                name = f'"{table["table_schema"]}"."{table["table_name"]}"'
                for needle in needles:
                    count = await connection.fetchval(
                        f"SELECT count(*) FROM {name} t WHERE strpos(t::text, $1) > 0", needle
                    )
                    if count:
                        found[name] = found.get(name, 0) + count
            return found
        finally:
            await connection.close()

    return asyncio.run(scan())


def test_a_secret_value_appears_in_no_log_table_metric_or_error_body(
    mlflow_env: Stack, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole life cycle with a distinctive value (scope, put, reads allowed and refused, delete), then a
    search for it, as text, base64 and hex, everywhere the gateway writes: its log, every table of its database
    (audit log, account index, outbox, ...), /metrics, and every answer but the two that return it."""
    import mlflow
    from databricks.sdk.service.workspace import AclPermission

    stack = mlflow_env
    value = f"LEAK-CANARY-{uuid.uuid4().hex}"
    needles = [value, base64.b64encode(value.encode()).decode(), value.encode().hex()]
    scope = unique("leak")
    answers: list[requests.Response] = []

    def call(person: Person, path: str, body: dict[str, Any] | bytes) -> requests.Response:
        kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
        answers.append(raw(stack, person, "POST", path, **kwargs))
        return answers[-1]

    assert call(org.owner, "scopes/create", {"scope": scope}).status_code == 200
    assert call(org.owner, "put", {"scope": scope, "key": "db-password", "string_value": value}).status_code == 200
    put_bytes = {"scope": scope, "key": "bin", "bytes_value": needles[1]}
    assert call(org.owner, "put", put_bytes).status_code == 200
    client(stack, org.owner).put_acl(scope, org.reader.name, AclPermission.READ)
    answers.append(raw(stack, org.reader, "GET", "list", params={"scope": scope}))
    assert answers[-1].status_code == 200

    # Writes carrying the value that are refused: no error body repeats what it was sent.
    refused_writes = [
        call(org.reader, "put", {"scope": scope, "key": "db-password", "string_value": value}),  # READ only
        call(org.outsider, "put", {"scope": scope, "key": "db-password", "string_value": value}),  # hidden
        call(org.owner, "put", {"scope": unique("none"), "key": "k", "string_value": value}),
        call(org.owner, "put", {"scope": scope, "key": "bad key", "string_value": value}),
        call(org.owner, "put", {"scope": scope, "key": "big", "string_value": value * 3000}),
        call(org.owner, "put", {"scope": scope, "key": "k", "string_value": value, "bytes_value": needles[1]}),
        call(org.owner, "put", {"scope": scope, "key": "k", "bytes_value": value + "%"}),
        call(org.owner, "put", {"scope": [value], "key": "k", "string_value": value}),
        call(org.owner, "put", {"scope": scope, "key": "k", "string_value": [value]}),
        call(org.owner, "put", f'{{"scope": "{scope}", "key": "k", "string_value": "{value}"'.encode()),
    ]
    assert all(400 <= answer.status_code < 500 for answer in refused_writes), [a.status_code for a in refused_writes]

    # The reader's training script: logs as usual (so the index holds its run), reads its secrets.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", org.reader.token)
    mlflow.set_workspace(WORKSPACE)
    mlflow.set_experiment(unique("leak-training"))
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        mlflow.log_param("db_host", "db.example.com")
        mlflow.log_metric("loss", 0.25)
        wanted = {"scope": scope, "key": "db-password", "run_id": run_id}
        got = get_secret(stack, org.reader.token, wanted)
        many = get_secret(stack, org.reader.token, {**wanted, "keys": ["db-password", "bin", "absent"]}, "get-many")
        assert got.status_code == 200 and base64.b64decode(got.json()["value"]).decode() == value
        assert many.status_code == 200 and base64.b64decode(many.json()["values"]["bin"]).decode() == value
        refused_reads = [
            get_secret(stack, org.outsider.token, wanted),
            get_secret(stack, org.reader.token, {**wanted, "run_id": uuid.uuid4().hex}),
            get_secret(stack, org.reader.token, {**wanted, "key": "absent"}),
            get_secret(stack, org.outsider.token, {**wanted, "keys": ["db-password"]}, "get-many"),
            get_secret(stack, org.reader.token, {**wanted, "keys": ["db-password"] * 101}, "get-many"),
        ]
    refused_reads.append(get_secret(stack, org.reader.token, wanted))  # the run has ended
    assert all(answer.status_code in (400, 404) for answer in refused_reads), [a.text for a in refused_reads]
    answers += refused_reads

    assert call(org.owner, "delete", {"scope": scope, "key": "db-password"}).status_code == 200
    assert call(org.owner, "delete", {"scope": scope, "key": "db-password"}).status_code == 404
    assert call(org.owner, "scopes/delete", {"scope": scope}).status_code == 200

    # The index has this run (written through, asynchronously), and the audit log every read.
    deadline = time.monotonic() + 30
    while not fetch_rows(stack, "SELECT 1 FROM ix_runs WHERE run_id = $1 AND params ? 'db_host'", run_id):
        assert time.monotonic() < deadline, "the run never reached the index"
        time.sleep(0.2)
    audited = "SELECT outcome FROM audit_log WHERE action LIKE 'secrets.get%' AND details::text LIKE $1"
    reads = [row["outcome"] for row in fetch_rows(stack, audited, f"%{run_id}%")]
    # get, get-many and the read of a missing key allowed; the outsider twice and the ended run refused.
    assert sorted(reads) == ["denied"] * 3 + ["ok"] * 3, reads

    metrics = requests.get(f"{stack.url}/metrics", timeout=60).text
    log = logged_so_far(stack.url, stack.gateway.log_path)
    assert log and "fedgate_requests_total" in metrics
    for needle in needles:
        assert needle not in log, "a secret value reached the gateway's log"
        assert needle not in metrics, "a secret value reached /metrics"
        for answer in answers:
            assert needle not in answer.text, f"a secret value came back in an answer: {answer.request.url}"
    assert occurrences_in_database(stack, needles) == {}
    # The search does see what is there: the run's id is in the index and in the audit log.
    assert {'"public"."ix_runs"', '"public"."audit_log"'} <= set(occurrences_in_database(stack, [run_id]))


def test_a_scope_manager_meets_principals_outside_the_workspace_as_names_nobody_has(stack: Stack, org: Org) -> None:
    """Every workspace user may create a scope and so manage its ACL. The ACL calls answered a name nobody has with
    404 `No principal named ...` and any other name with success, so a user of team-a told which users, groups and
    service principals the whole account has, another workspace's too. A scope manager now names only principals
    holding something in the workspace; any other it meets exactly as a name nobody has. Admins of the workspace
    name anyone, and are told when a name is nobody's."""
    admin = Admin.of(stack)
    elsewhere = admin.person(email("team-b-only"))
    admin.grant("workspaces/team-b", "CAN_USE", user=elsewhere.name)
    group = unique("team-b-group")
    admin.group(group, [admin.user(email("team-b-member"))])
    admin.grant("workspaces/team-b", "CAN_USE", group=group)
    scope = unique("probe")
    assert raw(stack, org.owner, "POST", "scopes/create", json={"scope": scope}).status_code == 200

    def calls(person: Person, principal: str) -> list[requests.Response]:
        acl = {"scope": scope, "principal": principal}
        return [
            raw(stack, person, "POST", "acls/put", json={**acl, "permission": "READ"}),
            raw(stack, person, "GET", "acls/get", params=acl),
            raw(stack, person, "POST", "acls/delete", json=acl),
            raw(
                stack,
                person,
                "POST",
                "scopes/create",
                json={"scope": unique("never"), "initial_manage_principal": principal},
            ),
        ]

    for existing, nobody in ((elsewhere.name, email("nobody")), (group, unique("no-group"))):
        seen = [(r.status_code, r.text.replace(existing, "<name>")) for r in calls(org.owner, existing)]
        unseen = [(r.status_code, r.text.replace(nobody, "<name>")) for r in calls(org.owner, nobody)]
        assert seen == unseen, (seen, unseen)
        assert all(status == 404 and "No principal named '<name>'" in text for status, text in seen), seen
    listed = {s["name"] for s in raw(stack, org.owner, "GET", "scopes/list").json()["scopes"]}
    assert not {name for name in listed if name.startswith("never-")}, listed  # no probe made a scope

    # A teammate (CAN_USE on team-a) is named as before.
    put = raw(
        stack, org.owner, "POST", "acls/put", json={"scope": scope, "principal": org.reader.name, "permission": "READ"}
    )
    assert put.status_code == 200, put.text
    # An admin of the workspace names anyone, and is told plainly of a name nobody has.
    boss = admin.person(email("ws-admin"))
    admin.grant(f"workspaces/{WORKSPACE}", "CAN_MANAGE", user=boss.name)
    for principal in (elsewhere.name, group):
        done = raw(stack, boss, "POST", "acls/put", json={"scope": scope, "principal": principal, "permission": "READ"})
        assert done.status_code == 200, done.text
    unknown = raw(
        stack, boss, "POST", "acls/put", json={"scope": scope, "principal": email("nobody"), "permission": "READ"}
    )
    assert unknown.status_code == 404 and "No principal named" in unknown.json()["message"]
    raw(stack, boss, "POST", "scopes/delete", json={"scope": scope})


def test_a_run_id_outside_mlflows_pattern_is_refused_on_secret_reads(
    mlflow_env: Stack, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run is looked up in its store by the id as sent, and the read noted for the leak guard under it. A store
    on MySQL (collations that ignore case, trailing spaces or look-alike letters) finds the run under `<id> ` or
    `<id>` in fullwidth digits, which the leak guard's record would not match when the run logs the value under its
    own id. Such ids are refused before anything is looked up, with MLflow's words for an invalid run id; here (a
    SQLite store) they were refused as unknown runs."""
    import mlflow
    from databricks.sdk.service.workspace import AclPermission

    stack = mlflow_env
    scope = unique("run-id-spellings")
    owner = client(stack, org.owner)
    owner.create_scope(scope)
    owner.put_secret(scope, "k", string_value="v-" + uuid.uuid4().hex)
    owner.put_acl(scope, org.reader.name, AclPermission.READ)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", org.reader.token)
    mlflow.set_workspace(WORKSPACE)
    mlflow.set_experiment(unique("run-ids"))
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        wide = run_id.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789abcdef"})
        for spelt in (f"{run_id} ", f" {run_id}", f"{run_id}\n", f"{run_id}\t", wide, run_id[:31] + "\u0430", ""):
            for call, body in (("get", {"key": "k"}), ("get-many", {"keys": ["k"]})):
                refused = get_secret(stack, org.reader.token, {"scope": scope, **body, "run_id": spelt}, call)
                assert refused.status_code == 400, (spelt, refused.text)
                assert refused.json() == mlflow_error(
                    "INVALID_PARAMETER_VALUE", f"Invalid value {json.dumps(spelt)} for parameter 'run_id' supplied."
                )
        assert get_secret(stack, org.reader.token, {"scope": scope, "key": "k", "run_id": run_id}).status_code == 200
    owner.delete_scope(scope)


def test_an_acl_put_while_its_scope_is_deleted_gives_nothing_on_a_scope_created_again_under_the_name(
    stack: Stack, org: Org
) -> None:
    """A manager's ACL put and the scope's deletion at once: the grant must go with the scope, never stay on its name.

    A trigger holds the grant's INSERT while an account admin deletes the scope. Before, the deletion removed the
    scope's grants without waiting for the put, the put committed after it, and its row stayed: when another user
    created a scope of the same name, whom the old scope's manager had named read its secrets.
    """
    admin = Admin.of(stack)
    scope = unique("race-scope")
    obj = f"secret_scope:w{WORKSPACE_ID}/{scope}"
    assert raw(stack, org.owner, "POST", "scopes/create", json={"scope": scope}).status_code == 200
    held = f"NEW.object = '{obj}' AND NEW.principal_id = {org.outsider.id}"
    with held_inserts(stack.database_url, "grants", held), ThreadPoolExecutor(2) as pool:
        acl = {"scope": scope, "principal": org.outsider.name, "permission": "READ"}
        put = pool.submit(raw, stack, org.owner, "POST", "acls/put", json=acl)
        holding(stack.database_url, "the ACL put holding its grant's insert")
        deleted = pool.submit(
            admin.http(WORKSPACE).post, f"{stack.url}/api/2.0/secrets/scopes/delete", json={"scope": scope}, timeout=60
        )
        put_answer, delete_answer = put.result(), deleted.result()
    assert delete_answer.status_code == 200, delete_answer.text
    assert put_answer.status_code in (200, 404), put_answer.text
    left = fetch_rows(stack, "SELECT principal_id, privilege FROM grants WHERE object = $1", obj)
    assert left == [], [dict(row) for row in left]

    # Another user creates a scope of the name and keeps a secret in it: the outsider reads nothing of it.
    assert raw(stack, org.reader, "POST", "scopes/create", json={"scope": scope}).status_code == 200
    kept = raw(stack, org.reader, "POST", "put", json={"scope": scope, "key": "k", "string_value": "v-123"})
    assert kept.status_code == 200, kept.text
    listing = raw(stack, org.outsider, "GET", "list", params={"scope": scope})
    assert listing.status_code == 404, listing.text
    assert listing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    acl_now = raw(stack, org.reader, "GET", "acls/list", params={"scope": scope})
    assert [item["principal"] for item in acl_now.json()["items"]] == [org.reader.name], acl_now.text
    assert raw(stack, org.reader, "POST", "scopes/delete", json={"scope": scope}).status_code == 200


def test_a_stale_grant_on_a_scopes_name_is_cleared_when_a_scope_of_that_name_is_created(stack: Stack, org: Org) -> None:
    """A grant row left on a deleted scope's name (written before deletions waited for grants being added) is
    another scope's: a new scope of the name starts with its creator's MANAGE alone."""
    scope = unique("stale-scope")
    obj = f"secret_scope:w{WORKSPACE_ID}/{scope}"
    changed_elsewhere(
        stack.database_url,
        "INSERT INTO grants (principal_id, domain, object, privilege, created_by) VALUES ($1, $2, $3, 'MANAGE', 'x')",
        org.outsider.id,
        f"w{WORKSPACE_ID}",
        obj,
    )
    assert raw(stack, org.reader, "POST", "scopes/create", json={"scope": scope}).status_code == 200
    kept = raw(stack, org.reader, "POST", "put", json={"scope": scope, "key": "k", "string_value": "v"})
    assert kept.status_code == 200, kept.text
    listing = raw(stack, org.outsider, "GET", "list", params={"scope": scope})
    assert listing.status_code == 404, listing.text
    left = fetch_rows(stack, "SELECT principal_id FROM grants WHERE object = $1", obj)
    assert [row["principal_id"] for row in left] == [org.reader.id]
    assert raw(stack, org.reader, "POST", "scopes/delete", json={"scope": scope}).status_code == 200
