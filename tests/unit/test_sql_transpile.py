"""Transpiled statements run on a real PostgreSQL (a fresh database of the embedded server) and answer the values
Databricks would: map access, explode, structs, filter(), date(), TIMESTAMPDIFF, ROUND, percentiles, parameters,
identity functions, views. The sandbox they run in (role, read-only, timeout, row cap) is checked here too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.errors import InvalidParameter
from gateway.db.migrate import upgrade
from gateway.db.pools import LazyPool
from gateway.sql.catalog import TableName
from gateway.sql.documented import METRIC_SUMMARY, RUN_DETAILS_WITH_EXPERIMENT, SUCCESS_RATIO
from gateway.sql.repository import StatementRepository
from gateway.sql.results import rows
from gateway.sql.runner import MAX_RESULT_BYTES, QueryRunner, ResultTooLarge, StatementLimits
from gateway.sql.statements import Query, classify, parse_query
from gateway.sql.transpile import (
    PARAMETER_TYPES,
    Identity,
    compile_query,
    substitute,
    system_source,
    timestampdiff_sql,
)

RUNS = TableName("system", "mlflow", "runs_latest")
ACCOUNT = "7001"
START = datetime(2024, 6, 27, 0, 58, 57, tzinfo=UTC)


@dataclass
class Database:
    url: str
    runner: QueryRunner


@pytest.fixture(scope="module")
async def db(database_url: str) -> AsyncIterator[Database]:
    """A database of its own, migrated, with two workspaces' experiments, runs and metrics."""
    name = f"sql_unit_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(database_url)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    await asyncio.to_thread(upgrade, url)
    connection = await asyncpg.connect(url)
    await connection.execute(
        """
        INSERT INTO ix_experiments (workspace_id, experiment_id, name)
        VALUES (1001, 'e-a', 'exp a'), (1002, 'e-b', 'exp b');
        INSERT INTO ix_runs (run_id, workspace_id, experiment_id, created_by, run_name, status, start_time, end_time,
                             params, tags)
        VALUES ('r-a1', 1001, 'e-a', 'alice@example.com', 'first', 'FINISHED', '2024-06-27T00:58:57Z',
                '2024-06-27T01:30:10Z', '{"lr": "0.1", "epochs": "3"}', '{"team": "a", "mlflow.user": "alice"}'),
               ('r-a2', 1001, 'e-a', 'alice@example.com', 'second', 'FAILED', '2024-06-28T10:00:00Z', NULL, '{}', '{}'),
               ('r-b1', 1002, 'e-b', 'bob@example.com', 'third', 'FINISHED', '2024-06-29T10:00:00Z',
                '2024-06-29T12:00:00Z', '{"lr": "0.01"}', '{"team": "b"}');
        INSERT INTO ix_metrics (run_key, metric_name, metric_steps, metric_times, metric_values)
        SELECT r.run_key, m.name, ARRAY[m.step::int8],
               ARRAY['2024-06-27T01:00:00Z'::timestamptz + m.step * interval '1 minute'], ARRAY[m.value]
        FROM ix_runs r, (VALUES ('loss', 0, 0.9::float8), ('loss', 1, 0.5), ('loss', 2, 0.3), ('loss', 3, 0.2),
                                ('acc', 0, 0.1), ('acc', 1, 'NaN'), ('acc', 2, 0.7)) AS m(name, step, value)
        WHERE r.run_id = 'r-a1';
        INSERT INTO ix_metric_latest (run_key, metric_name, latest_value, latest_step, latest_time, min_value,
                                      max_value, has_nan, points)
        SELECT run_key, 'loss', 0.2, 3, now(), 0.2, 0.9, false, 4 FROM ix_runs WHERE run_id = 'r-a1'
        UNION ALL SELECT run_key, 'acc', 0.7, 2, now(), 0.1, 0.7, true, 3 FROM ix_runs WHERE run_id = 'r-a1';
        """
    )
    await connection.close()
    runner = QueryRunner(LazyPool("sql", url, 4))
    yield Database(url, runner)
    await runner.close()
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


@dataclass
class Answer:
    columns: list[tuple[str, str]]  # name, PostgreSQL type
    data: list[list[str | None]]
    truncated: bool
    sql: str


def nobody_is_member(group: str) -> bool:
    return False


async def running(connection: asyncpg.Connection, statement_id: str, text: str) -> None:
    """Recorded as RUNNING on its connection, as the service records a statement before the runner runs it."""
    repository = StatementRepository(connection)
    await repository.insert(statement_id, 0, text, "PENDING")
    assert await repository.mark_running(statement_id)


