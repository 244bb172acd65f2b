"""A dynamic view's fence, narrowed (gateway/sql/fences.py): the reader's conditions that cannot fail, and for a plain
read of one view its order and limit, run inside the fence; nothing of the reader's that can fail ever sees a row the
view hides.

Held by a differential: every statement runs on two databases, one holding runs the view hides (whose values make
casts, divisions and the like fail) and one without them; the answers, or the errors, must be the same. Both
databases are real PostgreSQL (the session's embedded server), migrated, read as the service reads them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from gateway.console.dashboard_queries import Filters as DashboardFilters
from gateway.console.dashboard_queries import longest_runs, metric_trend
from gateway.core.errors import InvalidParameter
from gateway.db.migrate import upgrade
from gateway.db.pools import LazyPool
from gateway.sql.catalog import PG_SCHEMA, TableName
from gateway.sql.fences import COMPARABLE, LEAKPROOF
from gateway.sql.repository import StatementRepository
from gateway.sql.results import rows
from gateway.sql.runner import QueryRunner
from gateway.sql.statements import Query, classify, parse_query
from gateway.sql.transpile import PARAMETER_TYPES, Identity, compile_query, substitute, system_source

ACCOUNT = "7001"
VIEW = TableName("gov", "mlflow", "v")
INNER = TableName("gov", "mlflow", "inner_v")
TEAM = "SELECT * FROM system.mlflow.runs_latest WHERE workspace_id = '1002'"
# The views the reader's statements read as gov.mlflow.v, each hiding workspace 1001's runs.
VIEWS: dict[str, dict[TableName, str]] = {
    "a filter": {VIEW: TEAM},
    "columns picked": {
        VIEW: "SELECT run_id, run_name, created_by, experiment_id, status, start_time, end_time, params, "
        "workspace_id FROM system.mlflow.runs_latest WHERE workspace_id = '1002'"
    },
    "a filter of a view": {VIEW: "SELECT * FROM gov.mlflow.inner_v WHERE run_id <> ''", INNER: TEAM},
    "a view of a filtered view": {VIEW: "SELECT * FROM gov.mlflow.inner_v", INNER: TEAM},
    "a set operation": {
        VIEW: f"{TEAM} AND status = 'FINISHED' UNION ALL {TEAM} AND status <> 'FINISHED'",
    },
}
VISIBLE_RUNS = """
    ('v-1', 1002, 'e-v', '1', 'true', 'FINISHED', '2024-06-27T00:00:00Z', '2024-06-27T01:00:00Z', '{"lr": "0.5"}'),
    ('v-2', 1002, 'e-v', '2', 'false', 'FAILED', '2024-06-28T00:00:00Z', NULL, '{"lr": "2"}'),
    ('v-3', 1002, 'e-v', '3', 'yes', 'FINISHED', '2024-06-29T00:00:00Z', '2024-06-29T03:00:00Z', '{}'),
    ('v-4', 1002, 'e-w', '1', 'no', 'RUNNING', '2024-06-30T00:00:00Z', '2024-06-30T00:30:00Z', '{"lr": "0.1"}')
"""
# Every value a reader's failing expression below fails on: a name no cast reads as a boolean and six characters
# long (1 / (length - 6)), a creator no cast reads as a number, a parameter no cast reads as a double.
HIDDEN_RUNS = """
    ('h-1', 1001, 'e-h', 'mallory', 'secret', 'FINISHED', '2024-06-26T00:00:00Z', '2024-07-09T00:00:00Z',
     '{"lr": "secret"}'),
    ('h-2', 1001, 'e-h', 'trudy', 'hidden', 'FAILED', '2024-06-29T12:00:00Z', '2024-07-01T00:00:00Z',
     '{"lr": "hidden"}')
