"""The script policy of MLflow's page and the build's HTML files: made from the file served, its inline scripts
pinned by hash; the policy itself allows no eval and no script from anywhere but the gateway."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from gateway.ui.static import UiBuild, app_policy, find_build, inline_script_hashes


def pinned(text: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


def directives(policy: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        assert name not in found, name
        found[name] = sources
    return found


def test_the_policy_allows_the_gateways_scripts_and_calls_only() -> None:
    policy = directives(app_policy(b"<html><head><script src='/static-files/main.js'></script></head></html>"))
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-eval', no 'unsafe-inline', no other host
    assert policy["connect-src"] == ["'self'"] and policy["worker-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert not [source for sources in policy.values() for source in sources if source in ("*", "https:", "http:")]


def test_each_inline_script_of_the_file_is_pinned_by_its_hash_once() -> None:
    html = (
        "<!doctype html><html><head><script>window.a = 1</script>"
        "<script src='/x.js'></script><script type='application/json'>{\"b\": 2}</script>"
        "<SCRIPT type=\"module\">import('/y.js')</SCRIPT><script>window.a = 1</script>"
        "<script type='text/javascript'>\r\nwindow.c = 3\r\n</script></head></html>"
    )
    assert inline_script_hashes(html.encode()) == [
        pinned("window.a = 1"),
        pinned("import('/y.js')"),
        pinned("\nwindow.c = 3\n"),  # the HTML parser hands the script over with LF line ends
    ]
    script_src = directives(app_policy(html.encode()))["script-src"]
    assert script_src == ["'self'", pinned("window.a = 1"), pinned("import('/y.js')"), pinned("\nwindow.c = 3\n")]


async def test_an_html_file_of_a_build_is_served_with_the_policy_of_its_own_scripts(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<html><head><script>boot()</script></head><body></body></html>")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "page.html").write_text("<html><head><base href='/'></head><body></body></html>")
    (tmp_path / "main.js").write_text("boot = () => 1;")
    build = UiBuild(tmp_path)
    index = await build.file("index.html", "gzip")
    page = await build.file("lib/page.html", "")
    script = await build.file("main.js", "")
    assert index is not None and page is not None and script is not None
    assert directives(index.headers["Content-Security-Policy"])["script-src"] == ["'self'", pinned("boot()")]
    assert directives(page.headers["Content-Security-Policy"])["script-src"] == ["'self'"]
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert script.headers["Content-Security-Policy"] == "frame-ancestors 'none'"  # a script file is no page


def test_mlflows_build_has_no_inline_script_to_pin() -> None:
    """MLflow 3.17.2's index.html loads its bundle by `src`; should a build add an inline script, the policy
    pins it (above) instead of the page breaking."""
    build = find_build()
    if build is None:
        pytest.skip("the `ui` extra (the mlflow wheel) is not installed")
    assert inline_script_hashes((build / "index.html").read_bytes()) == []