async def run(
    db: Database,
    text: str,
    parameters: Mapping[str, str | None] | None = None,
    *,
    types: Mapping[str, str] | None = None,
    identity: Identity | None = None,
    views: Mapping[TableName, str] | None = None,
    max_rows: int = 1000,
    timeout: float = 10.0,
) -> Answer:
    """classify → substitute → compile → run, as the service does (views expand from their definitions)."""
    statement = classify(text)
    assert isinstance(statement, Query)

    def sources_of(query: Query) -> dict[TableName, Any]:
        sources: dict[TableName, Any] = {}
        for table in query.tables:
            if views and table in views:
                inner = parse_query(views[table], allow_parameters=False)
                sources[table] = substitute(inner, sources_of(inner))
            else:
                sources[table] = system_source(table)
        return sources

    sources = sources_of(statement)
    given = dict(parameters or {})
    pg_types = {name: PARAMETER_TYPES[(types or {}).get(name, "STRING")] for name in given}
    compiled = compile_query(
        substitute(statement, sources), identity or Identity("carol@example.com", nobody_is_member), pg_types
    )
    statement_id = str(uuid.uuid4())
    async with db.runner.connection() as connection:
        await running(connection, statement_id, text)
        fetched = await db.runner.fetch(
            connection,
            statement_id,
            compiled,
            [given[name] for name in compiled.parameters],
            account_id=ACCOUNT,
            timeout_seconds=timeout,
            max_rows=max_rows,
        )
    return Answer(
        [(column.name, column.type_name) for column in fetched.columns],
        rows(fetched.records, fetched.columns),
        fetched.truncated,
        compiled.sql,
    )


async def test_map_access_reads_params_and_tags_by_key(db: Database) -> None:
    answer = await run(
        db,
        "SELECT run_id, params['lr'] AS lr, tags['mlflow.user'], params[:key] AS by_parameter "
        "FROM system.mlflow.runs_latest ORDER BY run_id",
        {"key": "epochs"},
    )
    assert [name for name, _ in answer.columns] == ["run_id", "lr", "tags['mlflow.user']", "by_parameter"]
    assert answer.data == [["r-a1", "0.1", "alice", "3"], ["r-a2", None, None, None], ["r-b1", "0.01", None, None]]


async def test_explode_of_a_map_gives_key_and_value_rows(db: Database) -> None:
    answer = await run(
        db, "SELECT explode(tags) FROM system.mlflow.runs_latest WHERE run_id LIKE trim(:run_id)", {"run_id": " r-a1 "}
    )
    assert [name for name, _ in answer.columns] == ["key", "value"]
    assert sorted(answer.data) == [["mlflow.user", "alice"], ["team", "a"]]
    named = await run(db, "SELECT run_id, explode(tags) AS (k, v) FROM system.mlflow.runs_latest ORDER BY run_id, k")
    assert named.data == [["r-a1", "mlflow.user", "alice"], ["r-a1", "team", "a"], ["r-b1", "team", "b"]]


async def test_lateral_view_explode_of_maps_and_arrays(db: Database) -> None:
    outer = await run(
        db,
        "SELECT run_id, k, v FROM system.mlflow.runs_latest LATERAL VIEW OUTER explode(params) p AS k, v "
        "ORDER BY run_id, k",
    )
    assert outer.data == [["r-a1", "epochs", "3"], ["r-a1", "lr", "0.1"], ["r-a2", None, None], ["r-b1", "lr", "0.01"]]
    structs = await run(
        db,
        "SELECT run_id, m.metric_name, m.max_value, t.m.latest_value FROM system.mlflow.runs_latest "
        "LATERAL VIEW explode(aggregated_metrics) t AS m ORDER BY m.metric_name",
    )
    assert structs.data == [["r-a1", "acc", "NaN", "0.7"], ["r-a1", "loss", "0.9", "0.2"]]


async def test_explode_of_an_array_of_structs_and_field_access_in_an_outer_query(db: Database) -> None:
    answer = await run(
        db,
        "WITH m AS (SELECT run_id, explode(aggregated_metrics) AS agg FROM system.mlflow.runs_latest) "
        "SELECT run_id, agg.metric_name, agg.min_value FROM m ORDER BY agg.metric_name",
    )
    assert answer.data == [["r-a1", "acc", "NaN"], ["r-a1", "loss", "0.2"]]
    whole = await run(db, "SELECT explode(aggregated_metrics) FROM system.mlflow.runs_latest WHERE run_id = 'r-a1'")
    assert whole.columns == [("col", "metric_aggregate")]
    assert whole.data[1] == ['{"metric_name":"loss","latest_value":0.2,"max_value":0.9,"min_value":0.2}']


