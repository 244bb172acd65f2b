"""Who can see what, over the access console's API, against a real gateway, PostgreSQL and mlflow stores.

Ann holds things every way there is: her own experiment (owner), a direct grant, a group's grant through a
nested group, a workspace's level, Unity Catalog privileges inherited from the catalog, a secret scope
through a group. An account admin sees all of it with where each comes from; a workspace admin only what
is in its workspace; anyone else is refused. A revoke takes the access away for Ann's stock client at once.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.conftest import Stack
from tests.support.browser import new_tab, shot
from tests.support.identity import SCIM, Admin, Person, unique

pytestmark = pytest.mark.integration

API = "/api/2.0/fedgate/console/access"
TIMEOUT = 60


@dataclass
class World:
    admin: Admin
    boss: Person  # an account admin with a token of their own
    ann: Person  # in group inner, which is in group outer
    wadmin: Person  # CAN_MANAGE on team-a only
    carl: Person  # CAN_USE on team-a: a plain user
    dave: Person  # holds something in team-b only
    inner: tuple[int, str]
    outer: tuple[int, str]
    owned: str  # an experiment Ann created (she owns it)
    shared: str  # an experiment of the admin's: Ann CAN_EDIT directly, outer CAN_READ
    view: str  # a dynamic view the account admin made; Ann reads it through inner, outer and her own grant
    scope: str  # a secret scope of team-a; inner holds READ on it


def call(stack: Stack, person: Person | Admin, method: str, path: str, **kwargs: Any) -> requests.Response:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {person.token}"
    return http.request(method, f"{stack.url}{API}{path}", timeout=TIMEOUT, **kwargs)


def ok(answer: requests.Response) -> Any:
    assert answer.status_code == 200, answer.text
    return answer.json()


def create_experiment(stack: Stack, token: str, name: str) -> str:
    created = requests.post(
        f"{stack.url}/api/2.0/mlflow/experiments/create",
        json={"name": name},
        headers={"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": "team-a"},
        timeout=TIMEOUT,
    )
    assert created.status_code == 200, created.text
    return str(created.json()["experiment_id"])


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    suffix, admin = uuid.uuid4().hex[:6], Admin.of(stack)
    boss_name = f"boss.{suffix}@example.com"
    made = admin.http().post(
        f"{stack.url}{SCIM}/Users",
        json={"userName": boss_name, "roles": [{"value": "account_admin"}]},
        timeout=TIMEOUT,
    )
    assert made.status_code == 201, made.text
    boss = Person(boss_name, int(made.json()["id"]), admin.token_for(boss_name))
    ann = admin.person(f"ann.{suffix}@example.com")
    wadmin = admin.person(f"wadmin.{suffix}@example.com")
    carl = admin.person(f"carl.{suffix}@example.com")
    dave = admin.person(f"dave.{suffix}@example.com")
    inner_name, outer_name = f"inner-{suffix}", f"outer-{suffix}"
    inner = admin.group(inner_name, [ann.id])
    outer = admin.group(outer_name, [inner])
    admin.grant("workspaces/team-a", "CAN_USE", group=outer_name)  # Ann enters team-a through inner, outer
    admin.grant("workspaces/team-a", "CAN_MANAGE", user=wadmin.name)
    admin.grant("workspaces/team-a", "CAN_USE", user=carl.name)
    admin.grant("workspaces/team-b", "CAN_READ", user=dave.name)
    admin.grant("workspaces/team-b", "CAN_READ", user=ann.name)
    owned = create_experiment(stack, ann.token, unique("anns"))
    shared = create_experiment(stack, admin.token, unique("shared"))
    admin.grant(f"experiments/{shared}", "CAN_EDIT", user=ann.name, workspace="team-a")
    admin.grant(f"experiments/{shared}", "CAN_READ", group=outer_name, workspace="team-a")
    uc = admin.http()
    for securable, principal, privilege in (
        ("catalog/system", inner_name, "USE_CATALOG"),
        ("schema/system.mlflow", ann.name, "USE_SCHEMA"),
        ("table/system.mlflow.runs_latest", ann.name, "SELECT"),
    ):
        changed = uc.patch(
            f"{stack.url}/api/2.1/unity-catalog/permissions/{securable}",
            json={"changes": [{"principal": principal, "add": [privilege]}]},
            timeout=TIMEOUT,
        )
        assert changed.status_code == 200, changed.text
    # A dynamic view of the account admin's, read through grants on its catalog, schema and itself.
    catalog = f"gov{suffix}"
    for statement in (
        f"CREATE VIEW {catalog}.mlflow.team_a_runs AS SELECT * FROM system.mlflow.runs_latest "
        "WHERE workspace_id = '1001'",
        f"GRANT USE CATALOG ON CATALOG {catalog} TO `{outer_name}`",
        f"GRANT USE SCHEMA ON SCHEMA {catalog}.mlflow TO `{ann.name}`",
        f"GRANT SELECT ON VIEW {catalog}.mlflow.team_a_runs TO `{inner_name}`",
    ):
        ran = requests.post(
            f"{stack.url}/api/2.0/sql/statements",
            json={"statement": statement, "warehouse_id": "any", "wait_timeout": "30s"},
            headers={"Authorization": f"Bearer {boss.token}"},
            timeout=TIMEOUT,
        )
        assert ran.status_code == 200 and ran.json()["status"]["state"] == "SUCCEEDED", ran.text
    scope = unique("keys")
    secrets = admin.http("team-a")
    assert secrets.post(f"{stack.url}/api/2.0/secrets/scopes/create", json={"scope": scope}).status_code == 200
    put = secrets.post(
        f"{stack.url}/api/2.0/secrets/acls/put", json={"scope": scope, "principal": inner_name, "permission": "READ"}
    )
    assert put.status_code == 200, put.text
    view = f"{catalog}.mlflow.team_a_runs"
    inner_ref, outer_ref = (inner, inner_name), (outer, outer_name)
    return World(admin, boss, ann, wadmin, carl, dave, inner_ref, outer_ref, owned, shared, view, scope)


def by_object(items: list[dict[str, Any]], obj: str) -> dict[str, Any]:
    found = [item for item in items if item["object"] == obj]
    assert len(found) == 1, (obj, items)
    return found[0]


def test_an_account_admin_sees_every_permission_and_where_it_comes_from(stack: Stack, world: World) -> None:
    effective = ok(call(stack, world.boss, "GET", f"/principals/{world.ann.id}/effective"))
    assert effective["principal"]["name"] == world.ann.name and effective["account_admin"] is False
    assert "limited_to" not in effective
    inner, outer = world.inner, world.outer

    team_a = by_object(effective["workspaces"], "workspace:w1001")
    assert team_a["effective"] == "CAN_USE"
    [entered] = team_a["sources"]
    assert entered["origin"] == "group" and entered["holder"]["name"] == outer[1]
    assert [g["name"] for g in entered["via"]] == [inner[1]]  # through the nested group
    assert entered["grant"] == {
        "principal_id": outer[0],
        "domain": "w1001",
        "object": "workspace:w1001",
        "privilege": "CAN_USE",
    }
    assert entered["affects"] >= 2  # inner and Ann
    team_b = by_object(effective["workspaces"], "workspace:w1002")
    assert team_b["effective"] == "CAN_READ" and [s["origin"] for s in team_b["sources"]] == ["direct"]

    owned = by_object(effective["experiments"], f"experiment:w1001/{world.owned}")
    assert owned["effective"] == "CAN_MANAGE" and [s["origin"] for s in owned["sources"]] == ["owner"]
    shared = by_object(effective["experiments"], f"experiment:w1001/{world.shared}")
    assert shared["effective"] == "CAN_EDIT"
    assert [(s["origin"], s["privilege"], s["holder"]["name"]) for s in shared["sources"]] == [
        ("direct", "CAN_EDIT", world.ann.name),
        ("group", "CAN_READ", outer[1]),
    ]
    # CAN_USE on the workspace gives nothing on an experiment, and is not listed as a source of one.
    assert all(s["origin"] != "inherited" for s in shared["sources"])

    scope = by_object(effective["secret_scopes"], f"secret_scope:w1001/{world.scope}")
    assert scope["effective"] == "READ"
    [through] = scope["sources"]
    assert (through["origin"], through["holder"]["name"], through["via"]) == ("group", inner[1], [])

    runs = by_object(effective["system_tables"], "table:system.mlflow.runs_latest")
    assert runs["can_read"] is True and runs["privileges"] == ["SELECT", "USE_CATALOG", "USE_SCHEMA"]
    assert [(s["privilege"], s["origin"], s.get("inherited_from")) for s in runs["sources"]] == [
        ("SELECT", "direct", None),
        ("USE_SCHEMA", "inherited", "schema system.mlflow"),
        ("USE_CATALOG", "inherited", "catalog system"),
    ]
    experiments_table = by_object(effective["system_tables"], "table:system.mlflow.experiments_latest")
    assert experiments_table["can_read"] is False  # no SELECT there
    view = by_object(effective["system_tables"], f"table:{world.view}")
    assert (view["kind"], view["owner"], view["can_read"]) == ("view", world.boss.name, True)
    assert [
        (s["privilege"], s["origin"], s["holder"]["name"], [v["name"] for v in s["via"]]) for s in view["sources"]
    ] == [
        ("SELECT", "group", inner[1], []),
        ("USE_SCHEMA", "inherited", world.ann.name, []),
        ("USE_CATALOG", "inherited", outer[1], [inner[1]]),
    ]

    # The groups page: Ann is in inner directly and in outer through inner; outer's nested groups.
    detail = ok(call(stack, world.boss, "GET", f"/principals/{world.ann.id}"))
    assert [(g["group"]["name"], [v["name"] for v in g["via"]]) for g in detail["groups"]] == [
        (inner[1], []),
        (outer[1], [inner[1]]),
    ]
    group = ok(call(stack, world.boss, "GET", f"/principals/{outer[0]}"))
    assert [m["name"] for m in group["members"]] == [inner[1]]
    assert group["nested_groups"] == [{"group": {"id": inner[0], "kind": "group", "name": inner[1]}, "members": []}]
    listed = ok(call(stack, world.boss, "GET", "/principals", params={"filter": world.ann.name.split("@")[0]}))
    assert [p["id"] for p in listed["principals"]] == [world.ann.id]
    groups = ok(call(stack, world.boss, "GET", "/principals", params={"kind": "group", "filter": inner[1]}))
    assert [(p["name"], p["member_count"]) for p in groups["principals"]] == [(inner[1], 1)]


def test_a_workspace_admin_sees_and_revokes_only_within_their_workspace(stack: Stack, world: World) -> None:
    assert ok(call(stack, world.wadmin, "GET", "/viewer")) == {"account_admin": False, "workspaces": ["team-a"]}
    effective = ok(call(stack, world.wadmin, "GET", f"/principals/{world.ann.id}/effective"))
    assert effective["limited_to"] == ["team-a"]
    assert [w["object"] for w in effective["workspaces"]] == ["workspace:w1001"]  # not team-b
    assert all(e["workspace"] == "team-a" for e in effective["experiments"] + effective["secret_scopes"])
    assert effective["system_tables"] == []  # Unity Catalog grants are the account's
    # Dave holds something in team-b only: to team-a's admin he does not exist.
    refused = call(stack, world.wadmin, "GET", f"/principals/{world.dave.id}/effective")
    assert refused.status_code == 404 and refused.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    listed = ok(call(stack, world.wadmin, "GET", "/principals", params={"filter": world.dave.name}))
    assert listed["principals"] == []
    listed = ok(call(stack, world.wadmin, "GET", "/principals", params={"filter": world.ann.name}))
    assert [p["id"] for p in listed["principals"]] == [world.ann.id]

    # Revoking outside team-a is refused, and changes nothing.
    for grant in (
        {"principal_id": world.ann.id, "domain": "w1002", "object": "workspace:w1002", "privilege": "CAN_READ"},
        {
            "principal_id": world.ann.id,
            "domain": "account",
            "object": "schema:system.mlflow",
            "privilege": "USE_SCHEMA",
        },
    ):
        answer = call(stack, world.wadmin, "POST", "/revoke", json=grant)
        assert answer.status_code == 403 and answer.json()["error_code"] == "PERMISSION_DENIED", answer.text
    still = ok(call(stack, world.boss, "GET", f"/principals/{world.ann.id}/effective"))
    assert by_object(still["workspaces"], "workspace:w1002")["effective"] == "CAN_READ"

    # The audit log shows team-a's rows only.
    rows = ok(call(stack, world.wadmin, "GET", "/audit", params={"max_results": 200}))["entries"]
    assert rows
    for row in rows:
        target, details = row["target"], row["details"]
        assert (
            target == "workspace:w1001"
            or target.split(":", 1)[-1].startswith("w1001/")
            or details.get("workspace") == "team-a"
            or details.get("workspace_id") == "1001"
        ), row
    assert ok(call(stack, world.wadmin, "GET", "/audit", params={"workspace": "team-b"}))["entries"] == []


def granted(row: dict[str, Any]) -> str | None:
    """The principal a permissions change names first."""
    acl = row["details"].get("acl") or [{}]
    return acl[0].get("principal")


def test_a_workspace_admins_audit_pages_show_no_account_wide_numbers(stack: Stack, world: World) -> None:
    """Audit rows are numbered by one sequence for the whole account: a workspace admin's page showed each row's
    number and paged on with it, so the gaps told it how many rows went to workspaces it may not see."""
    started = datetime.now(UTC) - timedelta(seconds=5)
    groups = [unique("audited") for _ in range(6)]
    for name in groups:
        world.admin.group(name)
    world.admin.grant("workspaces/team-a", "CAN_READ", group=groups[0])
    for name in groups[1:4]:  # the other workspace's rows, between team-a's
        world.admin.grant("workspaces/team-b", "CAN_READ", group=name)
    world.admin.grant("workspaces/team-a", "CAN_READ", group=groups[4])
    world.admin.grant("workspaces/team-a", "CAN_READ", group=groups[5])
    filters = {"target": "workspace:w1001", "action": "permissions.", "since": started.isoformat()}

    def walk(viewer: Person) -> tuple[list[dict[str, Any]], list[str]]:
        entries, tokens, token = [], [], None
        while True:
            params = {**filters, "max_results": 1, **({"page_token": token} if token else {})}
            page = ok(call(stack, viewer, "GET", "/audit", params=params))
            entries += page["entries"]
            token = page.get("next_page_token")
            if not token:
                return entries, tokens
            tokens.append(token)
            assert len(tokens) < 20, tokens

    seen, tokens = walk(world.wadmin)
    mine = [granted(e) for e in seen if granted(e) in groups]
    assert mine == [groups[5], groups[4], groups[0]]  # newest first, whole
    assert all("id" not in e for e in seen), seen
    # What the account admin sees of the same rows: their numbers, with team-b's three between the first two.
    everything, _ = walk(world.boss)
    numbered = {granted(e): e["id"] for e in everything}
    assert numbered[groups[4]] - numbered[groups[0]] >= 4
    assert [{k: v for k, v in e.items() if k != "id"} for e in everything] == seen
    # The tokens are sealed: none of them a number or alike, and one changed, made up or a row's id is refused.
    assert not any(token.isdigit() for token in tokens) and len(set(tokens)) == len(tokens), tokens
    for bad in (str(numbered[groups[4]]), tokens[0][:-2] + ("AA" if tokens[0][-2:] != "AA" else "BB"), "x" * 48):
        refused = call(stack, world.wadmin, "GET", "/audit", params={**filters, "page_token": bad})
        assert refused.status_code == 400 and refused.json()["error_code"] == "INVALID_PARAMETER_VALUE", refused.text


def principal_pages(stack: Stack, viewer: Person, text: str, size: int) -> list[list[int]]:
    """The ids of every page of the principals list filtered by `text`, `size` to a page, following the tokens."""
    pages, token = [], None
    while True:
        params: dict[str, Any] = {"kind": "user", "filter": text, "max_results": size}
        if token is not None:
            params["page_token"] = token
        page = ok(call(stack, viewer, "GET", "/principals", params=params))
        pages.append([p["id"] for p in page["principals"]])
        token = page.get("next_page_token")
        if token is None or len(pages) > 10:
            return pages


def test_a_workspace_admin_is_told_nothing_of_principals_or_workspaces_beyond_its_reach(
    stack: Stack, world: World
) -> None:
    # One user of team-a's between two beyond its reach: one of team-b's, one holding nothing at all.
    suffix = uuid.uuid4().hex[:6]
    before, seen, after = (f"{letter}-{suffix}@example.com" for letter in "amz")
    ids = [world.admin.user(name) for name in (before, seen, after)]
    world.admin.grant("workspaces/team-b", "CAN_READ", user=before)
    world.admin.grant("workspaces/team-a", "CAN_USE", user=seen)
    # Paging one at a time tells team-a's admin of its user alone: no token counting the others around it.
    assert principal_pages(stack, world.wadmin, suffix, 1) == [[ids[1]]]
    assert principal_pages(stack, world.wadmin, suffix, 2) == [[ids[1]]]
    assert principal_pages(stack, world.boss, suffix, 1) == [[ids[0]], [ids[1]], [ids[2]]]
    assert principal_pages(stack, world.boss, suffix, 2) == [ids[:2], ids[2:]]

    # Revoking a scope's users entry, or a grant, in team-b (w1002) and in a workspace nobody has: the same 403,
    # in the request's words, never team-b's name.
    for workspace_id in ("1002", "987654"):
        for body in (
            {"workspace_users": True, "object": f"secret_scope:w{workspace_id}/keys"},
            {
                "principal_id": world.carl.id,
                "domain": f"w{workspace_id}",
                "object": f"workspace:w{workspace_id}",
                "privilege": "CAN_READ",
            },
        ):
            answer = call(stack, world.wadmin, "POST", "/revoke", json=body)
            assert answer.status_code == 403, answer.text
            refused = answer.json()
            assert (refused["error_code"], refused["message"]) == (
                "PERMISSION_DENIED",
                f"{world.wadmin.name} does not administer the workspace of {body['object']}.",
            )
    # Who administers it is still told when a workspace does not exist.
    missing = call(
        stack, world.boss, "POST", "/revoke", json={"workspace_users": True, "object": "secret_scope:w987654/keys"}
    )
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", missing.text


def test_everyone_else_is_refused(stack: Stack, world: World) -> None:
    grant = {
        "principal_id": world.ann.id,
        "domain": "w1001",
        "object": f"experiment:w1001/{world.shared}",
        "privilege": "CAN_EDIT",
    }
    for method, path, body in (
        ("GET", "/viewer", None),
        ("GET", "/principals", None),
        ("GET", f"/principals/{world.ann.id}", None),
        ("GET", f"/principals/{world.carl.id}/effective", None),  # not even their own
        ("GET", "/audit", None),
        ("POST", "/revoke", grant),
        ("POST", "/revoke", {"not": "a grant"}),  # refused before the body is read
    ):
        answer = call(stack, world.carl, method, path, json=body)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.json()["error_code"] == "PERMISSION_DENIED"
    anonymous = requests.get(f"{stack.url}{API}/principals", timeout=TIMEOUT)
    assert anonymous.status_code == 401
    # Nothing changed.
    effective = ok(call(stack, world.boss, "GET", f"/principals/{world.ann.id}/effective"))
    assert by_object(effective["experiments"], f"experiment:w1001/{world.shared}")["effective"] == "CAN_EDIT"


def test_bad_inputs_get_mlflow_style_errors(stack: Stack, world: World) -> None:
    for method, path, kwargs in (
        ("GET", "/principals", {"params": {"kind": "robot"}}),
        ("GET", "/principals", {"params": {"page_token": "x'; drop"}}),
        ("GET", "/principals", {"params": {"max_results": "0"}}),
        ("GET", "/audit", {"params": {"since": "yesterday"}}),
        ("GET", "/audit", {"params": {"page_token": "-1"}}),
        ("POST", "/revoke", {"json": {"principal_id": world.ann.id}}),
        (
            "POST",
            "/revoke",
            {"json": {"principal_id": world.ann.id, "domain": "w1001", "object": "x,y", "privilege": "READ"}},
        ),
        (
            "POST",
            "/revoke",
            {
                "json": {
                    "principal_id": world.ann.id,
                    "domain": "w1001",
                    "object": "workspace:w1002",
                    "privilege": "CAN_READ",
                }
            },
        ),
        ("POST", "/revoke", {"json": {"workspace_users": True, "object": "experiment:w1001/1"}}),
        ("POST", "/revoke", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}),
        ("POST", "/revoke", {"json": {"principal_id": "ann"}}),
    ):
        answer = call(stack, world.boss, method, path, **kwargs)
        assert answer.status_code == 400, (path, kwargs, answer.text)
        body = answer.json()
        assert body["error_code"] == "INVALID_PARAMETER_VALUE" and body["message"], body
    missing = call(stack, world.boss, "GET", "/principals/987654321/effective")
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    gone = call(
        stack,
        world.boss,
        "POST",
        "/revoke",
        json={"principal_id": world.carl.id, "domain": "w1001", "object": "workspace:w1001", "privilege": "CAN_MANAGE"},
    )
    assert gone.status_code == 404 and gone.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


@pytest.fixture
def ann_client(stack: Stack, world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:
    """Ann's stock MLflow client, configured as she would: the gateway's URL, her token, team-a."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", world.ann.token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(stack.url)
    mlflow.set_workspace("team-a")
    yield MlflowClient()
    mlflow.set_workspace(None)
    os.environ.pop("MLFLOW_WORKSPACE", None)


