"""Which statements are accepted, what they mean, and how everything else is refused (no database needed)."""

from __future__ import annotations

import pytest

from gateway.core.errors import InvalidParameter
from gateway.sql.catalog import TableName
from gateway.sql.documented import METRIC_SUMMARY, RUN_DETAILS_WITH_EXPERIMENT, RUN_TAGS, SUCCESS_RATIO
from gateway.sql.statements import (
    ChangeGrants,
    CreateView,
    Defaults,
    DropView,
    Query,
    ShowGrants,
    classify,
)

RUNS = TableName("system", "mlflow", "runs_latest")
EXPERIMENTS = TableName("system", "mlflow", "experiments_latest")
HISTORY = TableName("system", "mlflow", "run_metrics_history")

# The queries the Databricks documentation and dashboard give for the MLflow system tables, verbatim.
DOCUMENTED = [
    SUCCESS_RATIO,
    RUN_DETAILS_WITH_EXPERIMENT,
    METRIC_SUMMARY,
    RUN_TAGS,
]


def query(text: str, defaults: Defaults | None = None) -> Query:
    statement = classify(text, defaults)
    assert isinstance(statement, Query)
    return statement


def refused(text: str) -> str:
    with pytest.raises(InvalidParameter) as excinfo:
        classify(text)
    return excinfo.value.message


def test_documented_queries_are_accepted_with_their_tables_and_parameters() -> None:
    assert query(DOCUMENTED[0]).tables == (RUNS,)
    joined = query(DOCUMENTED[1])
    assert joined.tables == (EXPERIMENTS, RUNS)
    assert joined.parameters == ("experiment_id", "run_id")
    assert query(DOCUMENTED[2]).tables == (HISTORY,)
    assert query(DOCUMENTED[3]).parameters == ("experiment_id", "run_id")


def test_a_text_is_parsed_once_and_says_whether_it_asks_who_runs_it() -> None:
    assert query(DOCUMENTED[0]) is query(DOCUMENTED[0])  # the same shared, checked Query
    assert query(DOCUMENTED[0], Defaults("system", "mlflow")) is not query(DOCUMENTED[0])
    assert not any(query(text).asks_identity for text in DOCUMENTED)
    for text in (
        "SELECT current_user() AS who",
        "SELECT session_user() AS who",
        "SELECT run_id FROM system.mlflow.runs_latest WHERE is_account_group_member('admins')",
    ):
        assert query(text).asks_identity, text


def test_select_features_beyond_the_documented_queries_are_accepted() -> None:
    accepted = [
        "WITH r AS (SELECT * FROM system.mlflow.runs_latest) SELECT r.run_id, rank() OVER (ORDER BY start_time) FROM r",
        "SELECT params['lr'], tags['mlflow.user'] FROM system.mlflow.runs_latest",
        "SELECT filter(aggregated_metrics, m -> m.metric_name = 'loss') FROM system.mlflow.runs_latest",
        "SELECT run_id, m.metric_name FROM system.mlflow.runs_latest LATERAL VIEW explode(aggregated_metrics) t AS m",
        "SELECT explode(aggregated_metrics) AS m FROM system.mlflow.runs_latest",
        "SELECT run_id FROM system.mlflow.runs_latest WHERE is_account_group_member('admins') OR created_by = "
        "current_user()",
        "SELECT count(*) FROM system.mlflow.runs_latest r LEFT JOIN system.mlflow.experiments_latest e "
        "ON r.experiment_id = e.experiment_id GROUP BY e.name HAVING count(*) > 1",
        "SELECT run_id FROM system.mlflow.runs_latest UNION ALL SELECT run_id FROM system.mlflow.run_metrics_history",
        "SELECT date_trunc('HOUR', metric_time), sum(metric_value) FROM system.mlflow.run_metrics_history GROUP BY 1",
        "(SELECT 1)",
    ]
    for text in accepted:
        query(text)