async def test_filter_keeps_the_aggregates_of_one_metric(db: Database) -> None:
    answer = await run(
        db,
        "SELECT run_id, filter(aggregated_metrics, x -> x.metric_name = :metric) AS loss, "
        "filter(aggregated_metrics, x -> x.metric_name = :metric)[0].latest_value AS latest, "
        "size(aggregated_metrics) AS metrics, exists(aggregated_metrics, x -> isnan(x.max_value)) AS has_nan "
        "FROM system.mlflow.runs_latest ORDER BY run_id",
        {"metric": "loss"},
    )
    assert answer.data == [
        ["r-a1", '[{"metric_name":"loss","latest_value":0.2,"max_value":0.9,"min_value":0.2}]', "0.2", "2", "true"],
        ["r-a2", "[]", None, "0", "false"],
        ["r-b1", "[]", None, "0", "false"],
    ]
    names = await run(
        db,
        "SELECT transform(aggregated_metrics, x -> upper(x.metric_name)) FROM "
        "system.mlflow.runs_latest WHERE run_id = 'r-a1'",
    )
    assert names.data == [['["ACC","LOSS"]']]


async def test_run_details_with_date_and_timestampdiff_minutes(db: Database) -> None:
    """The documented `runs_latest` query, joined with `experiments_latest` as documented too."""
    answer = await run(
        db,
        RUN_DETAILS_WITH_EXPERIMENT,
        {"experiment_id": "1001-e-a", "run_id": "r-a1"},
    )
    assert answer.data == [["first", "exp a", "2024-06-27", "FINISHED", "31"]]  # 00:58:57 → 01:30:10 is 31m13s
    assert [t for _, t in answer.columns] == ["text", "text", "date", "text", "int8"]


async def test_per_metric_summary_rounds_doubles_half_up_and_keeps_nan(db: Database) -> None:
    answer = await run(
        db,
        METRIC_SUMMARY,
        {"run_id": "r-a1"},
    )
    by_metric = {row[0]: row[1:] for row in answer.data}
    # loss: 0.2 0.3 0.5 0.9 → mean 0.475, quartiles 0.275, 0.4, 0.6 (linear interpolation); half up: 0.5, 0.3, 0.4, 0.6
    assert by_metric["loss"] == ["4", "0.5", "0.9", "0.2", "0.3", "0.4", "0.6"]
    # A NaN makes the mean and the maximum NaN and sorts above every number, as in Databricks.
    assert by_metric["acc"] == ["3", "NaN", "NaN", "0.1", "0.4", "0.7", "NaN"]
    assert all(t == "float8" for _, t in answer.columns[2:])


async def test_round_averages_and_division_follow_databricks_types(db: Database) -> None:
    answer = await run(
        db,
        "SELECT ROUND(CAST(0.25 AS DOUBLE), 1), ROUND(CAST(-0.25 AS DOUBLE), 1), ROUND(CAST(2.5 AS DOUBLE)), "
        "ROUND(2.345, 2), 7 / 2, CAST('NaN' AS DOUBLE) / 1",
    )
    assert answer.data == [["0.3", "-0.3", "3.0", "2.35", "3.5", "NaN"]]
    steps = await run(db, "SELECT avg(metric_step), sum(metric_step) FROM system.mlflow.run_metrics_history")
    assert steps.data == [["1.2857142857142858", "9"]]


async def test_success_ratio_per_experiment(db: Database) -> None:
    answer = await run(
        db,
        SUCCESS_RATIO,
    )
    assert [(row[0], float(row[1] or 0), row[2]) for row in answer.data] == [
        ("1001-e-a", 0.5, "2"),
        ("1002-e-b", 1.0, "1"),
    ]


async def test_values_are_written_as_databricks_writes_them(db: Database) -> None:
    answer = await run(
        db,
        "SELECT account_id, start_time, end_time, params, aggregated_metrics, CAST(1 AS BOOLEAN), "
        "CAST(1E20 AS DOUBLE), workspace_id FROM system.mlflow.runs_latest WHERE run_id = 'r-a1'",
    )
    assert answer.data == [
        [
            ACCOUNT,
            "2024-06-27T00:58:57.000Z",
            "2024-06-27T01:30:10.000Z",
            '{"lr":"0.1","epochs":"3"}',
            '[{"metric_name":"acc","latest_value":0.7,"max_value":"NaN","min_value":"NaN"},'
            '{"metric_name":"loss","latest_value":0.2,"max_value":0.9,"min_value":0.2}]',
            "true",
            "1.0E20",
            "1001",
        ]
    ]


