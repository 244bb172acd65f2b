"""The console's shell: the layout's navigation, the browser-session rule with its sign-in redirect, static files."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from gateway.console.assets import ConsoleAssets
from gateway.console.layout import CONSOLE_HEADERS, SECTIONS, Viewer, render_page
from gateway.ui.static import IMMUTABLE, REVALIDATE
from tests.unit.test_route_table import ADMIN_TOKEN, build_app, served_routes

ASSETS = ConsoleAssets()


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:  # type: ignore[type-arg]
    yield TestClient(build_app())  # no lifespan: nothing here needs the database


def nav_labels(html: str) -> list[str]:
    return [section.label for section in SECTIONS if f"id='fg-nav-{section.key}'" in html]


def test_the_access_section_is_shown_to_admins_only() -> None:
    person = render_page(ASSETS, Viewer("ann", False, False), title="Dashboards", body="<p>x</p>", active="dashboards")
    assert nav_labels(person) == ["Dashboards", "SQL editor", "Alerts"]
    for admin in (Viewer("root", True, False), Viewer("lead", False, True)):
        html = render_page(ASSETS, admin, title="Dashboards", body="", active="dashboards")
        assert nav_labels(html) == ["Dashboards", "SQL editor", "Alerts", "Access"]
    assert "id='fg-nav-dashboards' href='/fedgate/console/dashboards' aria-current='page'" in person
    assert "href='/'" in person and "action='/fedgate/sign-out'" in person


def test_the_layout_escapes_what_it_is_given_and_runs_no_inline_script() -> None:
    html = render_page(ASSETS, Viewer("<img src=x onerror=alert(1)>", False, False), title="a<b", body="", active="sql")
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<title>a&lt;b · fedgate console</title>" in html
    scripts = html.split("<script")[1:]
    assert scripts and all(part.startswith(" defer src='/fedgate/console/static/") for part in scripts)
    assert "script-src 'self'" in CONSOLE_HEADERS["Content-Security-Policy"]
    assert "unsafe-inline" not in CONSOLE_HEADERS["Content-Security-Policy"]


def test_a_page_opened_without_a_session_goes_to_sign_in_and_comes_back(client: TestClient) -> None:  # type: ignore[type-arg]
    answer = client.get("/fedgate/console/?from=mail&x=%2F", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/fedgate/sign-in?next=/fedgate/console%3Ffrom%3Dmail%26x%3D%252F"


def test_a_page_refuses_a_token_the_console_is_for_browsers(client: TestClient) -> None:  # type: ignore[type-arg]
    answer = client.get("/fedgate/console/", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.status_code == 403
    assert answer.json()["error_code"] == "PERMISSION_DENIED"
    assert "browser" in answer.json()["message"]


def test_static_files_are_cached_by_their_digest(client: TestClient) -> None:  # type: ignore[type-arg]
    url = ASSETS.url("console.js")
    fresh = client.get(url)
    assert fresh.status_code == 200 and "window.fedgate" in fresh.text
    assert fresh.headers["cache-control"] == IMMUTABLE
    assert fresh.headers["content-type"].startswith("text/javascript")
    assert fresh.headers["x-content-type-options"] == "nosniff"
    digest = url.split("/")[-2]
    stale = client.get(url.replace(digest, "0" * len(digest)))
    assert stale.status_code == 200 and stale.headers["cache-control"] == REVALIDATE
    assert client.get(url.replace("console.js", "nothing.js")).status_code == 404
    assert client.get(url.replace("console.js", "..%2F..%2Fshell.py")).status_code == 404
    assert client.get(url.replace("console.js", "../shell.py")).status_code == 404


def test_every_console_route_states_who_may_call_it() -> None:
    own = {path: note for _, path, note in served_routes(build_app(), own_api=True)}
    console = {path for path in own if path.startswith("/fedgate/console")}
    assert {"/fedgate/console", "/fedgate/console/static/{digest:str}/{name:path}"} <= console
    assert all(isinstance(own[path], str) and own[path] for path in console)
