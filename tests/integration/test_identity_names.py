"""Principal names: a character set per kind, one name for one principal, grants that reach the named one.

Through SCIM, the CLI, the permissions and Unity Catalog APIs and SQL GRANT of the shared gateway, and
straight against its PostgreSQL (the constraints must hold for any writer).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
import requests

from gateway.cli import main
from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.elsewhere import made_elsewhere
from tests.support.identity import Admin

pytestmark = pytest.mark.integration
SCIM = "/api/2.0/preview/scim/v2"
UC = "/api/2.1/unity-catalog"


def suffix() -> str:
    return uuid.uuid4().hex[:8]


def call(stack: Stack, method: str, path: str, body: dict[str, Any] | None = None, token: str = ADMIN_TOKEN) -> Any:
    return requests.request(
        method, f"{stack.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def create(stack: Stack, resource: str, body: dict[str, Any]) -> requests.Response:
    return call(stack, "POST", f"{SCIM}/{resource}", body)  # type: ignore[no-any-return]


def refused(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error_code"] == code
    assert "Traceback" not in response.text


def database_rejects(stack: Stack, statement: str, *args: Any) -> bool:
    """Whether PostgreSQL itself refuses `statement` (a constraint, whatever wrote it)."""

    async def attempt() -> bool:
        connection = await asyncpg.connect(stack.database_url)
        try:
            async with connection.transaction():
                await connection.execute(statement, *args)
                raise _Rollback
        except asyncpg.IntegrityConstraintViolationError:
            return True
        except _Rollback:
            return False
        finally:
            await connection.close()

    return asyncio.run(attempt())


class _Rollback(Exception):
    pass


def test_names_have_a_character_set_per_kind(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s = suffix()
    # A user name is an e-mail address; nothing else (a group-like word, the view-owner marker) is one.
    for name in (f"plain-{s}", f"bootstrap,admin-{s}@example.com", f"a b-{s}@example.com", f"x`{s}@example.com"):
        refused(create(stack, "Users", {"userName": name}), 400, "INVALID_PARAMETER_VALUE")
    assert create(stack, "Users", {"userName": f"Ok.{s}+tag@Example.com"}).status_code == 201
    # Group names and application ids never hold '@' (nor commas, quotes, backticks).
    for name in (f"team@{s}", f"team,{s}", f"-team-{s}", f"team`{s}"):
        refused(create(stack, "Groups", {"displayName": name}), 400, "INVALID_PARAMETER_VALUE")
    assert create(stack, "Groups", {"displayName": f"ML team_{s}.v2"}).status_code == 201
    for name in (f"sp@{s}", f"sp {s}"):
        refused(create(stack, "ServicePrincipals", {"applicationId": name}), 400, "INVALID_PARAMETER_VALUE")
    # The CLI goes the same way.
    monkeypatch.setenv("FEDGATE_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.delenv("FEDGATE_TOKEN", raising=False)
    assert main(["users", "create", f"cli-{s}", "--url", stack.url]) != 0
    assert "e-mail address" in capsys.readouterr().err
    # And PostgreSQL refuses such rows from any writer.
    insert = "INSERT INTO principals (kind, name) VALUES ($1, $2)"
    assert database_rejects(stack, insert, "user", f"db-plain-{s}")
    assert database_rejects(stack, insert, "user", f"bootstrap,admin-{s}@example.com")
    assert database_rejects(stack, insert, "group", f"db@{s}")
    assert not database_rejects(stack, insert, "user", f"db-{s}@example.com")


def test_a_name_belongs_to_one_principal_of_any_kind(stack: Stack) -> None:
    s = suffix()
    group = f"shared-{s}"
    assert create(stack, "Groups", {"displayName": group}).status_code == 201
    refused(create(stack, "ServicePrincipals", {"applicationId": group}), 409, "RESOURCE_ALREADY_EXISTS")
    sp = create(stack, "ServicePrincipals", {"applicationId": f"app-{s}"})
    assert sp.status_code == 201, sp.text
    refused(create(stack, "Groups", {"displayName": f"app-{s}"}), 409, "RESOURCE_ALREADY_EXISTS")
    other = create(stack, "Groups", {"displayName": f"other-{s}"}).json()
    renamed = call(
        stack,
        "PATCH",
        f"{SCIM}/Groups/{other['id']}",
        {"Operations": [{"op": "replace", "path": "displayName", "value": f"app-{s}"}]},
    )
    refused(renamed, 409, "RESOURCE_ALREADY_EXISTS")
    # The database holds to it as well: one name, one principal.
    assert database_rejects(stack, "INSERT INTO principals (kind, name) VALUES ('service_principal', $1)", group)


def test_a_bare_name_in_a_grant_reaches_the_principal_of_that_name(stack: Stack) -> None:
    """UC `principal` and SQL GRANT name a group here; no user can be created to capture what they grant."""
    s = suffix()
    member = create(stack, "Users", {"userName": f"member-{s}@example.com"}).json()
    group = f"granted-{s}"
    made = create(stack, "Groups", {"displayName": group, "members": [{"value": member["id"]}]})
    assert made.status_code == 201, made.text
    # A user named like the group: before the name rules it was created, and grants to the name went to it.
    refused(create(stack, "Users", {"userName": group}), 400, "INVALID_PARAMETER_VALUE")
    changed = call(
        stack, "PATCH", f"{UC}/permissions/catalog/system", {"changes": [{"principal": group, "add": ["USE_CATALOG"]}]}
    )
    assert changed.status_code == 200, changed.text
    statement = {
        "statement": f"GRANT USE SCHEMA ON SCHEMA system.mlflow TO `{group}`",
        "warehouse_id": "any",
        "wait_timeout": "30s",
    }
    granted = call(stack, "POST", "/api/2.0/sql/statements", statement)
    assert granted.status_code == 200 and granted.json()["status"]["state"] == "SUCCEEDED", granted.text
    effective = call(stack, "GET", f"{UC}/effective-permissions/table/system.mlflow.runs_latest", None).json()[
        "privilege_assignments"
    ]
    holders = {a["principal"] for a in effective}
    assert group in holders
    mine = call(
        stack,
        "GET",
        f"{UC}/effective-permissions/table/system.mlflow.runs_latest?principal={member['userName']}",
    ).json()["privilege_assignments"][0]["privileges"]
    reached = {(p["privilege"], p.get("inherited_from_principal")) for p in mine}
    assert {("USE_CATALOG", group), ("USE_SCHEMA", group)} <= reached
    # A name that names no principal is refused, never resolved by guessing.
    unknown = call(
        stack,
        "PATCH",
        f"{UC}/permissions/catalog/system",
        {"changes": [{"principal": f"nobody-{s}", "add": ["USE_CATALOG"]}]},
    )
    refused(unknown, 404, "RESOURCE_DOES_NOT_EXIST")


def test_system_group_names_are_reserved(stack: Stack) -> None:
    """`account users`, `users` and `admins` name Databricks' system groups: no group or service principal gets
    one, in any case or with any separators; one given before they were reserved changes nothing they mean."""
    s = suffix()
    for name in ("account users", "Account Users", "account  users", "ACCOUNT_USERS", " users ", "Admins", "users"):
        refused(create(stack, "Groups", {"displayName": name}), 400, "INVALID_PARAMETER_VALUE")
    for name in ("users", "admins", "Account.Users", "account-users"):
        refused(create(stack, "ServicePrincipals", {"applicationId": name}), 400, "INVALID_PARAMETER_VALUE")
    group = create(stack, "Groups", {"displayName": f"plain-{s}"}).json()
    renamed = call(
        stack,
        "PATCH",
        f"{SCIM}/Groups/{group['id']}",
        {"Operations": [{"op": "replace", "path": "displayName", "value": "Account Users"}]},
    )
    refused(renamed, 400, "INVALID_PARAMETER_VALUE")
    assert "reserved" in renamed.json()["message"]
    # A group of that name from before, with nobody in it, written as another replica (or an old release) would.
    member = Admin.of(stack).person(f"plain-{s}@example.com")
    legacy = made_elsewhere(stack.database_url, "group", "account users", admin=False)
    try:
        # A grant to `account users` would reach the members of that group alone.
        granted = call(
            stack,
            "PATCH",
            f"{UC}/permissions/catalog/system",
            {"changes": [{"principal": "account users", "add": ["USE_CATALOG"]}]},
        )
        refused(granted, 409, "INVALID_STATE")
        assert "rename" in granted.json()["message"]
        # In SQL (and so in dynamic views) the name still means every principal of the account.
        asked = call(
            stack,
            "POST",
            "/api/2.0/sql/statements",
            {
                "statement": "SELECT is_account_group_member('account users'), "
                "is_account_group_member('Account Users')",
                "warehouse_id": "any",
                "wait_timeout": "30s",
            },
            token=member.token,
        )
        assert asked.status_code == 200 and asked.json()["status"]["state"] == "SUCCEEDED", asked.text
        assert asked.json()["result"]["data_array"] == [["true", "true"]]
        # Nothing of it changes but its name; renamed, it is a group like any other.
        joined = call(
            stack,
            "PATCH",
            f"{SCIM}/Groups/{legacy}",
            {"Operations": [{"op": "add", "path": "members", "value": [{"value": str(member.id)}]}]},
        )
        refused(joined, 400, "INVALID_PARAMETER_VALUE")
        moved = call(
            stack,
            "PATCH",
            f"{SCIM}/Groups/{legacy}",
            {"Operations": [{"op": "replace", "path": "displayName", "value": f"formerly-account-users-{s}"}]},
        )
        assert moved.status_code == 200, moved.text
    finally:
        assert call(stack, "DELETE", f"{SCIM}/Groups/{legacy}").status_code in (200, 204)