async def test_identity_functions_are_evaluated_for_the_caller(db: Database) -> None:
    def admins_only(group: str) -> bool:
        return group == "mlflow-admins"

    answer = await run(
        db,
        "SELECT current_user(), session_user(), is_account_group_member('mlflow-admins'), "
        "is_account_group_member('team-b')",
        identity=Identity("dave@example.com", admins_only),
    )
    assert answer.data == [["dave@example.com", "dave@example.com", "true", "false"]]
    assert answer.columns[0][0] == "current_user()"


async def test_a_dynamic_view_yields_its_rows_for_the_caller(db: Database) -> None:
    view = TableName("gov", "mlflow", "team_a_runs")
    definition = (
        "SELECT * FROM system.mlflow.runs_latest "
        "WHERE workspace_id = '1001' OR is_account_group_member('mlflow-admins')"
    )

    def admins(group: str) -> bool:
        return group == "mlflow-admins"

    plain = await run(db, "SELECT run_id FROM gov.mlflow.team_a_runs ORDER BY run_id", views={view: definition})
    assert plain.data == [["r-a1"], ["r-a2"]]
    admin = await run(
        db,
        "SELECT v.run_id FROM gov.mlflow.team_a_runs v ORDER BY 1",
        views={view: definition},
        identity=Identity("root@example.com", admins),
    )
    assert admin.data == [["r-a1"], ["r-a2"], ["r-b1"]]


async def test_parameters_are_bound_never_spliced(db: Database) -> None:
    hostile = ["' OR 1=1 --", "r-a1'; DROP TABLE ix_runs; --", "$1", "r-a1\\", "%(run_id)s", "''"]
    for value in hostile:
        answer = await run(db, "SELECT run_id FROM system.mlflow.runs_latest WHERE run_id = :run_id", {"run_id": value})
        assert answer.data == []
        assert answer.sql.endswith("WHERE run_id = CAST($1 AS TEXT)")
    typed = await run(
        db,
        "SELECT count(*) FROM system.mlflow.run_metrics_history WHERE metric_step >= :step AND metric_time < :before",
        {"step": "2", "before": "2024-06-27T01:03:00Z"},
        types={"step": "INT", "before": "TIMESTAMP"},
    )
    assert typed.data == [["2"]]  # loss step 2 at 01:02; acc step 2 at 01:02; loss step 3 at 01:03 is not before
    with pytest.raises(asyncpg.InvalidTextRepresentationError):
        await run(db, "SELECT :n + 1", {"n": "1 OR 1=1"}, types={"n": "INT"})
    nothing = await run(db, "SELECT :v IS NULL", {"v": None})
    assert nothing.data == [["true"]]


async def test_identifiers_and_comments_cannot_break_out(db: Database) -> None:
    answer = await run(
        db,
        'SELECT run_id AS `x"; DROP TABLE ix_runs; --` FROM system.mlflow.runs_latest -- */ DROP TABLE ix_runs\n'
        "WHERE run_id = 'r-a1' /* ; DELETE FROM ix_runs */",
    )
    assert answer.columns == [('x"; DROP TABLE ix_runs; --', "text")]
    assert answer.data == [["r-a1"]]
    assert "DELETE" not in answer.sql and "*/" not in answer.sql
    still = await run(db, "SELECT count(*) FROM system.mlflow.runs_latest")
    assert still.data == [["3"]]


async def test_bare_keywords_are_columns_not_the_database_role(db: Database) -> None:
    for word in ("user", "current_role", "current_catalog", "system_user"):
        with pytest.raises(asyncpg.UndefinedColumnError):
            await run(db, f"SELECT {word} FROM system.mlflow.runs_latest")