def error_code(call_: Any) -> str:
    with pytest.raises(MlflowException) as excinfo:
        call_()
    return str(excinfo.value.error_code)


def test_a_revoke_takes_the_access_away_at_once_and_is_audited(
    stack: Stack, world: World, ann_client: MlflowClient
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=5)
    experiment = world.shared
    ann_client.set_experiment_tag(experiment, "before", "yes")  # CAN_EDIT, directly
    effective = ok(call(stack, world.boss, "GET", f"/principals/{world.ann.id}/effective"))
    direct, through_group = by_object(effective["experiments"], f"experiment:w1001/{experiment}")["sources"]

    revoked = ok(call(stack, world.boss, "POST", "/revoke", json=direct["grant"]))
    assert revoked["holder"]["name"] == world.ann.name
    # At once: her very next call may read (the group's CAN_READ) but no longer edit.
    assert error_code(lambda: ann_client.set_experiment_tag(experiment, "after", "yes")) == "PERMISSION_DENIED"
    assert ann_client.get_experiment(experiment).tags["before"] == "yes"
    again = call(stack, world.boss, "POST", "/revoke", json=direct["grant"])
    assert again.status_code == 404 and again.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    # The group's grant, revoked by team-a's admin: the experiment is gone for her.
    assert through_group["holder"]["name"] == world.outer[1]
    ok(call(stack, world.wadmin, "POST", "/revoke", json=through_group["grant"]))
    assert error_code(lambda: ann_client.get_experiment(experiment)) == "RESOURCE_DOES_NOT_EXIST"
    after = ok(call(stack, world.boss, "GET", f"/principals/{world.ann.id}/effective"))
    assert all(e["object"] != f"experiment:w1001/{experiment}" for e in after["experiments"])

    # Both are in the audit log, found by its filters, newest first, one page at a time.
    filters = {"action": "grants.revoke", "target": f"experiment:w1001/{experiment}", "since": started.isoformat()}
    first = ok(call(stack, world.boss, "GET", "/audit", params={**filters, "max_results": 1}))
    assert [(e["actor"], e["details"]["principal"]) for e in first["entries"]] == [(world.wadmin.name, world.outer[1])]
    second = ok(
        call(
            stack,
            world.boss,
            "GET",
            "/audit",
            params={**filters, "max_results": 1, "page_token": first["next_page_token"]},
        )
    )
    assert [(e["actor"], e["details"]["principal"]) for e in second["entries"]] == [(world.boss.name, world.ann.name)]
    assert first["entries"][0]["id"] > second["entries"][0]["id"]
    by_actor = ok(call(stack, world.boss, "GET", "/audit", params={**filters, "actor": world.wadmin.name}))
    assert len(by_actor["entries"]) == 1
    assert ok(call(stack, world.boss, "GET", "/audit", params={"action": "grants.", "actor": world.boss.name}))[
        "entries"
    ]
    before_start = ok(
        call(
            stack, world.boss, "GET", "/audit", params={**filters, "until": (started - timedelta(hours=1)).isoformat()}
        )
    )
    assert before_start["entries"] == []
    in_team_a = ok(call(stack, world.boss, "GET", "/audit", params={**filters, "workspace": "team-a"}))
    assert len(in_team_a["entries"]) == 2
    assert ok(call(stack, world.boss, "GET", "/audit", params={**filters, "workspace": "team-b"}))["entries"] == []


