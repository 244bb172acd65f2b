"""The gateway's own PostgreSQL paused (every process of it SIGSTOPped, as a frozen VM or a stalled disk leaves it):
calls that need it answer 503 TEMPORARILY_UNAVAILABLE within the configured `database.timeout_seconds`, not after
asyncpg's 60 s connect timeout or never; readiness reports it; once it is resumed the same calls succeed again
without a restart.

A gateway of its own, on a PostgreSQL of its own and a real MLflow server of its own. The pause is real: the
postmaster and every backend stopped, so a connection opens at the kernel and then hears nothing, and a statement
sent on a pooled connection gets no answer. The client waits 30 s at most for each answer, half of asyncpg's
default: an answer at all is the outcome checked, not how long it took.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from gateway.core.errors import mlflow_error
from gateway.db.engine import EmbeddedDatabase, start_embedded
from gateway.devstack import GatewayProcess, MlflowServer
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV
from tests.support.waiting import logged_so_far, until

WORKSPACE = "team-a"
CLIENT_WAIT_SECONDS = 30  # half of asyncpg's default connect timeout; the gateway is configured for 2 s


@dataclass
class Paused:
    gateway: GatewayProcess
    database: EmbeddedDatabase
    store: MlflowServer
    log_path: Path


@pytest.fixture(scope="module")
def paused(workdir: Path) -> Iterator[Paused]:
    root = workdir / f"database-paused-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    root.chmod(0o755)  # the embedded PostgreSQL runs as a user of its own
    database = start_embedded(root / "postgres")
    store = MlflowServer(root / "store").start(timeout=180)
    config = root / "fedgate.toml"
    config.write_text(
        f'[database]\nurl = "{database.url}"\ntimeout_seconds = 2\n[stores.a]\nurl = "{store.url}"\n'
        f'[[workspaces]]\nname = "{WORKSPACE}"\nid = "1001"\nstore = "a"\n'
    )
    log_path = root / "gateway.log"
    gateway = GatewayProcess(config, GATEWAY_ENV, log_path=log_path).start(timeout=120)
    try:
        yield Paused(gateway, database, store, log_path)
    finally:
        _signal_database(database, signal.SIGCONT)
        gateway.stop()
        store.stop()
        database.stop()


def _signal_database(database: EmbeddedDatabase, signum: int) -> None:
    """The postmaster and every process it started (backends, checkpointer, WAL writer)."""
    assert database.pid is not None
    postmaster = psutil.Process(database.pid)
    for process in [postmaster, *postmaster.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            os.kill(process.pid, signum)


def test_calls_that_need_a_paused_database_answer_503_in_time_and_recover_when_it_resumes(paused: Paused) -> None:
    http = requests.Session()
    http.headers.update({"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": WORKSPACE})
    base = paused.gateway.url
    scope = f"paused-{uuid.uuid4().hex[:8]}"
    assert http.post(f"{base}/api/2.0/secrets/scopes/create", json={"scope": scope}, timeout=60).status_code == 200
    put = http.post(f"{base}/api/2.0/secrets/put", json={"scope": scope, "key": "k", "string_value": "v" * 8})
    assert put.status_code == 200, put.text
    experiment = http.post(f"{base}/api/2.0/mlflow/experiments/create", json={"name": scope}, timeout=60)
    assert experiment.status_code == 200, experiment.text
    run = http.post(
        f"{base}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment.json()["experiment_id"]}, timeout=60
    )
    assert run.status_code == 200, run.text
    run_id = run.json()["run"]["info"]["run_id"]
    read = {"scope": scope, "keys": ["k"], "run_id": run_id}
    calls = {  # each has a pooled connection open now: the pause leaves it without an answer
        "a run's read of secrets (a statement on the secrets pool)": ("POST", "/api/2.0/secrets/get-many", read),
        "the secrets of a scope (the engine's pool)": ("GET", f"/api/2.0/secrets/list?scope={scope}", None),
        "the audit log (the engine's pool)": ("GET", "/api/2.0/fedgate/audit-log", None),
    }
    for what, (method, path, body) in calls.items():
        answer = http.request(method, f"{base}{path}", json=body, timeout=60)
        assert answer.status_code == 200, (what, answer.status_code, answer.text)
    assert requests.get(f"{base}/health/ready", timeout=60).status_code == 200

    _signal_database(paused.database, signal.SIGSTOP)
    try:
        for what, (method, path, body) in calls.items():
            try:
                answer = http.request(method, f"{base}{path}", json=body, timeout=CLIENT_WAIT_SECONDS)
            except requests.Timeout:
                pytest.fail(f"{what}: no answer within {CLIENT_WAIT_SECONDS} s while the database is paused")
            assert answer.status_code == 503, (what, answer.status_code, answer.text)
            assert answer.headers.get("Retry-After") == "5", what
            error = answer.json()
            assert set(error) == set(mlflow_error(error["error_code"], "")), (what, error)
            assert error["error_code"] == "TEMPORARILY_UNAVAILABLE", (what, error)
        ready = requests.get(f"{base}/health/ready", timeout=CLIENT_WAIT_SECONDS)
        assert ready.status_code == 503, ready.text
        assert ready.json()["database"].startswith("unreachable"), ready.text
        # A store call that needs no database is not held up by it (the policy is in memory).
        search = http.post(f"{base}/api/2.0/mlflow/experiments/search", json={"max_results": 5}, timeout=60)
        assert search.status_code == 200, search.text
    finally:
        _signal_database(paused.database, signal.SIGCONT)

    for what, (method, path, body) in calls.items():
        until(
            lambda method=method, path=path, body=body: http.request(method, f"{base}{path}", json=body, timeout=60),
            lambda answer: answer.status_code == 200,
            f"{what} answered again after the database resumed",
        )
    until(
        lambda: requests.get(f"{base}/health/ready", timeout=60),
        lambda answer: answer.status_code == 200,
        "ready again after the database resumed",
    )
    log = logged_so_far(base, paused.log_path)
    assert "unexpected error" not in log
    assert "the database could not be reached" in log
