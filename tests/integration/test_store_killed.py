"""A store SIGKILLed while calls to it are in flight, downloads cut off by either end, and the gateway's PostgreSQL
paused under a dual workspace's writes: the client gets MLflow's error shape (never a 500, never a hang), the
gateway logs one line (never a stack trace), and a dual workspace loses nothing and copies nothing twice: its
central copy is level with its store once the store and the database are back.

A gateway of its own, on a PostgreSQL of its own, in front of two real MLflow servers of its own: `primary`, the
store of the dual workspace `team-a` that the test kills, and `central`, the account's central store.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from gateway.core.errors import mlflow_error
from gateway.db.engine import EmbeddedDatabase, start_embedded
from gateway.devstack import GatewayProcess, MlflowServer
from tests.conftest import ADMIN_TOKEN, GATEWAY_ENV
from tests.support.waiting import logged_so_far, until

WORKSPACE = "team-a"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
BIG = 48 * 1024 * 1024  # far more than the sockets between store, gateway and client buffer


@dataclass
class Killable:
    gateway: GatewayProcess
    database: EmbeddedDatabase
    primary: MlflowServer
    central: MlflowServer
    log_path: Path

    def http(self) -> requests.Session:
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {ADMIN_TOKEN}", "X-MLFLOW-WORKSPACE": WORKSPACE})
        return session


@pytest.fixture(scope="module")
def killable(workdir: Path) -> Iterator[Killable]:
    root = workdir / f"store-killed-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    root.chmod(0o755)  # the embedded PostgreSQL runs as a user of its own
    database = start_embedded(root / "postgres")
    primary = MlflowServer(root / "primary")
    central = MlflowServer(root / "central", workspaces=True)
    threads = [threading.Thread(target=server.start, kwargs={"timeout": 180}) for server in (primary, central)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    config = root / "fedgate.toml"
    config.write_text(
        f'[database]\nurl = "{database.url}"\ntimeout_seconds = 2\n'
        f'[stores.primary]\nurl = "{primary.url}"\n'
        f'[stores.central]\nurl = "{central.url}"\nworkspaces = true\n'
        f'[central]\nstore = "central"\n'
        f'[[workspaces]]\nname = "{WORKSPACE}"\nid = "1001"\nstore = "primary"\nmode = "dual"\n'
    )
    log_path = root / "gateway.log"
    gateway = GatewayProcess(config, GATEWAY_ENV, log_path=log_path).start(timeout=120)
    try:
        yield Killable(gateway, database, primary, central, log_path)
    finally:
        _signal_database(database, signal.SIGCONT)
        gateway.stop()
        primary.stop()
        central.stop()
        database.stop()


def _signal_database(database: EmbeddedDatabase, signum: int) -> None:
    """The postmaster and every process it started (backends, checkpointer, WAL writer)."""
    assert database.pid is not None
    postmaster = psutil.Process(database.pid)
    for process in [postmaster, *postmaster.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            os.kill(process.pid, signum)


def _kill(server: MlflowServer) -> None:
    """SIGKILL the store's whole process group: no answer is finished, no connection closed politely."""
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(10)