def test_cte_names_are_not_tables_and_one_part_names_use_the_defaults() -> None:
    assert query("WITH x AS (SELECT 1 AS a) SELECT a FROM x").tables == ()
    assert query("SELECT * FROM runs_latest", Defaults("system", "mlflow")).tables == (RUNS,)
    assert query("SELECT * FROM mlflow.runs_latest", Defaults("system")).tables == (RUNS,)
    assert query("SELECT * FROM `System`.`MLflow`.`Runs_Latest`").tables == (RUNS,)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("INSERT INTO system.mlflow.runs_latest VALUES (1)", "INSERT statements are not allowed"),
        ("UPDATE system.mlflow.runs_latest SET status = 'x'", "UPDATE statements are not allowed"),
        ("DELETE FROM system.mlflow.runs_latest", "DELETE statements are not allowed"),
        ("SET statement_timeout = 0", "SET statements are not allowed"),
        ("COPY ix_runs TO '/tmp/x'", "COPY statements are not allowed"),
        ("SELECT 1; DROP TABLE ix_runs", "Only one statement at a time"),
        ("SELECT 1; SELECT 2", "Only one statement at a time"),
        ("SELECT pg_sleep(10)", "The function pg_sleep() is not allowed (line 1, column 8)"),
        ("SELECT set_config('role', 'postgres', false)", "The function set_config() is not allowed"),
        ("SELECT current_setting('fedgate.account_id')", "The function current_setting() is not allowed"),
        ("SELECT dblink('host=x', 'select 1')", "The function dblink() is not allowed"),
        ("SELECT version()", "The function version() is not allowed"),
        ("SELECT * FROM ix_runs", "Name tables in full"),
        ("SELECT * FROM public.ix_runs", "Name tables in full"),
        ("SELECT * FROM system.mlflow.runs_latest WHERE run_id = ?", "Use named parameter markers"),
        ("WITH RECURSIVE t AS (SELECT 1) SELECT * FROM t", "WITH RECURSIVE is not allowed"),
        ("SELECT * FROM system.mlflow.runs_latest TABLESAMPLE (10 PERCENT)", "SAMPLE"),
        ("SELECT * FROM system.mlflow.runs_latest VERSION AS OF 1", "VERSION"),
        ("SELECT * FROM VALUES (1, 2) AS v(a, b)", "VALUES is not allowed"),
        ("SELECT x FROM system.mlflow.runs_latest a LEFT ANTI JOIN system.mlflow.runs_latest b ON a.x = b.x", "ANTI"),
        ("SELECT cast(run_id AS BINARY) FROM system.mlflow.runs_latest", "The type BINARY is not allowed"),
        ("SELECT upper(explode(tags)) FROM system.mlflow.runs_latest", "explode() must be a whole item"),
        ("SELECT explode(tags), explode(params) FROM system.mlflow.runs_latest", "Only one explode()"),
        ("SELECT * EXCEPT (run_id) FROM system.mlflow.runs_latest", "SELECT * EXCEPT"),
        ("SELECT (1", "Syntax error at line 1"),
        ("SELECT 'unterminated", "Syntax error"),
        ("VALUES (1)", "VALUES statements are not allowed"),
        ("", "The statement is empty"),
        ("-- nothing but a comment", "The statement is empty"),
        ("SELECT is_account_group_member(current_user())", "takes one group name as a string literal"),
        ("SELECT * FROM system.mlflow.runs_latest FOR UPDATE", None),
        ("SELECT * FROM read_files('/etc/passwd')", None),
        # PostgreSQL's text ends at a NUL (and it fails the protocol): none reaches it, written or escaped.
        ("SELECT 'a\\0b'", "cannot hold the NUL character"),
        ("SELECT 'a\\u0000b'", "cannot hold the NUL character"),
        ("SELECT 1\x00", "holds a NUL character"),
        ("GRANT SELECT ON TABLE system.mlflow.runs_latest TO `a\x00b`", "holds a NUL character"),
        ("SELECT transform(array(1), _lambda_1 -> _lambda_1)", "names starting with _lambda_ are reserved"),
    ],
)
def test_statements_outside_the_allow_list_are_refused_naming_what(text: str, says: str | None) -> None:
    message = refused(text)
    if says is not None:
        assert says in message, message


def test_a_refusal_names_the_line_and_column() -> None:
    message = refused("SELECT run_id,\n  lpad(run_id, 1000000000)\nFROM system.mlflow.runs_latest")
    assert message == "The function lpad() is not allowed (line 2, column 3).", message


def test_grant_and_revoke_are_parsed_by_a_strict_grammar() -> None:
    assert classify("GRANT USE CATALOG ON CATALOG system TO `ml-analysts`") == ChangeGrants(
        True, ("USE_CATALOG",), "catalog", "system", "ml-analysts"
    )
    assert classify("GRANT USE SCHEMA, SELECT ON SCHEMA system.mlflow TO `ml-analysts`;") == ChangeGrants(
        True, ("USE_SCHEMA", "SELECT"), "schema", "system.mlflow", "ml-analysts"
    )
    assert classify("grant select on table System.MLflow.runs_latest to `a@b.com`") == ChangeGrants(
        True, ("SELECT",), "table", "system.mlflow.runs_latest", "a@b.com"
    )
    assert classify("REVOKE ALL PRIVILEGES ON VIEW gov.mlflow.team_a FROM analysts") == ChangeGrants(
        False, ("ALL_PRIVILEGES",), "table", "gov.mlflow.team_a", "analysts"
    )
    assert classify("GRANT SELECT ON system.mlflow.runs_latest TO `x`") == ChangeGrants(
        True, ("SELECT",), "table", "system.mlflow.runs_latest", "x"
    )
    assert classify("GRANT SELECT ON SCHEMA mlflow TO `x`", Defaults("system")) == ChangeGrants(
        True, ("SELECT",), "schema", "system.mlflow", "x"
    )