"""


@dataclass
class Database:
    runner: QueryRunner
    url: str


@dataclass
class Databases:
    with_hidden: Database
    without_hidden: Database


async def _database(admin: asyncpg.Connection, database_url: str, runs: str) -> Database:
    name = f"sql_fences_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    await asyncio.to_thread(upgrade, url)
    connection = await asyncpg.connect(url)
    await connection.execute(
        f"""
        INSERT INTO ix_experiments (workspace_id, experiment_id, name)
        VALUES (1001, 'e-h', 'hidden'), (1002, 'e-v', 'visible'), (1002, 'e-w', 'visible too');
        INSERT INTO ix_runs (run_id, workspace_id, experiment_id, created_by, run_name, status, start_time, end_time,
                             params)
        VALUES {runs};
        INSERT INTO ix_metrics (run_key, metric_name, metric_steps, metric_times, metric_values)
        SELECT r.run_key, 'loss', ARRAY[0::int8, 1], ARRAY['2024-06-27T01:00:00Z'::timestamptz,
               '2024-06-27T01:01:00Z'], ARRAY[0.5::float8, 0.25]
        FROM ix_runs r WHERE r.workspace_id = 1002;
        """
    )
    await connection.close()
    return Database(QueryRunner(LazyPool("sql", url, 2)), url)


@pytest.fixture(scope="module")
async def dbs(database_url: str) -> AsyncIterator[Databases]:
    """Two databases: the visible runs with the hidden ones, and the visible runs alone (no metrics of hidden runs in
    either, so the system table the joins read directly is the same in both)."""
    admin = await asyncpg.connect(database_url)
    with_hidden = await _database(admin, database_url, f"{VISIBLE_RUNS}, {HIDDEN_RUNS}")
    without_hidden = await _database(admin, database_url, VISIBLE_RUNS)
    yield Databases(with_hidden, without_hidden)
    for db in (with_hidden, without_hidden):
        await db.runner.close()
        await admin.execute(f'DROP DATABASE "{urlsplit(db.url).path[1:]}" WITH (FORCE)')
    await admin.close()


def nobody_is_member(group: str) -> bool:
    return False


def compiled(text: str, views: Mapping[TableName, str], types: Mapping[str, str]) -> Any:
    """classify → substitute → compile, as the service does (views expand from their definitions)."""
    statement = classify(text)
    assert isinstance(statement, Query)

    def sources_of(query: Query) -> dict[TableName, Any]:
        sources: dict[TableName, Any] = {}
        for table in query.tables:
            if table in views:
                inner = parse_query(views[table], allow_parameters=False)
                sources[table] = substitute(inner, sources_of(inner))
            else:
                sources[table] = system_source(table)
        return sources

    pg_types = {name: PARAMETER_TYPES[kind] for name, kind in types.items()}
    return compile_query(
        substitute(statement, sources_of(statement)), Identity("carol@example.com", nobody_is_member), pg_types
    )


async def outcome(
    db: Database,
    text: str,
    views: Mapping[TableName, str],
    parameters: Mapping[str, str] | None = None,
    types: Mapping[str, str] | None = None,
) -> tuple[Any, ...]:
    """The rows a statement answers (sorted unless it orders them), or the error it fails with."""
    given = dict(parameters or {})
    try:
        query = compiled(text, views, {name: (types or {}).get(name, "STRING") for name in given})
    except InvalidParameter as refused:
        return ("refused", str(refused))
    statement_id = str(uuid.uuid4())
    async with db.runner.connection() as connection:
        repository = StatementRepository(connection)
        await repository.insert(statement_id, 0, text, "PENDING")
        assert await repository.mark_running(statement_id)
        try:
            fetched = await db.runner.fetch(
                connection,
                statement_id,
                query,
                [given[name] for name in query.parameters],
                account_id=ACCOUNT,
                timeout_seconds=10.0,
                max_rows=1000,
            )
        except asyncpg.PostgresError as failed:
            return ("failed", type(failed).__name__, str(failed))
    data = rows(fetched.records, fetched.columns)
    return ("rows", data if "ORDER BY" in text else sorted(data, key=repr))


def fence_of(sql: str, alias: str = "v") -> exp.Select:
    """The SELECT a view is read through in a compiled statement: the subquery aliased `alias`."""
    tree = sqlglot.parse_one(sql, read="postgres")
    for subquery in tree.find_all(exp.Subquery):
        if subquery.alias == alias:
            assert isinstance(subquery.this, exp.Select)
            return subquery.this
    raise AssertionError(f"no subquery {alias} in {sql}")


def outer_select(sql: str) -> exp.Select:
    tree = sqlglot.parse_one(sql, read="postgres")
    assert isinstance(tree, exp.Select)
    return tree


# -- the rule, against PostgreSQL's own catalog ------------------------------------------------------------------


async def test_the_comparisons_moved_are_leakproof_in_postgresql(dbs: Databases) -> None:
    """Every comparison fences.py moves runs a function PostgreSQL marks leakproof, on the types the system tables
    answer; a type's other comparisons (and every other type) stay outside. A PostgreSQL whose catalog says otherwise
    fails here rather than leaking."""
    names = {exp.EQ: "=", exp.NEQ: "<>", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}
    pg_types = {"text": "text", "bigint": "int8", "double precision": "float8", "timestamptz": "timestamptz"}
    connection = await asyncpg.connect(dbs.with_hidden.url)
    try:
        for kind, operators in LEAKPROOF.items():
            for operator in operators:
                leakproof = await connection.fetchval(
                    "SELECT p.proleakproof FROM pg_operator o JOIN pg_proc p ON p.oid = o.oprcode "
                    "WHERE o.oprname = $1 AND o.oprleft = $2::regtype AND o.oprright = $2::regtype",
                    names[operator],
                    pg_types[kind],
                )
                assert leakproof is True, (kind, names[operator])
        for table, columns in COMPARABLE.items():
            answered = dict(
                await connection.fetch(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = $1 AND table_name = $2",
                    PG_SCHEMA,
                    table,
                )
            )
            for column, kind in columns.items():
                expected = "timestamp with time zone" if kind == "timestamptz" else kind
                assert answered[column] == expected, (table, column)
    finally:
        await connection.close()


# -- the dashboards --------------------------------------------------------------------------------------------------

BY_VIEW = DashboardFilters(runs="gov.mlflow.v", experiment_id="1002-e-v", metric="loss")


async def test_the_longest_runs_through_a_view_are_ordered_and_limited_inside_its_fence(dbs: Databases) -> None:
    """The console's longest-runs dashboard through a dynamic view: its conditions (IS NOT NULL, the workspace's
    text), order and limit run inside the fence, where the run-length index answers them (docs/performance.md);
    before, the fence read every run of the view. The same rows either way."""
    cases = {BY_VIEW: ["v-3", "v-1"], DashboardFilters(runs="gov.mlflow.v", workspace_id="1002"): ["v-3", "v-1", "v-4"]}
    for filters, longest in cases.items():
        statement = longest_runs(filters)
        types = {name: kind for name, (_, kind) in statement.parameters.items()}
        values = {name: value for name, (value, _) in statement.parameters.items()}
        sql = compiled(statement.text, {VIEW: TEAM}, types).sql
        inner = fence_of(sql)
        assert inner.args.get("limit") is not None and inner.args.get("order") is not None, sql
        assert outer_select(sql).args.get("where") is None, sql
        views = {VIEW: TEAM}
        answer = await outcome(dbs.with_hidden, statement.text, views, values, types)
        assert answer == await outcome(dbs.without_hidden, statement.text, views, values, types)
        assert answer[0] == "rows" and [row[1] for row in answer[1]] == longest


async def test_the_metric_trend_through_a_view_reads_one_experiment_inside_its_fence(dbs: Databases) -> None:
    """The metric trend joins the metrics to the view's runs: its condition on the view's experiment runs inside the
    fence (before, the fence read every run of the view and the join threw all but one experiment's away)."""
    statement = metric_trend(BY_VIEW)
    types = {name: kind for name, (_, kind) in statement.parameters.items()}
    values = {name: value for name, (value, _) in statement.parameters.items()}
    sql = compiled(statement.text, {VIEW: TEAM}, types).sql
    fenced = fence_of(sql, "runs")
    where = fenced.args.get("where")
    assert where is not None and "experiment_id" in where.sql(), sql
    assert "runs.experiment_id" not in outer_select(sql).args["where"].sql(), sql
    answer = await outcome(dbs.with_hidden, statement.text, {VIEW: TEAM}, values, types)
    assert answer == await outcome(dbs.without_hidden, statement.text, {VIEW: TEAM}, values, types)
    assert answer[0] == "rows" and [row[1] for row in answer[1]] == ["v-3", "v-2", "v-1"]


# -- the differential ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    text: str  # with `{p}` where a column's qualifier goes
    safe: bool  # may run on any row: fences.py moves it


# Conditions that cannot fail on any row, by the rule: leakproof comparisons of plain columns.
SAFE = (
    "{p}workspace_id = '1002'",
    "{p}run_name = 'true'",
    "{p}run_name <> 'secret'",
    "{p}status IN ('FINISHED', 'FAILED')",
    "{p}end_time IS NULL",
    "{p}end_time IS NOT NULL",
    "{p}start_time < {p}end_time",
    "{p}run_id = {p}run_name",
    "{p}created_by = :who",
    "{p}experiment_id <> :experiment",
)
# Conditions that fail on a hidden run (but on no visible one), or fail on no row but are outside the rule; several
# are spelled to look like the rule's (a cast, function or subquery inside a comparison, an operator on text that
# calls a function, COLLATE, a parameter of another type).
UNSAFE = (
    "CAST({p}run_name AS BOOLEAN)",
    "CAST({p}run_name AS BOOLEAN) = TRUE",
    "CAST({p}created_by AS INT) > 0",
    "{p}run_name = CAST(CAST({p}created_by AS INT) AS STRING)",
    "1 / (length({p}run_name) - 6) > 0",
    "CAST({p}params['lr'] AS DOUBLE) < 1",
    "{p}params['lr'] = '0.5'",
    "upper({p}run_name) = 'TRUE'",
    "{p}run_name || 'x' = 'truex'",
    "{p}run_name > 'a'",
    "{p}run_name LIKE 't%'",
    "{p}run_name = 'true' COLLATE UTF8_BINARY",
    "{p}start_time >= CAST('2024-06-28' AS DATE)",
    "{p}workspace_id = :number",
    "{p}run_id IN (SELECT w.run_id FROM gov.mlflow.v AS w WHERE CAST(w.run_name AS BOOLEAN))",
    "{p}run_name = (SELECT max(w.run_name) FROM gov.mlflow.v AS w WHERE CAST(w.created_by AS INT) > 0)",
    "EXISTS (SELECT 1 FROM gov.mlflow.v AS w WHERE w.run_id = {p}run_id AND CAST(w.run_name AS BOOLEAN))",
)
ORDERS = (
    "{p}run_id",
    "CAST({p}run_name AS BOOLEAN) DESC",
    "1 / (length({p}run_name) - 6)",
    "TIMESTAMPDIFF(SECOND, {p}start_time, {p}end_time) DESC",
    "CAST({p}params['lr'] AS DOUBLE)",
)
PARAMETERS = {"who": "1", "experiment": "1002-e-w", "number": "1002"}
TYPES = {"who": "STRING", "experiment": "STRING", "number": "INT"}


def atoms() -> st.SearchStrategy[Condition]:
    return st.one_of(
        st.sampled_from(SAFE).map(lambda text: Condition(text, True)),
        st.sampled_from(UNSAFE).map(lambda text: Condition(text, False)),
    )


def combined(children: st.SearchStrategy[Condition]) -> st.SearchStrategy[Condition]:
    return st.one_of(
        children.map(lambda c: Condition(f"NOT ({c.text})", c.safe)),
        st.tuples(children, children).map(
            lambda cs: Condition(f"({cs[0].text} OR {cs[1].text})", all(c.safe for c in cs))
        ),
        st.tuples(children, children).map(
            lambda cs: Condition(f"({cs[0].text} AND {cs[1].text})", all(c.safe for c in cs))
        ),
    )


CONDITIONS = st.recursive(atoms(), combined, max_leaves=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.sampled_from(sorted(VIEWS)),
    conjuncts=st.lists(CONDITIONS, min_size=0, max_size=3),
    order=st.none() | st.sampled_from(ORDERS),
    joined=st.sampled_from(["", "JOIN", "LEFT JOIN"]),
)
async def test_no_condition_or_order_of_the_readers_sees_a_hidden_row(
    dbs: Databases, shape: str, conjuncts: list[Condition], order: str | None, joined: str
) -> None:
    """Whatever the reader's conditions and order, the hidden runs change nothing: the same rows, or the same error,
    with them and without them. And the rule is applied: a condition that may run on any row runs inside the fence
    (a view that only filters or picks columns, read alone or inner-joined), one that may not stays outside, and the
    order and limit go inside when every condition did."""
    views = VIEWS[shape]
    prefix = "v."
    where = " AND ".join(c.text.format(p=prefix) for c in conjuncts)
    if joined:
        text = (
            "SELECT v.run_id, m.metric_step FROM system.mlflow.run_metrics_history AS m "
            f"{joined} gov.mlflow.v AS v ON m.run_id = v.run_id"
        )
    else:
        text = "SELECT v.run_id, v.run_name FROM gov.mlflow.v AS v"
    if where:
        text += f" WHERE {where}"
    if order is not None and not joined:
        text += f" ORDER BY {order.format(p=prefix)}, v.run_id LIMIT 2"
    used = {name: value for name, value in PARAMETERS.items() if f":{name}" in text}
    types = {name: TYPES[name] for name in used}
    seen = await outcome(dbs.with_hidden, text, views, used, types)
    assert seen == await outcome(dbs.without_hidden, text, views, used, types), text
    if seen[0] == "refused":
        return
    sql = compiled(text, views, types).sql
    # A condition on a view on the nullable side of an outer join stays outside: moved, it would keep the row.
    eligible = shape != "a set operation" and joined != "LEFT JOIN"
    unsafe = [c for c in conjuncts if not c.safe]
    outer = outer_select(sql).args.get("where")
    inner = fence_of(sql)
    if eligible:
        assert (outer is not None) == bool(unsafe), sql
        assert (inner.args.get("limit") is not None) == (order is not None and not joined and not unsafe), sql
    else:
        assert (outer is not None) == bool(conjuncts), sql