def test_a_secret_scopes_users_entry_is_explained_and_revoked(stack: Stack, world: World) -> None:
    scope = unique("shared")
    secrets = world.admin.http("team-a")
    assert secrets.post(f"{stack.url}/api/2.0/secrets/scopes/create", json={"scope": scope}).status_code == 200
    put = secrets.post(
        f"{stack.url}/api/2.0/secrets/acls/put", json={"scope": scope, "principal": "users", "permission": "READ"}
    )
    assert put.status_code == 200, put.text
    listed = requests.get(
        f"{stack.url}/api/2.0/secrets/list",
        params={"scope": scope},
        headers={"Authorization": f"Bearer {world.carl.token}", "X-MLFLOW-WORKSPACE": "team-a"},
        timeout=TIMEOUT,
    )
    assert listed.status_code == 200, listed.text
    effective = ok(call(stack, world.wadmin, "GET", f"/principals/{world.carl.id}/effective"))
    entry = by_object(effective["secret_scopes"], f"secret_scope:w1001/{scope}")
    [users] = entry["sources"]
    assert entry["effective"] == "READ" and users["origin"] == "workspace users" and "grant" not in users
    ok(call(stack, world.wadmin, "POST", "/revoke", json={"workspace_users": True, "object": entry["object"]}))
    refused = requests.get(
        f"{stack.url}/api/2.0/secrets/list",
        params={"scope": scope},
        headers={"Authorization": f"Bearer {world.carl.token}", "X-MLFLOW-WORKSPACE": "team-a"},
        timeout=TIMEOUT,
    )
    assert refused.status_code == 404, refused.text


