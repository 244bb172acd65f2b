"""The SQL endpoint attacked, through a real gateway on a real PostgreSQL, as people whose grants differ.

A *viewer* may read one dynamic view only, `<catalog>.mlflow.ws1001` (the runs of workspace 1001); a *stranger* has
no grant at all. Workspace 1002 holds runs whose names, tags, params and metric names carry a marker: no answer
to either of them may ever hold it, whatever the statement (operator precedence around the view's filter, names
spelled in other cases or quotes, CTEs named like tables, lambdas, set operations, subqueries, windows, functions
of PostgreSQL's own, deep or long texts, GRANTs by someone who manages nothing). A refusal is a Databricks-style
error (`INVALID_PARAMETER_VALUE`, `PERMISSION_DENIED`, or a FAILED statement with `BAD_REQUEST`, or
`RESOURCE_EXHAUSTED` past a limit of PostgreSQL's), never a 500.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.identity import Admin, Person

pytestmark = pytest.mark.integration
STATEMENTS = "/api/2.0/sql/statements"
# Errors a refused or failed statement may answer; anything else (a 500, INTERNAL_ERROR, or the database
# "unavailable" for what is the statement's own fault) is a finding.
REFUSALS = {400: "INVALID_PARAMETER_VALUE", 403: "PERMISSION_DENIED", 404: "RESOURCE_DOES_NOT_EXIST"}


@dataclass
class Data:
    suffix: str
    marker: str  # in every value of workspace 1002's rows that can hold text
    experiment_a: str  # workspace 1001: 6 runs
    experiment_b: str  # workspace 1002: 4 runs

    @property
    def experiments(self) -> str:
        return f"'1001-{self.experiment_a}', '1002-{self.experiment_b}'"


@dataclass
class Org:
    viewer: Person  # SELECT on the view <catalog>.mlflow.ws1001 only
    stranger: Person  # no grant at all
    maker: Person  # SELECT on system.mlflow, MANAGE on <catalog>.mlflow: the view's owner
    proxy: Person  # SELECT on the view only, MANAGE on <sandbox>.mlflow: builds a view on the view
    catalog: str
    sandbox: str

    @property
    def view(self) -> str:
        return f"{self.catalog}.mlflow.ws1001"


def call(stack: Stack, token: str, statement: str, **extra: Any) -> requests.Response:
    body: dict[str, Any] = {"statement": statement, "warehouse_id": "any", "wait_timeout": "30s", **extra}
    return requests.post(
        f"{stack.url}{STATEMENTS}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def rows(stack: Stack, token: str, statement: str) -> list[list[Any]]:
    response = call(stack, token, statement)
    assert response.status_code == 200, (statement, response.text)
    answer = response.json()
    assert answer["status"]["state"] == "SUCCEEDED", (statement, answer)
    return list(answer["result"].get("data_array") or [])


def refused(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code, body
    return str(body["message"])


def judged(stack: Stack, token: str, statement: str, data: Data, **extra: Any) -> str:
    """Run an attack; fail on a leak or a bad error; answer what happened (SUCCEEDED, FAILED, or the error code)."""
    response = call(stack, token, statement, **extra)
    assert data.marker not in response.text, (statement, response.text)
    for number in range(1, 5):  # workspace 1002's run ids
        assert f"{data.suffix}-b{number}" not in response.text, (statement, response.text)
    if response.status_code != 200:
        body = response.json()
        assert REFUSALS.get(response.status_code) == body.get("error_code"), (statement, response.status_code, body)
        assert body.get("message"), (statement, body)
        return str(body["error_code"])
    answer = response.json()
    state = answer["status"]["state"]
    if state == "FAILED":
        error = answer["status"]["error"]
        # RESOURCE_EXHAUSTED: past a limit of PostgreSQL's (class 54: a stack too deep for an expression nested
        # thousands deep), the statement's own doing, not the database's.
        exhausted = error["error_code"] == "RESOURCE_EXHAUSTED" and answer["status"]["sql_state"].startswith("54")
        assert error["error_code"] == "BAD_REQUEST" or exhausted, (statement, answer)
        return "FAILED"
    assert state == "SUCCEEDED", (statement, answer)
    return "SUCCEEDED"


@pytest.fixture(scope="module")
async def data(stack: Stack) -> AsyncIterator[Data]:
    suffix = uuid.uuid4().hex[:6]
    marker = f"hidden{suffix}"
    found = Data(suffix, marker, f"atk-{suffix}-a", f"atk-{suffix}-b")
    connection = await asyncpg.connect(stack.database_url)
    try:
        await connection.execute(
            "INSERT INTO ix_experiments (workspace_id, experiment_id, name) VALUES (1001, $1, $2), (1002, $3, $4)",
            found.experiment_a,
            f"/Users/alice/atk-{suffix}",
            found.experiment_b,
            f"/Users/bob/{marker}",
        )
        await connection.execute(
            """
            INSERT INTO ix_runs (run_id, workspace_id, experiment_id, created_by, run_name, status, start_time,
                                 params, tags)
            SELECT $1 || '-a' || n, 1001, $2, CASE WHEN n % 2 = 0 THEN 'alice@example.com' ELSE '' END,
                   CASE WHEN n = 1 THEN 'true' WHEN n = 2 THEN '12' ELSE 'run-a' || n END,
                   (ARRAY['FINISHED', 'FAILED', 'RUNNING'])[n % 3 + 1],
                   '2024-07-01T00:00:00Z'::timestamptz + n * interval '1 day', '{"lr": "0.1"}', '{"team": "a"}'
            FROM generate_series(1, 6) AS n
            """,
            suffix,
            found.experiment_a,
        )
        await connection.execute(
            """
            INSERT INTO ix_runs (run_id, workspace_id, experiment_id, created_by, run_name, status, start_time,
                                 params, tags)
            SELECT $1 || '-b' || n, 1002, $2, $3 || '@example.com', $3 || '-' || n,
                   (ARRAY['FINISHED', 'FAILED'])[n % 2 + 1], '2024-07-01T00:00:00Z'::timestamptz + n * interval '1 day',
                   jsonb_build_object('lr', $3), jsonb_build_object($3, 'b')
            FROM generate_series(1, 4) AS n
            """,
            suffix,
            found.experiment_b,
            marker,
        )
        await connection.execute(
            """
            INSERT INTO ix_metrics (run_key, metric_name, metric_steps, metric_times, metric_values)
            SELECT run_key, $2, ARRAY[0::int8], ARRAY['2024-07-01T00:00:00Z'::timestamptz], ARRAY[1.0::float8]
            FROM ix_runs WHERE run_id LIKE $1 || '-b%'
            """,
            suffix,
            marker,
        )
    finally:
        await connection.close()
    yield found


@pytest.fixture(scope="module")
def org(stack: Stack, data: Data) -> Org:
    s = data.suffix
    admin = Admin.of(stack)
    people = {key: admin.person(f"{key}.atk{s}@example.com") for key in ("viewer", "stranger", "maker", "proxy")}
    catalog, sandbox = f"gov_atk{s}", f"sandbox_atk{s}"
    for statement in (
        # A schema exists once a view is in it.
        f"CREATE VIEW {catalog}.mlflow.placeholder AS SELECT 1 AS one",
        f"CREATE VIEW {sandbox}.mlflow.placeholder AS SELECT 1 AS one",
        f"GRANT USE CATALOG ON CATALOG system TO `{people['maker'].name}`",
        f"GRANT USE SCHEMA, SELECT ON SCHEMA system.mlflow TO `{people['maker'].name}`",
        f"GRANT MANAGE ON SCHEMA {catalog}.mlflow TO `{people['maker'].name}`",
        f"GRANT MANAGE ON SCHEMA {sandbox}.mlflow TO `{people['proxy'].name}`",
    ):
        rows(stack, ADMIN_TOKEN, statement)
    maker = people["maker"].token
    view = f"{catalog}.mlflow.ws1001"
    rows(stack, maker, f"CREATE VIEW {view} AS SELECT * FROM system.mlflow.runs_latest WHERE workspace_id = '1001'")
    for who in ("viewer", "proxy"):
        name = people[who].name
        rows(stack, ADMIN_TOKEN, f"GRANT USE CATALOG ON CATALOG {catalog} TO `{name}`")
        rows(stack, ADMIN_TOKEN, f"GRANT USE SCHEMA ON SCHEMA {catalog}.mlflow TO `{name}`")
        rows(stack, ADMIN_TOKEN, f"GRANT SELECT ON VIEW {view} TO `{name}`")
    return Org(**people, catalog=catalog, sandbox=sandbox)


def mine(data: Data) -> str:
    return f"experiment_id IN ({data.experiments})"


# -- the finding: a lambda variable spelled in another case -----------------------------------------------------


def test_a_lambda_variable_in_another_case_calls_no_function(stack: Stack, data: Data, org: Org) -> None:
    """`x -> X.f`, with a FROM item named x, was a column of that item to the gateway but f(x) of the lambda's
    scalar to PostgreSQL: `X.ts_stat` ran any query as the reader role (every workspace's rows, no grant needed)
    and `set_config('role', 'none', ...)` inside it left that role."""
    query = f"SELECT to_tsvector('simple', run_name) FROM system_mlflow.runs_latest WHERE {mine(data)}"
    for token in (org.viewer.token, org.stranger.token):
        for statement in (
            f'WITH x AS (SELECT 1 AS one) SELECT transform(array("{query}"), x -> X.ts_stat) FROM x',
            f'SELECT filter(array("{query}"), x -> X.ts_stat IS NOT NULL) FROM (SELECT 1 AS one) x',
            f'SELECT exists(array("{query}"), x -> X.ts_stat IS NULL) FROM (SELECT 1 AS one) AS x',
            "SELECT transform(array('server_version'), x -> X.current_setting) FROM (SELECT 1 AS one) x",
            # The names lambda variables run under cannot be written.
            "SELECT transform(array('server_version'), x -> _lambda_1.current_setting) FROM (SELECT 1) _lambda_1",
            "SELECT transform(array(1), `_LAMBDA_1` -> `_LAMBDA_1` + 1)",
        ):
            response = call(stack, token, statement)
            assert data.marker not in response.text, response.text
            message = refused(response, 400, "INVALID_PARAMETER_VALUE")
            assert "is not a field" in message or "are reserved" in message, message
    # What Databricks means by those spellings still works: the variable, in any case, and its fields.
    assert rows(stack, org.stranger.token, "SELECT transform(array(1, 2), x -> X + x) FROM (SELECT 1 AS one) x") == [
        ["[2,4]"]
    ]
    aggregates = rows(
        stack,
        org.viewer.token,
        f"SELECT size(filter(aggregated_metrics, m -> M.metric_name IS NOT NULL)) FROM {org.view} x "
        f"WHERE {mine(data)} LIMIT 1",
    )
    assert aggregates == [["0"]]


# -- NUL characters ---------------------------------------------------------------------------------------------


def test_a_nul_character_is_refused_before_postgresql(stack: Stack, data: Data, org: Org) -> None:
    """PostgreSQL ends a statement's text at a NUL and fails the protocol (08P01): the statement read FAILED
    with TEMPORARILY_UNAVAILABLE, "the database could not be reached", for what was the text's fault."""
    for statement in (
        "SELECT 'a\\0b'",
        "SELECT 'a\\u0000b' AS x",
        "SELECT 1 AS one WHERE 'b\\0' = 'b'",
        "SELECT 1\x00",
    ):
        message = refused(call(stack, org.stranger.token, statement), 400, "INVALID_PARAMETER_VALUE")
        assert "NUL" in message, message
    granted = call(stack, ADMIN_TOKEN, f"GRANT SELECT ON VIEW {org.view} TO `a\x00b`")
    assert "NUL" in refused(granted, 400, "INVALID_PARAMETER_VALUE")
    # A parameter's value is bound, never SQL text: PostgreSQL's own refusal of the NUL.
    valued = judged(stack, org.stranger.token, "SELECT :v AS v", data, parameters=[{"name": "v", "value": "a\x00b"}])
    assert valued == "FAILED"


def test_a_date_or_interval_past_what_the_answer_can_write_fails_as_the_statements_own(
    stack: Stack, data: Data, org: Org
) -> None:
    """PostgreSQL's dates run to 5874897 AD and back to 4713 BC, its intervals to 178 million years; a result
    holding one past the years 1 to 9999 (Databricks' range) failed decoding in the gateway, INTERNAL_ERROR "the
    statement failed inside the gateway" with a stack trace in its log, for a statement anyone may run."""
    for statement in (
        "SELECT current_date() + INTERVAL '100000000' DAY AS later",
        "SELECT CAST('10000-01-01' AS DATE) AS d",
        "SELECT CAST('10000-01-01 00:00:00' AS TIMESTAMP) AS t",
        "SELECT timestampadd(YEAR, 9000, current_timestamp()) AS t",
        "SELECT CAST(CAST('0001-01-01' AS DATE) - INTERVAL '1' DAY AS DATE) AS d",
        "SELECT INTERVAL '100000000' MONTH AS i",
        "SELECT array(CAST('10000-01-01' AS DATE)) AS a",
    ):
        answer = call(stack, org.stranger.token, statement).json()
        assert answer["status"]["state"] == "FAILED", (statement, answer)
        error = answer["status"]["error"]
        assert error["error_code"] == "BAD_REQUEST", (statement, answer)
        assert "outside the years 1 to 9999" in error["message"], (statement, answer)
    # Within the range, every year in four digits, as Databricks writes it; the connection serves on.
    assert rows(stack, org.stranger.token, "SELECT CAST('0099-06-27 00:58:57' AS TIMESTAMP) AS t") == [
        ["0099-06-27T00:58:57.000Z"]
    ]
    assert rows(stack, org.stranger.token, "SELECT CAST('9999-12-31' AS DATE) AS d") == [["9999-12-31"]]


def test_a_view_and_a_name_nobody_made_answer_alike_to_who_may_not_use_their_schema(
    stack: Stack, data: Data, org: Org
) -> None:
    """Whether a view existed was looked up before the grants on its catalog and schema: a name nobody made answered
    400 "does not exist" and a view 403 "lacks USE CATALOG", so anyone signed in could list the views of every
    catalog by guessing names. Unity Catalog checks USE CATALOG and USE SCHEMA first; so does the gateway now."""
    s = data.suffix
    user = Admin.of(stack).person(f"catalog-only.atk{s}@example.com")
    rows(stack, ADMIN_TOKEN, f"GRANT USE CATALOG ON CATALOG {org.catalog} TO `{user.name}`")
    made, unmade = org.view, f"{org.catalog}.mlflow.no_such_view_{s}"
    for token, lacking in (
        (org.stranger.token, f"lacks USE CATALOG on catalog {org.catalog}."),
        (user.token, f"lacks USE SCHEMA on schema {org.catalog}.mlflow."),
    ):
        answers = []
        for name in (made, unmade):
            for statement in (f"SELECT * FROM {name}", f"SELECT count(*) FROM {name} AS v WHERE v.run_id IS NULL"):
                message = refused(call(stack, token, statement), 403, "PERMISSION_DENIED")
                assert message.endswith(lacking), (statement, message)
                answers.append(message)
        assert len(set(answers)) == 1, answers
    # Who may use the schema learns, as in Unity Catalog, whether a view there exists.
    refused(call(stack, org.viewer.token, f"SELECT * FROM {unmade}"), 400, "INVALID_PARAMETER_VALUE")
    refused(call(stack, org.viewer.token, f"SELECT * FROM {org.catalog}.mlflow.placeholder"), 403, "PERMISSION_DENIED")


def test_grants_of_a_securable_and_of_a_name_nobody_made_answer_alike_to_who_may_not_see_it(
    stack: Stack, data: Data, org: Org
) -> None:
    """SHOW GRANTS and the Unity Catalog permissions API looked the securable up first: to anyone signed in, a
    catalog, schema or view answered 403 "needs MANAGE" (SHOW GRANTS of oneself: 200) and a name nobody made 404.
    As in Unity Catalog, the usage privileges of its catalog and schema (or a privilege on it, owning it, being an
    admin) now come first: to anyone else both answer the same 403."""
    s, c = data.suffix, org.catalog
    admin = Admin.of(stack)
    catalog_only = admin.person(f"grants-catalog-only.atk{s}@example.com")
    owner = admin.person(f"grants-owner.atk{s}@example.com")
    rows(stack, ADMIN_TOKEN, f"GRANT USE CATALOG ON CATALOG {c} TO `{catalog_only.name}`")
    rows(stack, ADMIN_TOKEN, f"GRANT MANAGE ON SCHEMA {c}.mlflow TO `{owner.name}`")
    owned = f"{c}.mlflow.owned_{s}"
    rows(stack, owner.token, f"CREATE VIEW {owned} AS SELECT 1 AS one")
    rows(stack, ADMIN_TOKEN, f"REVOKE MANAGE ON SCHEMA {c}.mlflow FROM `{owner.name}`")
    uc = f"{stack.url}/api/2.1/unity-catalog"
    keyword = {"catalog": "CATALOG", "schema": "SCHEMA", "table": "VIEW"}

    def answers(who: Person | None, kind: str, name: str) -> list[tuple[int, str]]:
        """Every way of asking about `name`'s grants, with `name` written out of the answers."""
        token, me = (who.token, who.name) if who else (ADMIN_TOKEN, org.viewer.name)
        headers = {"Authorization": f"Bearer {token}"}
        found = []
        for response in (
            requests.get(f"{uc}/permissions/{kind}/{name}", headers=headers, timeout=30),
            requests.get(f"{uc}/effective-permissions/{kind}/{name}", headers=headers, timeout=30),
            requests.get(f"{uc}/effective-permissions/{kind}/{name}?principal={me}", headers=headers, timeout=30),
            call(stack, token, f"SHOW GRANTS ON {keyword[kind]} {name}"),
            call(stack, token, f"SHOW GRANTS `{me}` ON {keyword[kind]} {name}"),
        ):
            body = response.json()
            found.append((response.status_code, str(body.get("message", body.get("status", {}).get("state")))))
        if who is not None and who is not org.viewer:  # who may change nothing
            change = {"changes": [{"principal": me, "add": ["SELECT"]}]}
            response = requests.patch(f"{uc}/permissions/{kind}/{name}", json=change, headers=headers, timeout=30)
            found.append((response.status_code, str(response.json().get("message"))))
            response = call(stack, token, f"GRANT SELECT ON {keyword[kind]} {name} TO `{me}`")
            found.append((response.status_code, str(response.json().get("message"))))
        return [(status, message.replace(name, "<name>")) for status, message in found]

    made = {"catalog": c, "schema": f"{c}.mlflow", "table": org.view}
    unmade = {"catalog": f"nocat_{s}", "schema": f"{c}.noschema_{s}", "table": f"{c}.mlflow.noview_{s}"}
    for who, kinds, lacking in (
        (org.stranger, ("catalog", "schema", "table"), "lacks USE CATALOG on catalog"),
        (catalog_only, ("schema", "table"), "lacks USE SCHEMA on schema"),
        (owner, ("schema",), "lacks USE CATALOG on catalog"),
    ):
        for kind in kinds:
            hidden = answers(who, kind, made[kind])
            assert hidden == answers(who, kind, unmade[kind]), (who.name, kind)
            assert {status for status, _ in hidden} == {403} and all(lacking in m for _, m in hidden), hidden

    # Who may see it keeps the answers it had: 403 needing MANAGE, its own grants, 404 for a name nobody made.
    for who, kind, name in ((catalog_only, "catalog", c), (owner, "table", owned), (org.viewer, "table", org.view)):
        seen = answers(who, kind, name)
        assert [status for status, _ in seen] == [403, 403, 200, 403, 200, *[403] * (len(seen) - 5)], seen
        assert "needs MANAGE" in seen[0][1], seen
    assert answers(org.viewer, "table", unmade["table"])[0][0] == 404
    for kind in ("catalog", "schema", "table"):
        assert [status for status, _ in answers(None, kind, made[kind])] == [200] * 5
        assert answers(None, kind, unmade[kind])[0][0] == 404


# -- spellings, precedence, scopes --------------------------------------------------------------------------------


def attacks(data: Data, org: Org) -> list[str]:
    view, m = org.view, mine(data)
    return [
        # the view's filter and the reader's conditions: precedence of OR/AND/NOT/IS/BETWEEN/<=>/||
        f"SELECT run_id, run_name FROM {view} WHERE workspace_id = '1002' OR true",
        f"SELECT run_id, run_name FROM {view} WHERE NOT workspace_id = '1001' OR 1 = 1",
        f"SELECT run_id, run_name FROM {view} WHERE workspace_id = '1001' IS NOT TRUE OR TRUE",
        f"SELECT run_id, run_name FROM {view} WHERE workspace_id BETWEEN '1000' AND '1003' AND true OR true",
        f"SELECT run_id, run_name FROM {view} WHERE workspace_id <=> '1002' = false OR true",
        f"SELECT run_id, run_name FROM {view} WHERE workspace_id || '' = '1002' OR NOT false",
        f"SELECT run_id, run_name FROM {view} WHERE -1 < 0 OR workspace_id = '1002'",
        f"SELECT * FROM {view} WHERE {m} OR workspace_id = '1002'",
        # aggregates (answered from run counts when they can be), groupings, windows
        f"SELECT workspace_id, count(*) FROM {view} WHERE workspace_id = '1002' OR true GROUP BY workspace_id",
        f"SELECT experiment_id, created_by, count(*) FROM {view} GROUP BY CUBE(experiment_id, created_by)",
        f"SELECT count(*), min(start_time), max(run_name) FROM {view} WHERE NOT (workspace_id = '1001')",
        f"SELECT run_name, count(*) OVER (), lag(run_name) OVER (ORDER BY run_id) FROM {view} WHERE {m}",
        # set operations, joins, subqueries in every place
        f"SELECT run_name FROM {view} UNION SELECT run_name FROM {view} EXCEPT SELECT 'x'",
        f"SELECT a.run_name, b.run_name FROM {view} a FULL OUTER JOIN {view} b ON a.run_id = b.run_id",
        f"SELECT (SELECT max(run_name) FROM {view}) AS m, run_name FROM {view}",
        f"SELECT run_name FROM {view} a WHERE EXISTS (SELECT 1 FROM {view} b WHERE b.run_id <> a.run_id)",
        f"SELECT * FROM (SELECT * FROM {view}) AS runs_latest WHERE workspace_id = '1002' OR true",
        f"SELECT k, v FROM {view} LATERAL VIEW OUTER explode(tags) t AS k, v WHERE {m}",
        f"SELECT explode(params) FROM {view}",
        f"SELECT transform(aggregated_metrics, x -> x.metric_name) FROM {view}",
        # errors raised on rows the view hides would tell of them: the view filters first
        f"SELECT run_id FROM {view} WHERE CAST(run_name AS INT) > 0",
        f"SELECT run_id FROM {view} WHERE CAST(run_name AS BOOLEAN)",
        f"SELECT run_id FROM {view} WHERE 1 / CASE WHEN run_name LIKE 'hidden%' THEN 0 ELSE 1 END = 1",
        f"SELECT run_id FROM {view} WHERE CAST(params['lr'] AS DOUBLE) > 0",
        # names: CTEs and aliases named like the tables, other cases, quotes, backticks
        f"WITH ws1001 AS (SELECT * FROM {view}) SELECT run_name FROM ws1001",
        f"WITH runs_latest AS (SELECT * FROM {view}) SELECT run_name FROM runs_latest",
        f"WITH `{view}` AS (SELECT 1 AS x) SELECT * FROM `{org.catalog}`.`mlflow`.`WS1001`",
        f"SELECT run_name FROM {view.upper()}",
        f"SELECT run_name FROM `{org.catalog}`.mlflow.`ws1001`",
        "SELECT run_name FROM SYSTEM.MLFLOW.RUNS_LATEST",
        "SELECT run_name FROM `system`.`mlflow`.`runs_latest`",
        "SELECT run_name FROM `system.mlflow.runs_latest`",
        'SELECT run_name FROM "system"."mlflow"."runs_latest"',
        "SELECT run_name FROM system_mlflow.runs_latest",
        "SELECT run_name FROM system.system_mlflow.runs_latest",
        "SELECT run_name FROM runs_latest",
        f"WITH runs_latest AS (SELECT * FROM {view}) SELECT * FROM system.mlflow.runs_latest",
        f"SELECT run_name FROM {view} UNION ALL SELECT run_name FROM system.mlflow.runs_latest",
        f"SELECT (SELECT max(run_name) FROM system.mlflow.runs_latest) FROM {view}",
        f"SELECT metric_name FROM system.mlflow.run_metrics_history WHERE {m}",
        # functions of PostgreSQL's own, casts to its types, comments, strings, stacking
        "WITH x AS (SELECT 1 AS one) SELECT transform(array(\"SELECT to_tsvector('simple', run_name) "
        f'FROM system_mlflow.runs_latest WHERE {m}"), x -> X.ts_stat) FROM x',
        "SELECT 'a\\0b' AS nul",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT current_setting('server_version')",
        "SELECT set_config('role', 'none', true)",
        "SELECT dblink('dbname=postgres', 'SELECT 1')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT txid_current()",
        "SELECT pg_sleep(60)",
        "SELECT query_to_xml('SELECT 1', true, true, '')",
        "SELECT CAST('ix_runs' AS regclass)",
        "SELECT 'ix_runs'::regclass",
        "SELECT run_id FROM system.mlflow.runs_latest r WHERE r.ts_stat IS NULL",
        f"SELECT r.to_json FROM {view} r WHERE {m}",
        "SELECT E'\\x41'",
        "SELECT $$ab$$",
        "SELECT U&'\\0041'",
        f"SELECT run_name FROM {view} -- ; SELECT run_name FROM system.mlflow.runs_latest",
        f"SELECT run_name FROM {view} /* */ ; SELECT run_name FROM system.mlflow.runs_latest",
        f"SELECT run_name FROM {view}; SELECT 1",
        f"SELECT 'a\\'; SELECT run_name FROM system.mlflow.runs_latest; --' FROM {view}",
        "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        f"SELECT * FROM {view} a, LATERAL (SELECT * FROM system.mlflow.runs_latest) b",
        f"SELECT * FROM {view} TABLESAMPLE (100 PERCENT)",
        f"SELECT * FROM {view} VERSION AS OF 0",
        f"SELECT run_name FROM {view} LIMIT 99999999999999999999",
        f'SELECT run_name FROM {view} ORDER BY run_name COLLATE "C"',
        "SELECT current_user, user, current_role, session_user, current_schema, current_catalog",
    ]


def test_no_spelling_reaches_an_unreadable_workspace(stack: Stack, data: Data, org: Org) -> None:
    outcomes = {statement: judged(stack, org.viewer.token, statement, data) for statement in attacks(data, org)}
    # The view answers its own rows, however the reader phrases what it adds.
    assert outcomes[f"SELECT run_id, run_name FROM {org.view} WHERE workspace_id = '1002' OR true"] == "SUCCEEDED"
    counted = rows(
        stack,
        org.viewer.token,
        f"SELECT workspace_id, count(*) FROM {org.view} WHERE {mine(data)} OR workspace_id = '1002' "
        "GROUP BY workspace_id",
    )
    assert [row[0] for row in counted] == ["1001"]
    # The system table itself is refused, however spelled.
    for statement in (
        "SELECT run_name FROM SYSTEM.MLFLOW.RUNS_LATEST",
        "SELECT run_name FROM `system`.`mlflow`.`runs_latest`",
        f"SELECT run_name FROM {org.view} UNION ALL SELECT run_name FROM system.mlflow.runs_latest",
    ):
        assert outcomes[statement] == "PERMISSION_DENIED", statement
    # A stranger gets nothing either.
    for statement in attacks(data, org):
        judged(stack, org.stranger.token, statement, data)


def test_deep_and_long_texts_are_refused_or_answered_never_a_server_error(stack: Stack, data: Data, org: Org) -> None:
    view = org.view
    for statement in (
        "SELECT " + "(" * 3000 + "1" + ")" * 3000,
        "SELECT " + "NOT " * 5000 + "true",
        "SELECT " + " + ".join(["1"] * 20000),
        "SELECT " + " AND ".join(["true"] * 20000),
        "SELECT " + "- " * 5000 + "1",
        "SELECT " + "CASE WHEN true THEN " * 1500 + "1" + " END" * 1500,
        f"SELECT run_name FROM {view} WHERE run_id IN ({', '.join(repr(str(n)) for n in range(10000))})",
        f"SELECT * FROM {view} WHERE " + "(" * 2000 + "workspace_id = '1002' OR true" + ")" * 2000,
        "SELECT " + "coalesce(" * 2000 + "1" + ")" * 2000,
        "SELECT 1 FROM " + "(SELECT 1 AS one) " * 2,
        "SELECT 1" + " UNION ALL SELECT 1" * 3000,
        "WITH " + ", ".join(f"c{n} AS (SELECT 1 AS x)" for n in range(2000)) + " SELECT 1",
        "SELECT '" + "x" * 200_000 + "'",
    ):
        judged(stack, org.viewer.token, statement, data)


# -- GRANT, REVOKE and views by people who do not own them --------------------------------------------------------


def test_grants_and_views_are_changed_only_by_their_managers(stack: Stack, data: Data, org: Org) -> None:
    viewer, view = org.viewer.token, org.view
    me = f"`{org.viewer.name}`"
    for statement in (
        f"GRANT SELECT ON SCHEMA system.mlflow TO {me}",
        f"GRANT USE CATALOG ON CATALOG system TO {me}",
        f"GRANT ALL PRIVILEGES ON CATALOG {org.catalog} TO {me}",
        f"GRANT MANAGE ON VIEW {view} TO {me}",
        f"GRANT SELECT ON VIEW {view} TO `{org.stranger.name}`",
        f"REVOKE SELECT ON VIEW {view} FROM `{org.proxy.name}`",
        f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM system.mlflow.runs_latest",
        f"CREATE VIEW {org.catalog}.mlflow.mine AS SELECT * FROM {view}",
        f"DROP VIEW {view}",
        f"SHOW GRANTS ON VIEW {view}",
    ):
        assert judged(stack, viewer, statement, data) in ("PERMISSION_DENIED", "RESOURCE_DOES_NOT_EXIST"), statement
    assert judged(stack, org.stranger.token, f"SELECT * FROM {view}", data) == "PERMISSION_DENIED"
    # The proxy manages a schema of its own, but reads only the view: its views can give no more than that.
    proxy = org.proxy.token
    direct = call(stack, proxy, f"CREATE VIEW {org.sandbox}.mlflow.all_runs AS SELECT * FROM system.mlflow.runs_latest")
    assert "lacks USE CATALOG on catalog system" in refused(direct, 403, "PERMISSION_DENIED")
    wider = f"{org.sandbox}.mlflow.wider"
    rows(stack, proxy, f"CREATE VIEW {wider} AS SELECT * FROM {view} WHERE workspace_id = '1002' OR true")
    rows(stack, ADMIN_TOKEN, f"GRANT USE CATALOG ON CATALOG {org.sandbox} TO `{org.stranger.name}`")
    rows(stack, ADMIN_TOKEN, f"GRANT USE SCHEMA, SELECT ON SCHEMA {org.sandbox}.mlflow TO `{org.stranger.name}`")
    read = rows(stack, org.stranger.token, f"SELECT DISTINCT workspace_id FROM {wider} WHERE {mine(data)}")
    assert read == [["1001"]]
    # The view on the view reads with its owner's rights: without them, nothing.
    rows(stack, ADMIN_TOKEN, f"REVOKE SELECT ON VIEW {view} FROM `{org.proxy.name}`")
    try:
        denied = refused(call(stack, org.stranger.token, f"SELECT * FROM {wider}"), 403, "PERMISSION_DENIED")
        assert denied == f"View {wider} cannot be read: its owner {org.proxy.name} lacks SELECT on view {view}."
    finally:
        rows(stack, ADMIN_TOKEN, f"GRANT SELECT ON VIEW {view} TO `{org.proxy.name}`")
    assert rows(stack, viewer, f"SELECT DISTINCT workspace_id FROM {view} WHERE {mine(data)}") == [["1001"]]


# -- random conditions around the view's filter --------------------------------------------------------------------

ATOMS = st.sampled_from(
    [
        "workspace_id = '1002'",
        "workspace_id = '1001'",
        "status = 'FINISHED'",
        "status <> 'RUNNING'",
        "created_by = ''",
        "created_by > ''",
        "run_name LIKE 'run-a%'",
        "workspace_id <=> '1002'",
        "workspace_id || 'x' = '1002x'",
        "workspace_id BETWEEN '1002' AND '1003'",
        "start_time >= DATE'2024-07-03'",
        "start_time < DATE'2024-07-05'",
        "CAST(workspace_id AS INT) - 1 = 1001",
        "-CAST(workspace_id AS INT) < -1001",
        "status IN ('FAILED', 'RUNNING')",
        "true",
        "false",
        "NULL",
    ]
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from([" AND ", " OR "]), children).map(lambda t: t[0] + t[1] + t[2]),
        children.map(lambda e: "NOT " + e),
        children.map(lambda e: f"({e})"),
        children.map(lambda e: f"({e}) IS NOT TRUE"),
        children.map(lambda e: f"({e}) IS NULL"),
        children.map(lambda e: f"({e}) = false"),
    )


CONDITIONS = st.recursive(ATOMS, _combine, max_leaves=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(condition=CONDITIONS)
def test_any_condition_on_a_view_answers_what_it_answers_on_the_readable_rows(
    stack: Stack, data: Data, org: Org, condition: str
) -> None:
    """The viewer's answer to `WHERE <condition>` on the view is the admin's answer on workspace 1001's rows alone
    (fenced by a LIMIT, so the condition never sees another row), row by row and counted (which may read the
    run counts instead of the runs)."""
    m = mine(data)
    expected = rows(
        stack,
        ADMIN_TOKEN,
        f"SELECT run_id FROM (SELECT * FROM system.mlflow.runs_latest WHERE workspace_id = '1001' AND {m} "
        f"LIMIT 1000) AS runs_latest WHERE {condition} ORDER BY run_id",
    )
    got = rows(stack, org.viewer.token, f"SELECT run_id FROM {org.view} WHERE {m} AND ({condition}) ORDER BY run_id")
    assert got == expected, condition
    counted = rows(stack, org.viewer.token, f"SELECT count(*) FROM {org.view} WHERE {m} AND ({condition})")
    assert counted == [[str(len(expected))]], condition
