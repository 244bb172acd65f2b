"""The console's SQL editor in a real headless Chromium: a person signs in, runs a statement and sees its rows,
pages a large result, sees where an error is, cancels a long statement, saves a query and shares it with a
group; a member of the group opens it by link and runs it with their own (narrower) view of the data.

The session's gateway (real PostgreSQL, real mlflow stores), people made over the gateway's own APIs, rows
written straight into the index tables (so the counts each person sees are known), and Debian's chromium
driven by Playwright. Screenshots: test-artifacts/ui/4x-console-sql-*.png.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import requests

from tests.conftest import ADMIN_TOKEN, Stack
from tests.integration.test_console import sign_in_at
from tests.support.browser import new_tab, shot
from tests.support.identity import Admin, Person

pytestmark = pytest.mark.integration
EDITOR = "/fedgate/console/sql"
# Eight cross joins of this module's 60 runs (and any others): more rows than any timeout lets PostgreSQL count.
SLOW = "SELECT count(*) FROM " + " CROSS JOIN ".join(f"system.mlflow.runs_latest r{i}" for i in range(8))


@dataclass
class World:
    suffix: str
    analyst: Person  # in readers and leads; SELECT on system.mlflow: sees both workspaces through the view
    member: Person  # in readers only: the view shows them workspace 1001
    readers: str
    view: str
    experiments: tuple[str, str]  # account-wide ids: 40 runs in 1001, 20 in 1002


async def insert_runs(database_url: str, s: str, a: str, b: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO ix_experiments (workspace_id, experiment_id, name) VALUES (1001, $1, $2), (1002, $3, $4)",
            a,
            f"/Users/ann/csql-{s}",
            b,
            f"/Users/ben/csql-{s}",
        )
        await connection.execute(
            """
            INSERT INTO ix_runs (run_id, workspace_id, experiment_id, run_name, status)
            SELECT $1 || '-a-' || n, 1001, $2, 'run-' || lpad(n::text, 2, '0'),
                   CASE WHEN n <= 30 THEN 'FINISHED' ELSE 'FAILED' END
            FROM generate_series(1, 40) AS n
            UNION ALL
            SELECT $1 || '-b-' || n, 1002, $3, 'other-' || n, 'FINISHED' FROM generate_series(1, 20) AS n
            """,
            f"csql-{s}",
            a,
            b,
        )
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    s = uuid.uuid4().hex[:6]
    a, b = f"csql-{s}-a", f"csql-{s}-b"
    # Playwright's sync API keeps an event loop running in this thread while a browser is open: the rows are
    # written from a thread of their own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, insert_runs(stack.database_url, s, a, b)).result()
    admin = Admin.of(stack)
    analyst = admin.person(f"sql-analyst.{s}@example.com")
    member = admin.person(f"sql-member.{s}@example.com")
    readers, leads = f"sql-readers-{s}", f"sql-leads-{s}"
    admin.group(readers, [analyst.id, member.id])
    admin.group(leads, [analyst.id])
    view = f"csql_{s}.mlflow.team_runs"
    for statement in (
        f"GRANT USE CATALOG ON CATALOG system TO `{analyst.name}`",
        f"GRANT USE SCHEMA, SELECT ON SCHEMA system.mlflow TO `{analyst.name}`",
        f"CREATE VIEW {view} AS SELECT * FROM system.mlflow.runs_latest "
        f"WHERE workspace_id = '1001' OR is_account_group_member('{leads}')",
        f"GRANT USE CATALOG ON CATALOG csql_{s} TO `{readers}`",
        f"GRANT USE SCHEMA ON SCHEMA csql_{s}.mlflow TO `{readers}`",
        f"GRANT SELECT ON VIEW {view} TO `{readers}`",
    ):
        answer = requests.post(
            f"{stack.url}/api/2.0/sql/statements",
            json={"statement": statement, "wait_timeout": "30s"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=60,
        )
        assert answer.status_code == 200 and answer.json()["status"]["state"] == "SUCCEEDED", answer.text
    return World(s, analyst, member, readers, view, (f"1001-{a}", f"1002-{b}"))


@pytest.fixture
def tab(chromium: Any, stack: Stack) -> Iterator[Any]:
    """A fresh browser context; the page's script errors are kept (`tab.console_errors`). Chromium also logs each
    answer with an error status ("Failed to load resource"), which the refusals these tests cause are."""
    with new_tab(chromium, stack.url) as page:
        page.console_errors = []
        page.on(
            "console",
            lambda m: (
                page.console_errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        yield page


def run_text(tab: Any, text: str) -> None:
    tab.fill("#sq-text", text)
    tab.click("#sq-run")


def wait_status(tab: Any, pattern: str) -> str:
    """The status line once it matches `pattern` (a regular expression)."""
    tab.wait_for_function(
        "pattern => new RegExp(pattern).test(document.getElementById('sq-status').textContent)", arg=pattern
    )
    return str(tab.inner_text("#sq-status"))


def wait_page(tab: Any, start: str) -> None:
    """Until the pager's words start with `start`. (A function, not an expression: the page's CSP forbids eval.)"""
    tab.wait_for_function("start => document.getElementById('sq-page').textContent.startsWith(start)", arg=start)


def result_rows(tab: Any) -> list[list[str]]:
    return [
        [cell.strip() for cell in row]
        for row in tab.eval_on_selector_all(
            "#sq-results tbody tr", "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))"
        )
    ]


def statement_state(stack: Stack, token: str, statement_id: str) -> str:
    answer = requests.get(
        f"{stack.url}/api/2.0/sql/statements/{statement_id}", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["status"]["state"])


def test_a_person_runs_pages_corrects_and_cancels_statements_in_the_editor(
    world: World, tab: Any, stack: Stack
) -> None:
    a, _ = world.experiments
    sign_in_at(tab, EDITOR, world.analyst.token)
    tab.wait_for_selector("body[data-ready='sql']")
    assert tab.get_attribute("#fg-nav-sql", "aria-current") == "page"

    # A statement and its rows.
    run_text(
        tab,
        f"SELECT status, count(*) AS runs\nFROM system.mlflow.runs_latest\nWHERE experiment_id = '{a}'\n"
        "GROUP BY status\nORDER BY status",
    )
    assert wait_status(tab, r"rows? in").startswith("2 rows")
    assert tab.eval_on_selector_all("#sq-results th", "hs => hs.map(h => h.textContent)") == ["status", "runs"]
    assert result_rows(tab) == [["FAILED", "10"], ["FINISHED", "30"]]
    assert tab.get_attribute("#sq-results tbody td:nth-child(2)", "class") == "fg-num"
    shot(tab, "40-console-sql-result")

    # A result of 40 x 40 x 2 = 3,200 rows comes a chunk (1,000 rows) per page.
    run_text(
        tab,
        "SELECT x.run_name, y.run_name, z.n FROM system.mlflow.runs_latest x CROSS JOIN system.mlflow.runs_latest y "
        f"CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2) z WHERE x.experiment_id = '{a}' AND y.experiment_id = '{a}' "
        "ORDER BY 1, 2, 3",
    )
    assert wait_status(tab, r"rows in").startswith("3200 rows")
    assert tab.inner_text("#sq-page") == "Rows 1 to 1000 of 3200 · page 1 of 4"
    assert len(result_rows(tab)) == 1000 and result_rows(tab)[0] == ["run-01", "run-01", "1"]
    assert tab.is_disabled("#sq-prev") and not tab.is_disabled("#sq-next")
    tab.click("#sq-next")
    wait_page(tab, "Rows 1001 to 2000")
    assert result_rows(tab)[0] == ["run-13", "run-21", "1"]  # row 1,001: (1000 // 80 = 12, 1000 % 80 = 40)
    tab.click("#sq-next")
    wait_page(tab, "Rows 2001 to 3000")
    tab.click("#sq-next")
    wait_page(tab, "Rows 3001 to 3200")
    assert len(result_rows(tab)) == 200 and tab.is_disabled("#sq-next")
    shot(tab, "41-console-sql-paged")

    # An error shows where it is: the line under the message, a caret under the column, the cursor there.
    text = "SELECT run_name,\n  nosuchfn(status)\nFROM system.mlflow.runs_latest"
    run_text(tab, text)
    wait_status(tab, r"^Refused")
    assert tab.inner_text("#sq-error") == (
        "INVALID_PARAMETER_VALUE: The function nosuchfn() is not allowed (line 2, column 3)."
    )
    assert tab.inner_text("#sq-where") == "line 2, column 3:\n  nosuchfn(status)\n  ^"
    assert tab.evaluate("document.getElementById('sq-text').selectionStart") == text.index("nosuchfn")
    assert tab.inner_text("#sq-pos") == "Line 2, column 3"
    shot(tab, "42-console-sql-error-position")

    # A long statement is cancelled: the page says so and the statement is CANCELED for the API too.
    run_text(tab, SLOW)
    wait_status(tab, r"^Running… ")
    statement_id = tab.get_attribute("#sq-status", "data-statement")
    assert statement_id and statement_state(stack, world.analyst.token, statement_id) == "RUNNING"
    assert not tab.is_disabled("#sq-cancel")
    shot(tab, "43-console-sql-running")
    tab.click("#sq-cancel")
    assert wait_status(tab, r"^Cancelled after").startswith("Cancelled after")
    assert statement_state(stack, world.analyst.token, statement_id) == "CANCELED"
    assert tab.is_disabled("#sq-cancel") and not tab.is_disabled("#sq-run")
    assert tab.inner_text("#sq-results") == ""
    shot(tab, "44-console-sql-cancelled")
    assert tab.console_errors == []


def test_a_saved_query_is_shared_with_a_group_and_runs_as_whoever_runs_it(
    world: World, chromium: Any, tab: Any, stack: Stack
) -> None:
    a, b = world.experiments
    text = (
        f"SELECT workspace_id, count(*) AS runs FROM {world.view}\nWHERE experiment_id IN ('{a}', '{b}')\n"
        "GROUP BY workspace_id ORDER BY workspace_id"
    )
    name = f"runs per workspace {world.suffix}"
    sign_in_at(tab, EDITOR, world.analyst.token)
    tab.wait_for_selector("body[data-ready='sql']")
    tab.fill("#sq-name", name)
    tab.fill("#sq-text", text)
    tab.click("#sq-save")
    tab.wait_for_selector(f".sq-open.sq-current:has-text('{name}')")
    query_id = re.search(r"query=([0-9a-f-]{36})", tab.url)
    assert query_id, tab.url
    assert tab.inner_text("#sq-level") == f"Can manage · {world.analyst.name}"
    tab.click("#sq-run")
    wait_status(tab, r"rows in")
    assert result_rows(tab) == [["1001", "40"], ["1002", "20"]]  # the analyst is a lead: both workspaces

    # Shared with the readers group at CAN_RUN, from the page's form.
    tab.select_option("#sq-share-kind", "group_name")
    tab.fill("#sq-share-name", world.readers)
    tab.select_option("#sq-share-level", "CAN_RUN")
    tab.click("#sq-share-add")
    tab.wait_for_selector(f"#sq-acl tr[data-principal='{world.readers}']")
    assert tab.inner_text(f"#sq-acl tr[data-principal='{world.readers}'] td:nth-child(3)") == "Can run"
    shot(tab, "45-console-sql-shared")

    # Sharing with a group that does not exist is refused in words.
    tab.fill("#sq-share-name", f"nobody-{world.suffix}")
    tab.click("#sq-share-add")
    tab.wait_for_selector("#sq-share-error:not(.fg-hidden)")
    assert tab.inner_text("#sq-share-error") == f"RESOURCE_DOES_NOT_EXIST: No group named 'nobody-{world.suffix}'."

    # The member opens the link: CAN_RUN, no saving, and the view shows them workspace 1001 only.
    with new_tab(chromium, stack.url) as other:
        sign_in_at(other, f"{EDITOR}?query={query_id.group(1)}", world.member.token)
        other.wait_for_function("() => document.getElementById('sq-name').value !== ''")
        assert other.input_value("#sq-name") == name
        assert other.input_value("#sq-text") == text
        assert other.inner_text("#sq-level") == f"Can run · {world.analyst.name}"
        assert other.is_disabled("#sq-save") and other.is_disabled("#sq-delete")
        assert other.is_hidden("#sq-share")  # they see who it is shared with, but cannot change it
        other.click("#sq-run")
        wait_status(other, r"rows? in")
        assert result_rows(other) == [["1001", "40"]]
        shot(other, "46-console-sql-shared-run-by-member")
        # Edited, it runs as a statement of their own; saving it is "Save as new", theirs.
        other.fill("#sq-name", f"my copy {world.suffix}")
        other.click("#sq-save-as")
        other.wait_for_selector(f".sq-open.sq-current:has-text('my copy {world.suffix}')")
        assert other.inner_text("#sq-level") == f"Can manage · {world.member.name}"

    # Removing the group's grant: the member no longer sees the query.
    tab.click(f"#sq-acl tr[data-principal='{world.readers}'] .sq-unshare")
    tab.wait_for_selector(f"#sq-acl tr[data-principal='{world.readers}']", state="detached")
    gone = requests.get(
        f"{stack.url}/api/2.0/sql/queries/{query_id.group(1)}",
        headers={"Authorization": f"Bearer {world.member.token}"},
        timeout=60,
    )
    assert gone.status_code == 404 and gone.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    # Deleted from the page (after the browser's confirmation), it leaves the list.
    tab.once("dialog", lambda dialog: dialog.accept())
    tab.click("#sq-delete")
    tab.wait_for_selector(f".sq-open:has-text('{name}')", state="detached")
    assert tab.input_value("#sq-name") == "" and "query=" not in tab.url
    assert tab.console_errors == []