def test_show_grants_with_and_without_a_principal() -> None:
    assert classify("SHOW GRANTS ON SCHEMA system.mlflow") == ShowGrants("schema", "system.mlflow")
    assert classify("SHOW GRANTS `bob@example.com` ON TABLE system.mlflow.runs_latest") == ShowGrants(
        "table", "system.mlflow.runs_latest", "bob@example.com"
    )
    assert classify("show grant analysts on catalog system") == ShowGrants("catalog", "system", "analysts")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("GRANT MODIFY ON TABLE system.mlflow.runs_latest TO x", "Unknown privilege 'MODIFY'"),
        ("GRANT SELECT ON TABLE system.mlflow.runs_latest TO ml-analysts", "unexpected character '-'"),
        ("GRANT SELECT ON TABLE system.mlflow.runs_latest TO x; DROP TABLE ix_runs", "Only one statement"),
        ("GRANT SELECT ON TABLE system.mlflow.runs_latest TO x y", "expected the end of the statement"),
        ("GRANT SELECT ON TABLE runs_latest TO x", "Name tables in full"),
        ("GRANT SELECT ON CATALOG a.b TO x", "A catalog is named with 1 part(s)"),
        ("REVOKE SELECT ON TABLE system.mlflow.runs_latest TO x", "expected FROM, found 'TO'"),
        ("SHOW TABLES", "expected GRANTS or GRANT"),
        ("SHOW GRANTS ON SCHEMA system.mlflow WHERE 1=1", "expected the end of the statement"),
        ("GRANT SELECT ON TABLE system.mlflow.runs_latest TO `x", "unexpected character '`'"),
        ("DROP TABLE ix_runs", "expected VIEW, found 'TABLE'"),
        ("CREATE TABLE gov.mlflow.t AS SELECT 1", "expected VIEW, found 'TABLE'"),
        ("CREATE VIEW system.mlflow.v AS SELECT 1", "The system catalog is read-only"),
        ("CREATE VIEW gov.mlflow.v (a) AS SELECT 1 AS a", "a column list is not supported"),
        ("CREATE VIEW gov.mlflow.v AS SELECT * FROM runs_latest", "Name tables in full"),
        ("CREATE VIEW gov.mlflow.v AS SELECT * FROM system.mlflow.runs_latest WHERE run_id = :id", "not allowed in"),
        ("CREATE VIEW gov.mlflow.v AS DELETE FROM system.mlflow.runs_latest", "DELETE is not allowed here"),
    ],
)
def test_malformed_commands_are_refused_with_the_reason(text: str, says: str) -> None:
    message = refused(text)
    assert says in message, message


def test_create_view_keeps_its_definition_as_written_and_drop_view_names_it() -> None:
    text = """CREATE OR REPLACE VIEW gov.mlflow.team_a_runs AS
SELECT * FROM system.mlflow.runs_latest
WHERE workspace_id = '1001' OR is_account_group_member('mlflow-admins');"""
    statement = classify(text)
    assert isinstance(statement, CreateView)
    assert statement.name == TableName("gov", "mlflow", "team_a_runs")
    assert statement.replace
    assert statement.definition == (
        "SELECT * FROM system.mlflow.runs_latest\n"
        "WHERE workspace_id = '1001' OR is_account_group_member('mlflow-admins')"
    )
    assert statement.query.tables == (RUNS,)
    assert classify("DROP VIEW IF EXISTS gov.mlflow.team_a_runs") == DropView(
        TableName("gov", "mlflow", "team_a_runs"), True
    )
    assert classify("DROP VIEW gov.mlflow.x") == DropView(TableName("gov", "mlflow", "x"), False)


def test_comments_are_no_way_around_the_checks() -> None:
    assert "Only one statement" in refused("SELECT 1 /* ; */ ; DROP TABLE ix_runs -- ;")
    statement = classify("GRANT /* a comment */ SELECT -- and another\n ON TABLE system.mlflow.runs_latest TO x")
    assert statement == ChangeGrants(True, ("SELECT",), "table", "system.mlflow.runs_latest", "x")
