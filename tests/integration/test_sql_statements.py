"""SQL over the system tables through a real gateway: the documented queries, grants, dynamic views, injection
attempts, long statements, stateless replicas, the stock databricks-sdk and `fedgate sql`.

Rows are written straight into the index tables (experiments and runs of this module's own, ids no store
uses), so the expected values are known exactly; one test goes through the stock MLflow client instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.config import ServerSettings
from gateway.devstack import GatewayProcess
from gateway.sql.documented import METRIC_SUMMARY, RUN_DETAILS, RUN_DETAILS_WITH_EXPERIMENT, RUN_TAGS, SUCCESS_RATIO
from gateway.sql.results import CHUNK_ROWS
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV, Stack, write_config
from tests.support.identity import SCIM, Admin, Person
from tests.support.waiting import until

pytestmark = pytest.mark.integration
STATEMENTS = "/api/2.0/sql/statements"
UC = "/api/2.1/unity-catalog"
# Eight cross joins of a table of a few hundred rows: far more rows than any timeout lets PostgreSQL count.
SLOW = "SELECT count(*) FROM " + " CROSS JOIN ".join(f"system.mlflow.runs_latest r{i}" for i in range(8))


@dataclass
class Data:
    suffix: str
    experiment_a: str  # workspace 1001 (team-a): 120 runs, 90 FINISHED
    experiment_b: str  # workspace 1002 (team-b): 110 runs, all FINISHED
    run_id: str  # the documented run of experiment_a

    # The system tables name experiments account-wide: <workspace_id>-<experiment_id>.
    @property
    def system_a(self) -> str:
        return f"1001-{self.experiment_a}"

    @property
    def system_b(self) -> str:
        return f"1002-{self.experiment_b}"


@dataclass
class Org:
    analyst: Person  # in group analysts: USE CATALOG system, USE SCHEMA + SELECT on system.mlflow
    outsider: Person  # no grants at all
    half: Person  # USE CATALOG and SELECT, but no USE SCHEMA
    viewer: Person  # in group readers: only the dynamic view
    boss: Person  # in readers and, through a nested group, in mlflow-admins
    maker: Person  # direct grants on system.mlflow, MANAGE on the views' schema
    analysts: str
    readers: str
    admins: str
    catalog: str


def call(stack: Stack, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
    return requests.request(
        method, f"{stack.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def sql(
    stack: Stack, token: str, statement: str, parameters: dict[str, str] | None = None, **extra: Any
) -> requests.Response:
    body: dict[str, Any] = {"statement": statement, "warehouse_id": "any", "wait_timeout": "30s", **extra}
    if parameters:
        body["parameters"] = [{"name": name, "value": value} for name, value in parameters.items()]
    return call(stack, token, "POST", STATEMENTS, body)


def rows(stack: Stack, token: str, statement: str, parameters: dict[str, str] | None = None) -> list[list[Any]]:
    response = sql(stack, token, statement, parameters)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"]["state"] == "SUCCEEDED", answer
    assert answer["manifest"]["total_chunk_count"] == 1
    return list(answer["result"].get("data_array") or [])


def admin_sql(stack: Stack, statement: str) -> list[list[Any]]:
    return rows(stack, ADMIN_TOKEN, statement)


def refused(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code, body
    return str(body["message"])


@pytest.fixture(scope="module")
async def data(stack: Stack) -> AsyncIterator[Data]:
    suffix = uuid.uuid4().hex[:6]
    found = Data(suffix, f"sqlt-{suffix}-a", f"sqlt-{suffix}-b", f"sqlt-{suffix}-run")
    connection = await asyncpg.connect(stack.database_url)
    try:
        await connection.execute(
            "INSERT INTO ix_experiments (workspace_id, experiment_id, name) VALUES (1001, $1, $2), (1002, $3, $4)",
            found.experiment_a,
            f"/Users/alice/sql-{suffix}",
            found.experiment_b,
            f"/Users/bob/sql-{suffix}",
        )
        await connection.execute(
            """
            INSERT INTO ix_runs (run_id, workspace_id, experiment_id, created_by, run_name, status, start_time,
                                 end_time, params, tags)
            VALUES ($1, 1001, $2, 'alice@example.com', 'sql-first', 'FINISHED', '2024-06-27T00:58:57Z',
                    '2024-06-27T01:30:10Z', '{"lr": "0.1", "epochs": "3"}', '{"team": "a", "mlflow.user": "alice"}')
            """,
            found.run_id,
            found.experiment_a,
        )
        await connection.execute(
            """
            INSERT INTO ix_runs (run_id, workspace_id, experiment_id, run_name, status, start_time, end_time)
            SELECT $1 || '-' || n, 1001, $2, 'bulk', CASE WHEN n <= 89 THEN 'FINISHED' ELSE 'FAILED' END,
                   '2024-07-01T00:00:00Z'::timestamptz + n * interval '1 hour', NULL
            FROM generate_series(1, 119) AS n
            """,
            found.run_id,
            found.experiment_a,
        )
        await connection.execute(
            """
            INSERT INTO ix_runs (run_id, workspace_id, experiment_id, run_name, status)
            SELECT $1 || '-b-' || n, 1002, $2, 'bulk', 'FINISHED' FROM generate_series(1, 110) AS n
            """,
            found.run_id,
            found.experiment_b,
        )
        await connection.execute(
            """
            INSERT INTO ix_metrics (run_key, metric_name, metric_steps, metric_times, metric_values)
            SELECT r.run_key, m.name, ARRAY[m.step::int8],
                   ARRAY['2024-06-27T01:00:00Z'::timestamptz + m.step * interval '1 minute'], ARRAY[m.value]
            FROM ix_runs r, (VALUES ('loss', 0, 0.9::float8), ('loss', 1, 0.5), ('loss', 2, 0.3), ('loss', 3, 0.2),
                                    ('acc', 0, 0.1), ('acc', 1, 'NaN'), ('acc', 2, 0.7)) AS m(name, step, value)
            WHERE r.run_id = $1;
            """,
            found.run_id,
        )
        await connection.execute(
            """
            INSERT INTO ix_metric_latest (run_key, metric_name, latest_value, latest_step, latest_time, min_value,
                                          max_value, has_nan, points)
            SELECT run_key, 'loss', 0.2, 3, now(), 0.2, 0.9, false, 4 FROM ix_runs WHERE run_id = $1
            UNION ALL SELECT run_key, 'acc', 0.7, 2, now(), 0.1, 0.7, true, 3 FROM ix_runs WHERE run_id = $1
            """,
            found.run_id,
        )
    finally:
        await connection.close()
    yield found


@pytest.fixture(scope="module")
def org(stack: Stack, data: Data) -> Org:
    s = data.suffix
    admin = Admin.of(stack)
    people = {
        key: admin.person(f"{key}.{s}@example.com", comment="sql tests")
        for key in ("analyst", "outsider", "half", "viewer", "boss", "maker")
    }
    analysts, readers, admins = f"analysts-{s}", f"readers-{s}", f"mlflow-admins-{s}"
    admin.group(analysts, [people["analyst"].id])
    admin.group(readers, [people["viewer"].id, people["boss"].id])
    inner = admin.group(f"platform-{s}", [people["boss"].id])
    admin.group(admins, [inner])  # the boss is an admin through a nested group
    catalog = f"gov_{s}"
    for statement in (
        f"GRANT USE CATALOG ON CATALOG system TO `{analysts}`",
        f"GRANT USE SCHEMA, SELECT ON SCHEMA system.mlflow TO `{analysts}`",
        f"GRANT USE CATALOG ON CATALOG system TO `{people['half'].name}`",
        f"GRANT SELECT ON SCHEMA system.mlflow TO `{people['half'].name}`",
        f"GRANT USE CATALOG ON CATALOG system TO `{people['maker'].name}`",
        f"GRANT USE SCHEMA, SELECT ON SCHEMA system.mlflow TO `{people['maker'].name}`",
        f"CREATE VIEW {catalog}.mlflow.team_a_runs AS SELECT * FROM system.mlflow.runs_latest "
        f"WHERE workspace_id = '1001' OR is_account_group_member('{admins}')",
        f"GRANT USE CATALOG ON CATALOG {catalog} TO `{readers}`",
        f"GRANT USE SCHEMA ON SCHEMA {catalog}.mlflow TO `{readers}`",
        f"GRANT SELECT ON VIEW {catalog}.mlflow.team_a_runs TO `{readers}`",
        f"GRANT MANAGE ON SCHEMA {catalog}.mlflow TO `{people['maker'].name}`",
    ):
        assert admin_sql(stack, statement) == []
    return Org(**people, analysts=analysts, readers=readers, admins=admins, catalog=catalog)


# -- the documented queries --------------------------------------------------------------------------------------


def test_success_ratio_per_experiment_top_20(stack: Stack, data: Data, org: Org) -> None:
    answer = rows(
        stack,
        org.analyst.token,
        SUCCESS_RATIO,
    )
    assert len(answer) <= 20
    found = {row[0]: (float(row[1]), int(row[2])) for row in answer}
    assert found[data.system_a] == (0.75, 120)  # the documented run and 89 of the bulk runs finished
    assert found[data.system_b] == (1.0, 110)
    counts = [int(row[2]) for row in answer]
    assert counts == sorted(counts, reverse=True)


def test_run_details_alone_and_joined_with_experiments(stack: Stack, data: Data, org: Org) -> None:
    parameters = {"experiment_id": data.system_a, "run_id": data.run_id}
    alone = rows(
        stack,
        org.analyst.token,
        RUN_DETAILS,
        parameters,
    )
    assert alone == [["sql-first", "2024-06-27", "FINISHED", "31"]]
    response = sql(
        stack,
        org.analyst.token,
        RUN_DETAILS_WITH_EXPERIMENT,
        parameters,
    )
    answer = response.json()
    assert answer["result"]["data_array"] == [
        ["sql-first", f"/Users/alice/sql-{data.suffix}", "2024-06-27", "FINISHED", "31"]
    ]
    columns = answer["manifest"]["schema"]["columns"]
    assert [(c["name"], c["type_name"], c["position"]) for c in columns] == [
        ("run_name", "STRING", 0),
        ("name", "STRING", 1),
        ("start_date", "DATE", 2),
        ("status", "STRING", 3),
        ("run_length_minutes", "LONG", 4),
    ]


def test_per_metric_summary_of_one_run(stack: Stack, data: Data, org: Org) -> None:
    answer = rows(
        stack,
        org.analyst.token,
        METRIC_SUMMARY,
        {"run_id": data.run_id},
    )
    assert sorted(answer) == [
        ["acc", "3", "NaN", "NaN", "0.1", "0.4", "0.7", "NaN"],
        ["loss", "4", "0.5", "0.9", "0.2", "0.3", "0.4", "0.6"],
    ]


def test_tags_params_and_aggregated_metrics(stack: Stack, data: Data, org: Org) -> None:
    token = org.analyst.token
    tags = rows(
        stack,
        token,
        RUN_TAGS,
        {"experiment_id": f" {data.system_a} ", "run_id": data.run_id},
    )
    assert sorted(tags) == [["mlflow.user", "alice"], ["team", "a"]]
    params = rows(
        stack,
        token,
        "SELECT params['lr'] AS lr, params['missing'] AS missing FROM system.mlflow.runs_latest WHERE run_id = :run_id",
        {"run_id": data.run_id},
    )
    assert params == [["0.1", None]]
    metrics = rows(
        stack,
        token,
        "SELECT filter(aggregated_metrics, m -> m.metric_name = :name) AS only, "
        "filter(aggregated_metrics, m -> m.metric_name = :name)[0].max_value AS max_value "
        "FROM system.mlflow.runs_latest WHERE run_id = :run_id",
        {"name": "acc", "run_id": data.run_id},
    )
    assert metrics == [['[{"metric_name":"acc","latest_value":0.7,"max_value":"NaN","min_value":"NaN"}]', "NaN"]]


def test_a_quoted_alias_matches_its_references_in_any_case(stack: Stack, data: Data, org: Org) -> None:
    """Databricks compares names case-insensitively, quoted or not; PostgreSQL compares a quoted one as written, and
    `` `a`.run_id ... AS `A` `` failed there (column reference to a missing FROM item)."""
    answer = rows(
        stack,
        org.analyst.token,
        "SELECT `a`.run_id, `Runs`.experiment_id, `E`.name IS NOT NULL AS named "
        "FROM system.mlflow.runs_latest AS `A` "
        "JOIN (SELECT run_id, experiment_id FROM system.mlflow.runs_latest) AS `RUNS` ON `runs`.run_id = `A`.run_id "
        "JOIN system.mlflow.experiments_latest AS `e` ON `E`.experiment_id = `a`.experiment_id "
        "WHERE `a`.run_id = :run_id",
        {"run_id": data.run_id},
    )
    assert answer == [[data.run_id, data.system_a, "true"]]


# -- grants ------------------------------------------------------------------------------------------------------


def test_without_any_grant_a_query_is_permission_denied(stack: Stack, org: Org) -> None:
    message = refused(
        sql(stack, org.outsider.token, "SELECT count(*) FROM system.mlflow.runs_latest"), 403, "PERMISSION_DENIED"
    )
    assert message == f"{org.outsider.name} lacks USE CATALOG on catalog system."


def test_select_without_use_schema_is_denied(stack: Stack, org: Org) -> None:
    message = refused(
        sql(stack, org.half.token, "SELECT count(*) FROM system.mlflow.experiments_latest"), 403, "PERMISSION_DENIED"
    )
    assert message == f"{org.half.name} lacks USE SCHEMA on schema system.mlflow."


def test_unknown_tables_and_statements_are_invalid(stack: Stack, org: Org) -> None:
    for statement, says in (
        ("SELECT * FROM system.mlflow.runs", "Table or view 'system.mlflow.runs' does not exist"),
        ("SELECT * FROM system.information_schema.tables", "does not exist"),
        ("SELECT * FROM ix_runs", "Name tables in full"),
        ("UPDATE system.mlflow.runs_latest SET status = 'x'", "UPDATE statements are not allowed"),
    ):
        assert says in refused(sql(stack, org.analyst.token, statement), 400, "INVALID_PARAMETER_VALUE")


def test_show_grants_shows_inheritance(stack: Stack, org: Org) -> None:
    table = "system.mlflow.runs_latest"
    shown = [row for row in admin_sql(stack, f"SHOW GRANTS ON TABLE {table}") if row[0] == org.analysts]
    assert shown == [
        [org.analysts, "SELECT", "TABLE", table, "SCHEMA system.mlflow"],
        [org.analysts, "USE CATALOG", "TABLE", table, "CATALOG system"],
        [org.analysts, "USE SCHEMA", "TABLE", table, "SCHEMA system.mlflow"],
    ]
    # A principal may ask about itself; its grants arrive through its group, and the group is named.
    own = rows(stack, org.analyst.token, f"SHOW GRANTS `{org.analyst.name}` ON TABLE {table}")
    assert [row[0] for row in own] == [org.analysts] * 3
    response = sql(stack, org.analyst.token, f"SHOW GRANTS ON TABLE {table}")
    assert "needs MANAGE" in refused(response, 403, "PERMISSION_DENIED")


def test_show_grants_of_a_name_that_differs_from_ones_own_only_in_case_needs_manage(stack: Stack, data: Data) -> None:
    """Anyone may ask for their own grants; another principal's need MANAGE. Group and service principal names keep
    their case, so `Robot-x` and `robot-x` are two principals: the service principal `ROBOT-...` asked for the
    grants of the group `robot-...` and was answered, by SHOW GRANTS and by the REST effective-permissions alike,
    because "oneself" was decided by comparing the names case-folded."""
    group = f"robot-{data.suffix}"
    Admin.of(stack).group(group)
    admin_sql(stack, f"GRANT USE SCHEMA, SELECT ON SCHEMA system.mlflow TO `{group}`")
    created = (
        Admin.of(stack)
        .http()
        .post(f"{stack.url}{SCIM}/ServicePrincipals", json={"applicationId": group.upper()}, timeout=60)
    )
    assert created.status_code == 201, created.text
    issued = (
        Admin.of(stack)
        .http()
        .post(
            f"{stack.url}/api/2.0/token-management/on-behalf-of/tokens",
            json={"application_id": group.upper(), "comment": "case"},
            timeout=60,
        )
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()["token_value"]
    response = sql(stack, token, f"SHOW GRANTS `{group}` ON SCHEMA system.mlflow")
    assert "needs MANAGE" in refused(response, 403, "PERMISSION_DENIED")
    effective = call(stack, token, "GET", f"{UC}/effective-permissions/schema/system.mlflow?principal={group}")
    assert "needs MANAGE" in refused(effective, 403, "PERMISSION_DENIED")
    # Its own grants (none) it may still read, spelled as it is spelled.
    assert rows(stack, token, f"SHOW GRANTS `{group.upper()}` ON SCHEMA system.mlflow") == []
    own = call(stack, token, "GET", f"{UC}/effective-permissions/schema/system.mlflow?principal={group.upper()}")
    assert own.status_code == 200, own.text
    assert [item["principal"] for item in own.json()["privilege_assignments"]] == [group.upper()]


def test_revoke_all_privileges_removes_what_it_implies_but_not_manage(stack: Stack, data: Data) -> None:
    group = f"temporary-{data.suffix}"
    Admin.of(stack).group(group)
    admin_sql(stack, f"GRANT USE SCHEMA, SELECT, MANAGE ON SCHEMA system.mlflow TO `{group}`")
    before = admin_sql(stack, f"SHOW GRANTS `{group}` ON SCHEMA system.mlflow")
    assert [row[1] for row in before] == ["MANAGE", "SELECT", "USE SCHEMA"]
    admin_sql(stack, f"REVOKE ALL PRIVILEGES ON SCHEMA system.mlflow FROM `{group}`")
    after = admin_sql(stack, f"SHOW GRANTS `{group}` ON SCHEMA system.mlflow")
    assert after == [[group, "MANAGE", "SCHEMA", "system.mlflow", None]]
    admin_sql(stack, f"REVOKE MANAGE ON SCHEMA system.mlflow FROM `{group}`")
    assert admin_sql(stack, f"SHOW GRANTS `{group}` ON SCHEMA system.mlflow") == []


def test_grant_and_create_view_need_manage(stack: Stack, org: Org) -> None:
    token = org.analyst.token
    grant = sql(stack, token, f"GRANT SELECT ON TABLE system.mlflow.runs_latest TO `{org.outsider.name}`")
    assert "needs MANAGE on system.mlflow.runs_latest" in refused(grant, 403, "PERMISSION_DENIED")
    create = sql(stack, token, f"CREATE VIEW {org.catalog}.mlflow.mine AS SELECT run_id FROM system.mlflow.runs_latest")
    assert "needs MANAGE on schema" in refused(create, 403, "PERMISSION_DENIED")
    # Whether a view exists is told only to who may use its catalog and schema (or holds something on it).
    assert "lacks USE CATALOG on catalog nowhere" in refused(
        sql(stack, token, "GRANT SELECT ON TABLE nowhere.mlflow.x TO `someone`"), 403, "PERMISSION_DENIED"
    )
    assert "does not exist" in refused(
        sql(stack, token, "GRANT SELECT ON TABLE system.mlflow.x TO `someone`"), 404, "RESOURCE_DOES_NOT_EXIST"
    )


# -- dynamic views -------------------------------------------------------------------------------------------------


def test_a_dynamic_view_grants_exactly_its_rows(stack: Stack, data: Data, org: Org) -> None:
    query = (
        f"SELECT workspace_id, count(*) FROM {org.catalog}.mlflow.team_a_runs "
        "WHERE experiment_id IN (:a, :b) GROUP BY workspace_id ORDER BY workspace_id"
    )
    parameters = {"a": data.system_a, "b": data.system_b}
    assert rows(stack, org.viewer.token, query, parameters) == [["1001", "120"]]
    # The boss is in mlflow-admins through a nested group: is_account_group_member() sees it.
    assert rows(stack, org.boss.token, query, parameters) == [["1001", "120"], ["1002", "110"]]
    # The view is all the viewer may read: not the system table behind it.
    direct = sql(stack, org.viewer.token, "SELECT count(*) FROM system.mlflow.runs_latest")
    assert "lacks USE CATALOG on catalog system" in refused(direct, 403, "PERMISSION_DENIED")
    # Nor may anyone without SELECT on the view read it.
    other = sql(stack, org.half.token, f"SELECT * FROM {org.catalog}.mlflow.team_a_runs")
    assert "lacks USE CATALOG on catalog " + org.catalog in refused(other, 403, "PERMISSION_DENIED")


def test_views_are_grantable_through_sql_and_the_rest_api(stack: Stack, org: Org) -> None:
    view = f"{org.catalog}.mlflow.team_a_runs"
    changed = call(
        stack,
        ADMIN_TOKEN,
        "PATCH",
        f"{UC}/permissions/table/{view}",
        {"changes": [{"principal": org.half.name, "add": ["SELECT"]}]},
    )
    assert changed.status_code == 200, changed.text
    listed = call(stack, ADMIN_TOKEN, "GET", f"{UC}/permissions/table/{view}").json()["privilege_assignments"]
    assert {"principal": org.readers, "privileges": ["SELECT"]} in listed  # granted with SQL GRANT
    assert {"principal": org.half.name, "privileges": ["SELECT"]} in listed
    shown = admin_sql(stack, f"SHOW GRANTS ON VIEW {view}")
    assert [org.half.name, "SELECT", "VIEW", view, None] in shown
    assert [org.readers, "USE CATALOG", "VIEW", view, f"CATALOG {org.catalog}"] in shown
    admin_sql(stack, f"REVOKE SELECT ON VIEW {view} FROM `{org.half.name}`")
    listed = call(stack, ADMIN_TOKEN, "GET", f"{UC}/permissions/table/{view}").json()["privilege_assignments"]
    assert org.half.name not in {item["principal"] for item in listed}


def test_a_view_reads_with_its_owners_rights_checked_on_every_read(stack: Stack, data: Data, org: Org) -> None:
    view = f"{org.catalog}.mlflow.maker_runs"
    maker = org.maker.token
    assert (
        rows(stack, maker, f"CREATE VIEW {view} AS SELECT run_id, experiment_id FROM system.mlflow.runs_latest") == []
    )
    assert rows(stack, maker, f"GRANT SELECT ON VIEW {view} TO `{org.readers}`") == []
    count = f"SELECT count(*) FROM {view} WHERE experiment_id = :e"
    assert rows(stack, org.viewer.token, count, {"e": data.system_a}) == [["120"]]
    admin_sql(stack, f"REVOKE SELECT ON SCHEMA system.mlflow FROM `{org.maker.name}`")
    broken = refused(sql(stack, org.viewer.token, count, {"e": data.system_a}), 403, "PERMISSION_DENIED")
    assert broken == (
        f"View {view} cannot be read: its owner {org.maker.name} lacks SELECT on table system.mlflow.runs_latest."
    )
    admin_sql(stack, f"GRANT SELECT ON SCHEMA system.mlflow TO `{org.maker.name}`")
    assert rows(stack, org.viewer.token, count, {"e": data.system_a}) == [["120"]]
    assert rows(stack, maker, f"DROP VIEW {view}") == []
    gone = refused(sql(stack, org.viewer.token, count, {"e": data.system_a}), 400, "INVALID_PARAMETER_VALUE")
    assert "does not exist" in gone
    assert call(stack, ADMIN_TOKEN, "GET", f"{UC}/permissions/table/{view}").status_code == 404
    assert rows(stack, maker, f"DROP VIEW IF EXISTS {view}") == []


def test_views_are_replaced_only_when_asked_and_never_refer_to_themselves(stack: Stack, data: Data, org: Org) -> None:
    view = f"{org.catalog}.mlflow.team_a_runs"
    again = sql(stack, ADMIN_TOKEN, f"CREATE VIEW {view} AS SELECT run_id FROM system.mlflow.runs_latest")
    assert "already exists" in refused(again, 400, "RESOURCE_ALREADY_EXISTS")
    helper = f"{org.catalog}.mlflow.helper_{data.suffix}"
    admin_sql(stack, f"CREATE VIEW {helper} AS SELECT run_id, workspace_id FROM {view}")
    loop = sql(stack, ADMIN_TOKEN, f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {helper}")
    assert "refers to itself" in refused(loop, 400, "INVALID_PARAMETER_VALUE")
    # Replacing keeps the grants: the viewer still reads the (new) definition.
    admin_sql(
        stack,
        f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM system.mlflow.runs_latest "
        f"WHERE workspace_id = '1002' OR is_account_group_member('{org.admins}')",
    )
    count = f"SELECT workspace_id, count(*) FROM {view} WHERE experiment_id IN (:a, :b) GROUP BY workspace_id"
    parameters = {"a": data.system_a, "b": data.system_b}
    assert rows(stack, org.viewer.token, count, parameters) == [["1002", "110"]]
    admin_sql(
        stack,
        f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM system.mlflow.runs_latest "
        f"WHERE workspace_id = '1001' OR is_account_group_member('{org.admins}')",
    )
    assert rows(stack, org.viewer.token, count, parameters) == [["1001", "120"]]
    admin_sql(stack, f"DROP VIEW {helper}")


def test_a_view_whose_reads_would_be_refused_is_refused_when_created(stack: Stack, org: Org) -> None:
    view = f"{org.catalog}.mlflow.field_of_a_scalar"
    # PostgreSQL would read `(x).ts_stat` as the call ts_stat(x): refused at CREATE as in a query, never stored.
    body = "SELECT (run_name).current_setting AS s FROM system.mlflow.runs_latest"
    for statement in (f"CREATE VIEW {view} AS {body}", f"CREATE OR REPLACE VIEW {view} AS {body}"):
        message = refused(sql(stack, ADMIN_TOKEN, statement), 400, "INVALID_PARAMETER_VALUE")
        assert "is not a field" in message
    missing = sql(stack, ADMIN_TOKEN, f"SELECT * FROM {view}")
    assert "does not exist" in refused(missing, 400, "INVALID_PARAMETER_VALUE")


# -- injection ---------------------------------------------------------------------------------------------------


def test_injection_attempts_fail_or_are_harmless(stack: Stack, data: Data, org: Org) -> None:
    token = org.analyst.token
    lookup = "SELECT run_id FROM system.mlflow.runs_latest WHERE run_id = :run_id"
    for value in ("' OR 1=1 --", f"{data.run_id}' OR '1'='1", "x'; DROP TABLE ix_runs; --", "$1"):
        assert rows(stack, token, lookup, {"run_id": value}) == []
    typed = call(
        stack,
        token,
        "POST",
        STATEMENTS,
        {"statement": "SELECT :n + 1", "parameters": [{"name": "n", "value": "1; DROP TABLE ix_runs", "type": "INT"}]},
    ).json()
    assert typed["status"]["state"] == "FAILED"
    assert typed["status"]["error"]["error_code"] == "BAD_REQUEST"
    assert "invalid input syntax for type integer" in typed["status"]["error"]["message"]
    for statement, code in (
        ("SELECT 1; DROP TABLE ix_runs", "INVALID_PARAMETER_VALUE"),
        ("SELECT 1 -- \n; DROP TABLE ix_runs", "INVALID_PARAMETER_VALUE"),
        ("SELECT * FROM system.mlflow.runs_latest; DELETE FROM ix_runs", "INVALID_PARAMETER_VALUE"),
        ("SELECT pg_sleep(30)", "INVALID_PARAMETER_VALUE"),
        ("SELECT set_config('role', 'postgres', true)", "INVALID_PARAMETER_VALUE"),
        ('SELECT * FROM system.mlflow."runs_latest; DROP TABLE ix_runs"', "INVALID_PARAMETER_VALUE"),
        ("SELECT * FROM system.mlflow.`runs_latest; DROP TABLE ix_runs`", "INVALID_PARAMETER_VALUE"),
        ("GRANT SELECT ON TABLE system.mlflow.runs_latest TO x; DROP TABLE ix_runs", "INVALID_PARAMETER_VALUE"),
    ):
        response = sql(stack, token, statement)
        assert response.status_code == 400, (statement, response.text)
        assert response.json()["error_code"] == code
    harmless = rows(
        stack,
        token,
        'SELECT run_id AS `a"; DROP TABLE ix_runs; --` FROM system.mlflow.runs_latest /* ; DROP TABLE ix_runs */ '
        "WHERE run_id = :run_id -- ; DROP TABLE ix_runs",
        {"run_id": data.run_id},
    )
    assert harmless == [[data.run_id]]
    still = admin_sql(stack, f"SELECT count(*) FROM system.mlflow.runs_latest WHERE experiment_id = '{data.system_a}'")
    assert still == [["120"]]


def test_the_postgresql_catalog_is_out_of_reach_with_or_without_grants(stack: Stack, org: Org) -> None:
    """Issue 11, finding 4: a CTE named like a catalog table read it, without any grant."""
    finding = "WITH pg_roles AS (SELECT rolname FROM pg_roles) SELECT rolname FROM pg_roles"
    for token in (org.outsider.token, org.analyst.token):
        message = refused(sql(stack, token, finding), 400, "INVALID_PARAMETER_VALUE")
        assert "'pg_roles' is not" in message, message
    # A CTE is what its name means, however spelled: never the catalog table PostgreSQL would find for that name.
    spelled = "WITH `PG_ROLES` AS (SELECT 'mine' AS rolname) SELECT rolname FROM pg_roles"
    assert rows(stack, org.outsider.token, spelled) == [["mine"]]
    for statement in (
        "WITH a AS (SELECT * FROM pg_settings), pg_settings AS (SELECT 1 AS x) SELECT * FROM a",
        "SELECT * FROM pg_catalog.pg_roles",
        "SELECT * FROM system.information_schema.tables",
        "SELECT rolname FROM system.mlflow.runs_latest, pg_roles",
        "SELECT run_id FROM system.mlflow.runs_latest UNION SELECT rolname FROM pg_roles",
        "SELECT version()",
        "SELECT current_setting('server_version')",
        "SELECT pg_catalog.version()",
    ):
        response = sql(stack, org.outsider.token, statement)
        assert response.status_code == 400, (statement, response.text)
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # Reading no table needs no grant and reads nothing; reading one through a CTE needs the grants on it.
    assert rows(stack, org.outsider.token, "SELECT 1 AS one") == [["1"]]
    through_cte = "WITH r AS (SELECT run_id FROM system.mlflow.runs_latest) SELECT count(*) FROM r"
    denied = refused(sql(stack, org.outsider.token, through_cte), 403, "PERMISSION_DENIED")
    assert denied == f"{org.outsider.name} lacks USE CATALOG on catalog system."


def test_the_relations_one_statement_reads_are_bounded(stack: Stack, org: Org) -> None:
    joined = "SELECT count(*) FROM " + " CROSS JOIN ".join(f"system.mlflow.runs_latest r{i}" for i in range(17))
    message = refused(sql(stack, org.analyst.token, joined), 400, "INVALID_PARAMETER_VALUE")
    assert "reads 17 relations" in message, message


# -- lifecycle: long statements, cancelling, timeouts, replicas, ownership ------------------------------------------


def wait_for_state(
    stack: Stack, token: str, statement_id: str, states: tuple[str, ...], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = call(stack, token, "GET", f"{STATEMENTS}/{statement_id}").json()
        if answer["status"]["state"] in states or time.monotonic() > deadline:
            return dict(answer)
        time.sleep(0.1)


async def backends_running(stack: Stack, statement_id: str) -> int:
    connection = await asyncpg.connect(stack.database_url)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
                f"fedgate-sql:{statement_id}",
            )
        )
    finally:
        await connection.close()


async def test_a_long_statement_is_polled_and_then_cancelled(stack: Stack, data: Data, org: Org) -> None:
    started = sql(stack, org.analyst.token, SLOW, wait_timeout="0s").json()
    assert started["status"]["state"] in ("PENDING", "RUNNING")
    statement_id = started["statement_id"]
    running = wait_for_state(stack, org.analyst.token, statement_id, ("RUNNING",))
    assert running["status"]["state"] == "RUNNING"
    assert "result" not in running
    # RUNNING is recorded on the statement's connection just before it sends the query.
    deadline = time.monotonic() + 60
    while await backends_running(stack, statement_id) != 1:
        assert time.monotonic() < deadline, "no backend ran the statement"
        await asyncio.sleep(0.1)
    cancelled = call(stack, org.analyst.token, "POST", f"{STATEMENTS}/{statement_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json() == {}
    assert wait_for_state(stack, org.analyst.token, statement_id, ("CANCELED",))["status"]["state"] == "CANCELED"
    deadline = time.monotonic() + 10
    while await backends_running(stack, statement_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert await backends_running(stack, statement_id) == 0
    # Cancelling again, or a finished statement, changes nothing.
    assert call(stack, org.analyst.token, "POST", f"{STATEMENTS}/{statement_id}/cancel").status_code == 200


def test_on_wait_timeout_cancel_cancels_at_the_wait_timeout(patient: Stack, org: Org) -> None:
    # On the gateway whose statements may run ten minutes: the answer is not a timeout's, and the statement's
    # backend lets go long before one, only because the wait timeout cancelled it (no bound on how long that took).
    started = time.monotonic()
    answer = sql(patient, org.analyst.token, SLOW, wait_timeout="5s", on_wait_timeout="CANCEL").json()
    assert time.monotonic() - started >= 5
    assert answer["status"]["state"] == "CANCELED", answer
    until(
        lambda: asyncio.run(backends_of(patient.database_url, [answer["statement_id"]])),
        lambda running: running == [],
        "the cancelled statement's backend stopped running it",
    )


# A statement that reads no table (so it needs no grant) and runs until the statement timeout: 32^7 rows to count.
NO_TABLE_SLOW = (
    "WITH t AS (SELECT explode(array(" + ", ".join(str(i) for i in range(32)) + ")) AS x) "
    "SELECT count(*) FROM t a, t b, t c, t d, t e, t f, t g"
)


def capped_count(stack: Stack) -> float:
    """The gateway's count of statements refused by the per-principal cap (one gateway process serves `stack`)."""
    text = requests.get(f"{stack.url}/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(CAPPED_METRIC + " "))


CAPPED_METRIC = "fedgate_sql_statements_capped_total"


def test_pending_or_running_statements_per_principal_are_capped(stack: Stack, org: Org) -> None:
    """Someone without any grant cannot hold more than the cap's connections of the SQL pool with statements that
    read no table: one more is refused 429 RESOURCE_EXHAUSTED with Retry-After, a cancel makes room, and another
    person is not affected."""
    cap = ServerSettings().sql_max_statements_per_principal
    assert cap > 5  # above a dashboards page's parallel queries
    token = org.outsider.token
    ids: list[str] = []
    try:
        for _ in range(cap):
            started = sql(stack, token, NO_TABLE_SLOW, wait_timeout="0s")
            assert started.status_code == 200, started.text
            assert started.json()["status"]["state"] in ("PENDING", "RUNNING")
            ids.append(str(started.json()["statement_id"]))
        capped_before = capped_count(stack)
        refusal = sql(stack, token, NO_TABLE_SLOW, wait_timeout="0s")
        message = refused(refusal, 429, "RESOURCE_EXHAUSTED")
        assert f"at most {cap}" in message
        assert int(refusal.headers["Retry-After"]) >= 1
        assert capped_count(stack) == capped_before + 1  # counted before the refusal was answered
        # Another person is not affected.
        theirs = sql(stack, org.analyst.token, "SELECT 1 AS one")
        assert theirs.status_code == 200 and theirs.json()["status"]["state"] == "SUCCEEDED", theirs.text
        # Cancelling one makes room for one more.
        assert call(stack, token, "POST", f"{STATEMENTS}/{ids[0]}/cancel").status_code == 200
        again = sql(stack, token, NO_TABLE_SLOW, wait_timeout="0s")
        assert again.status_code == 200, again.text
        ids.append(str(again.json()["statement_id"]))
        refused(sql(stack, token, NO_TABLE_SLOW, wait_timeout="0s"), 429, "RESOURCE_EXHAUSTED")
    finally:
        for statement_id in ids:
            call(stack, token, "POST", f"{STATEMENTS}/{statement_id}/cancel")
        until(
            lambda: asyncio.run(backends_of(stack.database_url, ids)),
            lambda running: running == [],
            "no backend runs a cancelled statement",
            seconds=30,
        )
    # Once they are cancelled, statements run again.
    assert sql(stack, token, "SELECT 1 AS one").json()["status"]["state"] == "SUCCEEDED"


def test_only_the_principal_who_ran_a_statement_may_read_it(stack: Stack, data: Data, org: Org) -> None:
    answer = sql(
        stack, org.analyst.token, "SELECT run_id FROM system.mlflow.runs_latest WHERE run_id = :r", {"r": data.run_id}
    ).json()
    statement_id = answer["statement_id"]
    for method, path in (
        ("GET", f"{STATEMENTS}/{statement_id}"),
        ("GET", f"{STATEMENTS}/{statement_id}/result/chunks/0"),
        ("POST", f"{STATEMENTS}/{statement_id}/cancel"),
    ):
        for token in (org.outsider.token, ADMIN_TOKEN):
            refused(call(stack, token, method, path), 404, "RESOURCE_DOES_NOT_EXIST")
    mine = call(stack, org.analyst.token, "GET", f"{STATEMENTS}/{statement_id}").json()
    assert mine["result"]["data_array"] == [[data.run_id]]
    refused(call(stack, org.analyst.token, "GET", f"{STATEMENTS}/{uuid.uuid4()}"), 404, "RESOURCE_DOES_NOT_EXIST")


@pytest.fixture(scope="module")
def replica(stack: Stack) -> Iterator[GatewayProcess]:
    """A second gateway on the same database, with a one-second statement timeout."""
    config = write_config(stack.workdir / "fedgate-sql-replica.toml", stack.database_url, stack.stores)
    gateway = GatewayProcess(config, {**GATEWAY_ENV, "FEDGATE_SERVER_SQL_STATEMENT_TIMEOUT_SECONDS": "1"}).start()
    yield gateway
    gateway.stop()


def test_a_runaway_statement_is_cancelled_by_the_statement_timeout(replica: GatewayProcess, data: Data) -> None:
    response = requests.post(
        f"{replica.url}{STATEMENTS}",
        json={"statement": SLOW, "wait_timeout": "30s"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )
    status = response.json()["status"]
    assert status["state"] == "FAILED"
    assert status["error"]["error_code"] == "DEADLINE_EXCEEDED"
    assert "statement timeout (1 s)" in status["error"]["message"]  # a wait run out would have answered RUNNING


def test_any_replica_answers_for_a_statement(stack: Stack, replica: GatewayProcess, data: Data, org: Org) -> None:
    started = sql(stack, org.analyst.token, SLOW, wait_timeout="0s").json()
    statement_id = started["statement_id"]
    elsewhere = Stack(replica, stack.stores, stack.database_url, stack.workdir)
    assert wait_for_state(elsewhere, org.analyst.token, statement_id, ("RUNNING",))["status"]["state"] == "RUNNING"
    assert call(elsewhere, org.analyst.token, "POST", f"{STATEMENTS}/{statement_id}/cancel").status_code == 200
    assert wait_for_state(stack, org.analyst.token, statement_id, ("CANCELED",))["status"]["state"] == "CANCELED"
    done = sql(
        stack, org.analyst.token, "SELECT run_name FROM system.mlflow.runs_latest WHERE run_id = :r", {"r": data.run_id}
    ).json()
    there = call(elsewhere, org.analyst.token, "GET", f"{STATEMENTS}/{done['statement_id']}").json()
    assert there["result"]["data_array"] == [["sql-first"]]


@pytest.fixture(scope="module")
def patient(stack: Stack) -> Iterator[Stack]:
    """A second gateway on the same database whose statements may run ten minutes: one left running is seen."""
    config = write_config(stack.workdir / "fedgate-sql-patient.toml", stack.database_url, stack.stores)
    gateway = GatewayProcess(config, {**GATEWAY_ENV, "FEDGATE_SERVER_SQL_STATEMENT_TIMEOUT_SECONDS": "600"}).start()
    yield Stack(gateway, stack.stores, stack.database_url, stack.workdir)
    gateway.stop()


async def backends_of(database_url: str, statement_ids: list[str], *, terminate: bool = False) -> list[str]:
    """The statements some backend still runs (any state), read as the database's superuser; ended if asked."""
    connection = await asyncpg.connect(database_url)
    try:
        found = await connection.fetch(
            "SELECT application_name, CASE WHEN $2 THEN pg_terminate_backend(pid) END FROM pg_stat_activity "
            "WHERE application_name = ANY($1::text[])",
            [f"fedgate-sql:{statement_id}" for statement_id in statement_ids],
            terminate,
        )
        return sorted(str(row[0]) for row in found)
    finally:
        await connection.close()


def submit_and_cancel(patient: Stack, elsewhere: Stack, token: str, delay: float, there: bool) -> str:
    started = sql(patient, token, SLOW, wait_timeout="0s")
    assert started.status_code == 200, started.text
    statement_id = str(started.json()["statement_id"])
    time.sleep(delay)
    cancelled = call(elsewhere if there else patient, token, "POST", f"{STATEMENTS}/{statement_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json() == {}, cancelled.text
    return statement_id


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moments=st.lists(st.tuples(st.floats(0, 0.01), st.booleans()), min_size=1, max_size=8))
def test_a_statement_cancelled_at_any_moment_stops_running_and_frees_its_connection(
    stack: Stack, patient: Stack, data: Data, org: Org, moments: list[tuple[float, bool]]
) -> None:
    """Submitted without waiting and cancelled right after, on the same replica or another, while the statement
    starts: the cancel is accepted, the statement reads CANCELED and no backend runs it any more, long before
    the ten-minute statement timeout; its connection goes back to the pool."""
    with ThreadPoolExecutor(len(moments)) as pool:
        ids = list(pool.map(lambda moment: submit_and_cancel(patient, stack, org.analyst.token, *moment), moments))
    try:
        for statement_id in ids:
            answer = call(patient, org.analyst.token, "GET", f"{STATEMENTS}/{statement_id}").json()
            assert answer["status"]["state"] == "CANCELED" and "result" not in answer, answer
        until(
            lambda: asyncio.run(backends_of(stack.database_url, ids)),
            lambda running: running == [],
            "no backend runs a cancelled statement",
            seconds=30,
        )
    finally:
        asyncio.run(backends_of(stack.database_url, ids, terminate=True))
    # Every connection of the pool is free again: a statement runs to its end at once.
    answer = sql(
        patient,
        org.analyst.token,
        "SELECT run_name FROM system.mlflow.runs_latest WHERE run_id = :r",
        {"r": data.run_id},
    ).json()
    assert answer["status"]["state"] == "SUCCEEDED", answer


def test_large_results_come_in_chunks_and_are_capped(stack: Stack, data: Data, org: Org) -> None:
    statement = (
        "SELECT a.run_id, b.run_id FROM system.mlflow.runs_latest a CROSS JOIN system.mlflow.runs_latest b "
        "WHERE a.experiment_id = :e AND b.experiment_id = :e ORDER BY 1, 2"
    )
    answer = sql(stack, org.analyst.token, statement, {"e": data.system_a}, row_limit=2500).json()
    manifest = answer["manifest"]
    assert manifest["total_row_count"] == 2500 and manifest["truncated"] is True
    assert manifest["total_chunk_count"] == 3
    assert [c["row_count"] for c in manifest["chunks"]] == [CHUNK_ROWS, CHUNK_ROWS, 500]
    first = answer["result"]
    assert first["next_chunk_index"] == 1
    link = first["next_chunk_internal_link"]
    second = call(stack, org.analyst.token, "GET", link).json()
    assert second["row_offset"] == CHUNK_ROWS and second["next_chunk_index"] == 2
    last = call(stack, org.analyst.token, "GET", f"{STATEMENTS}/{answer['statement_id']}/result/chunks/2").json()
    assert len(last["data_array"]) == 500 and "next_chunk_index" not in last
    capped = sql(stack, org.analyst.token, statement, {"e": data.system_a}).json()["manifest"]
    assert capped["total_row_count"] == 10_000 and capped["truncated"] is True  # 120 x 120 rows, the cap is 10,000


def test_a_result_larger_than_25_mib_fails_and_never_reaches_the_gateway(stack: Stack, org: Org) -> None:
    # 40 MB grown from a literal by someone with no grant at all (the statement reads no table).
    grow = f"replace(replace('aaaa', 'a', '{'a' * 5000}'), 'a', '{'a' * 2000}')"
    answer = sql(stack, org.outsider.token, f"SELECT {grow} AS v")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"]["state"] == "FAILED", str(body)[:300]
    assert body["status"]["error"]["error_code"] == "BAD_REQUEST"
    assert "larger than 25 MiB" in body["status"]["error"]["message"]
    assert body.get("result") is None and body.get("manifest") is None
    # The same person's small result answers as before.
    assert rows(stack, org.outsider.token, "SELECT length('aaaa') AS n") == [["4"]]


# -- clients: databricks-sdk, fedgate sql, the MLflow client writing through -------------------------------------------


def test_the_stock_databricks_sdk_works_unchanged(stack: Stack, data: Data, org: Org) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import PermissionDenied
    from databricks.sdk.service.sql import Disposition, Format, StatementParameterListItem, StatementState

    client = WorkspaceClient(host=stack.url, token=org.analyst.token)
    statements = client.statement_execution
    response = statements.execute_statement(
        statement="SELECT run_name, TIMESTAMPDIFF(MINUTE, start_time, end_time) AS minutes, params['lr'] AS lr "
        "FROM system.mlflow.runs_latest WHERE run_id = :run_id",
        warehouse_id="ignored",
        parameters=[StatementParameterListItem(name="run_id", value=data.run_id)],
        wait_timeout="30s",
        format=Format.JSON_ARRAY,
        disposition=Disposition.INLINE,
    )
    assert response.status is not None and response.status.state == StatementState.SUCCEEDED
    assert response.manifest is not None and response.manifest.schema is not None
    assert [c.name for c in response.manifest.schema.columns or []] == ["run_name", "minutes", "lr"]
    assert response.result is not None and response.result.data_array == [["sql-first", "31", "0.1"]]
    assert response.statement_id is not None
    again = statements.get_statement(response.statement_id)
    assert again.result is not None and again.result.data_array == [["sql-first", "31", "0.1"]]

    chunked = statements.execute_statement(
        statement="SELECT a.run_id FROM system.mlflow.runs_latest a CROSS JOIN system.mlflow.runs_latest b "
        "WHERE a.experiment_id = :e AND b.experiment_id = :e",
        warehouse_id="ignored",
        parameters=[StatementParameterListItem(name="e", value=data.system_b)],
    )
    assert chunked.manifest is not None and chunked.manifest.truncated  # 110 x 110 = 12,100 rows; the cap is 10,000
    assert chunked.manifest.total_chunk_count == 10_000 // CHUNK_ROWS
    assert chunked.statement_id is not None and chunked.result is not None
    fetched = list(chunked.result.data_array or [])
    index = chunked.result.next_chunk_index
    while index is not None:
        chunk = statements.get_statement_result_chunk_n(chunked.statement_id, index)
        fetched.extend(chunk.data_array or [])
        index = chunk.next_chunk_index
    assert len(fetched) == 10_000

    slow = statements.execute_statement(statement=SLOW, warehouse_id="ignored", wait_timeout="0s")
    assert slow.statement_id is not None
    statements.cancel_execution(slow.statement_id)
    deadline = time.monotonic() + 30
    state = statements.get_statement(slow.statement_id).status
    while state is not None and state.state != StatementState.CANCELED and time.monotonic() < deadline:
        time.sleep(0.1)
        state = statements.get_statement(slow.statement_id).status
    assert state is not None and state.state == StatementState.CANCELED

    failed = statements.execute_statement(
        statement="SELECT CAST(run_id AS INT) FROM system.mlflow.runs_latest", warehouse_id="ignored"
    )
    assert failed.status is not None and failed.status.state == StatementState.FAILED
    assert failed.status.error is not None and "invalid input syntax" in (failed.status.error.message or "")

    outsider = WorkspaceClient(host=stack.url, token=org.outsider.token).statement_execution
    with pytest.raises(PermissionDenied, match="lacks USE CATALOG on catalog system"):
        outsider.execute_statement(statement="SELECT 1 FROM system.mlflow.runs_latest", warehouse_id="ignored")


def test_fedgate_sql_prints_an_aligned_table(stack: Stack, data: Data, org: Org) -> None:
    env = {**os.environ, "FEDGATE_URL": stack.url, "FEDGATE_TOKEN": org.analyst.token}
    statement = (
        "SELECT run_name, TIMESTAMPDIFF(MINUTE, start_time, end_time) AS minutes, params['missing'] AS missing "
        "FROM system.mlflow.runs_latest WHERE run_id = :run_id"
    )
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "sql", statement, "--param", f"run_id={data.run_id}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["run_name   minutes  missing", "sql-first  31       NULL", "(1 row)"]
    as_json = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "sql", statement, "--param", f"run_id={data.run_id}", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert json.loads(as_json.stdout)["rows"] == [["sql-first", "31", None]]
    denied = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "sql", "SELECT 1; DROP TABLE ix_runs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert denied.returncode == 1
    assert "INVALID_PARAMETER_VALUE: Only one statement at a time" in denied.stderr


def test_runs_logged_with_the_mlflow_client_can_be_queried(mlflow_env: Stack, tmp_path: Path) -> None:
    """Through the write-through index: what the stock client logs is in system.mlflow at once."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_workspace("team-a")
    client = MlflowClient()
    experiment_id = client.create_experiment(f"sql-through-{uuid.uuid4().hex[:6]}")
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "lr", "0.05")
    client.log_metric(run.info.run_id, "loss", 0.25, step=1)
    client.set_terminated(run.info.run_id)
    statement = (
        "SELECT workspace_id, status, params['lr'], filter(aggregated_metrics, m -> m.metric_name = 'loss')[0]"
        ".latest_value FROM system.mlflow.runs_latest WHERE run_id = :run_id"
    )
    deadline = time.monotonic() + 30
    found = admin_sql_with(mlflow_env, statement, {"run_id": run.info.run_id})
    while not found and time.monotonic() < deadline:
        time.sleep(0.5)
        found = admin_sql_with(mlflow_env, statement, {"run_id": run.info.run_id})
    assert found == [["1001", "FINISHED", "0.05", "0.25"]]


def admin_sql_with(stack: Stack, statement: str, parameters: dict[str, str]) -> list[list[Any]]:
    return rows(stack, ADMIN_TOKEN, statement, parameters)
