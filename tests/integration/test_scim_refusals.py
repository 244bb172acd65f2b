"""A SCIM change the gateway refuses is audited, as the change denied, without what the caller sent.

Before, only the refusal to take away the last active account admin left a row (its transaction is rolled back with
the change); a name the rules refuse or another principal holds, a member that does not exist, an operation the
gateway does not keep, a principal that is not there left none, so an admin's (or a stolen admin token's) probing
of the directory went unrecorded. Against the session's real gateway; each refusal is found by its request id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import Stack
from tests.support.identity import SCIM, Admin, unique
from tests.support.waiting import until

pytestmark = pytest.mark.integration
TIMEOUT = 30
MISSING = 987654321


def denied_rows(
    stack: Stack, http: Any, since: str, request_ids: Collection[str], what: str
) -> dict[str, dict[str, Any]]:
    """The audit log's denied rows of these requests, by request id, once every one of them is written."""

    def read() -> dict[str, dict[str, Any]]:
        log = http.get(
            f"{stack.url}/api/2.0/fedgate/audit-log",
            params={"since": since, "outcome": "denied", "max_results": 1000},
            timeout=TIMEOUT,
        )
        assert log.status_code == 200, log.text
        return {row["request_id"]: row for row in log.json()["entries"] if row["request_id"] in request_ids}

    return until(read, lambda found: len(found) >= len(request_ids), what)


def test_every_refused_scim_change_is_audited_without_the_values_sent(stack: Stack) -> None:
    admin = Admin.of(stack)
    http = admin.http()
    since = datetime.now(UTC).isoformat()
    secret = f"s3cret-{uuid.uuid4().hex}"  # a SCIM client may send a password: it never reaches the audit log
    taken = f"{unique('taken')}@example.com"
    admin.user(taken)
    user_id = admin.user(f"{unique('renamed')}@example.com")
    group_id = admin.group(unique("refusals"))
    made = http.post(f"{stack.url}{SCIM}/ServicePrincipals", json={"applicationId": unique("app")}, timeout=TIMEOUT)
    assert made.status_code == 201, made.text
    sp_id = int(made.json()["id"])

    def patch(*operations: dict[str, Any]) -> dict[str, Any]:
        return {"Operations": list(operations), "password": secret}

    # (method, path, body, status, action, target, the attribute names the row records)
    refusals: list[tuple[str, str, dict[str, Any] | None, int, str, str, list[str] | None]] = [
        ("POST", "Users", {"userName": "not an address", "password": secret}, 400, "user.create", "user", ["userName"]),
        ("POST", "Users", {"userName": taken.upper(), "password": secret}, 409, "user.create", "user", ["userName"]),
        ("POST", "Users", {"displayName": secret}, 400, "user.create", "user", ["displayName"]),
        (
            "POST",
            "Groups",
            {"displayName": unique("g"), "members": [{"value": str(MISSING)}]},
            400,
            "group.create",
            "group",
            ["displayName", "members"],
        ),
        ("POST", "Groups", {"displayName": "Account Users"}, 400, "group.create", "group", ["displayName"]),
        (
            "POST",
            "ServicePrincipals",
            {"applicationId": "a@b"},
            400,
            "service_principal.create",
            "service_principal",
            None,
        ),
        ("POST", "Robots", {"userName": secret}, 400, "principal.create", "principal", ["userName"]),
        (
            "PATCH",
            f"Users/{user_id}",
            patch({"op": "replace", "path": "userName", "value": taken}),
            409,
            "user.update",
            f"user:{user_id}",
            ["name"],
        ),
        (
            "PATCH",
            f"Users/{user_id}",
            patch({"op": "replace", "path": "password", "value": secret}),
            400,
            "user.update",
            f"user:{user_id}",
            None,
        ),
        (
            "PATCH",
            f"Users/{user_id}",
            patch({"op": "replace", "path": "active", "value": secret}),
            400,
            "user.update",
            f"user:{user_id}",
            None,
        ),
        (
            "PATCH",
            f"Groups/{group_id}",
            patch({"op": "add", "path": "members", "value": [{"value": str(group_id)}]}),
            400,
            "group.update",
            f"group:{group_id}",
            [],
        ),
        (
            "PATCH",
            f"ServicePrincipals/{sp_id}",
            patch({"op": "replace", "path": "applicationId", "value": unique("other")}),
            400,
            "service_principal.update",
            f"service_principal:{sp_id}",
            ["name"],
        ),
        ("PATCH", f"Groups/{group_id}", {"Operations": []}, 400, "group.update", f"group:{group_id}", None),
        (
            "PATCH",
            f"Users/{MISSING}",
            patch({"op": "replace", "path": "active", "value": False}),
            404,
            "user.update",
            f"user:{MISSING}",
            ["active"],
        ),
        ("DELETE", f"Groups/{MISSING}", None, 404, "group.delete", f"group:{MISSING}", None),
        (
            "DELETE",
            f"ServicePrincipals/{MISSING}",
            None,
            404,
            "service_principal.delete",
            f"service_principal:{MISSING}",
            None,
        ),
    ]
    expected: dict[str, tuple[str, str, int, str, list[str] | None]] = {}
    for method, path, body, status, action, target, fields in refusals:
        answer = http.request(method, f"{stack.url}{SCIM}/{path}", json=body, timeout=TIMEOUT)
        assert answer.status_code == status, (method, path, answer.status_code, answer.text)
        expected[answer.headers["x-request-id"]] = (action, target, status, answer.json()["error_code"], fields)
    # Nothing changed.
    assert http.get(f"{stack.url}{SCIM}/Users/{user_id}", timeout=TIMEOUT).json()["active"] is True

    rows = denied_rows(stack, http, since, expected, f"{len(expected)} audited SCIM refusals")
    assert set(rows) == set(expected)
    for request_id, (action, target, status, error_code, fields) in expected.items():
        row = rows[request_id]
        assert (row["actor"], row["action"], row["target"]) == ("admin", action, target), row
        details = row["details"]
        assert (details["status"], details["error_code"]) == (status, error_code), row
        assert details["reason"], row
        if fields is not None:
            assert details["fields"] == fields, row
    written = json.dumps(list(rows.values()))
    assert secret not in written, written
    assert secret[7:] not in written, written