@dataclass
class Crews:
    """Groups linked to team-a only through a member, and one out of its reach."""

    crew: tuple[int, str]  # Carl (CAN_USE on team-a) and strangers; holds CAN_READ on team-b, nothing on team-a
    crews: tuple[int, str]  # crew alone: team-a's through Carl, two levels down
    strangers: tuple[int, str]  # Dave (team-b only): nothing of team-a's, only a group that is (crew) above it
    suffix: str


@pytest.fixture(scope="module")
def crews(world: World) -> Crews:
    suffix = uuid.uuid4().hex[:6]
    names = {key: f"{key}-{suffix}" for key in ("crew", "crews", "strangers")}
    strangers = world.admin.group(names["strangers"], [world.dave.id])
    crew = world.admin.group(names["crew"], [world.carl.id, strangers])
    crews = world.admin.group(names["crews"], [crew])
    world.admin.grant("workspaces/team-b", "CAN_READ", group=names["crew"])
    return Crews((crew, names["crew"]), (crews, names["crews"]), (strangers, names["strangers"]), suffix)


def api_names(stack: Stack, person: Person, scope: str, principal: str) -> bool:
    """Whether the API lets a manager of team-a who is no admin name `principal` (gateway/authz/reach.py): asked
    for the ACL entry of a scope it manages, it answers "no ACL for" a principal within its reach, and for any
    other "no principal named", as for a name nobody holds."""
    answer = person.http(stack).get(
        f"{stack.url}/api/2.0/secrets/acls/get", params={"scope": scope, "principal": principal}, timeout=TIMEOUT
    )
    assert answer.status_code == 404 and answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", answer.text
    return answer.json()["message"].startswith("No ACL for ")


