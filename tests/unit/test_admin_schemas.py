"""The admin API's Structs answer the JSON the dicts before them answered: same fields, absent when absent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from litestar.connection import ASGIConnection
from litestar.testing import TestClient

from gateway.authz.schemas import AuditEntries, EffectivePrivilege, Permission
from gateway.core.errors import PermissionDenied, mlflow_error
from gateway.core.principal import Principal
from gateway.db.models import PrincipalRow, TokenRow
from gateway.principals.guards import account_admin
from gateway.principals.routes import _ms, scim_resource
from tests.unit.test_route_table import ADMIN_TOKEN, build_app


def encoded(value: object) -> object:
    return msgspec.json.decode(msgspec.json.encode(value))


def row(id: int, kind: str, name: str, **fields: object) -> PrincipalRow:
    values: dict[str, object] = {"display_name": "", "external_id": None, "active": True, "account_admin": False}
    return PrincipalRow(id=id, kind=kind, name=name, **(values | fields))


def test_scim_resources_keep_their_shapes() -> None:
    team = row(3, "group", "team")
    user = row(1, "user", "ada@example.com", display_name="Ada", account_admin=True, external_id="e-1")
    assert encoded(scim_resource(user, [team], [])) == {
        "id": "1",
        "displayName": "Ada",
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ada@example.com",
        "active": True,
        "emails": [{"value": "ada@example.com", "type": "work", "primary": True}],
        "externalId": "e-1",
        "roles": [{"value": "account_admin"}],
        "groups": [{"value": "3", "display": "team", "$ref": "Groups/3"}],
    }
    assert encoded(scim_resource(row(2, "service_principal", "app-1"), [], [])) == {
        "id": "2",
        "displayName": "app-1",
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal"],
        "applicationId": "app-1",
        "active": True,
        "groups": [],
    }
    assert encoded(scim_resource(team, [], [user])) == {
        "id": "3",
        "displayName": "team",
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "members": [{"value": "1", "display": "Ada", "$ref": "Users/1"}],
        "groups": [],
    }
    no_mail = encoded(scim_resource(row(4, "user", "bob"), [], []))
    assert isinstance(no_mail, dict) and no_mail["emails"] == [] and "roles" not in no_mail


def test_token_infos_audit_pages_and_grants_keep_their_shapes() -> None:
    token = TokenRow(token_id="t1", principal_id=1, comment="", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert encoded(_ms(token)) == {"token_id": "t1", "creation_time": 1767225600000, "expiry_time": -1, "comment": ""}
    assert encoded(AuditEntries(entries=[])) == {"entries": []}  # next_page_token only when there may be more
    assert encoded(Permission(permission_level="CAN_READ", inherited=False)) == {
        "permission_level": "CAN_READ",
        "inherited": False,
    }
    assert encoded(EffectivePrivilege(privilege="SELECT")) == {"privilege": "SELECT"}


def test_a_body_that_does_not_fit_is_a_400_that_names_the_field() -> None:
    client = TestClient(build_app())  # refused before the handler: no database needed
    answer = client.post(
        "/api/2.0/token/create", json={"comment": 5}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert answer.status_code == 400
    body = answer.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert body["message"] == "Invalid request body: Expected `str | null`, got `int` - at `$.comment`"


async def test_the_account_admin_guard_refuses_everyone_else_as_the_handlers_did() -> None:
    guard = account_admin("Only account admins may see or start the index sync.")
    for caller in (Principal("ada", "user"), None):
        connection = ASGIConnection[Any, Any, Any, Any](scope={"type": "http", "user": caller})  # type: ignore[typeddict-item]
        with pytest.raises(PermissionDenied) as refused:
            await guard(connection, None)  # type: ignore[arg-type]
        assert (refused.value.status, refused.value.error_code) == (403, "PERMISSION_DENIED")
        assert refused.value.message == "Only account admins may see or start the index sync."
    admin = ASGIConnection[Any, Any, Any, Any](scope={"type": "http", "user": Principal("root", "user", True)})  # type: ignore[typeddict-item]
    await guard(admin, None)  # type: ignore[arg-type]


def test_the_permissions_api_names_workspaces_through_its_port() -> None:
    """`authz.ports.Workspaces` filled by the forwarder in app.py: an unknown workspace is a 404, not a 500."""
    client = TestClient(build_app())  # no lifespan: no links loaded
    answer = client.get("/api/2.0/permissions/workspaces/team-a", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.status_code == 404
    assert answer.json() == mlflow_error("RESOURCE_DOES_NOT_EXIST", "Workspace 'team-a' not found")


def test_effective_grants_read_by_show_grants_name_where_each_comes_from() -> None:
    """uc_effective answers Structs; SQL's SHOW GRANTS reads them (inherited from a schema, through a group)."""
    from types import SimpleNamespace

    from gateway.authz.levels import ACCOUNT_DOMAIN
    from gateway.authz.policy import Grant, PolicySnapshot, PrincipalInfo
    from gateway.authz.service import AccessService
    from gateway.sql.service import SqlService
    from gateway.sql.statements import ShowGrants

    principals = {1: PrincipalInfo(1, "user", "ada@example.com"), 2: PrincipalInfo(2, "group", "analysts")}
    grants = [Grant(2, ACCOUNT_DOMAIN, "schema:system.mlflow", "SELECT")]
    objects = ["catalog:system", "schema:system.mlflow", "table:system.mlflow.runs_latest"]
    policy = SimpleNamespace(snapshot=PolicySnapshot(1, principals, [(1, 2)], grants, securables=objects))
    access = AccessService(None, policy, None, None, None)  # type: ignore[arg-type]
    caller = Principal("ada@example.com", "user", id=1, subjects=frozenset({1, 2}))
    effective = access.uc_effective(caller, "table:system.mlflow.runs_latest", "ada@example.com")
    assert encoded(effective) == {
        "privilege_assignments": [
            {
                "principal": "ada@example.com",
                "privileges": [
                    {
                        "privilege": "SELECT",
                        "inherited_from_type": "SCHEMA",
                        "inherited_from_name": "system.mlflow",
                        "inherited_from_principal": "analysts",
                    }
                ],
            }
        ]
    }
    sql = SimpleNamespace(_access=access)
    statement = ShowGrants("table", "system.mlflow.runs_latest", "ada@example.com")
    outcome = SqlService._show_grants(sql, caller, statement, None)  # type: ignore[arg-type]
    assert "analysts" in str(outcome) and "SCHEMA system.mlflow" in str(outcome)
