"""The account console in a real headless Chromium behind the gateway's browser sign-in.

The session's gateway (real PostgreSQL, real mlflow stores), people made over the gateway's own APIs, and
Debian's chromium driven by Playwright. Screenshots: test-artifacts/ui/ (README, "The web UI").
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow import MlflowClient
from playwright.sync_api import expect

from tests.conftest import ADMIN_TOKEN, Stack
from tests.support.browser import ARTIFACTS, new_tab, shot
from tests.support.identity import Admin, Person, unique
from tests.support.stock_client import stock_client_env

pytestmark = pytest.mark.integration
WORKSPACE = "team-a"


@pytest.fixture(scope="module")
def people(stack: Stack) -> dict[str, Person]:
    admin = Admin.of(stack)
    suite = unique("console")
    reader = admin.person(f"{suite}-reader@example.com")
    lead = admin.person(f"{suite}-lead@example.com")
    admin.grant(f"workspaces/{WORKSPACE}", "CAN_READ", user=reader.name, workspace=WORKSPACE)
    admin.grant(f"workspaces/{WORKSPACE}", "CAN_MANAGE", user=lead.name, workspace=WORKSPACE)
    return {"reader": reader, "lead": lead}


@pytest.fixture
def tab(chromium: Any, stack: Stack) -> Iterator[Any]:
    """A fresh browser context; the page's console messages are kept (`tab.console_errors`)."""
    with new_tab(chromium, stack.url) as page:
        page.console_errors = []
        page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
        yield page


def sign_in_at(tab: Any, path: str, token: str) -> None:
    """Open `path` signed out: the sign-in page, then (token posted) back at `path`."""
    tab.goto(path)
    tab.wait_for_selector("#token")
    assert tab.url.split("?")[0].endswith("/fedgate/sign-in")
    tab.fill("#token", token)
    tab.click("#sign-in-token")
    tab.wait_for_selector("#fg-user")


def test_a_link_into_the_console_leads_there_after_sign_in(tab: Any, people: dict[str, Person], stack: Stack) -> None:
    reader = people["reader"]
    sign_in_at(tab, "/fedgate/console?from=mail&x=1", reader.token)
    assert tab.url == f"{stack.url}/fedgate/console?from=mail&x=1"
    assert tab.inner_text("#fg-user") == reader.name
    nav = tab.locator(".fg-nav a").all_inner_texts()
    assert nav == ["Dashboards", "SQL editor", "Alerts"]  # Access is for admins
    shot(tab, "30-console-home")
    tab.reload()
    tab.wait_for_selector("#fg-user")
    assert tab.evaluate("typeof window.fedgate.api") == "function"  # console.js ran under the page's CSP
    assert tab.console_errors == []  # and the CSP refused nothing the page asked for

    # Back to MLflow's UI, then to the console again, and sign-out from the console.
    tab.click("#fg-mlflow")
    tab.wait_for_selector("#fedgate-user")
    tab.goto("/fedgate/console")
    tab.click("#fg-sign-out")
    tab.wait_for_selector("#token")
    tab.goto("/fedgate/console")
    tab.wait_for_selector("#token")  # the session is gone: the console asks for sign-in again


def test_workspace_admins_see_the_access_section(tab: Any, people: dict[str, Person]) -> None:
    sign_in_at(tab, "/fedgate/console", people["lead"].token)
    assert tab.locator(".fg-nav a").all_inner_texts() == ["Dashboards", "SQL editor", "Alerts", "Access"]
    shot(tab, "31-console-workspace-admin")


def test_console_pages_answer_with_their_headers_and_refuse_tokens(people: dict[str, Person], stack: Stack) -> None:
    browser = requests.Session()
    signed_in = browser.post(
        f"{stack.url}/fedgate/sign-in/token",
        data={"token": people["reader"].token, "next": "/fedgate/console"},
        headers={"Origin": stack.url},
        timeout=30,
    )
    assert signed_in.status_code == 200 and "fg-user" in signed_in.text
    csp = signed_in.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert signed_in.headers["cache-control"] == "no-store"
    by_token = requests.get(
        f"{stack.url}/fedgate/console", headers={"Authorization": f"Bearer {people['reader'].token}"}, timeout=30
    )
    assert by_token.status_code == 403 and by_token.json()["error_code"] == "PERMISSION_DENIED"


# -- dashboards ---------------------------------------------------------------------------------------------------

