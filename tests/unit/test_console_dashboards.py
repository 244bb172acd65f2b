"""The dashboards' statements: each passes the SQL allow-list and answers the right rows on a real PostgreSQL,
through the same transpiler as every statement (the seeded account of test_sql_transpile.py: runs r-a1
FINISHED and r-a2 FAILED of experiment 1001-e-a by alice, r-b1 FINISHED of 1002-e-b by bob; r-a1's loss
0.9, 0.5, 0.3, 0.2). Filters are bound parameters; sources are checked names; the CSV defuses formulas.
"""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest

from gateway.console.dashboard_queries import (
    DASHBOARDS,
    Filters,
    Statement,
    checked,
    longest_runs,
    metric_trend,
    most_active_users,
    runs_per_day,
    success_ratio,
    table_name,
)
from gateway.console.dashboards import Result, csv_text
from gateway.core.errors import InvalidParameter
from gateway.sql.catalog import TableName
from gateway.sql.documented import SUCCESS_RATIO
from gateway.sql.statements import Query, classify
from gateway.sql.transpile import Identity
from tests.unit.test_sql_transpile import Answer, Database, db, nobody_is_member, run

__all__ = ["db"]  # the seeded database fixture of test_sql_transpile.py
MINE = TableName("gov", "console", "my_runs")
MY_RUNS = "SELECT * FROM system.mlflow.runs_latest WHERE created_by = current_user()"


async def answer(database: Database, statement: Statement, **kwargs: object) -> Answer:
    values = {name: value for name, (value, _) in statement.parameters.items()}
    types = {name: kind for name, (_, kind) in statement.parameters.items()}
    return await run(database, statement.text, values, types=types, **kwargs)  # type: ignore[arg-type]


def numbers(rows: list[list[str | None]]) -> list[list[object]]:
    """Numeric cells as numbers (decimals come back as PostgreSQL writes them: 0.50000000000000000000)."""

    def one(value: str | None) -> object:
        try:
            return float(value) if value is not None else None
        except ValueError:
            return value

    return [[one(value) for value in row] for row in rows]


def test_every_statement_passes_the_allow_list_with_and_without_filters() -> None:
    everything = Filters(
        workspace_id="1001",
        since=date(2024, 1, 1),
        experiment_id="1001-e-a",
        metric="loss",
        runs="gov.console.my_runs",
    )
    for filters in (Filters(experiment_id="1001-e-a", metric="loss"), everything):
        for item in DASHBOARDS:
            statement = item.build(filters)
            parsed = classify(statement.text)
            assert isinstance(parsed, Query), item.key
            assert set(parsed.parameters) == set(statement.parameters), item.key


def test_the_success_ratio_is_the_documented_query() -> None:
    assert success_ratio(Filters()).text == SUCCESS_RATIO.rstrip(";")
    filtered = success_ratio(Filters(workspace_id="1001", runs="gov.console.my_runs")).text
    assert filtered.replace("gov.console.my_runs", "system.mlflow.runs_latest").replace(
        "  AND workspace_id = :workspace_id\n", ""
    ) == SUCCESS_RATIO.rstrip(";")


async def test_runs_per_day_by_status_and_the_filters(db: Database) -> None:
    everything = await answer(db, runs_per_day(Filters()))
    assert [name for name, _ in everything.columns] == ["day", "status", "runs"]
    assert everything.data == [
        ["2024-06-27", "FINISHED", "1"],
        ["2024-06-28", "FAILED", "1"],
        ["2024-06-29", "FINISHED", "1"],
    ]
    team_a = await answer(db, runs_per_day(Filters(workspace_id="1001")))
    assert team_a.data == everything.data[:2]
    later = await answer(db, runs_per_day(Filters(since=date(2024, 6, 28))))
    assert later.data == everything.data[1:]
    experiment = await answer(db, runs_per_day(Filters(experiment_id="1002-e-b")))
    assert experiment.data == everything.data[2:]


async def test_success_ratio_per_experiment(db: Database) -> None:
    ratio = await answer(db, success_ratio(Filters()))
    assert numbers(ratio.data) == [["1001-e-a", 0.5, 2], ["1002-e-b", 1.0, 1]]
    since = await answer(db, success_ratio(Filters(since=date(2024, 6, 28))))
    # Tied on the run count, which is all the documented query orders by: either order is right.
    assert sorted(numbers(since.data)) == [["1001-e-a", 0.0, 1], ["1002-e-b", 1.0, 1]]  # type: ignore[type-var]


