"""A file a user uploaded comes back through the gateway with the headers that keep a browser from running it.

The gateway answers from its own origin, where the web UI and its session cookie live; an artifact is whatever a
user with CAN_EDIT uploaded, HTML with scripts included. MLflow serves it as an attachment, with its guessed type
and `X-Content-Type-Options: nosniff`; the gateway's answer must carry the same headers as the store's.
"""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.conftest import Stack

pytestmark = pytest.mark.integration
PAGE = b"<html><body><script>fetch('/api/2.0/mlflow/experiments/search')</script></body></html>"
KEPT = ("content-disposition", "x-content-type-options")


@pytest.mark.parametrize("name", ["page.html", "image.svg", "notes.txt"])
def test_an_artifact_answer_keeps_the_headers_that_stop_a_browser_running_it(stack: Stack, name: str) -> None:
    path = f"/api/2.0/mlflow-artifacts/artifacts/0/{uuid.uuid4().hex}/artifacts/{name}"
    session = stack.http("team-a")
    assert session.put(f"{stack.url}{path}", data=PAGE).status_code == 200
    through = session.get(f"{stack.url}{path}")
    direct = requests.get(f"{stack.stores['a'].url}{path}", timeout=30)
    assert through.status_code == direct.status_code == 200
    assert through.content == direct.content == PAGE
    assert direct.headers["X-Content-Type-Options"] == "nosniff"
    assert direct.headers["Content-Disposition"].startswith("attachment")
    assert {key: through.headers.get(key) for key in KEPT} == {key: direct.headers.get(key) for key in KEPT}
    # The type is the store's, as the store sent it (a text type's charset once, not with a second one added).
    assert through.raw.headers.getlist("Content-Type") == [direct.headers["Content-Type"]]


def test_a_file_is_never_kept_by_a_shared_cache_nor_reused_unasked(stack: Stack) -> None:
    """A file comes from a request authenticated by a token or the web UI's cookie (no Authorization header, so a
    shared cache in front of the gateway may store the answer). MLflow's proxied download has no Cache-Control and
    a Last-Modified, which lets any cache reuse it by heuristic freshness: a CDN or caching proxy in front of the
    gateway served one person's file to anyone asking its URL, and a browser showed it again after sign-out or a
    revoked grant without asking the gateway. Files are `private` to the browser and asked for again at every use."""
    path = f"/api/2.0/mlflow-artifacts/artifacts/0/{uuid.uuid4().hex}/artifacts/plot.png"
    session = stack.http("team-a")
    assert session.put(f"{stack.url}{path}", data=b"\x89PNG\r\n").status_code == 200
    direct = requests.get(f"{stack.stores['a'].url}{path}", timeout=30)
    assert "private" not in direct.headers.get("Cache-Control", "")  # the store's own answer
    through = session.get(f"{stack.url}{path}")
    assert through.status_code == 200 and through.content == b"\x89PNG\r\n"
    directives = {d.strip() for d in through.headers["Cache-Control"].split(",")}
    assert {"private", "no-cache"} <= directives and "public" not in directives, through.headers