def _run(http: requests.Session, base: str) -> tuple[str, str]:
    experiment = http.post(
        f"{base}/api/2.0/mlflow/experiments/create", json={"name": f"killed-{uuid.uuid4().hex[:8]}"}, timeout=60
    )
    assert experiment.status_code == 200, experiment.text
    experiment_id = experiment.json()["experiment_id"]
    run = http.post(f"{base}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id}, timeout=60)
    assert run.status_code == 200, run.text
    return experiment_id, run.json()["run"]["info"]["run_id"]


def _errors_of(log: str) -> list[str]:
    return [line for line in log.splitlines() if "Traceback" in line or "Exception in ASGI application" in line]


def _loud_lines(log: str) -> list[str]:
    """Lines with a stack trace or at error level, shortened to their logger and message."""
    found = []
    for line in log.splitlines():
        if "Traceback" in line or '"level":"error"' in line:
            logger = re.search(r'"logger":"([^"]*)"', line)
            message = re.search(r'"msg":"([^"]{0,120})', line)
            found.append(f"{logger.group(1) if logger else '?'}: {message.group(1) if message else line[:160]}")
    return found


def _five_hundreds(base: str) -> list[str]:
    metrics = requests.get(f"{base}/metrics", timeout=30).text
    return [line for line in metrics.splitlines() if re.match(r'^fedgate_requests_total\{.*status="500"', line)]


def test_a_download_cut_off_by_the_client_or_by_a_killed_store_is_one_line_not_a_trace(killable: Killable) -> None:
    http = killable.http()
    base = killable.gateway.url
    experiment_id, run_id = _run(http, base)
    url = f"{base}{ARTIFACTS}/{experiment_id}/{run_id}/artifacts/big.bin"
    payload = os.urandom(1024 * 1024) * (BIG // (1024 * 1024))
    uploaded = http.put(url, data=payload, timeout=300)
    assert uploaded.status_code == 200, uploaded.text

    # The client goes away after the first megabyte.
    download = http.get(url, stream=True, timeout=60)
    assert download.status_code == 200, download.text
    assert len(download.raw.read(1024 * 1024)) == 1024 * 1024
    download.close()

    # The store dies while the gateway streams its answer: the client's connection ends short of the length.
    download = http.get(url, stream=True, timeout=60)
    assert download.status_code == 200, download.text
    assert int(download.headers["Content-Length"]) == BIG
    received = len(download.raw.read(1024 * 1024))
    _kill(killable.primary)
    try:
        for chunk in download.iter_content(1024 * 1024):
            received += len(chunk)
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError):
        pass
    assert received < BIG
    killable.primary.start(timeout=180)

    log = logged_so_far(base, killable.log_path)
    assert _errors_of(log) == [], _errors_of(log)
    assert "download cut short" in log
    assert _five_hundreds(base) == []
    whole = http.get(url, timeout=300)  # and the store serves it again
    assert whole.status_code == 200 and whole.content == payload


def _central_points(central: MlflowServer, run_id: str) -> set[tuple[int, float]] | None:
    """The points of the central copy of `run_id` (found by its provenance tag), None while it has none."""
    workspace = {"X-MLFLOW-WORKSPACE": WORKSPACE}
    experiments = requests.post(
        f"{central.url}/api/2.0/mlflow/experiments/search", json={"max_results": 1000}, headers=workspace, timeout=60
    )
    assert experiments.status_code == 200, experiments.text
    ids = [e["experiment_id"] for e in experiments.json().get("experiments", [])]
    if not ids:
        return None
    runs = requests.post(
        f"{central.url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": ids, "filter": f"tags.`fedgate.source_run_id` = '{run_id}'"},
        headers=workspace,
        timeout=60,
    )
    assert runs.status_code == 200, runs.text
    found = runs.json().get("runs", [])
    if not found:
        return None
    return _points(central.url, found[0]["info"]["run_id"], workspace)


def _points(url: str, run_id: str, headers: dict[str, str] | None = None) -> set[tuple[int, float]]:
    params: dict[str, str | int] = {"run_id": run_id, "metric_key": "loss", "max_results": 25000}
    page = requests.get(f"{url}/api/2.0/mlflow/metrics/get-history", params=params, headers=headers, timeout=60)
    assert page.status_code == 200, page.text
    return {(m["step"], m["value"]) for m in page.json().get("metrics", [])}


def test_calls_in_flight_when_the_store_is_killed_answer_an_mlflow_error_and_nothing_is_lost(
    killable: Killable,
) -> None:
    http = killable.http()
    base = killable.gateway.url
    experiment_id, run_id = _run(http, base)
    answers: dict[str, list[requests.Response | BaseException]] = {"log-batch": [], "search": [], "upload": []}
    accepted: set[tuple[int, float]] = set()
    stop = threading.Event()

    def batch(step: int) -> list[dict[str, Any]]:
        return [{"key": "loss", "value": step + i / 100, "timestamp": 1000 + step, "step": step * 100 + i}
                for i in range(100)]  # fmt: skip

    def log_batch(step: int) -> requests.Response:
        answer = http.post(
            f"{base}/api/2.0/mlflow/runs/log-batch", json={"run_id": run_id, "metrics": batch(step)}, timeout=90
        )
        if answer.status_code == 200:
            accepted.update((m["step"], m["value"]) for m in batch(step))
        return answer

    def search(step: int) -> requests.Response:
        body: dict[str, Any] = {"experiment_ids": [experiment_id], "max_results": 50}
        return http.post(f"{base}/api/2.0/mlflow/runs/search", json=body, timeout=90)

    def upload(step: int) -> requests.Response:
        target = f"{base}{ARTIFACTS}/{experiment_id}/{run_id}/artifacts/up-{step}.bin"
        return http.put(target, data=os.urandom(8 * 1024 * 1024), timeout=90)

    def keep_calling(name: str, call: Any) -> None:
        step = 0
        while not stop.is_set():
            step += 1
            try:
                answers[name].append(call(step))
            except requests.RequestException as exc:  # a hang (timeout) or a dropped connection: a failure below
                answers[name].append(exc)

    calls = {"log-batch": log_batch, "search": search, "upload": upload}
    threads = [threading.Thread(target=keep_calling, args=(name, call)) for name, call in calls.items()]
    for thread in threads:
        thread.start()
    try:
        until(lambda: min(len(v) for v in answers.values()), lambda n: n >= 3, "a few calls of each kind answered")
        before = {name: len(got) for name, got in answers.items()}
        _kill(killable.primary)  # calls of each kind are in flight now, most likely: each thread calls back to back
        until(
            lambda: min(len(got) - before[name] for name, got in answers.items()),
            lambda n: n >= 3,
            "calls of each kind answered while the store is down",
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(180)
        killable.primary.start(timeout=180)

    refused = 0
    for name, got in answers.items():
        for answer in got:
            assert isinstance(answer, requests.Response), (name, answer)  # never a hang or a dropped connection
            if answer.status_code == 200:
                continue
            refused += 1
            assert answer.status_code in (502, 503, 504), (name, answer.status_code, answer.text)
            error = answer.json()
            assert set(error) == set(mlflow_error(error["error_code"], "")), (name, error)
    assert refused > 0
    assert _five_hundreds(base) == []
    log = logged_so_far(base, killable.log_path)
    assert _errors_of(log) == [], _errors_of(log)

    # Every point the store accepted is in it, and the central copy ends level with it: nothing lost, nothing twice.
    primary = _points(killable.primary.url, run_id)
    assert accepted <= primary
    until(
        lambda: _central_points(killable.central, run_id),
        lambda central: central == primary,
        "the central copy level with the primary",
        seconds=120,
    )


def _central_runs(central: MlflowServer, run_id: str) -> int:
    workspace = {"X-MLFLOW-WORKSPACE": WORKSPACE}
    experiments = requests.post(
        f"{central.url}/api/2.0/mlflow/experiments/search", json={"max_results": 1000}, headers=workspace, timeout=60
    )
    ids = [e["experiment_id"] for e in experiments.json().get("experiments", [])]
    runs = requests.post(
        f"{central.url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": ids, "filter": f"tags.`fedgate.source_run_id` = '{run_id}'"},
        headers=workspace,
        timeout=60,
    )
    return len(runs.json().get("runs", []))


