"""The dashboards' statements: Databricks SQL over the system tables (or views the person chooses), with filters.

Each dashboard is one SELECT with named parameters for every value the person chooses (workspace, since when,
experiment, metric), run through the SQL Statement Execution service as the signed-in person
(gateway/sql/service.py): the same grants and dynamic views as any statement, never a way around them. Only
the source tables' names are written into the text, and only as three-part names of plain identifiers (the
service then checks the person's SELECT on them, and expands a dynamic view with its owner's rights).

The success ratio is the documented query (gateway/sql/documented.py) with the filters added to its WHERE;
the metric trend is the documented PERCENTILE_CONT summary per run of one experiment.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from gateway.core.errors import InvalidParameter
from gateway.sql.documented import SUCCESS_RATIO

RUNS_TABLE = "system.mlflow.runs_latest"
METRICS_TABLE = "system.mlflow.run_metrics_history"
TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,99}\.[a-z_][a-z0-9_]{0,99}\.[a-z_][a-z0-9_]{0,99}\Z")
MAX_TEXT = 250  # an experiment id or a metric name longer than this matches nothing MLflow stores


@dataclass(frozen=True, slots=True)
class Filters:
    """What the person chose. `runs` and `metrics` are the tables (or views) read; the rest narrow the rows."""

    runs: str = RUNS_TABLE
    metrics: str = METRICS_TABLE
    workspace_id: str | None = None  # the workspace's id, as the system tables write it ("1001")
    since: date | None = None  # runs started on or after this day (UTC)
    experiment_id: str | None = None  # account-wide, `<workspace id>-<experiment id>`
    metric: str | None = None


@dataclass(frozen=True, slots=True)
class Statement:
    text: str
    parameters: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (value, Databricks type)


def table_name(text: str, what: str) -> str:
    """A source as written into a statement: a three-part name of plain identifiers, lower-cased."""
    name = text.strip().lower()
    if not TABLE_NAME.match(name):
        raise InvalidParameter(
            f"The {what} source must be a table or view named catalog.schema.name (letters, digits and _)."
        )
    return name


def _text(value: str | None, what: str) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > MAX_TEXT or any(ord(c) < 0x20 for c in value):
        raise InvalidParameter(f"The {what} must be at most {MAX_TEXT} printable characters.")
    return value


def checked(filters: Filters) -> Filters:
    """`filters` with its sources and texts checked (InvalidParameter naming what is wrong)."""
    return Filters(
        runs=table_name(filters.runs, "runs"),
        metrics=table_name(filters.metrics, "metrics"),
        workspace_id=_text(filters.workspace_id, "workspace"),
        since=filters.since,
        experiment_id=_text(filters.experiment_id, "experiment id"),
        metric=_text(filters.metric, "metric name"),
    )


def _conditions(filters: Filters, alias: str = "") -> tuple[list[str], dict[str, tuple[str, str]]]:
    """The WHERE conditions of the filters on a runs table (columns prefixed with `alias.`), and their parameters.

    Deleted runs count, as in the documented queries: the system tables keep them (with `delete_time`), and
    the success ratio over workspaces and experiments is answered from exact run counts only so.
    """
    column = f"{alias}." if alias else ""
    conditions: list[str] = []
    parameters: dict[str, tuple[str, str]] = {}
    if filters.workspace_id is not None:
        conditions.append(f"{column}workspace_id = :workspace_id")
        parameters["workspace_id"] = (filters.workspace_id, "STRING")
    if filters.since is not None:
        # A DATE: the window starts at midnight UTC, so counts per day answer it (gateway/sql/rollup.py).
        conditions.append(f"{column}start_time >= :since")
        parameters["since"] = (filters.since.isoformat(), "DATE")
    if filters.experiment_id is not None:
        conditions.append(f"{column}experiment_id = :experiment_id")
        parameters["experiment_id"] = (filters.experiment_id, "STRING")
    return conditions, parameters


def runs_per_day(filters: Filters) -> Statement:
    conditions, parameters = _conditions(filters)
    where = " AND ".join(["start_time IS NOT NULL", *conditions])
    text = (
        "SELECT date(start_time) AS day, status, COUNT(*) AS runs\n"
        f"FROM {filters.runs}\n"
        f"WHERE {where}\n"
        "GROUP BY date(start_time), status\n"
        "ORDER BY day, status\n"
        "LIMIT 5000"
    )
    return Statement(text, parameters)


_DOCUMENTED_FROM = "FROM system.mlflow.runs_latest\nWHERE status IS NOT NULL\n"
if _DOCUMENTED_FROM not in SUCCESS_RATIO:
    raise RuntimeError("the documented success-ratio query changed: adapt success_ratio()")


def success_ratio(filters: Filters) -> Statement:
    """The documented query (top 20 experiments by run count), on the runs source, with the filters in its WHERE."""
    conditions, parameters = _conditions(filters)
    where = "".join(f"  AND {condition}\n" for condition in conditions)
    text = SUCCESS_RATIO.replace(_DOCUMENTED_FROM, f"FROM {filters.runs}\nWHERE status IS NOT NULL\n{where}")
    return Statement(text.rstrip().rstrip(";"), parameters)


def longest_runs(filters: Filters) -> Statement:
    conditions, parameters = _conditions(filters)
    where = " AND ".join(["start_time IS NOT NULL", "end_time IS NOT NULL", *conditions])
    text = (
        "SELECT run_name, run_id, experiment_id, status,\n"
        "  TIMESTAMPDIFF(SECOND, start_time, end_time) AS run_length_seconds, start_time\n"
        f"FROM {filters.runs}\n"
        f"WHERE {where}\n"
        "ORDER BY run_length_seconds DESC, run_id\n"
        "LIMIT 20"
    )
    return Statement(text, parameters)


def most_active_users(filters: Filters) -> Statement:
    """Runs per person, their success ratio and their last run. (A count of distinct experiments per person made
    it four times slower on a million runs: a sort of every run instead of one pass.)"""
    conditions, parameters = _conditions(filters)
    where = " AND ".join(["created_by IS NOT NULL", *conditions])
    text = (
        "SELECT created_by, COUNT(*) AS runs,\n"
        "  AVG(CASE WHEN status = 'FINISHED' THEN 1.0 ELSE 0.0 END) AS success_ratio,\n"
        "  MAX(start_time) AS last_run\n"
        f"FROM {filters.runs}\n"
        f"WHERE {where}\n"
        "GROUP BY created_by\n"
        "ORDER BY runs DESC, created_by\n"
        "LIMIT 20"
    )
    return Statement(text, parameters)


def metric_trend(filters: Filters) -> Statement:
    """The documented per-metric summary (points, average, max, min, quartiles) of one metric, for each of the
    latest 500 runs of one experiment, newest first. Only runs the runs source shows count: the metrics join them."""
    if filters.experiment_id is None or filters.metric is None:
        raise InvalidParameter("Choose an experiment and a metric to see the metric's trend.")
    conditions, parameters = _conditions(filters, "runs")
    parameters["metric_name"] = (filters.metric, "STRING")
    where = "".join(f"  AND {condition}\n" for condition in conditions)
    text = (
        "SELECT\n"
        "  runs.run_name,\n"
        "  runs.run_id,\n"
        "  runs.start_time,\n"
        "  count(metrics.metric_time) AS num_data_points,\n"
        "  avg(metrics.metric_value) AS avg,\n"
        "  max(metrics.metric_value) AS max,\n"
        "  min(metrics.metric_value) AS min,\n"
        "  PERCENTILE_CONT(0.25) WITHIN GROUP (ORDER BY metrics.metric_value) AS pct_25,\n"
        "  PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY metrics.metric_value) AS median,\n"
        "  PERCENTILE_CONT(0.75) WITHIN GROUP (ORDER BY metrics.metric_value) AS pct_75\n"
        f"FROM {filters.metrics} metrics\n"
        f"  JOIN {filters.runs} runs ON metrics.run_id = runs.run_id\n"
        "WHERE metrics.metric_name = :metric_name\n"
        "  AND metrics.experiment_id = :experiment_id\n"
        f"{where}"
        "GROUP BY runs.run_name, runs.run_id, runs.start_time\n"
        "ORDER BY runs.start_time DESC, runs.run_id\n"
        "LIMIT 500"
    )
    return Statement(text, parameters)


@dataclass(frozen=True, slots=True)
class Dashboard:
    key: str
    title: str
    chart: str  # how the page's script draws it: "stacked-bars", "bars", "hbars", "band"
    build: Callable[[Filters], Statement]
    label: str  # the column naming each bar or point
    value: str  # the column drawn ("band": the median, between the quartiles)
    note: str = ""
    needs: str = ""  # what must be chosen before it can run (said on the page instead of a result)


DASHBOARDS: tuple[Dashboard, ...] = (
    Dashboard(
        "runs-per-day", "Runs per day by status", "stacked-bars", runs_per_day, "day", "runs", "Runs started each day."
    ),
    Dashboard(
        "success-ratio",
        "Success ratio per experiment",
        "bars",
        success_ratio,
        "experiment_id",
        "success_ratio",
        "The documented query: the 20 experiments with the most runs, and the share of them FINISHED.",
    ),
    Dashboard(
        "longest-runs",
        "Longest runs",
        "hbars",
        longest_runs,
        "run_name",
        "run_length_seconds",
        "The 20 longest finished runs, in seconds.",
    ),
    Dashboard(
        "most-active-users",
        "Most active users",
        "hbars",
        most_active_users,
        "created_by",
        "runs",
        "Who started the most runs.",
    ),
    Dashboard(
        "metric-trend",
        "Metric trend across runs",
        "band",
        metric_trend,
        "run_name",
        "median",
        "One metric of one experiment, for its latest 500 runs: median, quartiles, min and max of its points.",
        needs="Choose an experiment and a metric above to see the metric's trend.",
    ),
)
BY_KEY = {dashboard.key: dashboard for dashboard in DASHBOARDS}