def test_a_scim_change_whose_body_does_not_decode_is_audited(stack: Stack) -> None:
    """A SCIM create or PATCH whose body does not decode into a SCIM document (no JSON, a field of the wrong type) is
    refused before its handler runs: before, it left no row. Its answer stays what it was (400
    INVALID_PARAMETER_VALUE); its row is the change denied, with nothing the caller sent."""
    admin = Admin.of(stack)
    http = admin.http()
    since = datetime.now(UTC).isoformat()
    secret = f"s3cret-{uuid.uuid4().hex}"
    user_id = admin.user(f"{unique('undecoded')}@example.com")
    group_id = admin.group(unique("undecoded"))
    json_type = {"Content-Type": "application/json"}
    # (method, path, body as sent, action, target)
    refusals: list[tuple[str, str, bytes, str, str]] = [
        ("POST", "Users", json.dumps({"userName": secret, "active": secret}).encode(), "user.create", "user"),
        ("POST", "Groups", f'{{"displayName": "{secret}"'.encode(), "group.create", "group"),
        ("POST", "ServicePrincipals", json.dumps([secret]).encode(), "service_principal.create", "service_principal"),
        ("PATCH", f"Users/{user_id}", json.dumps({"Operations": secret}).encode(), "user.update", f"user:{user_id}"),
        (
            "PATCH",
            f"Groups/{group_id}",
            json.dumps({"Operations": [{"op": 7, "value": secret}]}).encode(),
            "group.update",
            f"group:{group_id}",
        ),
        ("PATCH", f"Users/{user_id}", b"\xff" + secret.encode(), "user.update", f"user:{user_id}"),
    ]
    expected: dict[str, tuple[str, str, str]] = {}
    for method, path, body, action, target in refusals:
        answer = http.request(method, f"{stack.url}{SCIM}/{path}", data=body, headers=json_type, timeout=TIMEOUT)
        assert answer.status_code == 400, (method, path, answer.status_code, answer.text)
        error = answer.json()
        assert {"error_code", "message"} <= set(error), error
        assert error["error_code"] == "INVALID_PARAMETER_VALUE", error
        expected[answer.headers["x-request-id"]] = (action, target, error["error_code"])
    assert http.get(f"{stack.url}{SCIM}/Users/{user_id}", timeout=TIMEOUT).json()["active"] is True

    rows = denied_rows(stack, http, since, expected, f"{len(expected)} audited undecoded SCIM bodies")
    assert set(rows) == set(expected)
    for request_id, (action, target, error_code) in expected.items():
        row = rows[request_id]
        assert (row["actor"], row["action"], row["target"]) == ("admin", action, target), row
        details = row["details"]
        assert (details["status"], details["error_code"]) == (400, error_code), row
        assert details["reason"], row
    written = json.dumps(list(rows.values()))
    assert secret not in written and secret[7:] not in written, written
