"""Which principal names exist, as a manager who is no admin could tell them by naming principals.

Every call that names a principal answers a name nobody holds with 404. Every user of a workspace creates
experiments and registered models and manages them, every signed-in principal creates and shares saved queries,
and a Unity Catalog securable's manager need not be an admin: when those calls went ahead for every other name,
any of them told which users, groups and service principals the whole account has, another workspace's too. A
manager who is no admin now names only principals of the places it holds something in (gateway/authz/reach.py)
and meets every other principal exactly as a name nobody has; admins are told plainly.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests

from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import SCIM, TIMEOUT, Admin, Person, unique

pytestmark = pytest.mark.integration

UC = "/api/2.1/unity-catalog"
STATEMENTS = "/api/2.0/sql/statements"
KINDS = {"user_name": "user", "group_name": "group", "service_principal_name": "service principal"}


def email(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}@example.com"


@dataclass(frozen=True)
class World:
    owner: Person  # CAN_USE on team-a
    teammate: Person  # CAN_USE on team-a
    # Principals of team-b alone, one of each kind: names a team-a user must not learn.
    elsewhere: Person
    group: str
    robot: str


@pytest.fixture
def world(stack: Stack) -> World:
    """New principals for each test: a test's admin ends by granting to the principals beyond team-a, which makes
    them principals of team-a or of the account."""
    admin = Admin.of(stack)
    owner, teammate, elsewhere = (admin.person(email(who)) for who in ("owner", "teammate", "elsewhere"))
    for person in (owner, teammate):
        admin.grant("workspaces/team-a", "CAN_USE", user=person.name)
    admin.grant("workspaces/team-b", "CAN_USE", user=elsewhere.name)
    group = unique("team-b-group")
    admin.group(group, [admin.user(email("team-b-member"))])
    admin.grant("workspaces/team-b", "CAN_USE", group=group)
    robot = unique("team-b-robot")
    made = admin.http().post(f"{stack.url}{SCIM}/ServicePrincipals", json={"applicationId": robot}, timeout=TIMEOUT)
    assert made.status_code == 201, made.text
    granted = admin.http().patch(
        f"{stack.url}/api/2.0/permissions/workspaces/team-b",
        json={"access_control_list": [{"service_principal_name": robot, "permission_level": "CAN_USE"}]},
        timeout=TIMEOUT,
    )
    assert granted.status_code == 200, granted.text
    return World(owner, teammate, elsewhere, group, robot)


def probes(world: World) -> list[tuple[str, str, str]]:
    """(field, a principal's name beyond team-a, a name nobody holds) for each kind of principal."""
    return [
        ("user_name", world.elsewhere.name, email("nobody")),
        ("group_name", world.group, unique("no-group")),
        ("service_principal_name", world.robot, unique("no-robot")),
    ]


def same_as_nobody(
    calls: Callable[[str, str], list[requests.Response]], field: str, existing: str, nobody: str, message: str
) -> None:
    """The calls answer a name beyond the caller's reach exactly as a name nobody holds: 404, one message."""
    seen = [(r.status_code, r.text.replace(existing, "<name>")) for r in calls(field, existing)]
    unseen = [(r.status_code, r.text.replace(nobody, "<name>")) for r in calls(field, nobody)]
    assert seen == unseen, (seen, unseen)
    assert all(status == 404 and message in text for status, text in seen), seen


def test_an_owner_meets_principals_outside_the_workspace_as_names_nobody_has(stack: Stack, world: World) -> None:
    """The permissions API of experiments and registered models: any user of team-a who creates one manages it.
    PUT and PATCH answered `No user named ...` for a name nobody has and granted to any other name."""
    owner = world.owner.http(stack)
    created = owner.post(f"{stack.url}/api/2.0/mlflow/experiments/create", json={"name": unique("probe")})
    assert created.status_code == 200, created.text
    experiment = f"experiments/{created.json()['experiment_id']}"
    name = unique("probe-model")
    made = owner.post(f"{stack.url}/api/2.0/mlflow/registered-models/create", json={"name": name})
    assert made.status_code == 200, made.text
    found = owner.get(f"{stack.url}/api/2.0/mlflow/databricks/registered-models/get", params={"name": name})
    assert found.status_code == 200, found.text
    model = f"registered-models/{found.json()['registered_model_databricks']['id']}"

    def calls(field: str, principal: str) -> list[requests.Response]:
        acl = {"access_control_list": [{field: principal, "permission_level": "CAN_READ"}]}
        return [
            getattr(owner, method)(f"{stack.url}/api/2.0/permissions/{target}", json=acl, timeout=TIMEOUT)
            for target in (experiment, model)
            for method in ("put", "patch")
        ]

    for field, existing, nobody in probes(world):
        same_as_nobody(calls, field, existing, nobody, f"No {KINDS[field]} named '<name>'.")
    for target in (experiment, model):  # nothing was granted to them
        listed = owner.get(f"{stack.url}/api/2.0/permissions/{target}").json()["access_control_list"]
        assert {world.elsewhere.name, world.group, world.robot}.isdisjoint(
            entry.get("user_name") or entry.get("group_name") or entry.get("service_principal_name") for entry in listed
        ), listed

    # A teammate (CAN_USE on team-a), and a group with a member of team-a, are named as before.
    team = unique("team-a-group")
    Admin.of(stack).group(team, [world.teammate.id])
    for entry in ({"user_name": world.teammate.name}, {"group_name": team}):
        shared = owner.patch(
            f"{stack.url}/api/2.0/permissions/{experiment}",
            json={"access_control_list": [{**entry, "permission_level": "CAN_READ"}]},
        )
        assert shared.status_code == 200, shared.text
    # An admin of team-a names anyone, and is told plainly of a name nobody has.
    boss = Admin.of(stack).person(email("ws-admin"))
    Admin.of(stack).grant("workspaces/team-a", "CAN_MANAGE", user=boss.name)
    for field, existing, nobody in probes(world):
        for principal, status in ((existing, 200), (nobody, 404)):
            answer = boss.http(stack).patch(
                f"{stack.url}/api/2.0/permissions/{experiment}",
                json={"access_control_list": [{field: principal, "permission_level": "CAN_READ"}]},
            )
            assert answer.status_code == status, answer.text


def test_a_catalog_manager_meets_principals_outside_its_places_as_names_nobody_has(stack: Stack, world: World) -> None:
    """Unity Catalog grants, by REST (PATCH, and the `principal` of a grants list and of effective permissions) and
    by SQL (GRANT, REVOKE, SHOW GRANTS): a manager of a securable who is no admin answered `No principal named` for
    a name nobody has and granted to (or listed) any other."""
    admin = Admin.of(stack)
    catalog = f"probe_{uuid.uuid4().hex[:8]}"
    view = f"{catalog}.mlflow.runs"
    curator = world.owner  # CAN_USE on team-a; MANAGE on a catalog of its own
    for statement in (
        f"CREATE VIEW {view} AS SELECT run_id FROM system.mlflow.runs_latest",
        f"GRANT MANAGE ON CATALOG {catalog} TO `{curator.name}`",
    ):
        answer = sql(stack, ADMIN_TOKEN, statement)
        assert answer.json()["status"]["state"] == "SUCCEEDED", answer.text
    token = curator.token

    def calls(field: str, principal: str) -> list[requests.Response]:
        change = {"changes": [{"principal": principal, "add": ["USE_CATALOG"]}]}
        return [
            uc(stack, token, "PATCH", f"permissions/catalog/{catalog}", json=change),
            uc(stack, token, "GET", f"permissions/catalog/{catalog}", params={"principal": principal}),
            uc(stack, token, "GET", f"effective-permissions/table/{view}", params={"principal": principal}),
        ]

    def statements(field: str, principal: str) -> list[requests.Response]:
        return [
            sql(stack, token, f"GRANT SELECT ON VIEW {view} TO `{principal}`"),
            sql(stack, token, f"REVOKE SELECT ON VIEW {view} FROM `{principal}`"),
            sql(stack, token, f"SHOW GRANTS `{principal}` ON CATALOG {catalog}"),
        ]

    for field, existing, nobody in probes(world):
        same_as_nobody(calls, field, existing, nobody, "No principal named '<name>'.")
        same_as_nobody(statements, field, existing, nobody, "No principal named '<name>'.")
    listed = uc(stack, ADMIN_TOKEN, "GET", f"permissions/table/{view}").json()
    held = {item["principal"] for item in listed.get("privilege_assignments", [])}
    assert held.isdisjoint({world.elsewhere.name, world.group, world.robot}), held

    # A teammate of a workspace it uses is named as before, by REST and by SQL.
    granted = uc(
        stack,
        token,
        "PATCH",
        f"permissions/catalog/{catalog}",
        json={"changes": [{"principal": world.teammate.name, "add": ["USE_CATALOG"]}]},
    )
    assert granted.status_code == 200, granted.text
    shown = sql(stack, token, f"GRANT SELECT ON VIEW {view} TO `{world.teammate.name}`")
    assert shown.json()["status"]["state"] == "SUCCEEDED", shown.text
    # An account admin names anyone, and is told plainly of a name nobody has.
    for _, existing, nobody in probes(world):
        for principal, status in ((existing, 200), (nobody, 404)):
            change = {"changes": [{"principal": principal, "add": ["USE_CATALOG"]}]}
            answer = uc(stack, admin.token, "PATCH", f"permissions/catalog/{catalog}", json=change)
            assert answer.status_code == status, answer.text


def test_a_saved_querys_manager_meets_principals_outside_its_places_as_names_nobody_has(
    stack: Stack, world: World
) -> None:
    """Saved queries' permissions (`/api/2.0/permissions/queries/{id}`): every signed-in principal creates a query
    and manages it. PUT and PATCH answered `No user named ...` for a name nobody has and shared with any other."""
    owner = world.owner.http(stack, workspace=None)
    created = owner.post(f"{stack.url}/api/2.0/sql/queries", json={"query": {"display_name": unique("probe")}})
    assert created.status_code == 200, created.text
    path = f"{stack.url}/api/2.0/permissions/queries/{created.json()['id']}"

    def calls(field: str, principal: str) -> list[requests.Response]:
        acl = {"access_control_list": [{field: principal, "permission_level": "CAN_VIEW"}]}
        return [getattr(owner, method)(path, json=acl, timeout=TIMEOUT) for method in ("put", "patch")]

    for field, existing, nobody in probes(world):
        same_as_nobody(calls, field, existing, nobody, f"No {KINDS[field]} named '<name>'.")
    assert len(owner.get(path).json()["access_control_list"]) == 1  # its owner's alone: nothing was shared

    # A teammate of a workspace it uses is named as before.
    shared = owner.patch(
        path, json={"access_control_list": [{"user_name": world.teammate.name, "permission_level": "CAN_VIEW"}]}
    )
    assert shared.status_code == 200, shared.text
    # An account admin names anyone, and is told plainly of a name nobody has.
    admin = Admin.of(stack).http()
    for field, existing, nobody in probes(world):
        for principal, status in ((existing, 200), (nobody, 404)):
            answer = admin.patch(
                path, json={"access_control_list": [{field: principal, "permission_level": "CAN_VIEW"}]}
            )
            assert answer.status_code == status, answer.text


def uc(stack: Stack, token: str, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(
        method,
        f"{stack.url}{UC}/{path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
        **kwargs,  # type: ignore[arg-type]
    )


def sql(stack: Stack, token: str, statement: str) -> requests.Response:
    answer = requests.post(
        f"{stack.url}{STATEMENTS}",
        json={"statement": statement, "wait_timeout": "30s"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    assert answer.status_code in (200, 404), answer.text
    return answer
