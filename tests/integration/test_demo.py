"""`make demo` (`fedgate demo`): the URL it prints and its one line to sign in lead into the MLflow UI.

The demo runs as `make demo` runs it: its own process starting embedded PostgreSQL, three `mlflow server`
processes and the gateway, training through the gateway, then printing what to open. A real Chromium
opens the printed URL and signs in with the printed token on the gateway's sign-in page.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.cli.demo import DEMO_USER
from gateway.devstack import free_port
from tests.support.browser import new_tab, shot

pytestmark = pytest.mark.integration

# The line `make demo` prints once everything runs (gateway/cli/demo/__init__.py).
OPEN_LINE = re.compile(
    r"^Open the MLflow UI: (?P<url>http://\S+/)\s+\(sign in with (?P<user>\S+)'s token: (?P<token>\S+)\)$"
)
READY = "Press Ctrl-C to stop everything."


class Demo:
    """`fedgate demo` in a process group of its own; its output, line by line."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lines: list[str] = []
        self.exit_code: int | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FEDGATE_", "MLFLOW_"))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "demo", "--dir", str(root), "--port", str(free_port())],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, limit: float = 900.0) -> None:
        """Read the output until a line is `text` (a guard against a hang, not a timed assertion)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("the demo ended early:\n" + "\n".join(self.lines[-40:]))
            self.lines.append(line)
            if line == text:
                return
        raise AssertionError("the demo printed no '" + text + "':\n" + "\n".join(self.lines[-40:]))

    def stop(self) -> int:
        """Ctrl-C, as a person stops it: the demo stops everything it started and exits; the rest of its output
        is read. Once stopped, its exit code."""
        if self.exit_code is not None:
            return self.exit_code
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the demo's own group (its servers have groups of their own)
            self.process.wait()
            raise
        while (line := self._queue.get(timeout=30)) is not None:
            self.lines.append(line)
        self.exit_code = code
        return code


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    started = Demo(tmp_path_factory.mktemp("demo"))
    try:
        started.wait_for(READY)
        yield started
    finally:
        started.stop()


def test_the_demo_prints_the_url_and_a_token_that_sign_in_to_the_mlflow_ui(demo: Demo, chromium: Any) -> None:
    printed = [match for line in demo.lines if (match := OPEN_LINE.match(line))]
    assert len(printed) == 1, "\n".join(demo.lines[-20:])
    url, user, token = printed[0]["url"], printed[0]["user"], printed[0]["token"]
    assert user == DEMO_USER

    with new_tab(chromium, url) as page:
        # The printed URL, signed out, is the sign-in page; the printed token signs the demo's user in.
        page.goto(url)
        page.wait_for_selector("#token")
        assert page.url.startswith(f"{url}fedgate/sign-in")
        page.fill("#token", token)
        page.click("#sign-in-token")
        page.wait_for_selector("#fedgate-user")
        assert page.inner_text("#fedgate-user") == DEMO_USER
        # The MLflow UI, in the workspace the demo trained in: its experiment is listed.
        page.goto(f"{url}#/experiments?workspace=team-a")
        page.get_by_text("demo-churn").first.wait_for()
        shot(page, "60-demo-signed-in")
        assert not [seen for seen in page.urls if token in seen]  # the token never travelled in a URL

    # Without the token's session, the same UI call is refused.
    search = requests.post(
        f"{url}ajax-api/2.0/mlflow/experiments/search",
        json={"max_results": 10},
        headers={"X-MLFLOW-WORKSPACE": "team-a"},
        timeout=30,
    )
    assert search.status_code == 401 and search.json()["error_code"] == "UNAUTHENTICATED"


def test_ctrl_c_stops_everything_the_demo_started(demo: Demo) -> None:
    # The URLs it printed: the three mlflow servers ("  <name>  http://...") and the gateway.
    urls = [line.split()[-1] for line in demo.lines if re.match(r"^  \S+ +http://\S+$", line)]
    urls += [match["url"] for line in demo.lines if (match := OPEN_LINE.match(line))]
    assert len(urls) == 4, "\n".join(demo.lines[:20])
    assert demo.stop() == 0
    assert demo.lines[-1] == "stopping ..." and not [line for line in demo.lines if "Traceback" in line]
    for url in urls:
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=10)