async def test_the_sandbox_reads_nothing_but_the_system_views(db: Database) -> None:
    """Even SQL that never passed the allow-list cannot leave the reader role and its read-only transaction."""
    from gateway.sql.transpile import CompiledQuery

    async def raw(sql: str) -> list[list[str | None]]:
        statement_id = f"raw-{uuid.uuid4()}"
        async with db.runner.connection() as connection:
            await running(connection, statement_id, sql)
            fetched = await db.runner.fetch(
                connection, statement_id, CompiledQuery(sql, ()), [], account_id=ACCOUNT, timeout_seconds=5, max_rows=10
            )
        return rows(fetched.records, fetched.columns)

    for sql in (
        "SELECT * FROM public.ix_runs",
        "SELECT * FROM public.tokens",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT * FROM pg_catalog.pg_authid",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await raw(sql)
    with pytest.raises(asyncpg.UndefinedTableError):
        await raw("SELECT * FROM ix_runs")  # and no search path leads to it
    # The query runs as a subquery of the row cap's LIMIT: anything but a query is not even valid SQL there.
    with pytest.raises(asyncpg.PostgresSyntaxError):
        await raw("CREATE TABLE system_mlflow.x AS SELECT 1 AS a")
    with pytest.raises(asyncpg.PostgresSyntaxError):
        await raw("SELECT 1) AS a; CREATE TABLE system_mlflow.x AS (SELECT 1")
    with pytest.raises(asyncpg.ActiveSQLTransactionError):  # and the transaction cannot be made writable
        await raw("SELECT set_config('transaction_read_only', 'off', true)")
    sandbox = await raw(
        "SELECT current_setting('transaction_read_only'), current_user, current_setting('statement_timeout'), "
        "current_setting('search_path'), current_setting('fedgate.account_id'), current_setting('application_name')"
    )
    assert sandbox[0][:5] == ["on", "fedgate_sql_reader", "5s", '""', ACCOUNT]
    assert str(sandbox[0][5]).startswith("fedgate-sql:raw-")


@pytest.mark.parametrize(
    "text",
    [
        # PostgreSQL reads `(x).f`, when x has no field f, as the call f(x): ts_stat runs the query it is given
        # as the reader role, which reads every system view; a statement that reads no table needs no grant.
        "SELECT ('SELECT to_tsvector(''simple'', run_name) FROM system_mlflow.runs_latest').ts_stat",
        "WITH q AS (SELECT 'SELECT to_tsvector(''simple'', name) FROM system_mlflow.experiments_latest' AS s) "
        "SELECT q.s.ts_stat FROM q",
        "SELECT ('server_version').current_setting",
        "SELECT (run_name).current_setting FROM system.mlflow.runs_latest",
        "SELECT params['lr'].current_setting FROM system.mlflow.runs_latest",
        "SELECT k.current_setting FROM (SELECT explode(map_keys(params)) AS k FROM system.mlflow.runs_latest) s",
        "SELECT transform(array('server_version'), r -> r.current_setting) FROM system.mlflow.runs_latest r",
        "SELECT filter(map_keys(params), k -> k.to_regclass IS NULL) FROM system.mlflow.runs_latest",
        # The variable in another case, where a FROM item has its name: sqlglot marks only `x`, not `X`.
        "SELECT transform(array('server_version'), x -> X.current_setting) FROM system.mlflow.runs_latest x",
        "WITH x AS (SELECT 'SELECT to_tsvector(''simple'', run_name) FROM system_mlflow.runs_latest' AS s) "
        "SELECT exists(array(s), x -> X.ts_stat IS NULL) FROM x",
    ],
)
async def test_a_field_of_a_scalar_is_refused_not_called_as_a_function(db: Database, text: str) -> None:
    with pytest.raises(InvalidParameter, match="is not a field"):
        await run(db, text)


async def test_a_lambda_variable_is_read_in_any_case_under_a_name_no_text_can_spell(db: Database) -> None:
    answer = await run(db, "SELECT transform(array(1, 2), x -> X + x) AS t, exists(array(3), y -> Y = 3) AS e")
    assert answer.data == [["[2,4]", "true"]]
    assert "_lambda_" in answer.sql and " x " not in answer.sql.lower()
    with pytest.raises(InvalidParameter, match="are reserved"):
        await run(
            db,
            "SELECT transform(array('server_version'), x -> _lambda_1.current_setting) "
            "FROM system.mlflow.runs_latest _lambda_1",
        )


async def test_a_long_statement_is_cancelled_by_the_statement_timeout(db: Database) -> None:
    slow = (
        "SELECT count(*) FROM system.mlflow.run_metrics_history a CROSS JOIN system.mlflow.run_metrics_history b "
        "CROSS JOIN system.mlflow.run_metrics_history c CROSS JOIN system.mlflow.run_metrics_history d "
        "CROSS JOIN system.mlflow.run_metrics_history e CROSS JOIN system.mlflow.run_metrics_history f "
        "CROSS JOIN system.mlflow.run_metrics_history g CROSS JOIN system.mlflow.run_metrics_history h "
        "CROSS JOIN system.mlflow.run_metrics_history i CROSS JOIN system.mlflow.run_metrics_history j"
    )  # 7^10 rows: hours of counting
    with pytest.raises(asyncpg.QueryCanceledError, match="statement timeout"):
        await run(db, slow, timeout=0.2)


async def test_the_row_cap_truncates_and_says_so(db: Database) -> None:
    capped = await run(db, "SELECT record_id FROM system.mlflow.run_metrics_history", max_rows=3)
    assert len(capped.data) == 3
    assert capped.truncated
    exact = await run(db, "SELECT record_id FROM system.mlflow.run_metrics_history", max_rows=7)
    assert len(exact.data) == 7
    assert not exact.truncated
    # The cap is a LIMIT around the query: the rows kept are the first ones in the query's own order.
    ordered = await run(
        db, "SELECT metric_value FROM system.mlflow.run_metrics_history ORDER BY metric_value DESC", max_rows=3
    )
    everything = await run(
        db, "SELECT metric_value FROM system.mlflow.run_metrics_history ORDER BY metric_value DESC", max_rows=100
    )
    assert ordered.truncated
    assert ordered.data == everything.data[:3]


# -- TIMESTAMPDIFF: every unit, against Java's LocalDateTime.until (what Databricks runs) -------------------------

UNITS = ("MICROSECOND", "MILLISECOND", "SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "QUARTER", "YEAR")
MICROS = {"MICROSECOND": 1, "MILLISECOND": 1000, "SECOND": 10**6, "MINUTE": 60 * 10**6, "HOUR": 3600 * 10**6}


def _truncating(numerator: int, denominator: int) -> int:
    quotient = abs(numerator) // denominator
    return quotient if numerator >= 0 else -quotient


def java_until(unit: str, start: datetime, end: datetime) -> int:
    """`LocalDateTime.until(end, unit)` in UTC: the reference for Databricks' TIMESTAMPDIFF."""
    if unit in MICROS:
        elapsed = (end - start) // timedelta(microseconds=1)
        return _truncating(elapsed, MICROS[unit])
    end_day = end.date()
    if end_day > start.date() and end.time() < start.time():
        end_day -= timedelta(days=1)
    elif end_day < start.date() and end.time() > start.time():
        end_day += timedelta(days=1)
    days = (end_day - start.date()).days
    if unit == "DAY":
        return days
    if unit == "WEEK":
        return _truncating(days, 7)
    packed_start = (start.year * 12 + start.month - 1) * 32 + start.day
    packed_end = (end_day.year * 12 + end_day.month - 1) * 32 + end_day.day
    months = _truncating(packed_end - packed_start, 32)
    return _truncating(months, {"MONTH": 1, "QUARTER": 3, "YEAR": 12}[unit])


moments = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 12, 31)).map(
    lambda moment: moment.replace(tzinfo=UTC)
)
# Month ends, leap days and times of day either side of each other are where the rules differ from naive ones.
edges = st.sampled_from(
    [
        datetime(2024, 1, 31, 10, 0, tzinfo=UTC),
        datetime(2024, 2, 29, 9, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 2, 29, 10, 0, tzinfo=UTC),
        datetime(2024, 3, 31, 10, 0, 0, 1, tzinfo=UTC),
        datetime(2023, 2, 28, 23, 59, 59, tzinfo=UTC),
        datetime(2024, 12, 31, 0, 0, tzinfo=UTC),
    ]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(moments | edges, moments | edges), min_size=1, max_size=40))