async def test_longest_runs_and_most_active_users(db: Database) -> None:
    longest = await answer(db, longest_runs(Filters()))
    assert [row[:2] + row[4:5] for row in longest.data] == [["third", "r-b1", "7200"], ["first", "r-a1", "1873"]]
    users = await answer(db, most_active_users(Filters()))
    assert [name for name, _ in users.columns] == ["created_by", "runs", "success_ratio", "last_run"]
    assert numbers([row[:3] for row in users.data]) == [["alice@example.com", 2, 0.5], ["bob@example.com", 1, 1.0]]


async def test_the_metric_trend_is_the_documented_summary_per_run(db: Database) -> None:
    trend = await answer(db, metric_trend(Filters(experiment_id="1001-e-a", metric="loss")))
    assert [name for name, _ in trend.columns][3:] == [
        "num_data_points",
        "avg",
        "max",
        "min",
        "pct_25",
        "median",
        "pct_75",
    ]
    assert len(trend.data) == 1
    run_name, run_id, _, points, avg, top, bottom, pct_25, median, pct_75 = trend.data[0]
    assert (run_name, run_id, points) == ("first", "r-a1", "4")
    assert [float(v) for v in (avg, top, bottom, pct_25, median, pct_75)] == pytest.approx(  # type: ignore[arg-type]
        [0.475, 0.9, 0.2, 0.275, 0.4, 0.6]
    )
    other = await answer(db, metric_trend(Filters(experiment_id="1002-e-b", metric="loss")))
    assert other.data == []
    with pytest.raises(InvalidParameter, match="Choose an experiment and a metric"):
        metric_trend(Filters(experiment_id="1001-e-a"))


async def test_a_dynamic_view_as_the_runs_source_narrows_every_dashboard(db: Database) -> None:
    alice = Identity("alice@example.com", nobody_is_member)
    views = {MINE: MY_RUNS}
    mine = Filters(runs=MINE.full, experiment_id="1001-e-a", metric="loss")
    per_day = await answer(db, runs_per_day(Filters(runs=MINE.full)), identity=alice, views=views)
    assert per_day.data == [["2024-06-27", "FINISHED", "1"], ["2024-06-28", "FAILED", "1"]]
    users = await answer(db, most_active_users(Filters(runs=MINE.full)), identity=alice, views=views)
    assert [row[0] for row in users.data] == ["alice@example.com"]
    bob = Identity("bob@example.com", nobody_is_member)
    trend = await answer(db, metric_trend(mine), identity=bob, views=views)
    assert trend.data == []  # bob's view has none of alice's runs, so none of their metrics


async def test_filters_are_bound_never_written_into_the_text(db: Database) -> None:
    sneaky = "1001-e-a' OR '1'='1"
    statement = runs_per_day(Filters(experiment_id=sneaky))
    assert sneaky not in statement.text
    assert (await answer(db, statement)).data == []


def test_sources_must_be_plain_three_part_names() -> None:
    assert table_name(" Gov.Console.My_Runs ", "runs") == "gov.console.my_runs"
    for bad in (
        "system.mlflow",
        "system.mlflow.runs_latest; DROP VIEW x",
        "system.mlflow.runs_latest r JOIN system.mlflow.experiments_latest",
        "`system`.mlflow.runs_latest",
        "system.mlflow.runs_latest--",
        "a.b.c.d",
        "",
    ):
        with pytest.raises(InvalidParameter, match=r"catalog\.schema\.name"):
            table_name(bad, "runs")
    with pytest.raises(InvalidParameter, match="printable"):
        checked(Filters(metric="loss\x00"))
    with pytest.raises(InvalidParameter, match="250"):
        checked(Filters(experiment_id="1" * 251))


def test_the_csv_has_every_row_and_defuses_formulas() -> None:
    rows: list[list[str | None]] = [
        ['=HYPERLINK("http://x")', "3", "-0.5"],
        ["plain, with comma", "1", None],
        ["-minus", "-2", "1.0"],
        ["@sum", "0", "0"],
    ]
    text = csv_text(Result(["run_name", "runs", "success_ratio"], ["STRING", "LONG", "DOUBLE"], rows, False))
    assert text.startswith("run_name,runs,success_ratio\r\n")
    assert list(csv.reader(io.StringIO(text)))[1:] == [
        ['\'=HYPERLINK("http://x")', "3", "-0.5"],
        ["plain, with comma", "1", ""],
        ["'-minus", "-2", "1.0"],
        ["'@sum", "0", "0"],
    ]
