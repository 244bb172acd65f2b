"""The account keeps an active account admin: no SCIM call takes away the last one, whoever makes it.

Each test has a gateway and a database of its own (the stack's account keeps a standing admin, and a last admin,
once made, cannot be removed by design), with the bootstrap admin token, which is not a principal and does not
count as an admin.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.devstack import GatewayProcess
from tests.support.identity import SCIM, Admin, unique
from tests.support.own_gateway import own_gateway
from tests.support.waiting import until

pytestmark = pytest.mark.integration
TIMEOUT = 30
ADMIN = [{"value": "account_admin"}]


@pytest.fixture
def gateway(database_url: str, workdir: Path) -> Iterator[GatewayProcess]:
    store = "http://127.0.0.1:9"  # never called: these tests change principals only
    name = unique("last_admin")
    with own_gateway(
        database_url,
        workdir / f"{name}.toml",
        f"""
[account]
id = "7011"
[stores.a]
url = "{store}"
[[workspaces]]
name = "lab"
id = "1001"
store = "a"
""",
        prefix="last_admin",
        log_path=workdir / f"{name}.log",
    ) as own:
        yield own.process


class Account:
    def __init__(self, gateway: GatewayProcess) -> None:
        self.url = gateway.url
        self.admin = Admin(gateway.url)

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        session = self.admin.http() if token is None else Admin(self.url, token).http()
        return session.request(method, f"{self.url}{SCIM}/{path}", timeout=TIMEOUT, **kw)

    def make(self, resource: str, *, admin: bool = True, active: bool = True) -> int:
        name = {"Users": {"userName": f"{unique('u')}@example.com"}, "ServicePrincipals": {"displayName": "robot"}}
        body = {**name[resource], "active": active, "roles": ADMIN if admin else []}
        created = self.call("POST", resource, json=body)
        assert created.status_code == 201, created.text
        return int(created.json()["id"])

    def patch(self, path: str, *operations: dict[str, Any], token: str | None = None) -> requests.Response:
        return self.call("PATCH", path, token, json={"Operations": list(operations)})

    def state(self, path: str) -> tuple[bool, bool] | None:
        """(active, account admin) of the principal, None when it is gone."""
        got = self.call("GET", path)
        if got.status_code == 404:
            return None
        assert got.status_code == 200, got.text
        document = got.json()
        return document["active"], any(role["value"] == "account_admin" for role in document.get("roles") or [])

    def audited(self, action: str, target: str, count: int) -> list[dict[str, Any]]:
        """The `count` denied audit rows of `action` on `target`, once written (denials are written from a queue)."""

        def read() -> list[dict[str, Any]]:
            log = self.admin.http().get(
                f"{self.url}/api/2.0/fedgate/audit-log",
                params={"max_results": 1000, "action": action, "outcome": "denied"},
                timeout=TIMEOUT,
            )
            assert log.status_code == 200, log.text
            return [row for row in log.json().get("entries", []) if row["target"] == target]

        return until(read, lambda rows: len(rows) >= count, f"{count} denied {action} rows of {target}")


REMOVALS: list[tuple[str, dict[str, Any] | None]] = [
    ("remove roles", {"op": "remove", "path": "roles"}),
    ("remove the named role", {"op": "remove", "path": "roles", "value": ADMIN}),
    ("remove by filter", {"op": "remove", "path": 'roles[value eq "account_admin"]'}),
    ("replace roles", {"op": "replace", "path": "roles", "value": []}),
    ("replace the document's roles", {"op": "replace", "value": {"roles": [{"value": "other"}]}}),
    ("deactivate", {"op": "replace", "path": "active", "value": False}),
    ("deactivate in the document", {"op": "replace", "value": {"active": False, "displayName": "gone"}}),
    ("delete", None),
]


def remove(
    account: Account, path: str, operation: dict[str, Any] | None, token: str | None = None
) -> requests.Response:
    if operation is None:
        return account.call("DELETE", path, token)
    return account.patch(path, operation, token=token)


def refused(answer: requests.Response) -> None:
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["error_code"] == "INVALID_STATE", body
    assert "last active account admin" in body["message"], body


@pytest.mark.parametrize("resource", ["Users", "ServicePrincipals"])
def test_the_last_active_admin_is_neither_demoted_nor_deactivated_nor_deleted(
    gateway: GatewayProcess, resource: str
) -> None:
    account = Account(gateway)
    last = account.make(resource)
    path = f"{resource}/{last}"
    token = None
    if resource == "Users":  # the admin acting on itself is refused too
        token = account.admin.token_for(account.call("GET", path).json()["userName"])
    for what, operation in REMOVALS:
        for caller in (None, token):
            answer = remove(account, path, operation, caller)
            refused(answer)
            assert account.state(path) == (True, True), what
    # An inactive admin, a principal without the role and the bootstrap admin token do not count.
    account.make("Users", active=False)
    account.make("ServicePrincipals", admin=False)
    for what, operation in REMOVALS:
        refused(remove(account, path, operation))
        assert account.state(path) == (True, True), what
    # Other changes of the last admin go through.
    renamed = account.patch(path, {"op": "replace", "path": "displayName", "value": "still here"})
    assert renamed.status_code == 200, renamed.text
    kept = account.patch(path, {"op": "replace", "value": {"active": True, "roles": ADMIN}})
    assert kept.status_code == 200, kept.text
    assert account.state(path) == (True, True)


@pytest.mark.parametrize(("what", "operation"), REMOVALS, ids=[what for what, _ in REMOVALS])
def test_an_admin_is_removed_when_another_active_one_is_left(
    gateway: GatewayProcess, what: str, operation: dict[str, Any] | None
) -> None:
    account = Account(gateway)
    user = account.make("Users")
    robot = account.make("ServicePrincipals")
    answer = remove(account, f"Users/{user}", operation)
    assert answer.status_code in (200, 204), answer.text
    assert account.state(f"Users/{user}") in (None, (True, False), (False, True))
    # The service principal is the last one now.
    refused(remove(account, f"ServicePrincipals/{robot}", operation))
    assert account.state(f"ServicePrincipals/{robot}") == (True, True)
    # Made an admin again (or a new one made), the user lets the service principal go.
    if account.state(f"Users/{user}") is None:
        user = account.make("Users")
    else:
        again = account.patch(f"Users/{user}", {"op": "replace", "value": {"active": True, "roles": ADMIN}})
        assert again.status_code == 200, again.text
    gone = remove(account, f"ServicePrincipals/{robot}", operation)
    assert gone.status_code in (200, 204), gone.text
    assert account.state(f"Users/{user}") == (True, True)


def at_once(account: Account, removals: list[tuple[str, dict[str, Any] | None]]) -> dict[str, requests.Response]:
    """Each (path, operation) removal sent from a thread of its own, all at the same moment; the answers."""
    start = threading.Barrier(len(removals))
    answers: dict[str, requests.Response] = {}

    def go(path: str, operation: dict[str, Any] | None) -> None:
        start.wait()
        answers[path] = remove(account, path, operation)

    threads = [threading.Thread(target=go, args=removal) for removal in removals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_admins_removed_at_once_leave_one(gateway: GatewayProcess) -> None:
    """Every admin's removal sent at the same moment: one of them is refused, whatever their kinds and ways."""
    account = Account(gateway)
    for _ in range(3):
        admins = [account.make("Users") for _ in range(3)] + [account.make("ServicePrincipals") for _ in range(3)]
        paths = [f"Users/{i}" for i in admins[:3]] + [f"ServicePrincipals/{i}" for i in admins[3:]]
        ways = [REMOVALS[0][1], REMOVALS[5][1], None, REMOVALS[3][1], None, REMOVALS[6][1]]
        # Whatever earlier rounds left: the admin a round kept is removed in the next one, with the others.
        earlier = [
            f"{resource}/{row['id']}"
            for resource in ("Users", "ServicePrincipals")
            for row in account.call("GET", resource).json().get("Resources", [])
            if row.get("active") and row.get("roles") and f"{resource}/{row['id']}" not in paths
        ]
        paths += earlier
        ways += [REMOVALS[1][1]] * len(earlier)
        answers = at_once(account, list(zip(paths, ways, strict=True)))
        statuses = sorted(answer.status_code for answer in answers.values())
        assert statuses.count(409) == 1, {path: (a.status_code, a.text) for path, a in answers.items()}
        assert set(statuses) <= {200, 204, 409}, statuses
        kept = next(path for path, answer in answers.items() if answer.status_code == 409)
        refused(answers[kept])
        assert account.state(kept) == (True, True)
        left = [path for path in paths if account.state(path) == (True, True)]
        assert left == [kept], left