async def test_timestampdiff_truncates_like_databricks_for_every_unit(
    db: Database, pairs: list[tuple[datetime, datetime]]
) -> None:
    expressions = ", ".join(timestampdiff_sql(unit, "a", "b") for unit in UNITS)
    connection = await asyncpg.connect(db.url)
    try:
        await connection.execute("SET TimeZone = 'America/New_York'")  # the rendering may not depend on it
        found = await connection.fetch(
            f"SELECT {expressions} FROM unnest($1::timestamptz[], $2::timestamptz[]) AS t(a, b)",
            [a for a, _ in pairs],
            [b for _, b in pairs],
        )
    finally:
        await connection.close()
    for (start, end), record in zip(pairs, found, strict=True):
        expected = [java_until(unit, start, end) for unit in UNITS]
        assert list(record) == expected, (start, end)


async def test_unnamed_expressions_get_databricks_like_column_names(db: Database) -> None:
    answer = await run(
        db, "SELECT count(*), max(metric_value), run_id FROM system.mlflow.run_metrics_history GROUP BY run_id"
    )
    assert [name for name, _ in answer.columns] == ["count(*)", "max(metric_value)", "run_id"]
    assert answer.data == [["7", "NaN", "r-a1"]]


async def test_names_run_as_the_gateway_resolved_them(db: Database) -> None:
    """CTEs run under names of the gateway's own: PostgreSQL cannot read a reference as one of its catalog tables."""
    # Databricks reads `PG_ROLES` and pg_roles as one name; PostgreSQL, given them as written, would read its catalog.
    spelled = await run(db, "WITH `PG_ROLES` AS (SELECT 'mine' AS rolname) SELECT rolname FROM pg_roles")
    assert spelled.data == [["mine"]]
    nested = await run(
        db,
        "WITH a AS (SELECT run_id FROM system.mlflow.runs_latest WHERE run_id = 'r-a1') "
        "SELECT (SELECT count(*) FROM (WITH a AS (SELECT 1 AS x UNION ALL SELECT 2) SELECT x FROM a) AS i), "
        "a.run_id FROM a",
    )
    assert nested.columns == [("scalarsubquery()", "int8"), ("run_id", "text")]
    assert nested.data == [["2", "r-a1"]]


