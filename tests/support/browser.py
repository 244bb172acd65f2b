"""A real headless Chromium for the web UI's end-to-end tests: Debian's `chromium`, driven by Playwright.

Playwright's own browser downloads are never used: the tests launch the system's chromium by its path
(`FEDGATE_CHROMIUM`, else `chromium` on PATH; `.ci/run` installs the Debian package). One browser serves
a test module (tests/conftest.py, `chromium`); each test gets contexts of its own (cookies, storage),
which are cheap.
Screenshots go to `test-artifacts/ui/` at the repository root (README, "The web UI").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.core.errors import mlflow_error

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


def chromium_path() -> str | None:
    return os.environ.get("FEDGATE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def png(width: int, height: int) -> bytes:
    """A small real PNG (a colour gradient), for an image artifact the UI previews."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 160)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@contextlib.contextmanager
def new_tab(chromium: Any, base_url: str) -> Iterator[Any]:
    """A tab in a fresh browser context (no cookies); every URL it asks for and every answer are kept
    (`tab.urls`, `tab.answers` as (status, method, url))."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, base_url=base_url)
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    tab.urls = []
    tab.answers = []
    tab.on("request", lambda r: tab.urls.append(r.url))
    tab.on("response", lambda r: tab.answers.append((r.status, r.request.method, r.url)))
    try:
        yield tab
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    """A screenshot of the tab, as test-artifacts/ui/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def sign_in_with_token(page: Any, token: str) -> None:
    """Sign in on the gateway's sign-in page with a personal access token; back on MLflow's page."""
    page.goto("/")
    page.fill("#token", token)
    page.click("#sign-in-token")
    page.wait_for_selector("#fedgate-user")


def answered_missing(response: Any, message: str) -> bool:
    """The gateway answered as an MLflow server answers for an object that does not exist: REST with 404
    RESOURCE_DOES_NOT_EXIST, GraphQL with 200, the field null and the message in `errors`."""
    document = response.json()
    if "/graphql" in response.url:
        data = document.get("data") or {}
        nothing = bool(data) and set(data.values()) == {None}
        return response.status == 200 and nothing and document.get("errors") == [message]
    return bool(response.status == 404 and document == mlflow_error("RESOURCE_DOES_NOT_EXIST", message))


def reload_catching(page: Any, predicate: Any, attempts: int = 3) -> Any:
    """Reload the tab and return the first answer `predicate` matches, its body read.

    A call the page made before the reload may still be answered after it and match `predicate`; its body
    is gone with the page it belonged to ("Response body is not available for a response that was navigated
    away from"). Such an answer says nothing either way, so the reload is made again; a body that was read
    is returned as it came, whatever it says."""
    from playwright.sync_api import Error

    for attempt in range(attempts):
        with page.expect_response(predicate) as caught:
            page.reload()
        try:
            caught.value.body()
        except Error as exc:
            if "navigated away" not in str(exc) or attempt + 1 == attempts:
                raise
            continue
        return caught.value
    raise AssertionError("unreachable")


def image_shown(page: Any, width: int) -> None:
    """Waits (bounded) until the tab shows a loaded image `width` pixels wide. (Not wait_for_function: its string
    predicate is an eval, which MLflow's page's CSP refuses; `evaluate` is not one.)"""
    from tests.support.waiting import until

    shown = "(width) => [...document.images].some(i => i.complete && i.naturalWidth === width)"
    until(lambda: bool(page.evaluate(shown, width)), bool, f"an image {width} pixels wide shown")