@pytest.mark.parametrize(("resource", "kind"), [("Users", "user"), ("ServicePrincipals", "service_principal")])
def test_a_refused_removal_of_the_last_admin_is_audited(gateway: GatewayProcess, resource: str, kind: str) -> None:
    """A refusal of the gateway's own is audited: the 409 of a PATCH or DELETE that would take away the last active
    admin left no row, so an admin's attempts (or a stolen admin token's) to lock the account out went unrecorded."""
    account = Account(gateway)
    last = account.make(resource)
    path, target = f"{resource}/{last}", f"{kind}:{last}"
    token = None
    if resource == "Users":  # the admin acting on itself, with a token of its own
        token = account.admin.token_for(account.call("GET", path).json()["userName"])
    patches = [operation for _, operation in REMOVALS if operation is not None]
    for operation in patches:
        refused(remove(account, path, operation, token))
    refused(remove(account, path, None))
    updates = account.audited(f"{kind}.update", target, len(patches))
    assert len(updates) == len(patches), updates
    deletes = account.audited(f"{kind}.delete", target, 1)
    assert len(deletes) == 1, deletes
    actor = account.call("GET", path).json()["userName"] if token is not None else "admin"
    assert {row["actor"] for row in updates} == {actor}, updates
    assert deletes[0]["actor"] == "admin", deletes
    for row in updates + deletes:
        assert row["details"]["error_code"] == "INVALID_STATE" and row["details"]["status"] == 409, row
        assert row["details"]["reason"] == "last active account admin", row
    assert {tuple(row["details"]["fields"]) for row in updates} >= {("account_admin",), ("active",)}, updates
    assert account.state(path) == (True, True)