def test_a_workspace_admin_sees_a_group_linked_only_through_a_member_as_the_api_reach_rule_does(
    stack: Stack, world: World, crews: Crews
) -> None:
    scope = unique("carls")
    created = world.carl.http(stack).post(f"{stack.url}/api/2.0/secrets/scopes/create", json={"scope": scope})
    assert created.status_code == 200, created.text
    listed = ok(call(stack, world.wadmin, "GET", "/principals", params={"kind": "group", "filter": crews.suffix}))
    in_list = {p["id"] for p in listed["principals"]}
    seen = {}
    for group_id, name in (crews.crew, crews.crews, crews.strangers):
        detail = call(stack, world.wadmin, "GET", f"/principals/{group_id}")
        effective = call(stack, world.wadmin, "GET", f"/principals/{group_id}/effective")
        seen[name] = detail.status_code == 200
        assert effective.status_code == detail.status_code, (name, effective.text)
        assert (group_id in in_list) == seen[name], name
        assert api_names(stack, world.carl, scope, name) == seen[name], name  # the console and the API agree
    assert seen == {crews.crew[1]: True, crews.crews[1]: True, crews.strangers[1]: False}
    refused = call(stack, world.wadmin, "GET", f"/principals/{crews.strangers[0]}")
    assert refused.status_code == 404 and refused.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    # The group's page lists only what is within reach: Carl, not strangers (neither as member nor nested).
    crew = ok(call(stack, world.wadmin, "GET", f"/principals/{crews.crew[0]}"))
    assert [m["id"] for m in crew["members"]] == [world.carl.id]
    assert crew["nested_groups"] == []
    carl = ok(call(stack, world.wadmin, "GET", f"/principals/{world.carl.id}"))
    paths = {p["group"]["id"]: [g["id"] for g in p["via"]] for p in carl["groups"]}
    assert paths == {crews.crew[0]: [], crews.crews[0]: [crews.crew[0]]}
    # An account admin sees every one of them, strangers nested in crew too.
    crew = ok(call(stack, world.boss, "GET", f"/principals/{crews.crew[0]}"))
    assert {m["id"] for m in crew["members"]} == {world.carl.id, crews.strangers[0]}
    assert [n["group"]["id"] for n in crew["nested_groups"]] == [crews.strangers[0]]


