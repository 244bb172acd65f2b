"""The gateway's own PostgreSQL stopped: routes that need it answer 503 TEMPORARILY_UNAVAILABLE, never a 500.

A gateway of its own, on a PostgreSQL of its own that the test stops (a real embedded server, shut down
as an operator would), in front of the session's store `a`. Whatever shape the failure takes underneath
(SQLAlchemy's DBAPIError around asyncpg's refused connection, asyncpg's own errors on its pools, the
built-in vault's reads), the caller gets MLflow's error shape with Retry-After, and the gateway logs no
unexpected error.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from gateway.core.errors import mlflow_error
from gateway.db.engine import EmbeddedDatabase, start_embedded
from gateway.devstack import GatewayProcess, MlflowServer
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV

WORKSPACE = "team-a"


@dataclass
class Lonely:
    gateway: GatewayProcess
    database: EmbeddedDatabase
    log_path: Path


@pytest.fixture(scope="module")
def lonely(workdir: Path, stores: dict[str, MlflowServer]) -> Iterator[Lonely]:
    root = workdir / f"database-down-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    root.chmod(0o755)  # the embedded PostgreSQL runs as a user of its own
    database = start_embedded(root / "postgres")
    config = root / "fedgate.toml"
    config.write_text(
        f'[database]\nurl = "{database.url}"\n[stores.a]\nurl = "{stores["a"].url}"\n'
        f'[[workspaces]]\nname = "{WORKSPACE}"\nid = "1001"\nstore = "a"\n'
    )
    log_path = root / "gateway.log"
    gateway = GatewayProcess(config, GATEWAY_ENV, log_path=log_path).start(timeout=120)
    try:
        yield Lonely(gateway, database, log_path)
    finally:
        gateway.stop()
        database.stop()


def test_every_route_that_needs_the_database_answers_503_while_it_is_stopped(lonely: Lonely) -> None:
    http = requests.Session()
    http.headers.update({"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": WORKSPACE})
    base = lonely.gateway.url
    scope = f"down-{uuid.uuid4().hex[:8]}"
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
    got = http.post(f"{base}/api/2.0/secrets/get-many", json=read, timeout=60)
    assert got.status_code == 200, got.text  # the read's pool has a connection open now: it will find it dead

    lonely.database.stop()

    one = {"scope": scope, "key": "k", "run_id": run_id}
    another = {"scope": scope, "key": "k2", "string_value": "w" * 8}
    ended = {"run_id": run_id, "status": "FINISHED"}
    calls = {
        "a run's read of secrets (the read's own pool)": ("POST", "/api/2.0/secrets/get-many", read),
        "a run's read of one secret": ("POST", "/api/2.0/secrets/get", one),
        "the secrets of a scope": ("GET", f"/api/2.0/secrets/list?scope={scope}", None),
        "the scopes of a workspace": ("GET", "/api/2.0/secrets/scopes/list", None),
        "a secret put into the built-in vault": ("POST", "/api/2.0/secrets/put", another),
        "a run ended (its state change is noted first)": ("POST", "/api/2.0/mlflow/runs/update", ended),
        "the audit log": ("GET", "/api/2.0/fedgate/audit-log", None),
    }
    for what, (method, path, body) in calls.items():
        answer = http.request(method, f"{base}{path}", json=body, timeout=60)
        assert answer.status_code == 503, (what, answer.status_code, answer.text)
        assert answer.headers.get("Retry-After") == "5", what
        error = answer.json()
        assert set(error) == set(mlflow_error(error["error_code"], "")), (what, error)
        assert error["error_code"] == "TEMPORARILY_UNAVAILABLE", (what, error)
        assert "database" in error["message"] or "vault" in error["message"], (what, error)

    log = lonely.log_path.read_text(errors="replace")
    assert "unexpected error" not in log
    assert "the database could not be reached" in log