async def test_a_column_named_after_a_query_shows_no_views_definition(db: Database) -> None:
    """Unnamed items were named by the substituted tree's text: a query in one showed the views it read, expanded,
    so a reader saw the opening of a view's definition in a column's name. Queries are `scalarsubquery()` there."""
    view = TableName("gov", "mlflow", "noted")
    definition = "SELECT 'internal note' AS note, run_id FROM system.mlflow.runs_latest"
    answer = await run(
        db,
        "SELECT 1 + (SELECT count(*) FROM gov.mlflow.noted), run_id IN (SELECT run_id FROM gov.mlflow.noted), "
        "exists(SELECT note FROM gov.mlflow.noted) FROM system.mlflow.runs_latest WHERE run_id = 'r-a1'",
        views={view: definition},
    )
    names = [name for name, _ in answer.columns]
    assert names == ["1 + scalarsubquery()", "run_id IN scalarsubquery()", "EXISTS(scalarsubquery())"]
    assert answer.data == [["4", "true", "true"]]


async def test_a_views_filter_runs_before_any_condition_of_the_readers(db: Database) -> None:
    """PostgreSQL flattened a view into the reader's query and ran the cheaper conditions first, the reader's
    before the view's own: `CAST(run_name AS BOOLEAN)` failed on a run the view hides, naming it. Every view is
    fenced (OFFSET 0), whatever its shape: a filter, a set operation (PostgreSQL pushes conditions into each
    branch), a LIMIT of its own; and wherever the reader's condition stands (WHERE, a LEFT JOIN's ON)."""
    view = TableName("gov", "mlflow", "team_b_runs")
    team_b = "SELECT * FROM system.mlflow.runs_latest WHERE workspace_id = '1002'"
    definitions = {
        "a filter": team_b,
        "a set operation": f"{team_b} UNION ALL SELECT * FROM system.mlflow.runs_latest WHERE workspace_id = '1003'",
        "a filter of a view": "SELECT * FROM gov.mlflow.inner_b WHERE run_id <> ''",
    }
    probes = {
        # run_name of team b's one run is 'third'; those of the hidden runs 'first' and 'second'.
        "SELECT run_id FROM gov.mlflow.team_b_runs WHERE CAST(run_name AS BOOLEAN)": "third",
        "SELECT run_id FROM gov.mlflow.team_b_runs AS v WHERE CAST(v.created_by AS BOOLEAN) OR v.run_id = ''": (
            "bob@example.com"
        ),
        "WITH one AS (SELECT 1 AS n) SELECT one.n, v.run_id FROM one LEFT JOIN gov.mlflow.team_b_runs AS v "
        "ON CAST(v.run_name AS BOOLEAN)": "third",
    }
    inner = TableName("gov", "mlflow", "inner_b")
    for shape, definition in definitions.items():
        views = {view: definition, inner: team_b}
        for probe, visible in probes.items():
            with pytest.raises(asyncpg.PostgresError) as failed:
                await run(db, probe, views=views)
            message = str(failed.value)
            assert f'"{visible}"' in message, (shape, probe, message)
    # A condition the view's rows all pass answers them, and only them.
    answer = await run(
        db,
        "SELECT run_id FROM gov.mlflow.team_b_runs WHERE CAST(params['lr'] AS DOUBLE) < 1 ORDER BY run_id",
        views={view: team_b},
    )
    assert answer.data == [["r-b1"]]