COUNTED_TABLE = "table:system.mlflow.experiments_latest"


@pytest.fixture(scope="module")
def steward(stack: Stack, world: World, crews: Crews) -> Person:
    """team-a's admin who also manages a system table (MANAGE), on which crew holds SELECT: it sees crew's grant,
    and how many principals a revoke of it would affect."""
    steward = world.admin.person(f"{unique('steward')}@example.com")
    world.admin.grant("workspaces/team-a", "CAN_MANAGE", user=steward.name)
    for principal, privilege in ((steward.name, "MANAGE"), (crews.crew[1], "SELECT")):
        changed = world.admin.http().patch(
            f"{stack.url}/api/2.1/unity-catalog/permissions/{COUNTED_TABLE.replace(':', '/', 1)}",
            json={"changes": [{"principal": principal, "add": [privilege]}]},
            timeout=TIMEOUT,
        )
        assert changed.status_code == 200, changed.text
    return steward


def scim_members(stack: Stack, person: Person, group_id: int) -> list[int] | None:
    """The group's members as SCIM tells `person`; None when it refuses (it tells account admins only)."""
    answer = person.http(stack, None).get(f"{stack.url}{SCIM}/Groups/{group_id}", timeout=TIMEOUT)
    if answer.status_code == 403:
        assert answer.json()["error_code"] == "PERMISSION_DENIED", answer.text
        return None
    assert answer.status_code == 200, answer.text
    return [int(m["value"]) for m in answer.json().get("members", [])]


