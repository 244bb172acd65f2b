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