async def test_a_result_larger_than_the_byte_cap_never_leaves_postgresql(db: Database) -> None:
    """`replace` of `replace` grows a four-letter literal to 40 MB in PostgreSQL, with no table and so no grant:
    the gateway fetched every row of a result into memory, however large. PostgreSQL now counts the result's
    size and sends none of it when it is larger than the cap, whether one value or many rows make it so."""
    grow = f"replace(replace('aaaa', 'a', '{'a' * 5000}'), 'a', '{'a' * 2000}')"  # 40,000,000 bytes
    with pytest.raises(ResultTooLarge) as one_value:
        await run(db, f"SELECT length(:x) AS n, {grow} AS v", {"x": "y"})
    assert one_value.value.size > MAX_RESULT_BYTES == one_value.value.limit
    rows = f"replace(replace('aa', 'a', '{'a' * 3000}'), 'a', '{'a' * 1000}')"  # 6 MB a row, 30 MB in five
    with pytest.raises(ResultTooLarge):
        await run(db, f"SELECT explode(array(1, 2, 3, 4, 5)) AS n, {rows} AS v")
    # Under the cap a result answers whole and in its order; an empty one is empty.
    four = await run(
        db, f"SELECT n, length(v) AS l FROM (SELECT explode(array(4, 2, 3, 1)) AS n, {rows} AS v) ORDER BY n"
    )
    assert four.data == [["1", "6000000"], ["2", "6000000"], ["3", "6000000"], ["4", "6000000"]]
    assert four.columns == [("n", "int4"), ("l", "int4")]
    empty = await run(db, "SELECT run_id FROM system.mlflow.runs_latest WHERE run_id = 'none'")
    assert empty.data == [] and empty.columns == [("run_id", "text")] and not empty.truncated


async def test_a_statement_is_held_to_its_memory_per_sort_and_its_temporary_files(db: Database) -> None:
    """Nothing bounded what a statement wrote to disk: counting a million distinct numbers of a cross join (no
    table, so no grant) sorted them in temporary files of any size, as an ORDER BY of a larger join would fill the
    database server's disk. Each statement now runs with work_mem and temp_file_limit of the gateway's, set
    before the reader role, which cannot change temp_file_limit back."""
    hundred = ", ".join(str(i) for i in range(100))
    spill = (
        f"WITH t AS (SELECT explode(array({hundred})) AS v) "
        "SELECT COUNT(DISTINCT a.v * 10000 + b.v * 100 + c.v) AS n FROM t AS a CROSS JOIN t AS b CROSS JOIN t AS c"
    )
    limited = QueryRunner(LazyPool("sql", db.url, 1), StatementLimits(work_mem_kb=64, temp_file_limit_kb=1024))
    try:
        with pytest.raises(asyncpg.PostgresError) as stopped:
            await run(Database(db.url, limited), spill)
        assert stopped.value.sqlstate == "53400" and "temp_file_limit" in str(stopped.value)
        # What fits answers through the same runner; the defaults (16 MiB a sort, 256 MiB of files) answer it all.
        small = await run(Database(db.url, limited), spill.replace("CROSS JOIN t AS c", "").replace(" + c.v", ""))
        assert small.data == [["10000"]]
    finally:
        await limited.close()
    assert (await run(db, spill)).data == [["1000000"]]


async def test_a_result_of_many_short_values_is_measured_as_the_answer_writes_them(db: Database) -> None:
    """The byte cap measured a row as PostgreSQL writes it as text, where a NULL is its comma alone: 10,000 rows of
    1,500 NULLs (no table, so no grant) passed as 15 MB while the gateway held 15 million values (300 MB and
    seconds of decoding on its event loop) and stored 85 MB of JSON. Each value now counts as the answer's JSON
    writes it (`null,` is five bytes), so such a result is refused before it leaves PostgreSQL."""
    nulls = ", ".join(f"NULL AS c{i}" for i in range(1500))
    hundred = ", ".join(str(i) for i in range(100))
    wide = f"WITH a AS (SELECT explode(array({hundred})) AS x) SELECT {nulls} FROM a AS a1 CROSS JOIN a AS a2"
    with pytest.raises(ResultTooLarge) as refused:
        await run(db, wide, max_rows=10_000)
    assert refused.value.size > MAX_RESULT_BYTES
    # Fewer rows of them fit, and answer whole.
    fits = await run(db, wide, max_rows=2_000)
    assert len(fits.data) == 2_000 and fits.data[0] == [None] * 1500 and fits.truncated