def test_a_group_s_member_counts_take_in_only_the_members_the_viewer_sees_as_the_api_does(
    stack: Stack, world: World, crews: Crews, steward: Person
) -> None:
    crew_id = crews.crew[0]
    # The API tells a workspace admin nothing of a group's members (SCIM is the account admins'); an account
    # admin all of them: Carl and the group strangers, and in strangers Dave.
    assert scim_members(stack, world.wadmin, crew_id) is None
    assert scim_members(stack, steward, crew_id) is None
    everyone = scim_members(stack, world.boss, crew_id)
    assert everyone is not None and set(everyone) == {world.carl.id, crews.strangers[0]}
    assert scim_members(stack, world.boss, crews.strangers[0]) == [world.dave.id]

    # The console counts as it lists: an account admin every member, a workspace admin only those it sees
    # (Carl), never telling it that crew has members beyond team-a.
    for viewer, members in ((world.boss, len(everyone)), (world.wadmin, 1), (steward, 1)):
        listed = ok(call(stack, viewer, "GET", "/principals", params={"kind": "group", "filter": crews.suffix}))
        counts = {p["id"]: p["member_count"] for p in listed["principals"]}
        assert counts[crew_id] == members and counts[crews.crews[0]] == 1, (viewer.name, counts)
        detail = ok(call(stack, viewer, "GET", f"/principals/{crew_id}"))
        assert detail["principal"]["member_count"] == len(detail["members"]) == members, (viewer.name, detail)
        parent = ok(call(stack, viewer, "GET", f"/principals/{crews.crews[0]}"))
        assert [(m["id"], m["member_count"]) for m in parent["members"]] == [(crew_id, members)], viewer.name

    # How many principals a revoke of crew's grant affects (at any depth): Carl, strangers and Dave for an
    # account admin; for the steward only Carl, the one of them it sees.
    for viewer, affects in ((world.boss, 3), (steward, 1)):
        effective = ok(call(stack, viewer, "GET", f"/principals/{world.carl.id}/effective"))
        table = by_object(effective["system_tables"], COUNTED_TABLE)
        [through_crew] = [s for s in table["sources"] if s["holder"]["id"] == crew_id]
        assert through_crew["affects"] == affects, (viewer.name, through_crew)


# -- the pages, in a real headless Chromium --------------------------------------------------------------------


@pytest.fixture
def tab(chromium: Any, stack: Stack) -> Iterator[Any]:
    """A fresh browser context; the page's console errors are kept (`tab.console_errors`)."""
    with new_tab(chromium, stack.url) as page:
        page.console_errors = []
        page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
        yield page


def sign_in_at(tab: Any, path: str, token: str) -> None:
    tab.goto(path)
    tab.wait_for_selector("#token")
    tab.fill("#token", token)
    tab.click("#sign-in-token")
    tab.wait_for_selector("#fg-user")


def test_an_admin_revokes_a_grant_in_the_browser_and_the_person_loses_access_at_once(
    tab: Any, stack: Stack, world: World, ann_client: MlflowClient
) -> None:
    experiment = create_experiment(stack, world.admin.token, unique("browser"))
    world.admin.grant(f"experiments/{experiment}", "CAN_READ", group=world.outer[1], workspace="team-a")
    assert ann_client.get_experiment(experiment).experiment_id == experiment  # through inner, then outer

    sign_in_at(tab, "/fedgate/console/access", world.boss.token)
    assert "Access" in tab.locator(".fg-nav a").all_inner_texts()
    tab.fill("#fg-filter", world.ann.name)
    tab.click("#fg-search")
    tab.click(f"#fg-principals tr[data-principal='{world.ann.id}'] a")
    tab.wait_for_selector("#fg-section-experiments table")
    row = tab.locator(f"#fg-section-experiments tr[data-object='experiment:w1001/{experiment}'][data-source='group']")
    assert world.outer[1] in row.inner_text() and world.inner[1] in row.inner_text()  # the group, and the way there
    groups = tab.inner_text("#fg-groups")
    assert world.inner[1] in groups and world.outer[1] in groups
    shot(tab, "50-access-effective-permissions")

    row.locator("button.fg-revoke").click()
    dialog = tab.locator("#fg-revoke-dialog")
    dialog.wait_for(state="visible")
    assert world.outer[1] in tab.inner_text("#fg-revoke-affects")
    shot(tab, "51-access-revoke-confirmation")
    tab.click("#fg-revoke-confirm")
    tab.wait_for_selector("#fg-access-notice:not(.fg-hidden)")
    assert tab.locator(f"tr[data-object='experiment:w1001/{experiment}']").count() == 0
    shot(tab, "52-access-revoked")

    # Ann's very next call, with her stock client and her token: the experiment no longer exists for her.
    assert error_code(lambda: ann_client.get_experiment(experiment)) == "RESOURCE_DOES_NOT_EXIST"

    tab.click("#fg-tab-audit")
    tab.wait_for_selector("#fg-audit table")
    tab.fill("#fg-audit-action", "grants.revoke")
    tab.fill("#fg-audit-target", f"experiment:w1001/{experiment}")
    tab.click("#fg-audit-search")
    from playwright.sync_api import expect  # the chromium fixture has made sure it is installed

    expect(tab.locator("#fg-audit tbody tr")).to_have_count(1)  # waits: the page's CSP allows no eval
    assert world.boss.name in tab.inner_text("#fg-audit tbody")
    shot(tab, "53-access-audit-log")
    assert tab.console_errors == []  # the CSP refused nothing the pages asked for


