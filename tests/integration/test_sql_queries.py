"""Saved SQL queries through a real gateway: the life cycle with the stock databricks-sdk, sharing with users
and (nested) groups at CAN_VIEW / CAN_RUN / CAN_MANAGE, refusals (404 for a query one cannot view, 403 for too
low a level), running a saved query as its caller (a restricted person sees fewer rows, and CAN_RUN lends no
grant of the owner's), the audit trail, and every bad input answered with an error code, never a 500.

Rows are written straight into the index tables (experiments and runs of this module's own), so the counts
each person must see are known exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import requests

from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import Admin, Person

pytestmark = pytest.mark.integration
QUERIES = "/api/2.0/sql/queries"
PERMISSIONS = "/api/2.0/permissions/queries"
STATEMENTS = "/api/2.0/sql/statements"
# Eight cross joins of a table of a few hundred rows: far more rows than any timeout lets PostgreSQL count.
SLOW = "SELECT count(*) FROM " + " CROSS JOIN ".join(f"system.mlflow.runs_latest r{i}" for i in range(8))


@dataclass
class Org:
    suffix: str
    owner: Person  # in readers and leads: reads the view's every row; SELECT on system.mlflow
    member: Person  # in readers only: reads the view's workspace-1001 rows
    nested: Person  # in inner, which is in outer (no data grants; outer uses team-a)
    outsider: Person  # in no group, no data grants (uses team-a, as the owner does)
    readers: str
    leads: str
    outer: str
    view: str
    experiments: tuple[str, str]  # the account-wide ids of this module's experiments (1001-..., 1002-...)


def call(stack: Stack, token: str, method: str, path: str, body: Any = None, **params: Any) -> requests.Response:
    return requests.request(
        method,
        f"{stack.url}{path}",
        json=body,
        params=params or None,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def refused(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code, body
    return str(body["message"])


def admin_sql(stack: Stack, statement: str) -> None:
    answer = call(stack, ADMIN_TOKEN, "POST", STATEMENTS, {"statement": statement, "wait_timeout": "30s"})
    assert answer.status_code == 200 and answer.json()["status"]["state"] == "SUCCEEDED", answer.text


def create(stack: Stack, token: str, **fields: Any) -> dict[str, Any]:
    created = call(stack, token, "POST", QUERIES, {"query": fields})
    assert created.status_code == 200, created.text
    return dict(created.json())


def share(stack: Stack, token: str, query_id: str, *entries: dict[str, str], method: str = "PATCH") -> dict[str, Any]:
    answer = call(stack, token, method, f"{PERMISSIONS}/{query_id}", {"access_control_list": list(entries)})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def run(stack: Stack, token: str, query_id: str, **options: Any) -> requests.Response:
    return call(stack, token, "POST", f"{QUERIES}/{query_id}/run", {"wait_timeout": "30s", **options})


@pytest.fixture(scope="module")
async def org(stack: Stack) -> AsyncIterator[Org]:
    s = uuid.uuid4().hex[:6]
    experiment_a, experiment_b = f"sqlq-{s}-a", f"sqlq-{s}-b"
    connection = await asyncpg.connect(stack.database_url)
    try:
        await connection.execute(
            "INSERT INTO ix_experiments (workspace_id, experiment_id, name) VALUES (1001, $1, $2), (1002, $3, $4)",
            experiment_a,
            f"/Users/alice/q-{s}",
            experiment_b,
            f"/Users/bob/q-{s}",
        )
        # 7 runs in workspace 1001 (5 FINISHED), 4 in workspace 1002 (all FAILED).
        await connection.execute(
            """
            INSERT INTO ix_runs (run_id, workspace_id, experiment_id, run_name, status)
            SELECT $1 || '-a-' || n, 1001, $2, 'q', CASE WHEN n <= 5 THEN 'FINISHED' ELSE 'FAILED' END
            FROM generate_series(1, 7) AS n
            UNION ALL
            SELECT $1 || '-b-' || n, 1002, $3, 'q', 'FAILED' FROM generate_series(1, 4) AS n
            """,
            f"sqlq-{s}",
            experiment_a,
            experiment_b,
        )
    finally:
        await connection.close()
    admin = Admin.of(stack)
    people = {key: admin.person(f"q-{key}.{s}@example.com") for key in ("owner", "member", "nested", "outsider")}
    readers, leads, outer = f"q-readers-{s}", f"q-leads-{s}", f"q-outer-{s}"
    admin.group(readers, [people["owner"].id, people["member"].id])
    admin.group(leads, [people["owner"].id])
    inner = admin.group(f"q-inner-{s}", [people["nested"].id])
    admin.group(outer, [inner])  # the nested person is in outer through inner
    # The owner shares with principals of a workspace it uses: a manager who is no admin names only principals
    # of the places it holds something in (gateway/authz/reach.py), and the outsider and outer hold no data grants.
    for user in (people["owner"].name, people["outsider"].name):
        admin.grant("workspaces/team-a", "CAN_USE", user=user)
    admin.grant("workspaces/team-a", "CAN_USE", group=outer)
    view = f"qgov_{s}.mlflow.team_runs"
    for statement in (
        f"CREATE VIEW {view} AS SELECT * FROM system.mlflow.runs_latest "
        f"WHERE workspace_id = '1001' OR is_account_group_member('{leads}')",
        f"GRANT USE CATALOG ON CATALOG qgov_{s} TO `{readers}`",
        f"GRANT USE SCHEMA ON SCHEMA qgov_{s}.mlflow TO `{readers}`",
        f"GRANT SELECT ON VIEW {view} TO `{readers}`",
        f"GRANT USE CATALOG ON CATALOG system TO `{people['owner'].name}`",
        f"GRANT USE SCHEMA, SELECT ON SCHEMA system.mlflow TO `{people['owner'].name}`",
    ):
        admin_sql(stack, statement)
    yield Org(
        s,
        **people,
        readers=readers,
        leads=leads,
        outer=outer,
        view=view,
        experiments=(f"1001-{experiment_a}", f"1002-{experiment_b}"),
    )


def per_workspace(org: Org) -> str:
    a, b = org.experiments
    return (
        f"SELECT workspace_id, count(*) AS runs FROM {org.view} "
        f"WHERE experiment_id IN ('{a}', '{b}') GROUP BY workspace_id ORDER BY workspace_id"
    )


# -- the life cycle, with the stock databricks-sdk ------------------------------------------------------------


def test_the_stock_databricks_sdk_creates_reads_lists_updates_and_deletes_a_query(stack: Stack, org: Org) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import NotFound
    from databricks.sdk.service.sql import CreateQueryRequestQuery, UpdateQueryRequestQuery

    client = WorkspaceClient(host=stack.url, token=org.owner.token)
    created = client.queries.create(
        query=CreateQueryRequestQuery(
            display_name=f"runs per workspace {org.suffix}",
            query_text=per_workspace(org),
            description="how many runs each workspace holds",
            tags=["ops", "ops", "daily"],
            warehouse_id="any",
        )
    )
    assert created.id and created.display_name == f"runs per workspace {org.suffix}"
    assert created.owner_user_name == org.owner.name == created.last_modifier_user_name
    assert created.tags == ["ops", "daily"]
    assert created.lifecycle_state is not None and created.lifecycle_state.value == "ACTIVE"
    assert created.run_as_mode is not None and created.run_as_mode.value == "VIEWER"
    assert created.create_time and created.create_time.endswith("Z")

    got = client.queries.get(created.id)
    assert got.query_text == per_workspace(org) and got.description == "how many runs each workspace holds"
    assert created.id in {query.id for query in client.queries.list()}

    time.sleep(0.01)  # the update's time must differ from the creation's at millisecond precision
    updated = client.queries.update(
        created.id,
        "display_name,description",
        query=UpdateQueryRequestQuery(display_name=f"renamed {org.suffix}"),
    )
    assert updated.display_name == f"renamed {org.suffix}"
    assert updated.description is None  # in the mask and not given: cleared
    assert updated.query_text == per_workspace(org)  # not in the mask: kept
    assert updated.update_time is not None and updated.update_time > str(created.create_time)

    client.queries.delete(created.id)
    with pytest.raises(NotFound):
        client.queries.get(created.id)
    assert created.id not in {query.id for query in client.queries.list()}


def test_lists_are_paged_in_creation_order(stack: Stack, org: Org) -> None:
    person = Admin.of(stack).person(f"q-pager.{org.suffix}@example.com")
    made = [create(stack, person.token, display_name=f"page {n}", query_text="SELECT 1")["id"] for n in range(5)]
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"page_size": 2}
        if token:
            params["page_token"] = token
        page = call(stack, person.token, "GET", QUERIES, **params).json()
        seen += [query["id"] for query in page.get("results", [])]
        pages += 1
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == made and pages == 3


# -- permissions ------------------------------------------------------------------------------------------------


def test_a_query_is_private_to_its_owner_until_shared(stack: Stack, org: Org) -> None:
    query = create(stack, org.owner.token, display_name="private", query_text="SELECT 1")
    path = f"{QUERIES}/{query['id']}"
    never = f"{QUERIES}/{uuid.uuid4()}"
    for token in (org.member.token, org.outsider.token):
        # Exactly what a query that does not exist answers.
        assert refused(call(stack, token, "GET", path), 404, "RESOURCE_DOES_NOT_EXIST") == (
            f"Query {query['id']} does not exist."
        )
        refused(call(stack, token, "GET", never), 404, "RESOURCE_DOES_NOT_EXIST")
        for method, where, body in (
            ("PATCH", path, {"update_mask": "display_name", "query": {"display_name": "x"}}),
            ("DELETE", path, None),
            ("POST", f"{path}/run", {}),
            ("GET", f"{PERMISSIONS}/{query['id']}", None),
            ("PUT", f"{PERMISSIONS}/{query['id']}", {"access_control_list": []}),
            ("GET", f"{PERMISSIONS}/{query['id']}/permissionLevels", None),
        ):
            refused(call(stack, token, method, where, body), 404, "RESOURCE_DOES_NOT_EXIST")
        listed = call(stack, token, "GET", QUERIES, page_size=1000).json().get("results", [])
        assert query["id"] not in {item["id"] for item in listed}
    # The owner manages it; account admins see and manage every query.
    assert call(stack, org.owner.token, "GET", path).json()["permission_level"] == "CAN_MANAGE"
    assert call(stack, ADMIN_TOKEN, "GET", path).json()["permission_level"] == "CAN_MANAGE"
    acl = call(stack, org.owner.token, "GET", f"{PERMISSIONS}/{query['id']}").json()
    assert acl["object_id"] == f"/queries/{query['id']}" and acl["object_type"] == "query"
    assert acl["access_control_list"] == [
        {
            "user_name": org.owner.name,
            "display_name": org.owner.name,
            "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": False}],
        }
    ]


def test_levels_shared_with_groups_and_users_allow_exactly_what_they_name(stack: Stack, org: Org) -> None:
    query = create(stack, org.owner.token, display_name="shared", query_text="SELECT 1 AS one")
    query_id = query["id"]
    path = f"{QUERIES}/{query_id}"
    acl = share(
        stack,
        org.owner.token,
        query_id,
        {"group_name": org.outer, "permission_level": "CAN_VIEW"},
        {"group_name": org.readers, "permission_level": "CAN_RUN"},
    )
    assert {
        (entry.get("group_name"), entry["all_permissions"][0]["permission_level"])
        for entry in acl["access_control_list"]
    } >= {(org.outer, "CAN_VIEW"), (org.readers, "CAN_RUN")}
    rename = {"update_mask": "display_name", "query": {"display_name": "mine now"}}

    # CAN_VIEW through a nested group: read the query and its permissions, nothing more.
    viewer = org.nested.token
    assert call(stack, viewer, "GET", path).json()["permission_level"] == "CAN_VIEW"
    assert query_id in {item["id"] for item in call(stack, viewer, "GET", QUERIES).json()["results"]}
    assert call(stack, viewer, "GET", f"{PERMISSIONS}/{query_id}").status_code == 200
    levels = call(stack, viewer, "GET", f"{PERMISSIONS}/{query_id}/permissionLevels").json()
    assert [item["permission_level"] for item in levels["permission_levels"]] == ["CAN_VIEW", "CAN_RUN", "CAN_MANAGE"]
    assert "needs CAN_RUN" in refused(run(stack, viewer, query_id), 403, "PERMISSION_DENIED")
    refused(call(stack, viewer, "PATCH", path, rename), 403, "PERMISSION_DENIED")
    refused(call(stack, viewer, "DELETE", path), 403, "PERMISSION_DENIED")

    # CAN_RUN through a group: run it, but not change it or its permissions.
    runner = org.member.token
    ran = run(stack, runner, query_id)
    assert ran.status_code == 200, ran.text
    assert ran.json()["result"]["data_array"] == [["1"]]
    refused(call(stack, runner, "PATCH", path, rename), 403, "PERMISSION_DENIED")
    refused(
        call(
            stack,
            runner,
            "PATCH",
            f"{PERMISSIONS}/{query_id}",
            {"access_control_list": [{"user_name": org.member.name, "permission_level": "CAN_MANAGE"}]},
        ),
        403,
        "PERMISSION_DENIED",
    )

    # CAN_MANAGE to a user: change the query and share it further.
    share(stack, org.owner.token, query_id, {"user_name": org.member.name, "permission_level": "CAN_MANAGE"})
    changed = call(stack, runner, "PATCH", path, rename)
    assert changed.status_code == 200, changed.text
    assert changed.json()["display_name"] == "mine now"
    assert changed.json()["last_modifier_user_name"] == org.member.name
    assert changed.json()["owner_user_name"] == org.owner.name

    # PUT replaces every grant: the nested viewer and the readers lose the query; the owner keeps it.
    share(stack, runner, query_id, {"user_name": org.member.name, "permission_level": "CAN_MANAGE"}, method="PUT")
    refused(call(stack, viewer, "GET", path), 404, "RESOURCE_DOES_NOT_EXIST")
    assert call(stack, org.owner.token, "GET", path).json()["permission_level"] == "CAN_MANAGE"

    # The owner always manages the query: no one can lower that.
    message = refused(
        call(
            stack,
            runner,
            "PATCH",
            f"{PERMISSIONS}/{query_id}",
            {"access_control_list": [{"user_name": org.owner.name, "permission_level": "CAN_VIEW"}]},
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert "always holds CAN_MANAGE" in message


def test_the_stock_sdk_shares_a_query_through_the_permissions_api(stack: Stack, org: Org) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.iam import AccessControlRequest, PermissionLevel

    query = create(stack, org.owner.token, display_name="sdk shared", query_text="SELECT 2")
    client = WorkspaceClient(host=stack.url, token=org.owner.token)
    client.permissions.update(
        "queries",
        query["id"],
        access_control_list=[AccessControlRequest(group_name=org.outer, permission_level=PermissionLevel.CAN_RUN)],
    )
    got = client.permissions.get("queries", query["id"])
    assert got.object_type == "query"
    held = {(entry.group_name or entry.user_name): entry.all_permissions for entry in got.access_control_list or []}
    assert [p.permission_level for p in held[org.outer] or []] == [PermissionLevel.CAN_RUN]
    assert run(stack, org.nested.token, query["id"]).json()["result"]["data_array"] == [["2"]]


def test_deleting_a_query_deletes_the_grants_on_it(stack: Stack, org: Org) -> None:
    query = create(stack, org.owner.token, display_name="short-lived", query_text="SELECT 1")
    share(stack, org.owner.token, query["id"], {"group_name": org.readers, "permission_level": "CAN_VIEW"})
    assert call(stack, org.member.token, "GET", f"{QUERIES}/{query['id']}").status_code == 200
    assert call(stack, org.owner.token, "DELETE", f"{QUERIES}/{query['id']}").json() == {}
    refused(call(stack, org.member.token, "GET", f"{QUERIES}/{query['id']}"), 404, "RESOURCE_DOES_NOT_EXIST")
    refused(call(stack, org.owner.token, "DELETE", f"{QUERIES}/{query['id']}"), 404, "RESOURCE_DOES_NOT_EXIST")

    async def grants_left() -> int:
        connection = await asyncpg.connect(stack.database_url)
        try:
            return int(
                await connection.fetchval("SELECT count(*) FROM grants WHERE object = $1", f"query:{query['id']}")
            )
        finally:
            await connection.close()

    import asyncio

    assert asyncio.run(grants_left()) == 0


def test_an_account_admin_hands_a_query_to_another_owner(stack: Stack, org: Org) -> None:
    query = create(stack, org.owner.token, display_name="handed over", query_text="SELECT 1")
    path = f"{QUERIES}/{query['id']}"
    body = {"update_mask": "owner_user_name", "query": {"owner_user_name": org.outsider.name}}
    refused(call(stack, org.owner.token, "PATCH", path, body), 403, "PERMISSION_DENIED")
    handed = call(stack, ADMIN_TOKEN, "PATCH", path, body)
    assert handed.status_code == 200, handed.text
    assert handed.json()["owner_user_name"] == org.outsider.name
    assert call(stack, org.outsider.token, "GET", path).json()["permission_level"] == "CAN_MANAGE"
    refused(call(stack, org.owner.token, "GET", path), 404, "RESOURCE_DOES_NOT_EXIST")


# -- running a saved query as its caller ---------------------------------------------------------------------------


def test_a_saved_query_runs_with_the_callers_grants_and_dynamic_views(stack: Stack, org: Org) -> None:
    query = create(stack, org.owner.token, display_name="per workspace", query_text=per_workspace(org))
    share(stack, org.owner.token, query["id"], {"group_name": org.readers, "permission_level": "CAN_RUN"})
    mine = run(stack, org.owner.token, query["id"]).json()
    assert mine["status"]["state"] == "SUCCEEDED", mine
    assert mine["result"]["data_array"] == [["1001", "7"], ["1002", "4"]]
    # The member reads the same view, restricted to workspace 1001: fewer rows, the owner's rights unused.
    theirs = run(stack, org.member.token, query["id"]).json()
    assert theirs["status"]["state"] == "SUCCEEDED", theirs
    assert theirs["result"]["data_array"] == [["1001", "7"]]
    # The statement is the caller's: they read it again (and only they do).
    statement = f"{STATEMENTS}/{theirs['statement_id']}"
    assert call(stack, org.member.token, "GET", statement).json()["result"]["data_array"] == [["1001", "7"]]
    refused(call(stack, org.owner.token, "GET", statement), 404, "RESOURCE_DOES_NOT_EXIST")


def test_can_run_lends_none_of_the_owners_grants(stack: Stack, org: Org) -> None:
    text = "SELECT count(*) FROM system.mlflow.runs_latest WHERE experiment_id = :e"
    query = create(stack, org.owner.token, display_name="system runs", query_text=text)
    share(stack, org.owner.token, query["id"], {"user_name": org.outsider.name, "permission_level": "CAN_RUN"})
    parameters = [{"name": "e", "value": org.experiments[0]}]
    assert run(stack, org.owner.token, query["id"], parameters=parameters).json()["result"]["data_array"] == [["7"]]
    message = refused(run(stack, org.outsider.token, query["id"], parameters=parameters), 403, "PERMISSION_DENIED")
    assert org.outsider.name in message and "USE CATALOG" in message


def test_a_long_saved_query_is_polled_and_cancelled_through_the_statements_api(stack: Stack, org: Org) -> None:
    query = create(stack, org.owner.token, display_name="slow", query_text=SLOW)
    started = run(stack, org.owner.token, query["id"], wait_timeout="0s").json()
    assert started["status"]["state"] in ("PENDING", "RUNNING")
    statement = f"{STATEMENTS}/{started['statement_id']}"
    assert call(stack, org.owner.token, "POST", f"{statement}/cancel").status_code == 200
    deadline = time.monotonic() + 30
    state = ""
    while time.monotonic() < deadline:
        state = call(stack, org.owner.token, "GET", statement).json()["status"]["state"]
        if state not in ("PENDING", "RUNNING"):
            break
        time.sleep(0.1)
    assert state == "CANCELED"


def test_apply_auto_limit_caps_a_run_at_1000_rows(stack: Stack, org: Org) -> None:
    # At least this module's 11 runs: 11 x 11 x 11 rows, more than 1,000.
    text = (
        "SELECT a.run_id FROM system.mlflow.runs_latest a CROSS JOIN system.mlflow.runs_latest b "
        "CROSS JOIN system.mlflow.runs_latest c"
    )
    query = create(stack, org.owner.token, display_name="capped", query_text=text, apply_auto_limit=True)
    manifest = run(stack, org.owner.token, query["id"]).json()["manifest"]
    assert manifest["total_row_count"] == 1000 and manifest["truncated"] is True


def test_an_alert_on_a_saved_query_runs_its_text_as_the_alerts_owner_who_needs_can_run(stack: Stack, org: Org) -> None:
    a, _ = org.experiments
    text = f"SELECT count(*) AS failed FROM system.mlflow.runs_latest WHERE experiment_id = '{a}' AND status = 'FAILED'"
    query = create(stack, org.owner.token, display_name="failed runs", query_text=text)
    condition = {
        "op": "GREATER_THAN",
        "operand": {"column": {"name": "failed", "aggregation": "MAX"}},
        "threshold": {"value": {"double_value": 1}},
    }
    alert = {"alert": {"display_name": f"failures {org.suffix}", "query_id": query["id"], "condition": condition}}
    mine = call(stack, org.owner.token, "POST", "/api/2.0/sql/alerts", alert)
    assert mine.status_code == 200, mine.text
    fired = call(stack, org.owner.token, "POST", f"/api/2.0/sql/alerts/{mine.json()['id']}/run").json()
    assert fired["state"] == "TRIGGERED", fired  # 2 FAILED runs > 1
    # CAN_VIEW is not enough to evaluate the query in an alert of one's own.
    share(stack, org.owner.token, query["id"], {"user_name": org.outsider.name, "permission_level": "CAN_VIEW"})
    theirs = call(stack, org.outsider.token, "POST", "/api/2.0/sql/alerts", alert)
    assert theirs.status_code == 200, theirs.text
    failed = call(stack, org.outsider.token, "POST", f"/api/2.0/sql/alerts/{theirs.json()['id']}/run").json()
    assert failed["state"] == "ERROR" and "needs CAN_RUN" in failed["error_message"], failed


def fedgate(stack: Stack, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEDGATE_URL": stack.url, "FEDGATE_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "queries", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_fedgate_queries_creates_shares_and_runs_a_query_as_the_caller(stack: Stack, org: Org) -> None:
    created = fedgate(stack, org.owner.token, "create", "--name", f"cli {org.suffix}", "--text", per_workspace(org))
    assert created.returncode == 0, created.stderr
    query_id = created.stdout.split()[-1]
    shared = fedgate(stack, org.owner.token, "share", query_id, f"group:{org.readers}=can_run")
    assert shared.returncode == 0, shared.stderr
    assert any(line.split()[:3] == ["group", org.readers, "CAN_RUN"] for line in shared.stdout.splitlines())
    listed = fedgate(stack, org.member.token, "list")
    assert any(line.startswith(query_id) and "CAN_RUN" in line for line in listed.stdout.splitlines()), listed.stdout
    ran = fedgate(stack, org.member.token, "run", query_id)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["workspace_id  runs", "1001          7", "(1 row)"]
    refused = fedgate(stack, org.outsider.token, "run", query_id)
    assert refused.returncode == 1 and "RESOURCE_DOES_NOT_EXIST" in refused.stderr
    assert fedgate(stack, org.owner.token, "delete", query_id).returncode == 0


# -- the audit trail and bad input --------------------------------------------------------------------------------


def test_changes_are_audited(stack: Stack, org: Org) -> None:
    query = create(stack, org.owner.token, display_name="audited", query_text="SELECT 1")
    target = f"query:{query['id']}"
    share(stack, org.owner.token, query["id"], {"group_name": org.readers, "permission_level": "CAN_VIEW"})
    call(stack, org.owner.token, "PATCH", f"{QUERIES}/{query['id']}", {"update_mask": "query_text", "query": {}})
    call(stack, org.owner.token, "DELETE", f"{QUERIES}/{query['id']}")
    entries = call(stack, ADMIN_TOKEN, "GET", "/api/2.0/fedgate/audit-log", actor=org.owner.name, max_results=1000)
    mine = [(item["action"], item["details"]) for item in entries.json()["entries"] if item["target"] == target]
    assert [action for action, _ in mine] == [
        "sql.query.create",
        "permissions.update",
        "sql.query.update",
        "sql.query.delete",
    ]
    assert mine[1][1]["acl"] == [{"principal": org.readers, "kind": "group", "level": "CAN_VIEW"}]
    assert mine[2][1]["fields"] == ["query_text"]


def test_every_bad_input_is_answered_with_an_error_code(stack: Stack, org: Org) -> None:
    token = org.owner.token
    query = create(stack, token, display_name="target", query_text="SELECT 1")
    path = f"{QUERIES}/{query['id']}"
    acl = f"{PERMISSIONS}/{query['id']}"
    bad: list[tuple[str, str, Any, int, str]] = [
        ("POST", QUERIES, {"query": {"query_text": "SELECT 1"}}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", QUERIES, {}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", QUERIES, {"query": {"display_name": "   "}}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", QUERIES, {"query": {"display_name": "x" * 256}}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", QUERIES, {"query": {"display_name": "a\x00b"}}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", QUERIES, {"query": {"display_name": "t", "query_text": "x\x00"}}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", QUERIES, {"query": {"display_name": "t", "tags": ["a"] * 51}}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", QUERIES, {"query": {"display_name": "t", "tags": "ops"}}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", QUERIES, {"query": {"display_name": "t", "run_as_mode": "OWNER"}}, 400, "INVALID_PARAMETER_VALUE"),
        (
            "POST",
            QUERIES,
            {"query": {"display_name": "t", "parameters": [{"name": "x", "text_value": {"value": "1"}}]}},
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        ("POST", QUERIES, {"query": {"display_name": "t", "owner_user_name": "x@y.z"}}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", QUERIES, "not an object", 400, "INVALID_PARAMETER_VALUE"),
        ("GET", f"{QUERIES}?page_size=0", None, 400, "INVALID_PARAMETER_VALUE"),
        ("GET", f"{QUERIES}?page_size=abc", None, 400, "INVALID_PARAMETER_VALUE"),
        ("GET", f"{QUERIES}?page_token=bm9wZQ", None, 400, "INVALID_PARAMETER_VALUE"),
        ("GET", f"{QUERIES}?page_token=%%%", None, 400, "INVALID_PARAMETER_VALUE"),
        ("GET", f"{QUERIES}/not-a-uuid", None, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("GET", f"{QUERIES}/{'x' * 5000}", None, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("PATCH", path, {"query": {"display_name": "x"}}, 400, "INVALID_PARAMETER_VALUE"),
        ("PATCH", path, {"update_mask": "id", "query": {}}, 400, "INVALID_PARAMETER_VALUE"),
        ("PATCH", path, {"update_mask": "display_name", "query": {}}, 400, "INVALID_PARAMETER_VALUE"),
        ("PATCH", path, {"update_mask": "owner_user_name", "query": {}}, 403, "PERMISSION_DENIED"),
        ("POST", f"{path}/run", {"wait_timeout": "99s"}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", f"{path}/run", {"parameters": [{"name": "nope", "value": "1"}]}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", f"{path}/run", {"row_limit": "many"}, 400, "INVALID_PARAMETER_VALUE"),
        ("PATCH", acl, {"access_control_list": [{"user_name": org.member.name}]}, 400, "INVALID_PARAMETER_VALUE"),
        (
            "PATCH",
            acl,
            {"access_control_list": [{"user_name": org.member.name, "permission_level": "CAN_EDIT"}]},
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "PATCH",
            acl,
            {"access_control_list": [{"permission_level": "CAN_VIEW"}]},
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "PATCH",
            acl,
            {"access_control_list": [{"group_name": f"nobody-{org.suffix}", "permission_level": "CAN_VIEW"}]},
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        ("PUT", acl, {"access_control_list": "all"}, 400, "INVALID_PARAMETER_VALUE"),
    ]
    for method, where, body, status, code in bad:
        answer = requests.request(
            method,
            f"{stack.url}{where}",
            data=body if isinstance(body, str) else None,
            json=None if isinstance(body, str) else body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=60,
        )
        assert answer.status_code == status, (method, where, body, answer.text)
        assert answer.json()["error_code"] == code, (method, where, body, answer.text)
    # A query whose text fails to parse is saved (a draft), and its run says where the error is.
    draft = create(stack, token, display_name="draft", query_text="SELECT FROM WHERE")
    assert "line 1" in refused(run(stack, token, draft["id"]), 400, "INVALID_PARAMETER_VALUE").lower()
    # Nothing of the refused calls changed the query.
    assert call(stack, token, "GET", path).json()["display_name"] == "target"
    # A workspace the caller may not see is refused as on every route.
    hidden = requests.get(
        f"{stack.url}{QUERIES}",
        headers={"Authorization": f"Bearer {org.outsider.token}", "X-MLFLOW-WORKSPACE": "team-b"},
        timeout=60,
    )
    refused(hidden, 404, "RESOURCE_DOES_NOT_EXIST")
