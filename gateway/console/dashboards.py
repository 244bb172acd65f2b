"""The console's dashboards on `system.mlflow`: runs per day by status, success ratio per experiment, longest runs,
most active users, and a metric's trend across the runs of an experiment; with workspace and time-range filters.

Every dashboard is a statement of dashboard_queries.py run through the SQL Statement Execution service as the
signed-in person (`SqlService.execute`): their grants, their dynamic views, the same sandbox and timeout as any
statement. The page carries the filters in its URL (a plain GET form, so a dashboard can be linked); its script
fetches each dashboard's rows as JSON and draws a chart (Chart.js, shipped in static/vendor/) beside a table
of the same rows. The CSV download runs the same statement on the server, with the same grants.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get

from gateway.console.dashboard_queries import (
    BY_KEY,
    DASHBOARDS,
    METRICS_TABLE,
    RUNS_TABLE,
    Dashboard,
    Filters,
    Statement,
    checked,
)
from gateway.console.layout import CONSOLE_PATH
from gateway.console.shell import Console, api_opt, page_opt, signed_in
from gateway.core.errors import GatewayError, InvalidParameter, ResourceNotFound
from gateway.core.principal import Principal
from gateway.sql.schemas import ExecuteStatementRequest, StatementParameter
from gateway.sql.service import SqlService

DASHBOARDS_PATH = f"{CONSOLE_PATH}/dashboards"
ACCESS = "anyone signed in; each dashboard is a SQL statement run with the person's grants and dynamic views"
DAYS = {
    "1": "Last day",
    "7": "Last 7 days",
    "30": "Last 30 days",
    "90": "Last 90 days",
    "365": "Last year",
    "all": "All time",
}
DEFAULT_DAYS = "30"
# A failed statement's error code (the Databricks vocabulary the SQL service answers with) and its HTTP status.
FAILED_STATUS = {"BAD_REQUEST": 400, "DEADLINE_EXCEEDED": 504, "TEMPORARILY_UNAVAILABLE": 503}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class Choice:
    """The filters as the person chose them (the page's form and the URLs of its data), and as statements take them."""

    workspace: str  # a workspace name, "" for all
    days: str
    experiment: str
    metric: str
    runs: str
    metrics: str
    filters: Filters

    def query(self) -> str:
        """The filters as a query string, only those that differ from the defaults."""
        given = {
            "workspace": self.workspace,
            "days": self.days if self.days != DEFAULT_DAYS else "",
            "experiment": self.experiment,
            "metric": self.metric,
            "runs": self.runs if self.runs != RUNS_TABLE else "",
            "metrics": self.metrics if self.metrics != METRICS_TABLE else "",
        }
        return urlencode({name: value for name, value in given.items() if value})


def choice(console: Console, principal: Principal, params: Any, now: datetime | None = None) -> Choice:
    """The filters of a request's query (InvalidParameter or a hidden workspace's 404 on a bad one)."""

    def one(name: str, default: str = "") -> str:
        value = params.get(name)
        return str(value).strip() if value is not None else default

    workspace = one("workspace")
    workspace_id = None
    if workspace:
        link = next((w for w in console.workspaces(principal) if w.name == workspace), None)
        if link is None:
            raise ResourceNotFound(f"Workspace '{workspace}' not found")
        workspace_id = str(link.workspace_id)
    days = one("days", DEFAULT_DAYS) or DEFAULT_DAYS
    if days not in DAYS:
        raise InvalidParameter(f"days is one of {', '.join(DAYS)}.")
    # Whole UTC days: from midnight of the day N days ago, so at least N days and the hours of today. The
    # aggregates then read run counts per day instead of every run (gateway/sql/rollup.py).
    since = None if days == "all" else ((now or datetime.now(UTC)) - timedelta(days=int(days))).astimezone(UTC).date()
    filters = checked(
        Filters(
            runs=one("runs", RUNS_TABLE) or RUNS_TABLE,
            metrics=one("metrics", METRICS_TABLE) or METRICS_TABLE,
            workspace_id=workspace_id,
            since=since,
            experiment_id=one("experiment") or None,
            metric=one("metric") or None,
        )
    )
    return Choice(
        workspace,
        days,
        filters.experiment_id or "",
        filters.metric or "",
        filters.runs,
        filters.metrics,
        filters,
    )


@dataclass(frozen=True, slots=True)
class Result:
    columns: list[str]
    types: list[str]
    rows: list[list[str | None]]
    truncated: bool


async def run(sql: SqlService, principal: Principal, statement: Statement) -> Result:
    """`statement` through the SQL service as `principal`: every chunk of its result, or its error as raised."""
    request = ExecuteStatementRequest(
        statement=statement.text,
        parameters=[
            StatementParameter(name=name, value=value, type=kind)
            for name, (value, kind) in statement.parameters.items()
        ],
        wait_timeout="50s",  # beyond the statement timeout: the statement has finished, one way or another
        on_wait_timeout="CANCEL",
    )
    response = await sql.execute(principal, request)
    status = response.status
    if status.state == "FAILED" and status.error is not None:
        code = status.error.error_code
        raise GatewayError(status.error.message, error_code=code, status=FAILED_STATUS.get(code, 500))
    if status.state != "SUCCEEDED" or response.manifest is None:
        raise GatewayError(
            f"The statement ended {status.state}; try again.", error_code="TEMPORARILY_UNAVAILABLE", status=503
        )
    manifest = response.manifest
    rows = list((response.result.data_array if response.result else None) or [])
    for index in range(1, manifest.total_chunk_count):
        chunk = await sql.chunk(principal, response.statement_id, index)
        rows.extend(chunk.data_array or [])
    return Result(
        [column.name for column in manifest.schema.columns],
        [column.type_name for column in manifest.schema.columns],
        rows,
        manifest.truncated,
    )


def dashboard(key: str) -> Dashboard:
    found = BY_KEY.get(key)
    if found is None:
        raise ResourceNotFound(f"Dashboard '{key}' does not exist; there are {', '.join(BY_KEY)}.")
    return found


def csv_text(result: Result) -> str:
    """The rows as CSV; a text cell a spreadsheet would read as a formula is prefixed with `'`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(
            ["" if value is None else _cell(value, kind) for value, kind in zip(row, result.types, strict=True)]
        )
    return out.getvalue()


def _cell(value: str, kind: str) -> str:
    numeric = kind in ("INT", "LONG", "SHORT", "BYTE", "DOUBLE", "FLOAT", "DECIMAL")
    return "'" + value if not numeric and value.startswith(FORMULA_START) else value


# -- the page -----------------------------------------------------------------------------------------------------


def _select(name: str, options: list[tuple[str, str]], chosen: str, label: str) -> str:
    items = "".join(
        f"<option value='{escape(value, quote=True)}'{' selected' if value == chosen else ''}>{escape(text)}</option>"
        for value, text in options
    )
    return f"<label>{escape(label)}<select name='{name}' id='filter-{name}'>{items}</select></label>"


def _input(name: str, value: str, label: str, placeholder: str) -> str:
    return (
        f"<label>{escape(label)}<input name='{name}' id='filter-{name}' value='{escape(value, quote=True)}' "
        f"placeholder='{escape(placeholder, quote=True)}' maxlength='250'></label>"
    )


def filters_form(console: Console, principal: Principal, chosen: Choice | None, params: Any) -> str:
    workspaces = [("", "All your workspaces")] + [(w.name, w.name) for w in console.workspaces(principal)]

    def value(name: str, default: str = "") -> str:
        if chosen is not None:
            return str(getattr(chosen, name))
        raw = params.get(name)
        return str(raw) if raw is not None else default

    return (
        f"<form class='fg-card fg-filters' method='get' action='{DASHBOARDS_PATH}' id='filters'>"
        + _select("workspace", workspaces, value("workspace"), "Workspace")
        + _select("days", list(DAYS.items()), value("days", DEFAULT_DAYS), "Time range")
        + _input("experiment", value("experiment"), "Experiment", "e.g. 1001-3")
        + _input("metric", value("metric"), "Metric", "e.g. loss")
        + _input("runs", value("runs", RUNS_TABLE), "Runs from", RUNS_TABLE)
        + _input("metrics", value("metrics", METRICS_TABLE), "Metrics from", METRICS_TABLE)
        + "<button type='submit' class='fg-button' id='apply'>Apply</button></form>"
    )


def panel(item: Dashboard, chosen: Choice) -> str:
    query = chosen.query()
    suffix = f"?{query}" if query else ""
    data_url = f"{DASHBOARDS_PATH}/data/{item.key}{suffix}"
    csv_url = f"{DASHBOARDS_PATH}/csv/{item.key}{suffix}"
    waiting = ""
    if item.needs and (chosen.filters.experiment_id is None or chosen.filters.metric is None):
        waiting = item.needs
    attributes = {
        "data-key": item.key,
        "data-chart": item.chart,
        "data-label": item.label,
        "data-value": item.value,
        "data-url": data_url,
        "data-waiting": waiting,
    }
    data = " ".join(f"{name}='{escape(text, quote=True)}'" for name, text in attributes.items())
    note = f"<p class='fg-note'>{escape(item.note)}</p>" if item.note else ""
    download = (
        ""
        if waiting
        else f"<a class='fg-csv' id='csv-{item.key}' href='{escape(csv_url, quote=True)}'>Download CSV</a>"
    )
    return (
        f"<section class='fg-card fg-dashboard' id='dashboard-{item.key}' {data}>"
        f"<div class='fg-head'><h2>{escape(item.title)}</h2>{download}</div>{note}"
        f"<div class='fg-error fg-hidden' role='alert' id='error-{item.key}'></div>"
        "<div class='fg-panel'>"
        f"<div class='fg-chart'><canvas id='chart-{item.key}' role='img' "
        f"aria-label='{escape(item.title, quote=True)}'></canvas></div>"
        f"<div class='fg-table' id='table-{item.key}'>{escape(waiting) if waiting else 'Loading…'}</div>"
        "</div></section>"
    )


class DashboardsController(Controller):
    path = "/dashboards"

    @get("/", opt=page_opt(ACCESS), name="console dashboards", include_in_schema=False)
    async def page(self, request: Request[Any, Any, Any], console: Console) -> Response[str]:
        principal = signed_in(request)
        try:
            chosen: Choice | None = choice(console, principal, request.query_params)
            problem = ""
        except GatewayError as exc:
            chosen, problem = None, exc.message
        body = filters_form(console, principal, chosen, request.query_params)
        if chosen is None:
            body += f"<div class='fg-error' role='alert' id='filters-error'>{escape(problem)}</div>"
        else:
            body += "<div class='fg-grid'>" + "".join(panel(item, chosen) for item in DASHBOARDS) + "</div>"
        return console.page(
            request,
            title="Dashboards",
            body=body,
            active="dashboards",
            scripts=["vendor/chart.umd.min.js", "dashboards.js"],
            styles=["dashboards.css"],
            status=200 if chosen is not None else 400,
        )

    @get("/data/{key:str}", opt=api_opt(ACCESS), name="console dashboard data", include_in_schema=False)
    async def data(
        self, request: Request[Any, Any, Any], key: str, console: Console, sql: SqlService
    ) -> dict[str, Any]:
        principal = signed_in(request)
        item = dashboard(key)
        chosen = choice(console, principal, request.query_params)
        result = await run(sql, principal, item.build(chosen.filters))
        return {
            "key": item.key,
            "columns": result.columns,
            "types": result.types,
            "rows": result.rows,
            "truncated": result.truncated,
        }

    @get("/csv/{key:str}", opt=api_opt(ACCESS), name="console dashboard csv", include_in_schema=False)
    async def csv(self, request: Request[Any, Any, Any], key: str, console: Console, sql: SqlService) -> Response[str]:
        principal = signed_in(request)
        item = dashboard(key)
        chosen = choice(console, principal, request.query_params)
        result = await run(sql, principal, item.build(chosen.filters))
        return Response(
            csv_text(result),
            media_type="text/csv",  # Litestar adds `; charset=utf-8`
            headers={
                "Content-Disposition": f'attachment; filename="{item.key}.csv"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )
