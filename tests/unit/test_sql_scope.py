"""Table references resolve by scope, and nothing outside the system tables and stored views reaches PostgreSQL.

Issue 11, finding 4: `WITH pg_roles AS (SELECT rolname FROM pg_roles) SELECT rolname FROM pg_roles` read
PostgreSQL's catalog without any grant. The explicit tests below are the finding and its variants; the property
test generates statements mixing CTEs, system tables, PostgreSQL catalog names and other names, nested and in set
operations, and compares what the gateway does with a model of the scope rules. No database is needed: what
would run is the compiled text, and every relation it names is checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlglot
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from gateway.core.errors import InvalidParameter
from gateway.sql import documented
from gateway.sql.catalog import PG_SCHEMA, SYSTEM_COLUMNS, TableName, system_table
from gateway.sql.rollup import COUNTS_VIEW
from gateway.sql.statements import MAX_RELATIONS, Defaults, Query, classify, parse_query
from gateway.sql.transpile import (
    EXPANDED_NODES_PER_STATEMENT,
    Identity,
    compile_query,
    expanded_nodes,
    substitute,
    system_source,
)

VIEW = TableName("gov", "mlflow", "v")
# A stored view with a CTE of its own: its renamed CTEs must stay apart from those of the query reading it.
VIEW_DEFINITION = "WITH a AS (SELECT * FROM system.mlflow.runs_latest) SELECT run_id FROM a"
VIEW_RELATIONS = 2  # the table in its CTE and the reference to the CTE


def compiled(text: str, defaults: Defaults | None = None) -> str:
    """The PostgreSQL a statement becomes, as the service makes it; refusals raise InvalidParameter."""
    statement = classify(text, defaults)
    assert isinstance(statement, Query)
    sources: dict[TableName, exp.Query] = {}
    for table in statement.tables:
        if system_table(table):
            sources[table] = system_source(table)
        elif table == VIEW:
            inner = parse_query(VIEW_DEFINITION, allow_parameters=False)
            sources[table] = substitute(inner, {name: system_source(name) for name in inner.tables})
        else:  # what the service answers for a name that is neither
            raise InvalidParameter(f"Table or view '{table}' does not exist.")
    types = dict.fromkeys(statement.parameters, "TEXT")
    sql = compile_query(substitute(statement, sources), Identity("u@example.com", lambda _: False), types).sql
    assert_reads_only_system_views(sql)
    return sql


def assert_reads_only_system_views(sql: str) -> None:
    """Every relation of the PostgreSQL text is a system view (or the run counts) or a CTE the text defines."""
    tree = sqlglot.parse_one(sql, read="postgres")
    defined = {cte.alias for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if table.db:
            # A system view, or the run counts an aggregate over runs_latest reads instead (gateway/sql/rollup.py).
            readable = table.name in SYSTEM_COLUMNS or table.name == COUNTS_VIEW
            assert (table.catalog, table.db) == ("", PG_SCHEMA) and readable, sql
        else:
            assert table.name in defined and table.name.startswith("_cte_"), sql


def refused(text: str, defaults: Defaults | None = None) -> str:
    with pytest.raises(InvalidParameter) as excinfo:
        compiled(text, defaults)
    return excinfo.value.message


# -- the finding and its variants ------------------------------------------------------------------------------


def test_a_cte_is_not_visible_inside_its_own_definition() -> None:
    message = refused("WITH pg_roles AS (SELECT rolname FROM pg_roles) SELECT rolname FROM pg_roles")
    assert "'pg_roles' is not" in message and "line 1, column 39" in message, message


def test_a_cte_is_not_visible_before_its_definition() -> None:
    refused("WITH a AS (SELECT * FROM pg_roles), pg_roles AS (SELECT 1 AS rolname) SELECT * FROM a")
    # Nor is a CTE of a subquery visible outside it.
    refused("SELECT * FROM (WITH pg_roles AS (SELECT 1 AS x) SELECT x FROM pg_roles) AS s, pg_roles")


def test_a_cte_name_never_reaches_postgresql_as_written() -> None:
    # Databricks compares names case-insensitively; PostgreSQL would read an unquoted pg_roles as its catalog's.
    sql = compiled("WITH `PG_ROLES` AS (SELECT 1 AS rolname) SELECT rolname FROM pg_roles")
    assert "pg_roles" not in sql.replace("AS pg_roles", ""), sql
    sql = compiled("WITH Runs AS (SELECT run_id FROM system.mlflow.runs_latest) SELECT runs.run_id FROM RUNS")
    assert "FROM _cte_1_" in sql and "AS RUNS" in sql, sql
    # Nor does a column name show the name a CTE runs under: an unnamed scalar subquery is named as in Databricks.
    sql = compiled("WITH a AS (SELECT 1 AS x) SELECT (SELECT count(*) FROM a)")
    assert sql.endswith('AS "scalarsubquery()"'), sql


def test_an_inner_cte_hides_an_outer_one_and_later_ctes_see_earlier_ones() -> None:
    sql = compiled(
        "WITH a AS (SELECT run_id FROM system.mlflow.runs_latest), b AS (SELECT * FROM a) "
        "SELECT * FROM b WHERE EXISTS (WITH a AS (SELECT 1 AS x) SELECT x FROM a)"
    )
    assert sql.count("system_mlflow.runs_latest") == 1, sql


def test_ctes_named_like_tables_hide_nothing() -> None:
    system = Defaults("system", "mlflow")
    # A CTE named like a system table is that CTE, and what it reads is checked like any other reference.
    refused("WITH runs_latest AS (SELECT rolname AS run_id FROM pg_roles) SELECT run_id FROM runs_latest")
    assert "system.mlflow.pg_roles" in refused(
        "WITH runs_latest AS (SELECT * FROM pg_roles) SELECT * FROM runs_latest", system
    )
    # A CTE named like a granted table is read with the grants of what it reads, not of the table it is named like.
    hiding = classify("WITH runs_latest AS (SELECT * FROM experiments_latest) SELECT * FROM runs_latest", system)
    assert isinstance(hiding, Query) and hiding.tables == (TableName("system", "mlflow", "experiments_latest"),)
    # The full name is the table, whatever CTE shares its last part.
    statement = classify("WITH runs_latest AS (SELECT 1 AS x) SELECT * FROM system.mlflow.runs_latest")
    assert isinstance(statement, Query) and [table.name for table in statement.tables] == ["runs_latest"]


@pytest.mark.parametrize(
    "text",
    [
        "SELECT * FROM pg_roles",
        "SELECT * FROM `pg_roles`",
        "SELECT * FROM PG_ROLES",
        "SELECT * FROM pg_catalog.pg_roles",
        "SELECT * FROM `pg_catalog`.`pg_authid`",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM system.information_schema.tables",
        "SELECT * FROM pg_catalog.public.pg_roles",
        "SELECT * FROM system.mlflow.pg_roles",
        "SELECT * FROM main.default.tokens",
        "SELECT * FROM a.b.c.d",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT * FROM json_each('{}')",
        "SELECT * FROM TABLE(pg_ls_dir('.'))",
        "SELECT * FROM IDENTIFIER('pg_roles')",
        "SELECT * FROM system.mlflow.runs_latest, LATERAL (SELECT rolname FROM pg_roles)",
        "SELECT * FROM system.mlflow.runs_latest r JOIN LATERAL (SELECT 1 AS x) s ON true",
        "SELECT * FROM (SELECT rolname FROM pg_roles) AS s",
        "SELECT (SELECT max(rolname) FROM pg_roles)",
        "SELECT run_id FROM system.mlflow.runs_latest WHERE run_id IN (SELECT rolname FROM pg_roles)",
        "SELECT 1 FROM system.mlflow.runs_latest WHERE EXISTS (SELECT 1 FROM pg_authid)",
        "SELECT 1 FROM system.mlflow.runs_latest GROUP BY 1 HAVING count(*) > (SELECT count(*) FROM pg_roles)",
        "SELECT run_id FROM system.mlflow.runs_latest UNION SELECT rolname FROM pg_roles",
        "SELECT run_id FROM system.mlflow.runs_latest EXCEPT SELECT rolname FROM pg_catalog.pg_roles",
        "SELECT * FROM VALUES (1) AS v(a)",
        "SELECT * FROM (VALUES (1)) AS v(a)",
        "SELECT filter(aggregated_metrics, m -> EXISTS(SELECT 1 FROM pg_roles)) FROM system.mlflow.runs_latest",
        "WITH RECURSIVE pg_roles AS (SELECT 1 AS x) SELECT * FROM pg_roles",
        "WITH a AS (SELECT 1 AS x), A AS (SELECT 2 AS x) SELECT * FROM a",
    ],
)
def test_no_spelling_reaches_a_name_outside_the_system_tables(text: str) -> None:
    refused(text)


@pytest.mark.parametrize(
    "text",
    [
        "SELECT current_setting('fedgate.account_id')",
        "SELECT set_config('role', 'postgres', true)",
        "SELECT version()",
        "SELECT pg_catalog.version()",
        "SELECT pg_backend_pid()",
        "SELECT has_table_privilege('tokens', 'SELECT')",
        "SELECT has_schema_privilege('public', 'USAGE')",
        "SELECT txid_current()",
        "SELECT inet_server_addr()",
        "SELECT query_to_xml('select 1', true, true, '')",
        "SELECT current_database()",
        "SELECT current_schema()",
        "SELECT pg_catalog.cardinality(tags) FROM system.mlflow.runs_latest",
        "SELECT r.upper(run_id) FROM system.mlflow.runs_latest r",
        # PostgreSQL would read these as pg_typeof(r) and pg_column_size(m): its functional notation.
        "SELECT r.pg_typeof FROM system.mlflow.runs_latest r",
        "SELECT m.PG_COLUMN_SIZE FROM system.mlflow.runs_latest LATERAL VIEW explode(aggregated_metrics) t AS m",
        "SELECT (params).pg_typeof FROM system.mlflow.runs_latest",
        "SELECT CAST('pg_roles' AS regclass)",
    ],
)
def test_a_statement_reading_no_table_reaches_no_postgresql_function(text: str) -> None:
    refused(text)


def test_a_statement_reading_nothing_reads_nothing_of_postgresqls() -> None:
    for text in ("SELECT 1", "SELECT upper('a') AS x", "WITH a AS (SELECT 1 AS x) SELECT x FROM a"):
        statement = classify(text)
        assert isinstance(statement, Query) and statement.tables == (), text
        assert "FROM pg" not in compiled(text)


def test_deep_nesting_is_refused_not_a_server_error() -> None:
    assert refused("SELECT " + "(" * 3000 + "1" + ")" * 3000) == "The statement nests too deeply."


def test_a_literal_longer_than_int_reads_is_compiled_not_a_server_error() -> None:
    """Python's `int` refuses more than 4,300 digits; the counts' exactness check read every literal with it."""
    for digits in ("9" * 5000, "1"):
        sql = compiled(
            f"SELECT SUM(CASE WHEN status = 'FINISHED' THEN {digits} ELSE 0 END) AS s FROM system.mlflow.runs_latest"
        )
        assert ("runs_latest_counts" in sql) == (digits == "1")  # a long one is no exact small int: rows are summed


def test_the_relations_one_statement_reads_are_bounded_views_expanded() -> None:
    joins = [f"system.mlflow.runs_latest r{i}" for i in range(MAX_RELATIONS + 1)]
    compiled("SELECT count(*) FROM " + " CROSS JOIN ".join(joins[:MAX_RELATIONS]))
    assert "reads 17 relations" in refused("SELECT count(*) FROM " + " CROSS JOIN ".join(joins))
    # A view counts what it reads: its definition reads two here, so eight references are sixteen.
    views = [f"gov.mlflow.v v{i}" for i in range(MAX_RELATIONS // VIEW_RELATIONS + 1)]
    compiled("SELECT count(*) FROM " + " CROSS JOIN ".join(views[:-1]))
    assert "reads 18 relations" in refused("SELECT count(*) FROM " + " CROSS JOIN ".join(views))
    # CTE references count each time: a CTE read many times is as costly as its table read many times.
    ctes = ", ".join(f"a a{i}" for i in range(MAX_RELATIONS))
    assert "reads 17 relations" in refused(
        f"WITH a AS (SELECT run_id FROM system.mlflow.runs_latest) SELECT 1 FROM {ctes}"
    )


def test_the_documented_queries_are_accepted() -> None:
    texts = [value for name, value in vars(documented).items() if name.isupper() and isinstance(value, str)]
    assert len(texts) == 6
    for text in texts:
        compiled(text)


# -- the property: a model of the scope rules against the gateway -------------------------------------------------

CTE_NAMES = ("a", "b", "runs_latest", "pg_roles", "tables", "v")
SYSTEM_SPELLINGS = (
    "system.mlflow.runs_latest",
    "`system`.`mlflow`.`experiments_latest`",
    "SYSTEM.MLFLOW.RUN_METRICS_HISTORY",
    "System.MLflow.`Runs_Latest`",
)
VIEW_SPELLINGS = ("gov.mlflow.v", "`gov`.mlflow.V")
# Never readable: PostgreSQL's catalog and the gateway's own tables however spelled, and names that exist nowhere.
FOREIGN_SPELLINGS = (
    "pg_roles",
    "`pg_roles`",
    "PG_AUTHID",
    "pg_catalog.pg_roles",
    "`pg_catalog`.pg_settings",
    "information_schema.tables",
    "system.information_schema.columns",
    "pg_catalog.public.pg_roles",
    "system.mlflow.pg_roles",
    "system.mlflow.runs",
    "mlflow.runs_latest",
    "public.tokens",
    "ix_runs",
    "main.default.ix_runs",
    "generate_series(1, 2)",
)


@dataclass(frozen=True)
class Generated:
    text: str
    ok: bool  # every reference is a visible CTE, a system table or the stored view
    relations: int  # as the gateway counts them, views expanded


def _spelled(name: str) -> st.SearchStrategy[str]:
    """Spellings Databricks reads as the same one-part name."""
    return st.sampled_from((name, name.upper(), f"`{name}`", f"`{name.title()}`"))


@st.composite
def _reference(draw: st.DrawFn, visible: frozenset[str]) -> Generated:
    # Mostly references that resolve, so that many statements are accepted; one in twelve is not readable.
    if draw(st.integers(0, 11)) > 0:
        kind = draw(st.sampled_from(("system", "view", "cte", "cte", "cte") if visible else ("system", "view")))
        if kind == "cte":
            return Generated(draw(_spelled(draw(st.sampled_from(sorted(visible))))), True, 1)
        if kind == "system":
            return Generated(draw(st.sampled_from(SYSTEM_SPELLINGS)), True, 1)
        return Generated(draw(st.sampled_from(VIEW_SPELLINGS)), True, VIEW_RELATIONS)
    hidden = sorted(set(CTE_NAMES) - visible)
    kind = draw(st.sampled_from(("hidden", "foreign", "random") if hidden else ("foreign", "random")))
    if kind == "hidden":  # a CTE name not visible here: later, in itself, in another branch, or nowhere
        return Generated(draw(_spelled(draw(st.sampled_from(hidden)))), False, 1)
    if kind == "foreign":
        # A one-part foreign name (`pg_roles`) that a visible CTE also bears reads that CTE: not foreign here.
        foreign = [name for name in FOREIGN_SPELLINGS if name.strip("`").lower() not in visible]
        return Generated(draw(st.sampled_from(foreign)), False, 1)
    parts = draw(st.lists(st.sampled_from(("t_x", "T_Y", "`t z`", "t_1")), min_size=1, max_size=3))
    return Generated(".".join(parts), False, 1)


@st.composite
def _from_item(draw: st.DrawFn, visible: frozenset[str], depth: int) -> Generated:
    if depth > 0 and draw(st.integers(0, 3)) == 0:
        inner = draw(_query(visible, depth - 1))
        return Generated(f"({inner.text}) AS d{depth}", inner.ok, inner.relations)
    item = draw(_reference(visible))
    return Generated(f"{item.text} AS s{draw(st.integers(0, 9))}", item.ok, item.relations)


@st.composite
def _select(draw: st.DrawFn, visible: frozenset[str], depth: int) -> Generated:
    parts = [Generated("SELECT 1 AS c", True, 0)]
    if depth > 0 and draw(st.booleans()):
        inner = draw(_query(visible, depth - 1))
        parts[0] = Generated(f"SELECT (SELECT count(*) FROM ({inner.text}) AS q) AS c", inner.ok, inner.relations)
    if draw(st.integers(0, 4)) > 0:
        first = draw(_from_item(visible, depth))
        parts.append(Generated(f"FROM {first.text}", first.ok, first.relations))
        if draw(st.booleans()):
            second = draw(_from_item(visible, depth))
            parts.append(Generated(f"CROSS JOIN {second.text}", second.ok, second.relations))
    if depth > 0 and draw(st.booleans()):
        inner = draw(_query(visible, depth - 1))
        clause = draw(st.sampled_from(("WHERE EXISTS ({})", "WHERE 1 IN (SELECT c FROM ({}) AS w)")))
        parts.append(Generated(clause.format(inner.text), inner.ok, inner.relations))
    elif depth > 0 and len(parts) > 1 and draw(st.booleans()):
        inner = draw(_query(visible, depth - 1))
        having = f"GROUP BY 1 HAVING count(*) > (SELECT count(*) FROM ({inner.text}) AS h)"
        parts.append(Generated(having, inner.ok, inner.relations))
    return _joined(parts, " ")


@st.composite
def _query(draw: st.DrawFn, visible: frozenset[str], depth: int) -> Generated:
    parts: list[Generated] = []
    scope = set(visible)
    if depth > 0 and draw(st.booleans()):
        names = draw(st.permutations(CTE_NAMES))[: draw(st.integers(1, 3))]
        ctes: list[Generated] = []
        for name in names:
            body = draw(_query(frozenset(scope), depth - 1))  # before the name is added: not visible in itself
            ctes.append(Generated(f"{draw(_spelled(name))} AS ({body.text})", body.ok, body.relations))
            scope.add(name)
        defined = _joined(ctes, ", ")
        parts.append(Generated(f"WITH {defined.text}", defined.ok, defined.relations))
    body = draw(_select(frozenset(scope), depth))
    if draw(st.integers(0, 3)) == 0:
        other = draw(_select(frozenset(scope), depth))
        operator = draw(st.sampled_from(("UNION ALL", "UNION", "INTERSECT", "EXCEPT")))
        body = _joined([body, Generated(operator, True, 0), other], " ")
    return _joined([*parts, body], " ")


def _joined(parts: list[Generated], separator: str) -> Generated:
    return Generated(
        separator.join(part.text for part in parts),
        all(part.ok for part in parts),
        sum(part.relations for part in parts),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_query(frozenset(), 2))
def test_references_resolve_by_scope_and_reach_only_system_views(generated: Generated) -> None:
    expected = generated.ok and generated.relations <= MAX_RELATIONS
    event("accepted" if expected else "refused")
    try:
        compiled(generated.text)
    except InvalidParameter as exc:
        assert not expected, f"refused: {exc.message}\n{generated.text}"
    else:
        assert expected, f"accepted: {generated.text}"


# -- what the planner copies ------------------------------------------------------------------------------------


def nested(depth: int) -> str:
    text = "SELECT 1 AS v"
    for _ in range(depth):
        text = f"SELECT v + v + v + v AS v FROM ({text})"
    return text


def cte_chain(depth: int) -> str:
    ctes = ["c0 AS (SELECT 1 AS v)"] + [
        f"c{i} AS (SELECT v + v + v + v AS v FROM c{i - 1})" for i in range(1, depth + 1)
    ]
    return "WITH " + ", ".join(ctes) + f" SELECT v FROM c{depth}"


def test_subqueries_that_would_make_the_planner_copy_an_expression_too_often_are_fenced() -> None:
    """PostgreSQL pulls plain subqueries and CTEs read once up, copying a column's expression into every reference:
    nested nine deep, 1.6 million nodes (280 MiB of a backend before anything runs; twelve deep, some 16 GB).
    Fenced with OFFSET 0, what the planner holds stays within the bound however deep, for CTEs and set operations
    too; a shallow query is left as written."""
    assert expanded_nodes(sqlglot.parse_one(nested(9), read="postgres")) > 1_000_000
    for text in (
        nested(9),
        nested(40),
        cte_chain(12),
        " UNION ALL ".join([nested(6)] * 60),
        f"SELECT a.v + b.v AS v FROM ({nested(8)}) a JOIN ({nested(8)}) b ON a.v = b.v",
        f"SELECT (SELECT max(v) FROM ({nested(12)})) AS m",
    ):
        sql = compiled(text)
        assert "OFFSET 0" in sql, text
        assert expanded_nodes(sqlglot.parse_one(sql, read="postgres")) <= EXPANDED_NODES_PER_STATEMENT, text
    for text in (nested(3), cte_chain(3)):
        assert "OFFSET" not in compiled(text), text


def test_the_documented_queries_are_not_fenced() -> None:
    for name, text in vars(documented).items():
        if name.isupper() and isinstance(text, str):
            assert "OFFSET" not in compiled(text), name