def test_a_workspace_admin_sees_their_workspace_and_a_plain_user_no_access_page(
    tab: Any, stack: Stack, world: World
) -> None:
    sign_in_at(tab, f"/fedgate/console/access/principals/{world.ann.id}", world.wadmin.token)
    tab.wait_for_selector("#fg-section-workspaces table")
    assert "team-a" in tab.inner_text("#fg-access-scope")
    assert "team-b" not in tab.inner_text("#fg-section-workspaces")
    shot(tab, "54-access-workspace-admin")
    tab.click("#fg-sign-out")
    tab.wait_for_selector("#token")

    sign_in_at(tab, "/fedgate/console", world.carl.token)
    assert "Access" not in tab.locator(".fg-nav a").all_inner_texts()
    refused = tab.goto(f"{stack.url}/fedgate/console/access")
    assert refused is not None and refused.status == 403


def test_a_workspace_admin_finds_a_group_of_theirs_in_the_browser_and_not_one_out_of_reach(
    tab: Any, stack: Stack, world: World, crews: Crews
) -> None:
    sign_in_at(tab, "/fedgate/console/access", world.wadmin.token)
    tab.wait_for_selector("#fg-principals table")  # the unfiltered first page (Ann, Carl, ...): more than two rows
    tab.fill("#fg-filter", crews.suffix)
    tab.click("#fg-search")
    from playwright.sync_api import expect  # the chromium fixture has made sure it is installed

    rows = tab.locator("#fg-principals tbody tr")
    expect(rows).to_have_count(2)  # waits for the filtered list
    shown = {int(rows.nth(i).get_attribute("data-principal")) for i in range(rows.count())}
    assert shown == {crews.crew[0], crews.crews[0]}  # not strangers
    tab.click(f"#fg-principals tr[data-principal='{crews.crew[0]}'] a")
    tab.wait_for_selector("#fg-members")
    members = tab.inner_text("#fg-members-card")
    assert world.carl.name in members and crews.strangers[1] not in members
    shot(tab, "55-access-workspace-admin-group")
    assert tab.console_errors == []


def test_a_workspace_admin_is_shown_counts_of_the_members_it_sees_only_in_the_browser(
    tab: Any, stack: Stack, world: World, crews: Crews, steward: Person
) -> None:
    sign_in_at(tab, "/fedgate/console/access", steward.token)
    tab.wait_for_selector("#fg-principals table")
    tab.fill("#fg-filter", crews.suffix)
    tab.click("#fg-search")
    from playwright.sync_api import expect  # the chromium fixture has made sure it is installed

    rows = tab.locator("#fg-principals tbody tr")
    expect(rows).to_have_count(2)  # waits for the filtered list: crew and crews
    crew_row = tab.locator(f"#fg-principals tr[data-principal='{crews.crew[0]}']")
    assert crew_row.locator("td").nth(3).inner_text() == "1"  # Carl; not strangers, which is beyond team-a

    tab.goto(f"{stack.url}/fedgate/console/access/principals/{world.carl.id}")
    row = tab.locator(f"#fg-section-system_tables tr[data-object='{COUNTED_TABLE}'][data-source='group']")
    row.wait_for()
    row.locator("button.fg-revoke").click()
    tab.locator("#fg-revoke-dialog").wait_for(state="visible")
    affects = tab.inner_text("#fg-revoke-affects")
    assert f"Everyone in {crews.crew[1]} (1 principals" in affects, affects
    shot(tab, "56-access-workspace-admin-counts")
    tab.click("#fg-revoke-cancel")
    assert tab.console_errors == []


def browser_session(stack: Stack, person: Person) -> requests.Session:
    http = requests.Session()
    signed = http.post(
        f"{stack.url}/fedgate/sign-in/token",
        data={"token": person.token, "next": "/fedgate/console"},
        headers={"Origin": stack.url},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert signed.status_code == 303, signed.text
    return http


def test_a_revoke_from_another_site_with_the_session_cookie_is_refused(stack: Stack, world: World) -> None:
    experiment = create_experiment(stack, world.admin.token, unique("csrf"))
    world.admin.grant(f"experiments/{experiment}", "CAN_READ", user=world.ann.name, workspace="team-a")
    grant = {
        "principal_id": world.ann.id,
        "domain": "w1001",
        "object": f"experiment:w1001/{experiment}",
        "privilege": "CAN_READ",
    }
    http = browser_session(stack, world.boss)
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {}):
        refused = http.post(f"{stack.url}{API}/revoke", json=grant, headers=headers, timeout=TIMEOUT)
        assert refused.status_code == 403 and refused.json()["error_code"] == "PERMISSION_DENIED", headers
    effective = ok(call(stack, world.boss, "GET", f"/principals/{world.ann.id}/effective"))
    assert by_object(effective["experiments"], grant["object"])["effective"] == "CAN_READ"
    # From the console's own page (the browser says so), the same call goes through.
    done = http.post(f"{stack.url}{API}/revoke", json=grant, headers={"Sec-Fetch-Site": "same-origin"}, timeout=TIMEOUT)
    assert done.status_code == 200, done.text
