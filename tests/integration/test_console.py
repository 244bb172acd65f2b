"""The account console in a real headless Chromium behind the gateway's browser sign-in.

The session's gateway (real PostgreSQL, real mlflow stores), people made over the gateway's own APIs, and
Debian's chromium driven by Playwright. Screenshots: test-artifacts/ui/ (README, "The web UI").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import Stack
from tests.support.browser import new_tab, shot
from tests.support.identity import Admin, Person, unique

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
    tab.console_errors.clear()  # the sign-in page's (a favicon the gateway does not have)
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