def _count_after(answered: list[int], status: int, count: int, what: str) -> None:
    """Waits until `count` more answers of `status` came than so far."""
    seen = len(answered)
    until(lambda: answered[seen:].count(status), lambda n: n >= count, what)


def test_writes_while_the_database_is_paused_reach_the_central_store_once(killable: Killable) -> None:
    """Log-batch calls back to back, each retried on 503 as the stock client does, while PostgreSQL is paused and
    resumed twice: the relay is applying entries throughout, so a pause finds it mid-way as well."""
    http = killable.http()
    base = killable.gateway.url
    _, run_id = _run(http, base)
    accepted: set[tuple[int, float]] = set()
    answered: list[int] = []
    unexpected: list[str] = []
    stop = threading.Event()

    def batch(step: int) -> list[dict[str, Any]]:
        return [{"key": "loss", "value": step + i / 100, "timestamp": 2000 + step, "step": step * 100 + i}
                for i in range(50)]  # fmt: skip

    def keep_logging() -> None:
        step = 0
        while not stop.is_set():
            step += 1
            while not stop.is_set():  # the same batch again until it is accepted
                try:
                    answer = http.post(
                        f"{base}/api/2.0/mlflow/runs/log-batch",
                        json={"run_id": run_id, "metrics": batch(step)},
                        timeout=30,
                    )
                except requests.RequestException as exc:
                    unexpected.append(f"no answer: {type(exc).__name__}")
                    continue
                answered.append(answer.status_code)
                if answer.status_code == 200:
                    accepted.update((m["step"], m["value"]) for m in batch(step))
                    break
                if answer.status_code != 503 or answer.json().get("error_code") != "TEMPORARILY_UNAVAILABLE":
                    unexpected.append(f"{answer.status_code}: {answer.text[:200]}")

    thread = threading.Thread(target=keep_logging)
    thread.start()
    try:
        for _ in range(2):
            _count_after(answered, 200, 5, "batches accepted")
            _signal_database(killable.database, signal.SIGSTOP)
            try:
                _count_after(answered, 503, 3, "batches refused while the database is paused")
            finally:
                _signal_database(killable.database, signal.SIGCONT)
        _count_after(answered, 200, 5, "batches accepted after the pauses")
    finally:
        stop.set()
        thread.join(120)
        _signal_database(killable.database, signal.SIGCONT)

    assert unexpected == []
    primary = _points(killable.primary.url, run_id)
    assert accepted <= primary
    until(
        lambda: _central_points(killable.central, run_id),
        lambda central: central == primary,
        "the central copy level with the primary",
        seconds=120,
    )
    assert _central_runs(killable.central, run_id) == 1
    # No call failed inside the gateway, and the loops that met the outage logged it in one line each time.
    log = logged_so_far(base, killable.log_path)
    assert "Exception in ASGI application" not in log
    assert "unexpected error" not in log
    assert _loud_lines(log) == [], _loud_lines(log)
    assert '"database":"did not answer: ' in log