LOSSES = [0.9, 0.6, 0.4, 0.3]


@dataclass
class Account:
    experiment: str  # account-wide id, `1001-<id>`
    analyst: Person  # SELECT on system.mlflow: every run of the experiment (5)
    owner: Person  # SELECT on a dynamic view of the runs they created (2) and on the metrics history
    view: str


@contextlib.contextmanager
def tracking_as(stack: Stack, token: str) -> Iterator[MlflowClient]:
    with stock_client_env(MLFLOW_TRACKING_URI=stack.url, MLFLOW_TRACKING_TOKEN=token, MLFLOW_WORKSPACE=WORKSPACE):
        yield MlflowClient(stack.url)


def log_runs(client: MlflowClient, experiment: str, statuses: list[str], offset: float) -> None:
    for index, status in enumerate(statuses):
        run = client.create_run(experiment, run_name=f"run-{offset:g}-{index}")
        for step, loss in enumerate(LOSSES):
            client.log_metric(run.info.run_id, "loss", loss + offset + index / 100, step=step)
        client.set_terminated(run.info.run_id, status=status)


def admin_sql(stack: Stack, statement: str) -> None:
    answer = requests.post(
        f"{stack.url}/api/2.0/sql/statements",
        json={"statement": statement, "warehouse_id": "any", "wait_timeout": "30s"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )
    assert answer.status_code == 200 and answer.json()["status"]["state"] == "SUCCEEDED", answer.text


@pytest.fixture(scope="module")
def account(stack: Stack) -> Account:
    admin = Admin.of(stack)
    suite = unique("dash")
    analyst = admin.person(f"{suite}-analyst@example.com")
    owner = admin.person(f"{suite}-owner@example.com")
    with tracking_as(stack, ADMIN_TOKEN) as client:
        experiment = client.create_experiment(f"{suite} churn")
        log_runs(client, experiment, ["FINISHED", "FINISHED", "KILLED"], 0.0)
    admin.grant(f"experiments/{experiment}", "CAN_MANAGE", user=owner.name, workspace=WORKSPACE)
    with tracking_as(stack, owner.token) as client:
        log_runs(client, experiment, ["FINISHED", "FAILED"], 0.5)
    catalog = suite.replace("-", "_")
    view = f"{catalog}.mlflow.my_runs"
    for statement in (
        f"GRANT USE CATALOG ON CATALOG system TO `{analyst.name}`",
        f"GRANT USE SCHEMA, SELECT ON SCHEMA system.mlflow TO `{analyst.name}`",
        f"CREATE VIEW {view} AS SELECT * FROM system.mlflow.runs_latest WHERE created_by = current_user()",
        f"GRANT USE CATALOG ON CATALOG {catalog} TO `{owner.name}`",
        f"GRANT USE SCHEMA ON SCHEMA {catalog}.mlflow TO `{owner.name}`",
        f"GRANT SELECT ON VIEW {view} TO `{owner.name}`",
        f"GRANT USE CATALOG ON CATALOG system TO `{owner.name}`",
        f"GRANT USE SCHEMA ON SCHEMA system.mlflow TO `{owner.name}`",
        f"GRANT SELECT ON TABLE system.mlflow.run_metrics_history TO `{owner.name}`",
    ):
        admin_sql(stack, statement)
    return Account(f"1001-{experiment}", analyst, owner, view)


def full_shot(tab: Any, name: str) -> None:
    """The whole page (every dashboard), as test-artifacts/ui/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def dashboards_of(tab: Any) -> dict[str, dict[str, Any]]:
    """Each dashboard once loaded: its table (header and rows, as shown), its error, whether it drew a chart."""
    tab.locator("section.fg-dashboard").first.wait_for()
    # (not wait_for_function: its string predicate is an eval, which the page's CSP rightly refuses)
    expect(tab.locator("section.fg-dashboard:not([data-loaded='true'])")).to_have_count(0)
    found = {}
    for section in tab.locator("section.fg-dashboard").all():
        key = section.get_attribute("data-key")
        table = section.locator("table.fg-table")
        found[key] = {
            "columns": table.locator("th").all_inner_texts() if table.count() else [],
            "rows": [row.locator("td").all_inner_texts() for row in table.locator("tbody tr").all()],
            "error": section.locator(".fg-error").inner_text(),
            "chart": tab.evaluate("(id) => !!window.Chart.getChart(id)", f"chart-{key}"),
        }
    return found


def test_a_dashboard_shows_a_person_their_data_and_a_view_shows_fewer_rows(
    tab: Any, account: Account, stack: Stack
) -> None:
    query = f"?days=1&experiment={account.experiment}&metric=loss"
    sign_in_at(tab, f"/fedgate/console/dashboards{query}", account.analyst.token)
    seen = dashboards_of(tab)
    assert all(d["error"] == "" and d["chart"] for d in seen.values()), seen
    assert seen["success-ratio"]["rows"] == [[account.experiment, "0.6", "5"]]
    per_day = seen["runs-per-day"]["rows"]
    assert sorted((status, runs) for _, status, runs in per_day) == [
        ("FAILED", "1"),
        ("FINISHED", "3"),
        ("KILLED", "1"),
    ]
    assert len(seen["metric-trend"]["rows"]) == 5
    assert {row[0] for row in seen["most-active-users"]["rows"]} >= {account.owner.name}
    assert len(seen["longest-runs"]["rows"]) == 5
    full_shot(tab, "32-dashboards")
    assert tab.console_errors == []

    # The CSV: the same rows, from the server, with the same grants.
    with tab.expect_download() as download:
        tab.click("#csv-metric-trend")
    lines = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert lines[0] == seen["metric-trend"]["columns"] and len(lines) == 6

    # Another person: no SELECT on the system runs table; their dynamic view shows the runs they created.
    tab.context.clear_cookies()
    sign_in_at(tab, f"/fedgate/console/dashboards{query}", account.owner.token)
    refused = dashboards_of(tab)
    assert "lacks SELECT on table system.mlflow.runs_latest" in refused["runs-per-day"]["error"]
    tab.goto(f"/fedgate/console/dashboards{query}&runs={account.view}")
    mine = dashboards_of(tab)
    assert all(d["error"] == "" for d in mine.values()), mine
    assert mine["success-ratio"]["rows"] == [[account.experiment, "0.5", "2"]]
    assert sorted((status, runs) for _, status, runs in mine["runs-per-day"]["rows"]) == [
        ("FAILED", "1"),
        ("FINISHED", "1"),
    ]
    assert len(mine["metric-trend"]["rows"]) == 2 < len(seen["metric-trend"]["rows"])
    assert [row[0] for row in mine["most-active-users"]["rows"]] == [account.owner.name]
    full_shot(tab, "33-dashboards-dynamic-view")
    with tab.expect_download() as download:
        tab.click("#csv-longest-runs")
    lines = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert len(lines) == 3 and {line[1] for line in lines[1:]} == {row[1] for row in mine["longest-runs"]["rows"]}


def test_dashboard_data_refuses_bad_filters_and_other_sites(account: Account, stack: Stack) -> None:
    browser = requests.Session()
    signed_in = browser.post(
        f"{stack.url}/fedgate/sign-in/token",
        data={"token": account.analyst.token, "next": "/fedgate/console/dashboards"},
        headers={"Origin": stack.url},
        timeout=30,
    )
    assert signed_in.status_code == 200
    base = f"{stack.url}/fedgate/console/dashboards"
    for params, status, code in (
        ({"days": "2"}, 400, "INVALID_PARAMETER_VALUE"),
        ({"runs": "system.mlflow.runs_latest; DROP VIEW x"}, 400, "INVALID_PARAMETER_VALUE"),
        ({"workspace": "team-b"}, 404, "RESOURCE_DOES_NOT_EXIST"),  # the analyst holds no grant in team-b
        # A catalog the analyst may not use, whether or not it exists (USE CATALOG is asked first).
        ({"runs": "nowhere.mlflow.runs"}, 403, "PERMISSION_DENIED"),
    ):
        answer = browser.get(f"{base}/data/runs-per-day", params=params, timeout=30)
        assert (answer.status_code, answer.json()["error_code"]) == (status, code), answer.text
    missing = browser.get(f"{base}/data/nothing", timeout=30)
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    trend = browser.get(f"{base}/data/metric-trend", timeout=30)
    assert trend.status_code == 400 and "Choose an experiment" in trend.json()["message"]
    page = browser.get(base, params={"days": "2"}, timeout=30)
    assert page.status_code == 400 and "days is one of" in page.text
    signed_out = requests.get(f"{base}/data/runs-per-day", timeout=30)
    assert signed_out.status_code == 401
